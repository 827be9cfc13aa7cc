"""Push a finished model folder to the Hugging Face Hub in one commit.

What goes up (`upload_plan`): everything a user needs to run and judge the model,

    config.json, model.safetensors (or its shards + index), the remote code (auto_map's modules + siblings),
    preprocessor_config.json, README.md (the card), metrics.json, training_recipe.json,
    *_results.json / trainer_state.json when present,
    evaluation/: metrics.json, misclassified.csv, report.html, *.png, attention/*.png,
                 misclassified/*.png (the report's thumbnails)

and what stays home: checkpoint-*/ (optimizer and scheduler states), pickles
(training_args.bin, *.pt), caches and anything else not listed.
The folders training and the evaluation recorded (metrics, recipe, trainer state,
report.html) go up as ./<last part> (`hf_vit/public.py`): no path of this machine.

A push to a repository that an earlier push filled also removes, in the same commit, the files that push put
there by hf_vit's own names (weights, metrics, the evaluation's files: `pushed_kind`) which the folder no longer
has, and says which (a dry run too): the repository then holds this model's files only, besides the user's own
(README.md with --keep_card, .py files, a picture of their own under evaluation/, anything else).

Every check (folder complete, repo id and branch well formed, no file that a symbolic link
brings in from outside the folder, a token available, no training or evaluation writing the folder) runs
before the first network call, so a bad call fails at once and uploads nothing; --private into an existing
public repository is refused after create_repo, before the commit. `revision` pushes to a branch (made from
main if absent), and the card's code then loads that branch. A card kept as it is (--keep_card) is refused when the
folder has none or its code loads another repository or revision than the push's (`refuse_kept_card`), or an id
without an owner; for a push to such an id, once create_repo has named the repository, before the commit.
"""

import fnmatch
import json
import re
from contextlib import ExitStack
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, get_token

from .image_processing import processor_size_mismatch
from .links import refuse_links_outside
from .output_folder import (
    EVALUATION_FILES, EVALUATION_SUBFOLDERS, share_checkpoint_run, share_folder, sigterm_exits, two_saves,
)
from .public import public_copies

# Top-level files that go up when present (config.json, weights and preprocessor are also required).
TOP_LEVEL_FILES = (
    "config.json",
    "preprocessor_config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "README.md",
    "metrics.json",
    "training_recipe.json",
    "all_results.json",
    "train_results.json",
    "eval_results.json",
    "trainer_state.json",
)
TOP_LEVEL_PATTERNS = ("model-*-of-*.safetensors",)
# .py files go up only as remote code: the modules auto_map names and the siblings they import (`from .x import`),
# never a script that happens to lie in the folder.
_RELATIVE_IMPORT = re.compile(r"^\s*from\s+\.(\w+)\s+import\b", re.MULTILINE)
# Under evaluation/: the summary files, the pictures, and every file report.html links to. Each card of the
# report shows its mistake from misclassified/, so without those the pushed report's thumbnails are all broken.
# They are the dataset's own small images (CIFAR-10: 32x32, about 2.4 KB each; 2,000 mistakes of an 80% model
# are about 5 MB), a tenth of the size of an attention strip (about 29 KB, at most --max_attention_maps of them).
EVALUATION_PATTERNS = (
    "evaluation/metrics.json",
    "evaluation/misclassified.csv",
    "evaluation/report.html",
    "evaluation/*.png",
    "evaluation/attention/*.png",
    "evaluation/misclassified/*.png",
)
# What the evaluation itself writes under evaluation/ (output_folder.EVALUATION_FILES, which hf_vit/analysis.py
# writes by): its named files, and the .png files of the folders it owns and empties on each run. Only these are an
# earlier push's to delete; other files there are the user's.
EVALUATION_WRITTEN = (*(f"evaluation/{name}" for name in EVALUATION_FILES),
                      *(f"evaluation/{folder}/*.png" for folder in EVALUATION_SUBFOLDERS))
_ABSOLUTE_IMPORT = re.compile(r"^\s*(from\s+hf_vit[\s.]|import\s+hf_vit\b)", re.MULTILINE)


class IncompleteModelFolder(ValueError):
    """The folder lacks something a Hub user needs to load the model."""


