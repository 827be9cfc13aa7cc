"""The model card: `write_model_card(model_dir)` fills the top-level `model_card.md`.

It reads what training and evaluation left in the model folder (every piece but
config.json is optional; a missing one becomes a sentence saying so):

    config.json                 architecture table (hf_vit's or an exported ViT's), class names
    model.safetensors           parameter count, from the header alone
    preprocessor_config.json    what the image processor does (size, rescaling, mean and std)
    metrics.json                training's test metrics, best validation accuracy, training time
    training_recipe.json        the resolved arguments of the run, and which dataset copy it used
    evaluation/metrics.json     metrics written by the evaluation (preferred over metrics.json)
    evaluation/*.png            gallery, confusion matrix, per-class accuracy pictures

and writes `<model_dir>/README.md` with the metadata the Hub reads (model-index
with the accuracy on the split and dataset the metrics file names, pipeline
tag, library, license). CIFAR-10 is named only for a model with CIFAR-10's
classes whose dataset is `uoft-cs/cifar10` or a local copy of it.
"""

import html
import json
import math
import re
import struct
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .configuration_hf_vit import CIFAR10_LABELS, CIFAR10_MEAN, CIFAR10_STD
from .image_processing import is_grey_processor, size_dict
from .metrics import class_score, macro_scope, no_score_note, part_of_split, per_class_scores, shown_top_k
from .output_folder import replace_text, two_saves
from .public import is_local, local_name, replace_local

TEMPLATE_NAME = "model_card.md"
HUB_DATASET = "uoft-cs/cifar10"
HUB_DATASET_NAMES = (HUB_DATASET, "cifar10")  # the old canonical id leads to the same dataset

# (file under evaluation/, caption; {split}: "test split", or "test split, a sample of 500 images") in the order the
# card shows them.
PICTURES = (
    ("gallery.png", "The most confident mistakes ({split})"),
    ("confusion_matrix.png", "Confusion matrix ({split})"),
    ("per_class_accuracy.png", "Accuracy per class ({split})"),
)


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------
def find_template(template_path=None) -> Path:
    """The card template: `template_path`, else `model_card.md` at the repository root.

    The root copy is found from a source checkout or an editable install
    (`pip install -e .`), both of which keep `hf_vit/` next to it; a copy
    packaged as `hf_vit/model_card.md` (wheel builds) is the fallback.
    """
    if template_path is not None:
        path = Path(template_path)
        if not path.is_file():
            raise FileNotFoundError(f"Model card template {path} does not exist. Pass the path of a model_card.md file.")
        return path
    package_dir = Path(__file__).resolve().parent
    for path in (package_dir.parent / TEMPLATE_NAME, package_dir / TEMPLATE_NAME):
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"Could not find the model card template {TEMPLATE_NAME} (looked in {package_dir.parent} and {package_dir}). "
        "Run from a checkout of the hf-vit repository (or `pip install -e .` it), or pass template_path=."
    )


def _read_json(path: Path):
    """The JSON in `path`, or None when the file is absent; a broken file is an error naming it."""
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}). Re-create it (or delete it) and write the card again.") from err
    if not isinstance(value, dict):  # every file the card reads is a JSON object
        raise ValueError(
            f"{path} holds a JSON {type(value).__name__}, not an object. Re-create it (or delete it) and write the card again."
        )
    return value


# The scores a metrics file holds (fractions of the images); the model-index publishes accuracy as it is.
_SCORES = ("accuracy", "top3_accuracy", "top5_accuracy", "macro_precision", "macro_recall", "macro_f1")


def _read_metrics(path: Path) -> dict:
    """A metrics file (training's or the evaluation's; {} when absent) whose values the card computes with are of
    their kind: an edited one stopped the card with a TypeError (a failed push, to push_to_hub.py), showed a score
    `true` as 100.00%, or put a text into the model-index as the accuracy."""
    metrics = _read_json(path) or {}
    kinds = {
        **{key: ("a score between 0 and 1", lambda v: v is None or _number(v) and 0 <= v <= 1) for key in _SCORES},
        "num_examples": ("a count of images", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0),
        "labels": ("a list of class names", lambda v: v is None or isinstance(v, list)),
        "confusion_matrix": ("a list of rows of image counts", lambda v: v is None or isinstance(v, list) and all(
            isinstance(row, list) and all(isinstance(n, int) and not isinstance(n, bool) for n in row) for row in v)),
    }
    for key, (kind, fits) in kinds.items():
        if key in metrics and not fits(metrics[key]):
            raise ValueError(f"{path}: {key} is {json.dumps(metrics[key])[:60]}, not {kind}. Re-create the file (or "
                             "delete it) and write the card again.")
    return metrics


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _safetensors_numel(path: Path) -> int:
    """Number of values in a .safetensors file, from its JSON header (no tensor is read)."""
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
    return sum(math.prod(entry["shape"]) for name, entry in header.items() if name != "__metadata__")


def count_parameters(model_dir) -> int | None:
    """Parameter count of the weights in `model_dir` (single or sharded safetensors), or None. A folder holding
    both is refused: the count would be of the single file's weights, whichever save is current."""
    model_dir = Path(model_dir)
    both = two_saves(model_dir)
    if both:
        raise ValueError(f"{model_dir}: {both}")
    single = model_dir / "model.safetensors"
    if single.is_file():
        return _safetensors_numel(single)
    index = _read_json(model_dir / "model.safetensors.index.json")
    if index and "weight_map" in index:
        shards = sorted(set(index["weight_map"].values()))
        if all((model_dir / shard).is_file() for shard in shards):
            return sum(_safetensors_numel(model_dir / shard) for shard in shards)
    return None


def _count_by_building(config: dict) -> int | None:
    """Fallback without weights: build the model on the meta device and count."""
    try:
        import torch

        if config.get("model_type") == "vit":
            from transformers import ViTConfig, ViTForImageClassification as model_class

            config_obj = ViTConfig(**{k: v for k, v in config.items() if k not in ("architectures",)})
        else:
            from .configuration_hf_vit import HfViTConfig
            from .modeling_hf_vit import HfViTForImageClassification as model_class

            config_obj = HfViTConfig(**{k: v for k, v in config.items() if k not in ("auto_map", "architectures")})
        with torch.device("meta"):
            model = model_class(config_obj)
        return sum(p.numel() for p in model.parameters())
    except Exception:  # a count is nice to have; the card says "unknown" instead
        return None


