"""What a published file may say about this machine: a local path goes to the Hub by its last part only.

Training and the evaluation record the folders they read and wrote as given (`/home/alice/runs/vit`), which is
what a local reader wants. The card (`card.py`) shows such a value as `vit (local)`; the push (`hub.py`) uploads
the JSON files that record them (metrics.json, training_recipe.json, evaluation/metrics.json, trainer_state.json)
with `./vit` in its place, and report.html with the same replacement: the user name and folder layout of this
machine stay home, and hf_vit reading a downloaded folder still sees a local folder, not a Hub id.

One rule (`is_local`) decides what counts as such a path, for the card, the push and the dataset loader alike
(`looks_local`): what the card calls local is exactly what the push rewrites. This module imports nothing of
hf_vit, so data.py and card.py can share it without becoming anything the remote-code files need.
"""

import html
import json
import re
from pathlib import Path

# Files the model itself loads: uploaded exactly as saved.
MODEL_FILES = ("config.json", "preprocessor_config.json", "model.safetensors.index.json")
# Keys whose values are class names, not paths (a class may be called "/" or ".hidden").
_CLASS_NAME_KEYS = ("labels", "id2label")


# Keys whose value is always a path of this machine (training's and the Trainer's folders and files), however it
# is written: `runs/vit` as an output_dir is a folder here, not the Hub repo "runs/vit".
PATH_KEYS = (
    "output_dir", "logging_dir", "best_model_checkpoint", "resume_from_checkpoint", "recipe_files", "cache_dir",
)
# Keys whose value is a Hub id or a local folder (training and the evaluation record a folder that reads like a Hub
# id as ./x, but an older file may not): a bare name there is local when it names something on this machine. Not
# "model": metrics.json's validation "model" is "best" or "final", whatever folders the working folder holds.
REFERENCE_KEYS = ("dataset_name", "dataset", "model_name_or_path", "_name_or_path")
# Keys whose value is a Hub id or a branch, never a path: "me/vit" stays even where a folder me/vit exists here,
# and a revision refs/pr/1 is no folder pr/1.
HUB_KEYS = ("hub_model_id", "hub_revision", "trackio_space_id", "dataset_revision", "model_revision")
_DRIVE = re.compile(r"[A-Za-z]:([\\/]|$)")
_URL = re.compile(r"[A-Za-z][\w+.-]+://")  # two letters at least: C://x is a drive
# A recipe shipped in the package is recorded by its place there (hf_vit/recipes/cpu.yaml): no path of this machine.
_PACKAGE_RECIPE = re.compile(r"hf_vit/recipes/[\w.-]+")


def looks_local(name) -> bool:
    """A path by its form alone, not a Hub id (`owner/name` or a bare name): it starts with . / or ~, names a drive
    (C:\\x, C:/x), has a backslash or more than one '/'. For a name that does not exist on disk, this decides between
    "no such folder" and asking the Hub."""
    return isinstance(name, str) and (
        name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1 or bool(_DRIVE.match(name))
    )


def is_local(value, key: str | None = None) -> bool:
    """Whether `value` (recorded under `key`) is a path of this machine: what the card shows as `x (local)` and the
    push uploads as ./x. A path by its form (`looks_local`), any value of a PATH_KEYS key, and a relative path that
    exists here (`runs/vit`; a bare name only under a REFERENCE_KEYS key: "epoch" is a setting, not the folder
    epoch/). Hub ids, URLs, the values of HUB_KEYS and the package's own recipe names are not."""
    if not isinstance(value, str) or not value or key in HUB_KEYS:
        return False
    if _URL.match(value) or _PACKAGE_RECIPE.fullmatch(value):
        return False
    if looks_local(value) or key in PATH_KEYS:
        return True
    if "/" not in value and key not in REFERENCE_KEYS:
        return False
    try:
        return Path(value).expanduser().exists()
    except (OSError, RuntimeError):  # a name too long for the file system; ~user of no such user
        return False


def local_name(value, key: str | None = None) -> str | None:
    """The last part of `value` when it is a path of this machine (`is_local`), else None."""
    if is_local(value, key):
        return re.split(r"[\\/]", value.rstrip("\\/"))[-1]
    return None


def replace_local(value, replace, key=None):
    """`value` (recorded under `key`) with each path of this machine in it (`is_local`; in lists and dicts too,
    class names left alone) replaced by `replace(path, last_part)`: the push's and the card's one walk."""
    if isinstance(value, (list, tuple)):
        return [replace_local(v, replace, key) for v in value]
    if isinstance(value, dict):
        return {k: v if k in _CLASS_NAME_KEYS else replace_local(v, replace, k) for k, v in value.items()}
    name = local_name(value, key)
    return value if name is None else replace(value, name)


def _file_value(value, replaced: dict):
    """`value` as an uploaded JSON file records it: each local path as ./<last part>, noted in `replaced`."""

    def public(path, name):
        new = f"./{name}" if name not in ("", ".", "..") else "."
        if new != path:
            replaced[path] = new
        return new

    return replace_local(value, public)


def public_copies(model_dir, files) -> dict[str, bytes]:
    """The files among `files` (relative names) that record a local path, as they go up; the others go up as
    they are. A JSON file that cannot be read is an error naming it (before the push reaches the network)."""
    model_dir = Path(model_dir)
    copies, replaced = {}, {}
    for name in (n for n in files if n.endswith(".json") and n not in MODEL_FILES):
        try:
            data = json.loads((model_dir / name).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(
                f"{model_dir / name} is not valid JSON ({err}): the push would publish it as it is. Re-create it "
                "(or delete it) and push again."
            ) from err
        public = _file_value(data, replaced)
        if public != data:
            copies[name] = (json.dumps(public, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    # report.html shows the evaluation's model and dataset paths (HTML-escaped): the same replacement, of whole
    # paths only (not /a/run inside /a/run2 or /a/run/evaluation; the longest are replaced first). A bare name (an
    # output_dir "vit") says nothing of this machine, and the same word may be a class name on the page: it stays.
    longest_first = sorted((p for p in replaced if re.search(r"[\\/]", p)), key=len, reverse=True)
    for name in (n for n in files if n.endswith(".html") and replaced):
        text = (model_dir / name).read_text(encoding="utf-8")
        public = text
        for path in longest_first:
            whole = re.compile(r"(?<![\w./~-])" + re.escape(html.escape(path)) + r"(?![\w./-])")
            public = whole.sub(lambda _, new=html.escape(replaced[path]): new, public)
        if public != text:
            copies[name] = public.encode("utf-8")
    return copies


__all__ = ["MODEL_FILES", "is_local", "local_name", "looks_local", "public_copies", "replace_local"]