def _weight_files(model_dir: Path) -> list[str]:
    """Names of the safetensors weight files (single file or the shards of the index)."""
    both = two_saves(model_dir)
    if both:
        raise IncompleteModelFolder(both)
    if (model_dir / "model.safetensors").is_file():
        return ["model.safetensors"]
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
            raise IncompleteModelFolder(
                f"{index} is not a safetensors index (a JSON object whose weight_map names each tensor's shard): "
                f"{type(err).__name__}: {err}. Save the model again with `model.save_pretrained(folder)`."
            ) from err
        return ["model.safetensors.index.json", *shards]
    return []


def check_weights(model_dir) -> str | None:
    """What is wrong with the folder's safetensors weights (missing, only a pickle, cut short), or None."""
    from safetensors import safe_open

    model_dir = Path(model_dir)
    try:
        weights = _weight_files(model_dir)
    except IncompleteModelFolder as err:
        return str(err)
    if not weights:
        hint = (
            " (found pytorch_model.bin, a pickle: load it and save again with `save_pretrained`, which writes safetensors)"
            if (model_dir / "pytorch_model.bin").is_file()
            else ""
        )
        return f"model.safetensors is missing{hint}: save the model with `model.save_pretrained(folder)`."
    missing_shards = [name for name in weights if not (model_dir / name).is_file()]
    if missing_shards:
        return f"weight shards listed in model.safetensors.index.json are missing: {', '.join(missing_shards)}."
    for name in (w for w in weights if w.endswith(".safetensors")):
        try:  # reads only the header, and checks that the file is as long as the header says
            with safe_open(str(model_dir / name), framework="pt"):
                pass
        except Exception as err:  # safetensors raises its own SafetensorError (not an OSError)
            return (
                f"{name} is damaged ({err}): it was probably cut short by an interrupted copy or save. "
                "Copy it again, or save the model again with `model.save_pretrained(folder)`."
            )
    return None