def architecture(config: dict) -> dict:
    """The lesson's architecture fields from an hf_vit config or an exported transformers ViT config."""
    if config.get("model_type") == "vit":
        dim, heads = config.get("hidden_size", 768), config.get("num_attention_heads", 12)
        return {
            "image_size": config.get("image_size", 224),
            "patch_size": config.get("patch_size", 16),
            "num_channels": config.get("num_channels", 3),
            "dim": dim,
            "depth": config.get("num_hidden_layers", 12),
            "heads": heads,
            "dim_head": dim // heads,
            "mlp_dim": config.get("intermediate_size", 3072),
            "pool": "cls",
            "dropout": config.get("hidden_dropout_prob", 0.0),
            "emb_dropout": config.get("hidden_dropout_prob", 0.0),
            "layer_norm_eps": config.get("layer_norm_eps", 1e-12),
            # a grey model's export: an RGB ViT whose patch projection turns the image grey (hf_vit.export_transformers)
            "grey": config.get("grey_conversion_in_patch_projection") is True,
        }
    defaults = {"image_size": 32, "patch_size": 4, "num_channels": 3, "dim": 192, "depth": 6, "heads": 3,
                "dim_head": 64, "mlp_dim": 768, "pool": "cls", "dropout": 0.0, "emb_dropout": 0.0,
                "layer_norm_eps": 1e-5}
    arch = {key: config.get(key, default) for key, default in defaults.items()}
    return {**arch, "grey": arch["num_channels"] == 1}


def _labels(config: dict) -> list[str]:
    id2label = config.get("id2label") or {}
    return [str(id2label[k]) for k in sorted(id2label, key=lambda k: int(k))]


def _recipe_part(recipe, part: str) -> dict:
    """training_recipe.json's `part` ("data", "training"), or {} where the file is absent, older or edited."""
    value = recipe.get(part) if isinstance(recipe, dict) else None
    return value if isinstance(value, dict) else {}


def _recipe_dataset(recipe) -> str | None:
    """The dataset the recipe trained on (a Hub id or a local path), searched anywhere in the recipe."""
    if isinstance(recipe, dict):
        for key in ("dataset_name", "dataset", "dataset_path", "data_dir"):
            if isinstance(recipe.get(key), str) and recipe[key]:
                return recipe[key]
        for value in recipe.values():
            found = _recipe_dataset(value)
            if found:
                return found
    return None


def _is_local_path(name: str) -> bool:
    """A local folder rather than a Hub id (`owner/name` or a bare canonical name): the rule the push rewrites by."""
    return is_local(name, "dataset")


def _folder_name(name: str) -> str:
    """A local folder's last part (C:\\data\\fruit: fruit, on any system), for the card's text."""
    return local_name(name, "dataset") or Path(name).name


CIFAR10_SPLIT_SIZES = {"train": 50_000, "test": 10_000}


# A split name as `datasets` allows it (train, test, validation, train.clean): plain text in markdown and YAML.
_SPLIT = re.compile(r"\w+(\.\w+)*")


def _split_of(metrics: dict, default="test") -> str:
    """The split a metrics file names; `default` when it names none, or something no dataset calls a split (an
    edited file's markup would otherwise reach the card as it is)."""
    split = metrics.get("split")
    return split if isinstance(split, str) and _SPLIT.fullmatch(split) else default


# A dataset configuration's name ("plain_text", "en-de", "2.0.1"): plain text in YAML.
_CONFIG = re.compile(r"\w[\w.-]*")


# A revision as the Hub names one (a branch, a tag, refs/pr/1, a commit hash): plain text in markdown and YAML.
_REVISION = re.compile(r"\w[\w.\-/]*")


def _recorded(metrics: dict, recipe, from_training: bool, key: str, form: re.Pattern) -> str | None:
    """A setting of the results' dataset (`key`: dataset_config, dataset_revision) as the metrics file recorded it;
    an older file of training's falls back on the recipe's flag (an evaluation without it loaded the default).
    Shown only in its plain `form`: an edited file's markup would otherwise reach the card."""
    data = _recipe_part(recipe, "data")
    value = metrics.get(key, data.get(key) if from_training else None)
    return value if isinstance(value, str) and form.fullmatch(value) else None


def _config_of(metrics: dict, recipe, from_training: bool) -> str | None:
    """The configuration of the results' dataset: the one loaded (--dataset_config, else the default)."""
    return _recorded(metrics, recipe, from_training, "dataset_config", _CONFIG)


def _revision_of(metrics: dict, recipe, from_training: bool) -> str | None:
    """The Hub revision of the results' dataset (--dataset_revision); None: its main branch, or unrecorded."""
    return _recorded(metrics, recipe, from_training, "dataset_revision", _REVISION)


def _whole_cifar10_split(metrics: dict) -> bool:
    """The metrics cover as many images as a whole CIFAR-10 split (training's metrics.json is its test split)."""
    split = _split_of(metrics)
    return CIFAR10_SPLIT_SIZES.get(split) == metrics.get("num_examples")


def _same_dataset(one, other) -> bool:
    """Two recorded dataset names name one dataset: equal, or local paths to one folder."""
    if one == other:
        return True
    local = isinstance(one, str) and isinstance(other, str) and _is_local_path(one) and _is_local_path(other)
    return local and Path(one).expanduser().resolve() == Path(other).expanduser().resolve()


def _counted_whole_split(dataset: str | None, metrics_files, default: str | None) -> bool:
    """Some metrics file counted a whole CIFAR-10 split in `dataset` itself (a file names its dataset, else it is
    training's, `default`): training's 10,000 Hub test images say nothing of a 60-image folder evaluated later."""
    return any(
        _whole_cifar10_split(m)
        and _same_dataset(m.get("dataset") if isinstance(m.get("dataset"), str) else default, dataset)
        for m in metrics_files
    )


def _seen_in_training(eval_metrics: dict, recipe, dataset: str | None, train_metrics: dict) -> str | None:
    """How training used the split the evaluation scored ("trained on", "chose its checkpoints on"), or None for a
    split it never saw (its test split, another dataset): those numbers are no measure of new images."""
    data = _recipe_part(recipe, "data")
    if not data or "accuracy" not in eval_metrics or not _same_dataset(eval_metrics.get("dataset"), dataset):
        return None
    # another configuration of that dataset holds other images; unrecorded on either side (older files): as before
    configs = (_config_of(eval_metrics, recipe, False), _config_of(train_metrics, recipe, True))
    if None not in configs and configs[0] != configs[1]:
        return None
    split = _split_of(eval_metrics, default=None)
    if split == data.get("train_split", "train"):
        # --validation_size N carves N of these images out before training (data.py): not trained on, only scored
        held_out = data.get("validation_size") if data.get("validation_split") is None else None
        if isinstance(held_out, int) and not isinstance(held_out, bool) and held_out > 0:
            return f"trained on (all but the {held_out:,} held out from it for validation)"
        return "trained on"
    return "chose its checkpoints on" if split is not None and split == data.get("validation_split") else None


