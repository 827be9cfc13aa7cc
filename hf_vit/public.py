"""What a published file may say about this machine: a local path goes to the Hub by its last part only.

Training and the evaluation record the folders they read and wrote as given (`/home/alice/runs/vit`), which is
what a local reader wants. The card (`card.py`) shows such a value as `vit (local)`; the push (`hub.py`) uploads
the JSON files that record them (metrics.json, training_recipe.json, evaluation/metrics.json, trainer_state.json)
with `./vit` in its place, and report.html with the same replacement: the user name and folder layout of this
machine stay home, and hf_vit reading a downloaded folder still sees a local folder, not a Hub id.
"""

import html
import json
import re
from pathlib import Path

# Files the model itself loads: uploaded exactly as saved.
MODEL_FILES = ("config.json", "preprocessor_config.json", "model.safetensors.index.json")
# Keys whose values are class names, not paths (a class may be called "/" or ".hidden").
_CLASS_NAME_KEYS = ("labels", "id2label")


def local_name(value) -> str | None:
    """The last part of `value` when it is a path from the root, the home or the working folder (/x, ~/x, ./x,
    C:\\x, \\\\server\\x), else None (Hub ids, the package's own hf_vit/recipes/cpu.yaml, other values)."""
    if isinstance(value, str) and (value.startswith((".", "/", "~")) or "\\" in value or re.match(r"[A-Za-z]:", value)):
        return re.split(r"[\\/]", value.rstrip("\\/"))[-1]
    return None


def _file_value(value, replaced: dict):
    """`value` as an uploaded JSON file records it: each local path as ./<last part>, noted in `replaced`."""
    if isinstance(value, (list, tuple)):
        return [_file_value(v, replaced) for v in value]
    if isinstance(value, dict):
        return {k: v if k in _CLASS_NAME_KEYS else _file_value(v, replaced) for k, v in value.items()}
    name = local_name(value)
    if name is None:
        return value
    public = f"./{name}" if name not in ("", ".", "..") else "."
    if public != value:
        replaced[value] = public
    return public


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
    # paths only (not /a/run inside /a/run2 or /a/run/evaluation; the longest are replaced first).
    longest_first = sorted(replaced, key=len, reverse=True)
    for name in (n for n in files if n.endswith(".html") and replaced):
        text = (model_dir / name).read_text(encoding="utf-8")
        public = text
        for path in longest_first:
            whole = re.compile(r"(?<![\w./~-])" + re.escape(html.escape(path)) + r"(?![\w./-])")
            public = whole.sub(lambda _, new=html.escape(replaced[path]): new, public)
        if public != text:
            copies[name] = public.encode("utf-8")
    return copies


__all__ = ["MODEL_FILES", "local_name", "public_copies"]