def check_model_folder(model_dir) -> list[str]:
    """Problems that would make the pushed repository unusable (empty list: good to go)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return [f"{model_dir} is not a folder. Pass the model folder that training wrote (its final output_dir)."]
    problems = []
    config = None
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        problems.append("config.json is missing: save the model with `model.save_pretrained(folder)`.")
    else:
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            problems.append(f"config.json is not valid JSON ({err}): save the model again.")
        else:
            if not isinstance(config, dict):
                problems.append(f"config.json holds a JSON {type(config).__name__}, not an object: save the model again.")

    weights_problem = check_weights(model_dir)
    if weights_problem:
        problems.append(weights_problem)

    if isinstance(config, dict) and not weights_problem:
        problems.extend(weights_against_config(model_dir, config))

    if not (model_dir / "preprocessor_config.json").is_file():
        problems.append(
            "preprocessor_config.json is missing (pipeline('image-classification') needs it): "
            "`hf_vit.make_image_processor(model.config).save_pretrained(folder)`."
        )
    elif isinstance(config, dict):
        problems.extend(processor_against_config(model_dir / "preprocessor_config.json", config))

    if isinstance(config, dict):
        problems.extend(_missing_auto_classes(config))
        if config.get("model_type") == "hf_vit" and config.get("architectures") == ["HfViTModel"]:
            # The card, its code and pipeline() classify: each would give a Hub user's image a random head's class.
            problems.append(
                "the folder holds a model without a classification head (saved from HfViTModel): pipeline("
                "'image-classification') and the card's code would load it with a random head. Push the folder "
                "training wrote (HfViTForImageClassification)."
            )
    # Remote code: every module auto_map names (config.json's, and a 1-channel model's processor's) must sit next
    # to the weights and stand alone.
    for source, auto_map in _auto_maps(model_dir, config):
        modules = sorted(_auto_map_modules(auto_map))
        for module in (m for m in modules if not _MODULE_NAME.fullmatch(m)):
            problems.append(
                f"{source}'s auto_map names the module {module!r}, which is not a file of the folder: remote code "
                "is a module beside the weights, named plainly (e.g. modeling_hf_vit.HfViTModel). Save the model "
                "again with save_pretrained."
            )
        for module in (m for m in modules if _MODULE_NAME.fullmatch(m)):
            path = model_dir / f"{module}.py"
            if not path.is_file():
                problems.append(
                    f"{module}.py is missing: {source}'s auto_map loads it as remote code. Save the model (and its "
                    "processor) with `import hf_vit` done first (it registers the classes so save_pretrained copies "
                    "their files)."
                )
            elif _ABSOLUTE_IMPORT.search(path.read_text(encoding="utf-8")):
                problems.append(
                    f"{module}.py imports hf_vit absolutely; remote code must only use `from .sibling import X` "
                    "(hf_vit is not installed where the model is downloaded)."
                )
    return problems


# The Auto class a Hub user loads each hf_vit architecture with: auto_map must name it, and AutoConfig.
_AUTO_CLASSES = {"HfViTForImageClassification": "AutoModelForImageClassification", "HfViTModel": "AutoModel"}


def _missing_auto_classes(config: dict) -> list[str]:
    """An hf_vit config.json whose auto_map (edited, or written without hf_vit's registration) lacks an entry the
    Hub user's load needs: transformers knows no model type hf_vit, and no remote code would go up either."""
    if config.get("model_type") != "hf_vit":
        return []
    auto_map = config.get("auto_map") if isinstance(config.get("auto_map"), dict) else {}
    architectures = config.get("architectures") if isinstance(config.get("architectures"), list) else []
    needed = ["AutoConfig", *(_AUTO_CLASSES[a] for a in architectures if a in _AUTO_CLASSES)]
    missing = [name for name in needed if name not in auto_map]
    if not missing:
        return []
    return [f"config.json's auto_map lacks {', '.join(missing)}: a Hub user's load with trust_remote_code=True "
            "(and pipeline()) would fail with 'model type `hf_vit` but Transformers does not recognize this "
            "architecture', and the remote code would not go up. Save the model again with "
            "`model.save_pretrained(folder)` after `import hf_vit` (it registers the classes, so the save writes "
            "auto_map and copies their files)."]  # fmt: skip


def processor_against_config(path: Path, config: dict) -> list[str]:
    """A processor that makes images of another size than the model's: every pipeline() call would fail."""
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return [f"preprocessor_config.json cannot be read ({err}): save the processor again with "
                "`hf_vit.make_image_processor(model.config).save_pretrained(folder)`."]  # fmt: skip
    mismatch = processor_size_mismatch(settings, config.get("image_size")) if isinstance(settings, dict) else None
    if not mismatch:
        return []
    (mh, mw), (wh, ww) = mismatch
    return [f"preprocessor_config.json makes images of {mh}x{mw} but config.json's image_size is {wh}x{ww}: "
            "pipeline('image-classification') would hand the model images it refuses. Save the model's own "
            "processor: `hf_vit.make_image_processor(model.config).save_pretrained(folder)`."]  # fmt: skip


def weights_against_config(model_dir: Path, config: dict) -> list[str]:
    """An hf_vit classifier whose config.json asks for weights the safetensors do not hold (an edited depth or
    dim): a Hub user's model would start with random layers."""
    if config.get("model_type") != "hf_vit" or config.get("architectures") != ["HfViTForImageClassification"]:
        return []
    import torch
    from safetensors import safe_open

    from .configuration_hf_vit import HfViTConfig
    from .modeling_hf_vit import HfViTForImageClassification

    try:
        config_obj = HfViTConfig.from_dict(config)
    except (ValueError, TypeError) as err:
        return [f"config.json is not a valid hf_vit config: {err}"]
    files = [w for w in _weight_files(model_dir) if w.endswith(".safetensors")]
    if not files:  # no weights at all is check_weights' finding, with its own message
        return []
    saved = {}
    for name in files:  # the headers only: names and shapes, no tensor is read
        with safe_open(str(model_dir / name), framework="pt") as f:
            saved.update({k: tuple(f.get_slice(k).get_shape()) for k in f.keys()})
    detail = _size_against_headers(config_obj, saved)
    if detail:  # before building: a depth of 20000 took minutes to build even on the meta device
        return [_not_described(detail, "with layers the weights do not fill")]
    with torch.device("meta"):  # shapes only, no memory
        model = HfViTForImageClassification(config_obj)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(saved))
    other = sorted(k for k in set(expected) & set(saved) if expected[k] != saved[k])
    unused = sorted(set(saved) - set(expected))  # a depth edited down: trained layers silently left out
    if not missing and not other and not unused:
        return []
    if missing:
        detail = f"missing: {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"
    elif other:
        detail = f"{other[0]} is {list(saved[other[0]])} in the weights, {list(expected[other[0]])} by config.json"
    else:
        detail = f"not used by it: {', '.join(unused[:3])}{' ...' if len(unused) > 3 else ''}"
    effect = "without weights the safetensors hold" if not (missing or other) else "with layers the weights do not fill"
    return [_not_described(detail, effect)]