def _results_dataset(metrics: dict, dataset: str | None) -> str | None:
    """The dataset a metrics file's numbers come from: the one it names, else the training dataset."""
    return metrics.get("dataset") if isinstance(metrics.get("dataset"), str) else dataset


def _partial(metrics: dict, from_training: bool, limits: dict, source: str | None) -> bool:
    """The numbers cover part of their split: training's --max_test_samples, evaluate_model.py's --max_eval_samples
    (any dataset), or fewer images than CIFAR-10's split. The model-index would publish them as the split's."""
    return (from_training and "max_test_samples" in limits) or bool(part_of_split(metrics)) or (
        source is not None and not _whole_cifar10_split(metrics)
    )


def _accuracy_name(metrics: dict, partial: bool) -> str:
    """An accuracy as the summary names it: part of a split's is not called the split's."""
    split, sampled = _split_of(metrics), part_of_split(metrics)
    if sampled:
        return f"accuracy on {sampled} of the {split} split"
    if partial and isinstance(metrics.get("num_examples"), int):
        return f"accuracy on {metrics['num_examples']:,} images of the {split} split"
    return f"{split} accuracy"


# A precision as metrics.json records it ("float32", "bf16 autocast"): plain text in the card.
_PRECISION = re.compile(r"\w+( under \w+)?( autocast)?")


def _precision_of(metrics: dict) -> str | None:
    """The precision a metrics file was measured in (`numeric_precision`); None for an older file without it."""
    value = metrics.get("numeric_precision")
    return value if isinstance(value, str) and _PRECISION.fullmatch(value) else None


def precision_words(precision: str) -> str:
    """"under bf16 autocast" (float32 weights, autocast around them), "in float32" (the weights' own dtype), "in
    float16 under bf16 autocast" (weights cast by --fp16_full_eval, autocast still around them)."""
    return f"under {precision}" if precision.endswith("autocast") and " under " not in precision else f"in {precision}"


def hardware_words(hardware) -> str | None:
    """metrics.json's `hardware` as the card says it: "1 x NVIDIA H100 80GB HBM3, bf16", "2 CPU threads (Intel
    Xeon ...), fp32", "2 processes x 1 CPU thread (...), fp32". None for a file without it (older) or a malformed
    one."""
    if not isinstance(hardware, dict) or not isinstance(hardware.get("device"), str) or not hardware["device"]:
        return None
    processes, threads = hardware.get("processes"), hardware.get("threads_per_process")
    if not (isinstance(processes, int) and processes >= 1):
        return None
    name = hardware.get("name") if isinstance(hardware.get("name"), str) and hardware.get("name").strip() else None
    if hardware["device"] == "cpu" and isinstance(threads, int) and threads >= 1:
        cpu = f"{threads} CPU thread{'s' if threads > 1 else ''}"
        words = (f"{processes} processes x " if processes > 1 else "") + cpu + (f" ({name})" if name else "")
    else:  # a GPU (cuda: its name; mps: the chip's), or a CPU whose thread count is not recorded
        kind = {"cuda": "CUDA GPU", "mps": "MPS", "cpu": "CPU"}.get(hardware["device"], hardware["device"])
        label = name if name and hardware["device"] == "cuda" else f"{kind} ({name})" if name else kind
        per = hardware.get("gpus_per_process")  # DataParallel: one process, every visible GPU (older files: none)
        per = per if isinstance(per, int) and not isinstance(per, bool) and per >= 1 else 1
        words = f"{processes * per} x {label}"
    precision = hardware.get("precision")
    return _cell(words) + (f", {precision}" if precision in ("fp32", "bf16", "fp16") else "")


def _same_images(eval_metrics: dict, train_metrics: dict, recipe, dataset: str | None) -> bool:
    """The evaluation scored the images of training's test accuracy: that split of its dataset, configuration and
    revision, whole on both sides or the same seeded sample (--max_eval_samples N --seed S takes the images of
    training's --max_test_samples N --seed S)."""
    data = _recipe_part(recipe, "data")
    training = _recipe_part(recipe, "training")
    if not _same_dataset(eval_metrics.get("dataset"), dataset) or _split_of(eval_metrics) != _split_of(train_metrics):
        return False
    configs = (_config_of(eval_metrics, recipe, False), _config_of(train_metrics, recipe, True))
    if None not in configs and configs[0] != configs[1]:
        return False
    # another revision of the dataset may hold other images or labels; None is its main branch as it was then
    if "dataset_revision" in eval_metrics and _revision_of(eval_metrics, recipe, False) != _revision_of(
        train_metrics, recipe, True
    ):
        return False
    if eval_metrics.get("num_examples") != train_metrics.get("num_examples"):
        return False
    sample = eval_metrics.get("sample") if isinstance(eval_metrics.get("sample"), dict) else {}
    limit = data.get("max_test_samples")
    total = eval_metrics.get("split_size")
    limited = isinstance(limit, int) and (not isinstance(total, int) or limit < total)
    wanted = (limit, training.get("seed")) if limited else (None, None)
    return (sample.get("max_eval_samples"), sample.get("seed") if sample else None) == wanted


def _cifar10_source(dataset: str | None, labels: list[str], sized: bool) -> str | None:
    """"hub" (uoft-cs/cifar10), "copy" (a local folder of it: the JPEG copy) or None (another dataset).

    Only a model with CIFAR-10's ten classes, in order, is taken to have met CIFAR-10, and only where a file names
    the dataset: a model saved from one's own loop (no recipe, no metrics) may have met any images. A local folder
    is called a copy only when a metrics file (`sized`) counted a whole CIFAR-10 split in it: ten classes of the
    same names (a toy folder, CINIC-10) are not enough.
    """
    if list(labels) != list(CIFAR10_LABELS) or dataset is None:
        return None
    if dataset in HUB_DATASET_NAMES:
        return "hub"
    return "copy" if _is_local_path(dataset) and sized else None


def _dataset_label(dataset: str | None, source: str | None, image_format: str | None = None) -> str:
    """A dataset's name as card text, for sentences (and, for CIFAR-10, the model-index). A local copy is called
    the JPEG copy only when its metrics recorded JPEG images: a copy saved with `hf download` holds the PNGs."""
    if source == "copy":
        return "CIFAR-10 (JPEG copy)" if image_format == "JPEG" else "CIFAR-10 (local copy)"
    if source == "hub":
        return "CIFAR-10"
    if dataset is None:
        return "an unrecorded dataset"
    return f"the local dataset *{_text(_folder_name(dataset))}*" if _is_local_path(dataset) else _text(dataset)