def _not_described(detail: str, effect: str) -> str:
    return (f"config.json does not describe the weights in the safetensors ({detail}): the model would load {effect}. "
            "Use the folder as training (or save_pretrained) wrote it.")


def _size_against_headers(config, saved: dict) -> str | None:
    """More blocks or another width in the config than the weights hold, read from the weights' names and the
    [CLS] token's shape alone; None when they agree (the full comparison then names anything else)."""
    blocks = {int(m.group(1)) for k in saved if (m := re.match(r"vit\.transformer\.layers\.(\d+)\.", k))}
    held = max(blocks) + 1 if blocks else 0
    if config.depth > held:
        last = "" if config.depth == held + 1 else f" to vit.transformer.layers.{config.depth - 1}.*"
        return (f"missing: vit.transformer.layers.{held}.*{last}; config.json's depth is {config.depth}, the weights "
                f"hold {held} block{'s' if held != 1 else ''}")
    cls = saved.get("vit.embeddings.cls_token")
    if cls and cls[-1] != config.dim:
        return f"vit.embeddings.cls_token is {list(cls)} in the weights, {[*cls[:-1], config.dim]} by config.json"
    return None


# A module of the model folder as auto_map names it (`modeling_hf_vit` of `modeling_hf_vit.HfViTModel`).
_MODULE_NAME = re.compile(r"\w+")


def _auto_map_modules(auto_map: dict) -> set[str]:
    """The modules auto_map's references load (`repo--module.Class` names another repo's module)."""
    return {ref.split("--")[-1].split(".")[0] for ref in _auto_map_refs(auto_map) if isinstance(ref, str)}


def _auto_map_refs(auto_map: dict) -> list[str]:
    refs = []
    for value in auto_map.values():
        refs.extend(v for v in (value if isinstance(value, (list, tuple)) else [value]) if v)
    return refs


def _auto_maps(model_dir: Path, config=None) -> list[tuple[str, dict]]:
    """`(file name, auto_map)` of config.json (`config`: read already) and preprocessor_config.json: a 1-channel
    model's processor is remote code too (hf_vit.image_processing_hf_vit)."""
    found = []
    for name in ("config.json", "preprocessor_config.json"):
        if name == "config.json" and config is not None:
            settings = config
        else:
            try:
                settings = json.loads((model_dir / name).read_text(encoding="utf-8"))
            except (OSError, ValueError):  # missing or broken: named by check_model_folder's own checks
                continue
        if isinstance(settings, dict) and isinstance(settings.get("auto_map"), dict) and settings["auto_map"]:
            found.append((name, settings["auto_map"]))
    return found


def remote_code_files(model_dir) -> set[str]:
    """The .py files a Hub user's `trust_remote_code=True` load runs: auto_map's modules and what they import."""
    model_dir = Path(model_dir)
    # Plain module names only: a path (`/home/me/secret.Class`) is no file of the folder and never goes up.
    todo = [m for _, auto_map in _auto_maps(model_dir) for m in _auto_map_modules(auto_map) if _MODULE_NAME.fullmatch(m)]
    found = set()
    while todo:
        name = f"{todo.pop()}.py"
        if name in found or not (model_dir / name).is_file():
            continue
        found.add(name)
        todo.extend(_RELATIVE_IMPORT.findall((model_dir / name).read_text(encoding="utf-8")))
    return found


def upload_plan(model_dir) -> list[str]:
    """The files (relative POSIX paths, sorted) that a push of `model_dir` uploads."""
    model_dir = Path(model_dir)
    selected = set()
    for path in model_dir.iterdir():
        if path.is_file() and (path.name in TOP_LEVEL_FILES or any(fnmatch.fnmatch(path.name, p) for p in TOP_LEVEL_PATTERNS)):
            selected.add(path.name)
    selected.update(remote_code_files(model_dir))
    evaluation = model_dir / "evaluation"
    # evaluation/metrics.json is written last: without it the evaluation was cut short, and its files stay home.
    if (evaluation / "metrics.json").is_file():
        for path in evaluation.rglob("*"):
            relative = path.relative_to(model_dir).as_posix()
            if path.is_file() and _evaluation_file(relative):
                selected.add(relative)
    return sorted(selected)


def _evaluation_file(relative: str, patterns=EVALUATION_PATTERNS) -> bool:
    """A file of evaluation/ that goes up (one of `patterns`). fnmatch's * crosses "/", so the depth is compared
    too: evaluation/*.png must not take misclassified/x.png."""
    return any(fnmatch.fnmatch(relative, p) and relative.count("/") == p.count("/") for p in patterns)


def pushed_kind(name: str) -> bool:
    """A file of the repository that an hf_vit push put there, by the name training, save_pretrained or the
    evaluation gives it (weights, metrics, the evaluation's own files): one the folder no longer has is an earlier
    model's. The card is the user's to keep (--keep_card), .py files may be theirs (a handler.py), and so may any
    other file under evaluation/ (a loss curve uploaded by hand): none of them counts."""
    if "/" in name:
        return _evaluation_file(name, EVALUATION_WRITTEN)
    return (name in TOP_LEVEL_FILES and name != "README.md") or any(fnmatch.fnmatch(name, p) for p in TOP_LEVEL_PATTERNS)


class Pushed(tuple):
    """What `push_model_folder` returns: `(files, info)` as ever, and `.deleted`, the repository's files that the
    commit deletes (a dry run: would delete; None when the dry run could not list them, `.note` saying why)."""

    def __new__(cls, files, info, deleted, note=None):
        pushed = super().__new__(cls, (files, info))
        pushed.files, pushed.info, pushed.deleted, pushed.note = files, info, deleted, note
        return pushed


def stale_files(repo_files, files) -> list[str]:
    """The repository's files (`repo_files`) that a push of `files` deletes: an earlier push's that the folder no
    longer has."""
    return sorted(name for name in repo_files if name not in files and pushed_kind(name))


# A branch name as git and the Hub take it: letters, digits, . _ - and /, no ".." or "//", no part that starts with
# "." or ends in ".lock", not ending in "/" or "." (git check-ref-format).
_BRANCH = re.compile(r"(?!.*\.\.)(?!.*//)(?!(?:.*/)?\.)(?!.*\.lock(?:/|$))(?![/-])[\w./-]*[\w-]")


def on_main(revision: str | None) -> bool:
    """Whether a push with `revision` commits to main (no revision, an empty one, or "main")."""
    return revision in (None, "", "main")


def push_branch(revision: str | None) -> str | None:
    """The branch a push with `revision` commits to (None: main), or a ValueError saying what is wrong with it."""
    if on_main(revision):
        return None
    if re.fullmatch(r"[0-9a-f]{40}", revision):
        raise ValueError(
            f"the revision {revision!r} is a commit hash: a push adds a commit to a branch. Pass a branch name "
            "(made from main if the repository lacks it), or none for main."
        )
    if not _BRANCH.fullmatch(revision):
        raise ValueError(
            f"the revision {revision!r} is not a branch name (letters, digits, '.', '_', '-' and '/'; no '..' or "
            "'//', no part that starts with '.' or ends in '.lock'). "
            "Pass a branch name such as 'dev', or none for main."
        )
    return revision


def refuse_public(api, repo_id: str, private: bool | None, flag: str = "--private") -> None:
    """A ValueError when `private` was asked for (by `flag`) but `repo_id` exists and is public: private applies only
    when a repository is created, and the push would publish the model there."""
    if private and not api.repo_info(repo_id, repo_type="model").private:
        raise ValueError(
            f"{repo_id!r} exists and is public, and {flag} applies only when a repository is created: the push "
            f"would publish the model. Make it private first (its Settings on the Hub, or `HfApi().update_repo_settings"
            f"({repo_id!r}, private=True)`), or push without {flag}."
        )


def _would_delete(repo_id: str, files, token, branch=None, private=None,
                  private_flag="--private") -> tuple[list[str] | None, str | None]:
    """(what a push of `files` would delete, a note) for a dry run: the repository's files (on `branch`, else
    main), listed as the push lists them, and nothing else asked of the Hub. Offline, the files are not known and
    the note says why."""
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    from .data import hub_unreachable_reason

    if "/" not in repo_id:  # the push names it after the token's account, which a dry run does not ask for
        return None, (f"{repo_id!r} names no owner: the push makes it under the token's account. Pass "
                      f"'your-username/{repo_id}' to see the files of that repository it would delete")  # fmt: skip
    why = hub_unreachable_reason()
    if why:  # not half a minute of the client's retries
        return None, f"the files {repo_id!r} holds could not be listed ({why})"
    api, note = HfApi(token=token), None
    try:
        try:
            listed = api.list_repo_files(repo_id, repo_type="model", revision=branch)
        except RevisionNotFoundError:  # the push makes the branch from main: it starts with main's files
            if branch.startswith("refs/pr/"):  # but never a pull request's ref: create_commit fails there
                return None, (f"{repo_id!r} has no pull request {branch!r}: the push would fail (a pull request is "
                              "opened on the Hub, a push adds commits to it)")  # fmt: skip
            listed = api.list_repo_files(repo_id, repo_type="model")
            note = f"the branch {branch!r} would be made from main"
    except RepositoryNotFoundError:  # the Hub's answer for a private repository without a token too
        seen = "" if token else ", or it is private and no token was found to see it"
        return [], f"{repo_id!r} does not exist yet{seen}"
    except Exception as err:  # the network, a token the Hub refuses: the dry run still shows the rest
        first = (str(err).strip().splitlines() or [type(err).__name__])[0].rstrip(".")
        return None, f"the files {repo_id!r} holds could not be listed ({first})"
    refuse_public(api, repo_id, private, private_flag)  # the repository exists: the push itself would stop here
    return stale_files(listed, files), note