def _image_format(metrics: dict) -> str | None:
    """The images' file format a metrics file recorded ("JPEG", "PNG"); None for an older file without it."""
    value = metrics.get("image_format")
    return value if isinstance(value, str) and value.isalnum() and value.isupper() else None


def _public(value, key=None):
    """A recipe value as the card publishes it: a path of this machine (`public.is_local`: /x, ~/x, ./x, C:\\x, a
    relative runs/x, any output_dir) by its last part only, as the push uploads it (the card goes to the Hub, this
    machine's folders do not), in lists and dicts too; Hub ids, the package's own recipe files
    (hf_vit/recipes/cpu.yaml), class names and other values as they are."""
    return replace_local(value, lambda _, name: f"{name} (local)" if name else "(local)", key)


def _close(values, reference) -> bool:
    """Same length and every value within 5e-4 (the statistics are saved rounded to 4 digits)."""
    return isinstance(values, (list, tuple)) and len(values) == len(reference) and all(
        isinstance(v, (int, float)) and abs(v - r) < 5e-4 for v, r in zip(values, reference)
    )


def _processor_text(processor: dict | None, as_in_training: bool) -> str:
    """What `preprocessor_config.json` does to an image, read from the file; `as_in_training`: said to be as in
    training (a folder without training records has no training to compare with)."""
    if processor is None:
        return (
            "No `preprocessor_config.json` was found next to the weights, so `pipeline(...)` cannot prepare images "
            "for this model: save one with `hf_vit.make_image_processor(model.config).save_pretrained(folder)`."
        )
    steps = []
    if is_grey_processor(processor):
        steps.append("turns the image grey (transparent pixels laid on white)")
    size, crop = (size_dict(processor.get(key)) for key in ("size", "crop_size"))
    size, crop = (value if isinstance(value, dict) else {} for value in (size, crop))
    if processor.get("do_resize", True):
        if "height" in size and "width" in size:
            steps.append(f"resizes to {size['height']}x{size['width']}")
        elif "shortest_edge" in size:
            steps.append(f"resizes the shorter side to {size['shortest_edge']}")
    if processor.get("do_center_crop") and "height" in crop and "width" in crop:  # the size the model sees
        steps.append(f"crops the centre {crop['height']}x{crop['width']}")
    if processor.get("do_rescale", True):
        factor = processor.get("rescale_factor", 1 / 255)
        steps.append("scales to [0, 1]" if _close([factor], [1 / 255]) else f"multiplies the pixel values by {_cell(factor)}")
    if processor.get("do_normalize", True):
        mean, std = processor.get("image_mean"), processor.get("image_std")
        if _close(mean, CIFAR10_MEAN) and _close(std, CIFAR10_STD):
            steps.append("normalises with the CIFAR-10 mean and standard deviation")
        else:
            steps.append(f"normalises with mean ({_cell(mean)}) and standard deviation ({_cell(std)})")
    if not steps:
        return "The image processor (`preprocessor_config.json`) passes the pixel values through unchanged."
    listed = steps[0] if len(steps) == 1 else ", ".join(steps[:-1]) + " and " + steps[-1]
    return f"The image processor (`preprocessor_config.json`) {listed}{', as in training' if as_in_training else ''}."


# ---------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------
def _pct(value) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) else "n/a"


# Markdown's inline specials: `|` splits a table row, `[x](url)` and `![x](url)` make a live link or a tracking
# image, `*`, `_`, `~` and backticks change the text. A backslash makes each one plain.
_MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]!|~])")
# A Hub repository id, safe to put in a URL and a code span as it is.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


# What renderers that auto-link (GitHub's, the Hub's) turn into a link with no markup at all: a scheme (http://x),
# www.x, an e-mail address, a bare domain of a common top-level name (linkify's fuzzy links).
_AUTOLINK = re.compile(r"(?i)(\w[\w+.-]*://|\bwww\.|\bmailto:|[^\s@]@[^\s@]+\.\w|\b[\w-]+\.(com|org|net|io|ai|edu|gov|dev|app|co)\b)")


def _text(value) -> str:
    """Text from a dataset or a recipe (class names, dataset names) as plain markdown: HTML tags and entities,
    links, bare URLs, images and table pipes all show as the characters they are."""
    # An auto-link ends at a space or a `<`: the words between are shown one by one.
    parts = re.split(r"([\s<]+)", re.sub(r"[\r\n]+", " ", str(value)))
    return "".join(_code_span(part) if _AUTOLINK.search(part) else _escaped(part) for part in parts)


def _escaped(text: str) -> str:
    text = html.escape(text, quote=False)  # <b>, <img ...> and &amp; stay text
    return _MARKDOWN_SPECIALS.sub(r"\\\1", text)