# A repository's web address (pasted from the browser) instead of its id; the id stops before a query or a fragment
# (?library=..., #model-card).
_HUB_URL = re.compile(
    r"(?:https?://)?(?:www\.)?(?:huggingface\.co|hf\.co)/(datasets/|spaces/)?([^/\s?#]+(?:/[^/\s?#]+)?)"
    r"(?:[/?#].*)?"
)


class BadRepoId(ValueError):
    """`check_repo_id`'s refusal: "Bad repo id '<id>': <reason>"; `.reason` alone for a caller that names the id its
    own way (train.py's --hub_model_id)."""

    def __init__(self, repo_id, reason: str):
        super().__init__(f"Bad repo id {repo_id!r}: {reason}")
        self.reason = reason


def check_repo_id(repo_id: str) -> None:
    """A ValueError (BadRepoId) naming what is wrong with `repo_id` and the id to pass instead (a web address names
    its id)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    url = _HUB_URL.fullmatch(repo_id.strip()) if isinstance(repo_id, str) else None
    if url and url.group(1):
        kind = "a dataset" if url.group(1) == "datasets/" else "a Space"
        raise BadRepoId(repo_id, f"that is the address of {kind}; a model goes to a model repository. Pass its id, "
                                 "e.g. 'your-username/model-name'.")  # fmt: skip
    if url and "/" not in url.group(2):  # a user's or an organization's page: its bare name would go to the token's
        raise BadRepoId(repo_id, "that is a web address on the Hub, not a model repository's. Pass the repository's "
                                 "id, 'owner/model-name' (its address is huggingface.co/owner/model-name).")
    if url:
        raise BadRepoId(repo_id, f"that is the repository's web address. Pass its id: {url.group(2)!r}.")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:  # huggingface_hub's advice on `repo_type` is for its API, not this push
        reason = str(err).replace(" Use `repo_type` argument if needed.", "")
        raise BadRepoId(repo_id, f"{reason} Use 'your-username/model-name'.") from err


def _another_repository(named: str, repo_id: str) -> bool:
    """Whether a card's model id `named` is another repository than `repo_id` (ids are case-insensitive on the Hub).
    An id without an owner goes under the token's account, not known before the push: only its name is compared,
    and the card's placeholder owner (your-username/...) is never the account."""
    named, repo_id = named.lower(), repo_id.lower()
    if "/" in repo_id or named.startswith("your-username/"):
        return named != repo_id
    return named.split("/")[-1] != repo_id


def refuse_kept_card(model_dir: Path, repo_id: str, branch: str | None) -> None:
    """A ValueError when the folder's card cannot go up as it is (--keep_card): there is none, so the repository
    would keep an earlier push's card (another model's results) or have none; or its code loads the model from
    another repository (the card of a push, or a dry run, to another id; training's 'your-username/...') or from
    another revision than the one pushed to: a push to a branch writes its card into the folder
    (REVISION = "dev"), and a later push of that folder to main told main's users to load the branch. A commit hash
    is the user's own pin, and kept."""
    from .card import card_models, card_revisions

    path = model_dir / "README.md"
    if not path.is_file():
        raise ValueError(
            f"--keep_card uploads the folder's README.md as it is, but {model_dir} has none: the repository would keep "
            "the card an earlier push wrote, with another model's results, or have no card at all. Push without "
            f"--keep_card to write the card, or put your card in {path}."
        )
    text = path.read_text(encoding="utf-8", errors="replace")
    # "my-vit" (a dry run's card for a push to "my-vit"): the model lands as "<account>/my-vit", and no Hub user's
    # from_pretrained("my-vit") finds it. Only the push's own name: another ("." of a hand-written card, or "my-vit"
    # for a push to "someone/my-vit") is another repository, said below with the id to load.
    bare = sorted(m for m in card_models(text) if "/" not in m and not _another_repository(m, repo_id))
    if bare:
        raise ValueError(
            f"README.md's code loads the model {' and '.join(map(repr, bare))}, an id without an owner: the push puts "
            f"the model under an account ('your-username/{bare[0]}'), and the card's code would load nothing. Push "
            "without --keep_card to write the card for the repository's full id, or change the card's model id to "
            f"'owner/{bare[0]}' and push again."
        )
    others = sorted(m for m in card_models(text) if _another_repository(m, repo_id))
    if others:
        raise ValueError(
            f"README.md's code loads the model {' and '.join(map(repr, others))}, but this push goes to {repo_id!r}: "
            "kept as it is (--keep_card), the card would send its readers to another repository. Push without "
            f"--keep_card to write the card for {repo_id!r}, or change the card's model id to {repo_id!r} and push "
            "again."
        )
    target = branch or "main"
    other = sorted(r for r in card_revisions(text) if r != target and not re.fullmatch(r"[0-9a-f]{40}", r))
    if other:
        pushed_to = "main" if branch is None else f"the branch {branch!r}"
        raise ValueError(
            f"README.md's code loads the model from {' and '.join(map(repr, other))}, but this push goes to "
            f"{pushed_to}: kept as it is (--keep_card), the card would send its readers to another revision's model. "
            f"Push without --keep_card to write the card for {pushed_to}, or change the card's revision to "
            f"{target!r} (or a commit hash of the repository) and push again."
        )


def push_model_folder(
    model_dir,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    write_card: bool = True,
    dry_run: bool = False,
    revision: str | None = None,
    held_by_caller: bool = False,
    private_flag: str = "--private",
):
    """Upload the model folder to `repo_id` in one commit; returns `Pushed`: (files, CommitInfo or None on dry_run)
    and `.deleted`, the earlier push's files the commit deletes (a dry run lists the repository to say so).

    `token`: None takes the usual places (the HF_TOKEN variable, then the
    `hf auth login` cache). `private` applies when the repository is created (None: the account's or
    organization's default; False asks for a public one even where that default is private);
    an existing repository keeps its visibility. `write_card` fills the card (README.md) from the
    folder for this repo id: it goes up in the commit and is written into the folder once the commit has
    landed (a dry run writes it at once, so that it can be read); without it the folder's README.md goes up as it
    is, refused when absent or when its code loads another repository or revision (`refuse_kept_card`).
    `revision`: the branch to commit to (made from main if absent; None: main); the card's code then loads that
    branch. The folder is shared with readers for the push, so a training or an evaluation writing it refuses it
    (`held_by_caller`: the caller holds it as its writer, train.py pushing the run it has just finished). `private_flag`: the caller's name for `private`, which
    the refusal of a private push into a public repository names (train.py: --hub_private_repo).
    """
    model_dir = Path(model_dir).expanduser()
    check_repo_id(repo_id)
    branch = push_branch(revision)
    with sigterm_exits(), ExitStack() as held:  # a kill anywhere in the block still releases the folders
        # A training or an evaluation writing the folder meanwhile would send half-replaced files, or another
        # model's evaluation beside these weights: the push reads it as an evaluation does, and they refuse it.
        for folder in (model_dir, model_dir / "evaluation"):
            if folder.is_dir() and not held_by_caller:
                share_folder(held, folder, "a push to the Hub", lambda writer, folder=folder: (
                    f"{folder} is in use by {writer}, which writes it: the push would upload files it is replacing. "
                    "Wait for it to finish, then push again."
                ))  # fmt: skip
                if folder == model_dir:  # a checkpoint, which its run deletes as it saves newer ones (absolute: '.')
                    share_checkpoint_run(held, model_dir.absolute(), "a push to the Hub")
        return _push(model_dir, repo_id, branch, private, token, commit_message, write_card, dry_run, private_flag)