def _code_span(text: str) -> str:
    """`text` (no spaces) as an inline code span, where no renderer makes a link (escaping cannot stop an
    auto-link): fenced by one backtick more than its longest run of them, padded with a space where it starts or
    ends with a backtick. Its characters show as they are (code takes no HTML and no escapes), but `|` is escaped:
    a table row splits on it even inside code, and GitHub and the Hub read `\\|` there as `|`."""
    fence = "`" * (1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    pad = " " if text[:1] == "`" or text[-1:] == "`" else ""
    return fence + pad + text.replace("|", "\\|") + pad + fence


def _cell(value) -> str:
    """A value as a markdown table cell (escaped once, cut at 120 characters)."""
    text = _plain(value)
    return _text(text if len(text) <= 120 else text[:117] + "...")


def _plain(value) -> str:
    """A value as unescaped text."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(v) for v in value) if value else "[]"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _duration(seconds) -> str:
    """A run's length: seconds below a minute (a 2 s test run showed as "0.0 min"), minutes above."""
    return f"{seconds:.1f} s" if round(seconds, 1) < 60 else f"{seconds / 60:.1f} min"


def _size(value) -> str:
    return "x".join(str(v) for v in value) if isinstance(value, (list, tuple)) else f"{value}x{value}"


def _most_confused(metrics: dict, labels: list[str], top: int = 5) -> list[dict]:
    matrix = metrics.get("confusion_matrix")
    if not matrix:
        return []
    names = metrics.get("labels") or labels
    pairs = []
    for t, row in enumerate(matrix):
        total = sum(row)
        for p, count in enumerate(row):
            if t != p and count > 0:
                pairs.append((count, t, p, total))
    pairs.sort(key=lambda x: (-x[0], x[1], x[2]))
    name = lambda i: names[i] if i < len(names) else str(i)  # noqa: E731
    return [
        {"true": _text(name(t)), "pred": _text(name(p)), "count": count, "share": _pct(count / total) if total else "n/a"}
        for count, t, p, total in pairs[:top]
    ]


# ---------------------------------------------------------------------------
# The card
# ---------------------------------------------------------------------------
def card_inputs(model_dir, repo_id=None, revision=None) -> tuple[ModelCardData, dict]:
    """The card's metadata and the template's variables, from the files in `model_dir`; `revision`: the branch
    the model is pushed to (None: main), which the card's code loads."""
    model_dir = Path(model_dir)
    config = _read_json(model_dir / "config.json")
    if config is None:
        raise FileNotFoundError(
            f"{model_dir} has no config.json: it is not a model folder. Pass the folder that training wrote "
            "(the one with config.json and model.safetensors)."
        )
    exported = config.get("model_type") == "vit"
    arch = architecture(config)
    labels = _labels(config)
    train_metrics = _read_metrics(model_dir / "metrics.json")
    eval_metrics = _read_metrics(model_dir / "evaluation" / "metrics.json")
    recipe = _read_json(model_dir / "training_recipe.json")

    model_name = repo_id.split("/")[-1] if repo_id else model_dir.resolve().name
    model_ref = repo_id or f"your-username/{model_name}"

    # -- architecture --------------------------------------------------------
    (ih, iw) = arch["image_size"] if isinstance(arch["image_size"], (list, tuple)) else (arch["image_size"],) * 2
    (ph, pw) = arch["patch_size"] if isinstance(arch["patch_size"], (list, tuple)) else (arch["patch_size"],) * 2
    num_patches = (ih // ph) * (iw // pw)
    arch_rows = [
        ("image_size", _size(arch["image_size"]), "input height x width (pixels)"),
        ("patch_size", _size(arch["patch_size"]), f"patch height x width: {num_patches} patches + [CLS] = {num_patches + 1} tokens"),
        ("num_channels", arch["num_channels"], "input channels: 3 (RGB), made grey by the patch projection (PIL's "
         "grey weights)" if arch["grey"] and arch["num_channels"] == 3 else {
             1: "input channels: 1 (greyscale)", 3: "input channels: 3 (RGB colour)"}.get(arch["num_channels"],
                                                                                          "input channels")),
        ("dim", arch["dim"], "token width (hidden size)"),
        ("depth", arch["depth"], "encoder blocks"),
        ("heads", arch["heads"], "attention heads per block"),
        ("dim_head", arch["dim_head"], f"width of one head (heads x dim_head = {arch['heads'] * arch['dim_head']})"),
        ("mlp_dim", arch["mlp_dim"], "hidden width of the feed-forward network"),
        ("pool", arch["pool"], "image vector: the [CLS] token (`cls`) or the mean of all tokens (`mean`)"),
        ("dropout", arch["dropout"], "dropout in attention and feed-forward"),
        ("emb_dropout", arch["emb_dropout"], "dropout after adding positions"),
        ("layer_norm_eps", arch["layer_norm_eps"], "LayerNorm epsilon"),
        ("num_labels", len(labels), "output classes"),
    ]
    num_params = count_parameters(model_dir)
    if num_params is None:
        num_params = _count_by_building(config)
    num_params_text = f"{num_params:,} ({num_params / 1e6:.2f} M)" if num_params is not None else "unknown (no weights found)"
    pool_text = (
        "The final [CLS] token, after a LayerNorm, goes through a linear classifier."
        if arch["pool"] == "cls"
        else "The mean of all final tokens, after a LayerNorm, goes through a linear classifier."
    )

    # -- data ------------------------------------------------------------------
    # CIFAR-10 (its classes, sizes, Hub id) is claimed only for a model with CIFAR-10's classes trained on
    # uoft-cs/cifar10 or a local copy of it; anything else is described by the name it was given.
    dataset = _recipe_dataset(recipe) or (train_metrics.get("dataset") if isinstance(train_metrics.get("dataset"), str) else None)
    metrics_files = (train_metrics, eval_metrics)
    train_source = _cifar10_source(dataset, labels, _counted_whole_split(dataset, metrics_files, dataset))
    train_format = _image_format(train_metrics)
    jpeg_copy = train_source == "copy" and train_format == "JPEG"
    dataset_label = _dataset_label(dataset, train_source, train_format)
    train_revision = _revision_of(train_metrics, recipe, from_training=True)  # --dataset_revision, if one was given
    # The train split's images as training loaded them (older metrics files: unrecorded, CIFAR-10's then assumed).
    train_images = train_metrics.get("train_split_size")
    if isinstance(train_images, bool) or not isinstance(train_images, int):
        train_images = None
    whole_train = train_images in (None, CIFAR10_SPLIT_SIZES["train"])
    if train_source == "copy":
        how = {"JPEG": " whose images were re-encoded as JPEG", None: ""}.get(train_format, f" ({train_format} images)")
        splits = ("the Hub's splits: 50,000 training" if whole_train
                  else f"{train_images:,} training images (the Hub's train split holds 50,000)")  # fmt: skip
        data_text = (
            f"**{dataset_label}**: a local copy of [`{HUB_DATASET}`](https://huggingface.co/datasets/{HUB_DATASET}) "
            f"(folder *{_text(_folder_name(dataset))}*){how}, with {splits} and 10,000 test images of 32x32 pixels "
            "in 10 classes."
        )
    elif train_source == "hub":
        source = f"`{dataset}`" + (f" at revision `{train_revision}`" if train_revision else "")
        splits = "50,000 training" if whole_train else f"{train_images:,} training (of the Hub's 50,000)"
        data_text = (
            f"**CIFAR-10** from the Hugging Face Hub, {source}: {splits} and 10,000 test colour images of "
            "32x32 pixels in 10 classes."
        )
    elif dataset is None:
        data_text = "No `training_recipe.json` or `metrics.json` names the dataset the model was trained on."
    elif _is_local_path(dataset):
        data_text = f"**{_text(_folder_name(dataset))}**: a local dataset folder, not on the Hugging Face Hub."
    else:  # linked only when the name is a Hub id: anything else would write its own link
        link = f" ([`{dataset}`](https://huggingface.co/datasets/{dataset}))" if _HUB_ID.fullmatch(dataset) else ""
        config = _config_of(train_metrics, recipe, from_training=True)
        which = f", configuration `{config}`" if config else ""
        which += f", revision `{train_revision}`" if train_revision else ""
        data_text = f"**{_text(dataset)}** from the Hugging Face Hub{link}{which}."
    if train_source is None and dataset is not None and train_images is not None:
        data_text += f" Its train split holds {train_images:,} images."
    data_args = _recipe_part(recipe, "data")
    limits = {k: data_args[k] for k in ("max_train_samples", "max_eval_samples", "max_test_samples") if data_args.get(k)}
    # An older recipe kept a test cap that was not below the split as given: fewer images tested than the cap means
    # all of them were (train.py now records such a cap as none). A cap equal to them may have drawn a sample.
    tested = train_metrics.get("num_examples")
    if isinstance(tested, int) and isinstance(limits.get("max_test_samples"), int) and tested < limits["max_test_samples"]:
        del limits["max_test_samples"]
    if limits:
        data_text += " This run used only part of it: " + ", ".join(f"`--{k} {v}`" for k, v in limits.items()) + "."

    # -- recipe ----------------------------------------------------------------
    recipe_sections = []
    if isinstance(recipe, dict):
        nested = {k: v for k, v in recipe.items() if isinstance(v, dict)}
        flat = [(k, _cell(_public(v, k))) for k, v in recipe.items() if not isinstance(v, dict)]
        if flat:
            recipe_sections.append(("", flat))
        for title, section in nested.items():
            rows = [(k, _cell(_public(v, k))) for k, v in section.items()]
            recipe_sections.append((title.replace("_", " ").capitalize(), rows))
    train_info = train_metrics.get("train") or {}
    train_rows = []
    if isinstance(train_info, dict):
        resumed = train_info.get("resumed_from_step")
        if isinstance(train_info.get("runtime_s"), (int, float)):
            # A resumed run's time is its last session's only: say so rather than understate the whole run.
            when = f" (the last session, from step {resumed})" if resumed else ""
            train_rows.append((f"Training time{when}", _duration(train_info["runtime_s"])))
        for key, name in (("steps", "Optimizer steps"), ("epochs", "Epochs"), ("train_samples_per_second", "Training images per second")):
            if key in train_info:
                train_rows.append((name, _cell(train_info[key])))
    hardware = hardware_words(train_metrics.get("hardware"))
    if hardware:  # beside the time and speed it qualifies; an older metrics.json without it: no row
        train_rows.append(("Measured on", hardware))

    # -- results ---------------------------------------------------------------
    # An evaluation of a sample (evaluate_model.py --max_eval_samples) gives way to training's results on its whole
    # test split, where there are some: a quick look at 500 mistakes must not replace the split's accuracy.
    eval_sample = part_of_split(eval_metrics)
    whole_test = "accuracy" in train_metrics and "max_test_samples" not in limits and not part_of_split(train_metrics)
    use_eval = "accuracy" in eval_metrics and not (eval_sample and whole_test)
    metrics, metrics_file = (eval_metrics, "evaluation/metrics.json") if use_eval else (train_metrics, "metrics.json")
    accuracy = metrics.get("accuracy")
    # The split and dataset the numbers come from, as the metrics file records them (training's is its test split).
    split = _split_of(metrics)
    results_dataset = _results_dataset(metrics, dataset)
    results_source = _cifar10_source(results_dataset, labels, _counted_whole_split(results_dataset, metrics_files, dataset))
    # Results on part of a split stay in the text: the model-index would publish them as the split's accuracy.
    sampled = part_of_split(metrics)
    partial = _partial(metrics, metrics_file == "metrics.json", limits, results_source)
    results_label = _dataset_label(results_dataset, results_source, _image_format(metrics))
    # The results' images were JPEG when their metrics say so (an older file without the format: when they are
    # training's own copy): a model trained on the JPEG copy and evaluated on the Hub's images has PNG results.
    results_format = _image_format(metrics) or (train_format if _same_dataset(results_dataset, dataset) else None)
    jpeg_results = accuracy is not None and results_source == "copy" and results_format == "JPEG"
    per_class = per_class_scores(metrics)  # an older file's 0.0 for 0/0 too: "no images", "never predicted"
    macro_note = macro_scope(per_class)
    result_rows = []
    if accuracy is not None:
        result_rows.append(("Top-1 accuracy", _pct(accuracy)))
        # Top-k with k guesses covering every class is 100% for any model: no result, so no row (older files hold it).
        shown = set(shown_top_k(metrics, len(labels) or None))
        for key, name in (("top3_accuracy", "Top-3 accuracy"), ("top5_accuracy", "Top-5 accuracy"),
                          ("macro_precision", "Macro precision"), ("macro_recall", "Macro recall"), ("macro_f1", "Macro F1")):
            if key in metrics and (key in shown or not key.startswith("top")):
                result_rows.append((name + (macro_note if key.startswith("macro") else ""), _pct(metrics[key])))
        if "num_examples" in metrics:
            result_rows.append((f"Images ({split} split)", sampled or f"{metrics['num_examples']:,}"))
    validation = train_metrics.get("validation") if isinstance(train_metrics.get("validation"), dict) else None
    val_acc = validation.get("accuracy") if validation else None
    chosen = validation is not None and validation.get("model", "best") == "best"  # older files: always chosen
    by = str(validation.get("selected_by") or "accuracy").removeprefix("eval_") if validation else "accuracy"
    if val_acc is not None:
        if not chosen:
            label = "Validation accuracy (final model)"
        else:  # chosen by the loss or macro F1: the chosen checkpoint's accuracy need not be the best one seen
            label = "Best validation accuracy" if by == "accuracy" else f"Validation accuracy (checkpoint chosen by {by})"
        result_rows.append((label, _pct(val_acc)))
    held_out = data_args.get("validation_size") if data_args.get("validation_split") is None else None
    if chosen and isinstance(held_out, int) and not isinstance(held_out, bool) and held_out > 0:
        # carved from the train split before anything else (data.py): the run trained on the rest only
        cap = limits.get("max_eval_samples")  # --max_eval_samples: a sample of the held-out images chose them
        some = f"{cap:,} of " if isinstance(cap, int) and 0 < cap < held_out else ""
        data_text += (f" Checkpoints were chosen on {some}{held_out:,} images held out from the train split (not trained "
                      f"on); the results below are on the {split} split.")
    elif chosen:
        data_text += f" Checkpoints were chosen on a validation set (see the recipe); the results below are on the {split} split."
    elif validation is not None:
        data_text += f" The model is the last step's (no checkpoint selection); the results below are on the {split} split."
    results_intro = f"On the {split} split of {results_label} (from `{metrics_file}`)."
    if sampled and accuracy is not None:
        results_intro = (
            f"On {sampled} of the {split} split of {results_label}, not the whole split (from `{metrics_file}`, "
            "evaluated with `--max_eval_samples`): the split's own accuracy may differ, so the card's metadata "
            "(model-index) reports no result."
        )
    elif partial and accuracy is not None:
        results_intro = (
            f"On {metrics.get('num_examples', 'some'):,} images of the {split} split of {results_label}, not the whole "
            f"split (from `{metrics_file}`); so the card's metadata (model-index) reports no result."
            if isinstance(metrics.get("num_examples"), int)
            else f"On part of the {split} split of {results_label} (from `{metrics_file}`); so the card's metadata "
            "(model-index) reports no result."
        )
    if eval_sample and not use_eval and accuracy is not None:
        results_intro += (
            f" The evaluation in `evaluation/` scored only {eval_sample} of the {_split_of(eval_metrics)} split: its "
            "pictures below are of that sample."
        )
    seen = _seen_in_training(metrics, recipe, dataset, train_metrics) if metrics is eval_metrics else None
    if seen:  # labelled by its split, but a reader must also learn that training used those very images
        held_out = train_metrics.get("accuracy")
        results_intro += (
            f" These are images the model {seen}, so the numbers overstate how it does on new ones"
            + (f"; on its held-out {_split_of(train_metrics)} split training measured {_pct(held_out)} "
               "(`metrics.json`)." if isinstance(held_out, (int, float)) else ".")
        )
    # Training scores the test split under its own precision (bf16 autocast by the recipes), evaluate_model.py the
    # saved float32 weights in float32: a few images apart. Said wherever a reader may meet the other figure.
    train_precision, eval_precision = _precision_of(train_metrics), _precision_of(eval_metrics)
    if metrics is eval_metrics and _same_images(eval_metrics, train_metrics, recipe, dataset) and isinstance(
        train_metrics.get("accuracy"), (int, float)) and None not in (train_precision, eval_precision) and (
        train_precision != eval_precision
    ):
        results_intro += (
            f" Training scored the same images {precision_words(train_precision)}: "
            f"{_pct(train_metrics['accuracy'])} (`metrics.json`); this evaluation ran the model "
            f"{precision_words(eval_precision)}. Any difference of a few images between the two comes from the "
            "precision."
        )
    elif metrics is train_metrics and accuracy is not None and train_precision not in (None, "float32"):
        results_intro += (
            f" Training scored these images {precision_words(train_precision)}; `scripts/evaluate_model.py` runs the saved "
            "float32 weights in float32, so its accuracy may differ by a few images, from the precision alone."
        )
    # A score of 0/0 says why there is none (never predicted, no images), with a note on how the means take it.
    per_class_rows = [
        {"name": _text(name), **{key: class_score(v, key, _pct) for key in ("recall", "precision", "f1")},
         "support": v.get("support", "-")}
        for name, v in per_class.items()
        if isinstance(v, dict)
    ]
    per_class_note = no_score_note(per_class)
    pictures_split = _split_of(eval_metrics, default=split)
    # Pictures beside no evaluation/metrics.json are an interrupted evaluation's: the push leaves them home
    # (hub.upload_plan), so the card shows them only with it, or the Hub page would show broken images.
    finished = (model_dir / "evaluation" / "metrics.json").is_file()
    pictures = [
        (caption.format(split=pictures_split + (f" split, a sample of {eval_metrics['num_examples']:,} images"
                                                if eval_sample else " split")), f"evaluation/{name}")
        for name, caption in PICTURES
        if finished and (model_dir / "evaluation" / name).is_file()
    ]

    # -- metadata ----------------------------------------------------------------
    # The model-index names a Hub dataset: a local folder that is not CIFAR-10 has none to name, so its
    # results stay in the card's text only.
    eval_results = None
    results_hub_id = HUB_DATASET if results_source else (
        results_dataset if results_dataset and not _is_local_path(results_dataset) and _HUB_ID.fullmatch(results_dataset)
        else None
    )
    # CIFAR-10 (a local copy too) is named as uoft-cs/cifar10, whose only configuration is plain_text.
    results_config = "plain_text" if results_source else _config_of(metrics, recipe, metrics_file == "metrics.json")
    if seen and accuracy is not None and results_hub_id and not partial:
        # the text says these numbers overstate; the model-index would show them on the model page as its result
        results_intro += " The card's metadata (model-index) reports no result for them."
    if accuracy is not None and results_hub_id and not partial and not seen:
        eval_results = [
            EvalResult(
                task_type="image-classification",
                task_name="Image Classification",
                dataset_type=results_hub_id,
                dataset_name=results_label if results_source else results_hub_id,  # the id itself, unescaped
                dataset_config=results_config,
                dataset_split=split,
                dataset_revision=_revision_of(metrics, recipe, metrics_file == "metrics.json"),
                metric_type="accuracy",
                metric_name=f"{split.capitalize()} accuracy",
                metric_value=accuracy,
            )
        ]
    # A fine-tuned model names the model it started from: a Hub id goes into base_model (the Hub links the two).
    # a recipe written by hand may name its model in words ("model": "ViT-tiny"): no base model
    base = _recipe_part(recipe, "model").get("model_name_or_path")
    base_hub_id = base if isinstance(base, str) and not _is_local_path(base) and _HUB_ID.fullmatch(base) else None
    train_hub_id = HUB_DATASET if train_source else (
        dataset if dataset and not _is_local_path(dataset) and _HUB_ID.fullmatch(dataset) else None
    )
    tags = ["image-classification", "vision", "vit", *(["cifar10"] if train_source else []), "hf_vit"]
    if not exported:
        tags.append("custom_code")
    card_data = ModelCardData(
        model_name=model_name,
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=tags,
        datasets=[train_hub_id] if train_hub_id else None,
        base_model=base_hub_id,
        metrics=["accuracy"],
        eval_results=eval_results,
    )

    image_size_text = _size(arch["image_size"])
    classes_text = f"the {len(labels)} CIFAR-10 classes" if train_source else f"{len(labels)} classes"
    on_text = f" on {results_label}" if results_label != dataset_label else ""
    # Part of a split: its accuracy is not called the split's, in the summary either.
    scope = _accuracy_name(metrics, partial)
    headline = f"; {scope}{on_text} **{_pct(accuracy)}**." if accuracy is not None else "."
    if seen and _number(train_metrics.get("accuracy")):
        # The evaluation scored images training used: the run's own held-out test accuracy leads, as the measure
        # of new images, and the evaluation's figure follows with what it overstates.
        held_dataset = _results_dataset(train_metrics, dataset)
        held_source = _cifar10_source(held_dataset, labels, _counted_whole_split(held_dataset, metrics_files, dataset))
        held_label = _dataset_label(held_dataset, held_source, _image_format(train_metrics))
        held_name = _accuracy_name(train_metrics, _partial(train_metrics, True, limits, held_source))
        held = train_metrics["accuracy"]
        headline = (
            f"; {held_name}{f' on {held_label}' if held_label != dataset_label else ''} "
            f"**{_pct(held)}** (held out, `metrics.json`)."
        )
        if _number(accuracy):  # null (an evaluation that scored nothing): no figure to caveat
            # "overstates" only where it is higher: a model that learned little scores alike on both
            says = ("it overstates how the model does on new ones" if accuracy > held else
                    "it is no measure of how the model does on new ones")
            headline += f" Its {scope}{on_text}, {_pct(accuracy)}, is on images the model {seen}, so {says}."
    summary = (
        f"A small Vision Transformer (depth {arch['depth']}, width {arch['dim']}, {arch['heads']} heads, "
        f"{_size(arch['patch_size'])} patches, {num_params_text.split(' (')[0]} parameters) that classifies "
        f"{image_size_text}{' greyscale' if arch['grey'] else ''} images into {classes_text}{headline}"
    )
    if isinstance(base, str) and base:  # a local folder by its name only: the card is published, the path is not
        pinned = _recipe_part(recipe, "model").get("model_revision")  # --model_revision, if given
        at = f" at revision `{pinned}`" if isinstance(pinned, str) and _REVISION.fullmatch(pinned) else ""
        summary += (f" Fine-tuned from [{base}](https://huggingface.co/{base}){at}." if base_hub_id
                    else f" Fine-tuned from a local model (*{_text(_folder_name(base))}*).")
    processor = _read_json(model_dir / "preprocessor_config.json")
    grey_processor = is_grey_processor(processor)
    variables = dict(
        title=f"{model_name}: a Vision Transformer for " + ("CIFAR-10" if train_source else "image classification"),
        summary=summary,
        exported=exported,
        # a start from another model: the card knows this run's data only, not what that model learnt before
        fine_tuned=isinstance(base, str) and bool(base),
        # A grey processor takes any image, through pipeline() too; a plain one (a 1-channel model saved before
        # hf_vit had one) needs the image made grey first and cannot serve pipeline(). An export takes RGB.
        convert_to_grey=arch["num_channels"] == 1 and not grey_processor,
        processor_code=grey_processor,
        can_export=arch["pool"] == "cls" and arch["heads"] * arch["dim_head"] == arch["dim"],
        patch_text=_size(arch["patch_size"]),
        depth_text=f"{arch['depth']} Pre-LayerNorm encoder block" + ("s" if arch["depth"] != 1 else ""),
        pool_text=pool_text,
        arch_rows=[(n, _cell(v), m) for n, v, m in arch_rows],
        num_params_text=num_params_text,
        data_text=data_text,
        labels=[_text(n) for n in labels],
        jpeg_copy=jpeg_copy,
        jpeg_results=jpeg_results,
        cifar10=bool(train_source),
        data_short="CIFAR-10" if train_source else (dataset_label if dataset else None),  # None: unrecorded
        split=split,
        processor_text=_processor_text(processor, as_in_training=recipe is not None or dataset is not None),
        recipe_intro="The resolved arguments of the training run (`training_recipe.json`):",
        recipe_sections=recipe_sections,
        train_rows=train_rows,
        accuracy_text=_pct(accuracy) if accuracy is not None else "",
        results_intro=results_intro,
        result_rows=result_rows,
        per_class_rows=per_class_rows,
        per_class_note=per_class_note,
        confused_pairs=_most_confused(metrics, labels),
        pictures=pictures,
        model_ref=model_ref,
        revision=revision or "main",
        revision_arg=f', revision="{revision}"' if revision else "",  # an exported model's code: main needs none
        image_size_text=image_size_text,
        # the pipeline's output in the example: one of this model's classes, as Python prints it
        example_label=repr(labels[0] if labels else "LABEL_0"),
    )
    return card_data, variables


def render_model_card(model_dir, repo_id=None, template_path=None, revision=None) -> ModelCard:
    """The filled card (not written anywhere)."""
    card_data, variables = card_inputs(model_dir, repo_id=repo_id, revision=revision)
    card = ModelCard.from_template(card_data, template_path=str(find_template(template_path)), **variables)
    # Template control lines leave runs of blank lines; markdown needs at most one.
    return ModelCard(re.sub(r"\n{3,}", "\n\n", str(card)).strip() + "\n")


# The revisions a card's code loads: each `REVISION = "x"` or `revision="x"` of its Python blocks, and main for a
# load that names none (an exported model's card for main writes `from_pretrained("user/model")`).
_PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.S)
_REVISION_VALUE = re.compile(r"""\brevision\s*=\s*(["'])(.*?)\1""", re.I)
_LOAD_CALL = re.compile(r"\b(?:from_pretrained|pipeline)\(([^()]*)\)")


def card_revisions(text: str) -> set[str]:
    """The revisions (branches, commit hashes) that the code of a card's text loads the model from."""
    revisions = set()
    for code in _PYTHON_BLOCK.findall(text):
        revisions.update(m.group(2) for m in _REVISION_VALUE.finditer(code))
        if any("revision" not in args.lower() for args in _LOAD_CALL.findall(code)):
            revisions.add("main")
    return revisions


# The repositories a card's code loads from: the first argument of from_pretrained, pipeline's model=.
_MODEL_VALUE = re.compile(r"""(?:\bfrom_pretrained\(\s*|\bmodel\s*=\s*)(["'])(.*?)\1""")


def card_models(text: str) -> set[str]:
    """The model ids (or folders) that the code of a card's text loads."""
    return {m.group(2) for code in _PYTHON_BLOCK.findall(text) for m in _MODEL_VALUE.finditer(code)}


def write_model_card(model_dir, repo_id=None, template_path=None) -> Path:
    """Fill the card template from `model_dir` and write `<model_dir>/README.md`; returns its path."""
    card = render_model_card(model_dir, repo_id=repo_id, template_path=template_path)
    return write_card_text(model_dir, str(card))


def write_card_text(model_dir, text: str) -> Path:
    """Write `text` as `<model_dir>/README.md` through a temporary file: the card is whole or as it was."""
    return replace_text(Path(model_dir) / "README.md", text)


__all__ = ["write_model_card", "write_card_text", "render_model_card", "card_inputs", "card_models", "card_revisions",
           "count_parameters", "find_template"]