def default_commit_message(model_dir: Path, files) -> str:
    """The commit's message: the folder and what goes up, as the plan has it (a folder never evaluated uploads no
    evaluation, an export no hf_vit model)."""
    try:
        exported = json.loads((model_dir / "config.json").read_text(encoding="utf-8")).get("model_type") == "vit"
    except (OSError, ValueError, AttributeError):
        exported = False
    parts = ["ViT model exported from hf_vit" if exported else "hf_vit model"]
    parts += ["card"] if "README.md" in files else []
    parts += ["evaluation"] if any(name.startswith("evaluation/") for name in files) else []
    # the folder's own name: "." (a push from inside it) has none
    return f"Upload {model_dir.resolve().name} ({', '.join(parts)})"


def _push(model_dir: Path, repo_id: str, branch, private, token, commit_message, write_card, dry_run,
          private_flag) -> Pushed:
    """push_model_folder's work, with the folder held against writers."""
    problems = check_model_folder(model_dir)
    if problems:
        raise IncompleteModelFolder(
            f"Not pushing {model_dir}: the folder is incomplete.\n- " + "\n- ".join(problems)
        )
    # Before the token and the network: a link to a file elsewhere (a token, a key) would go up as the model's.
    # A card written for this push goes up from memory, whatever README.md was.
    from_folder = [name for name in upload_plan(model_dir) if not (write_card and name == "README.md")]
    refuse_links_outside(model_dir, from_folder, "the push would upload the file it points to")
    if not write_card:  # read once no link brings it from outside the folder
        refuse_kept_card(model_dir, repo_id, branch)
    # This machine's paths in the files (metrics, recipe, report) go up by their last part only.
    public = public_copies(model_dir, from_folder)
    # The token is checked before the card is rewritten: a push that cannot happen leaves the folder as it was.
    token = token or get_token()
    if not token and not dry_run:
        raise PermissionError(
            "No Hugging Face token found. Log in with `hf auth login` (or `huggingface-cli login`), set the "
            "HF_TOKEN environment variable, or pass --token. The token needs write access."
        )
    from .card import render_model_card, write_card_text

    # The card is filled before the network too: a file it cannot read must not leave an empty repository behind.
    card = str(render_model_card(model_dir, repo_id=repo_id, revision=branch)) if write_card else None
    api = None
    if not dry_run:  # the first network call, before the card is rewritten: offline, the folder stays as it was
        api = HfApi(token=token)
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        # "my-vit" lands under the token's namespace: the card's snippets need the full "user/my-vit"
        named = getattr(url, "repo_id", None) or repo_id
        if card is not None and named != repo_id:
            card = str(render_model_card(model_dir, repo_id=named, revision=branch))
        if card is None and named != repo_id:  # a kept card for "my-vit" may load "other/my-vit": now it is known
            refuse_kept_card(model_dir, named, branch)
        repo_id = named
        refuse_public(api, repo_id, private, private_flag)  # nothing uploaded yet
        if branch and not branch.startswith("refs/pr/"):  # a pull request's ref exists already; a branch may not
            api.create_branch(repo_id, branch=branch, repo_type="model", exist_ok=True)
    files = upload_plan(model_dir)
    if card is not None and "README.md" not in files:
        files = sorted([*files, "README.md"])
    if dry_run:
        # may refuse, as the push would
        pushed = Pushed(files, None, *_would_delete(repo_id, files, token, branch, private, private_flag))
        if card is not None:  # a dry run shows the card it would upload in the folder itself
            write_card_text(model_dir, card)
        return pushed
    # The new card goes up from memory and replaces the folder's README.md only once the commit has landed:
    # a push that fails (network, permissions) leaves the folder's card as it was.
    if card is not None:
        public["README.md"] = card.encode("utf-8")
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=public.get(name, str(model_dir / name)))
                  for name in files]
    # An earlier push's files that this folder no longer has go in the same commit: another model's evaluation
    # beside these weights, or a model.safetensors beside new shards (transformers would load it first).
    stale = stale_files(api.list_repo_files(repo_id, repo_type="model", revision=branch), files)
    operations += [CommitOperationDelete(path_in_repo=name) for name in stale]
    info = api.create_commit(
        repo_id=repo_id,
        repo_type="model",
        revision=branch,
        operations=operations,
        commit_message=commit_message or default_commit_message(model_dir, files),
    )
    if card is not None:
        write_card_text(model_dir, card)
    return Pushed(files, info, stale)


__all__ = [
    "BadRepoId", "IncompleteModelFolder", "Pushed", "check_model_folder", "check_repo_id", "on_main",
    "push_branch", "push_model_folder", "two_saves", "upload_plan",
]
