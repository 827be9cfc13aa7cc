"""Import a `state_dict` saved from the lesson's `ViT` module into a complete hf_vit model folder.

    state dict (a file: .pt/.pth via torch.load(weights_only=True), or .safetensors; or the dict in memory)
      + the lesson's cfg fields (given, or read off the weight shapes)
      -> HfViTForImageClassification, loaded strictly (hf_vit.convert_lesson)
      -> model folder: config.json, model.safetensors, remote code, preprocessor_config.json, README.md

Most cfg fields can be read from the shapes (dim, depth, mlp_dim, num_classes; patch and image size as the squares
that fit, with 3 channels unless given: said in a warning, as other sizes fit the same weights). Sizes given are
checked against the weights. The split of the attention width into `heads` x `dim_head` cannot be read, so `heads`
must be given unless the block has no output projection (one head as wide as `dim`). `pool` and the dropouts leave
no trace in the weights: `pool` defaults to 'cls' like the lesson's cfg.
"""

import argparse
import dataclasses
import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace

import torch

from .configuration_hf_vit import CIFAR10_LABELS, HfViTConfig, _pair
from .convert_lesson import (
    AVERAGED, convert_lesson_state_dict, load_lesson_state_dict, non_finite_summary, one_model, refuse_a_model,
)
from .data import messages_name_flags, setting

logger = logging.getLogger(__name__)

# The lesson's cfg fields (its ViTConfig) and hf_vit's own names for them.
LESSON_FIELDS = {
    "image_size": "image_size", "patch_size": "patch_size", "num_classes": "num_labels", "dim": "dim",
    "depth": "depth", "heads": "heads", "mlp_dim": "mlp_dim", "pool": "pool", "channels": "num_channels",
    "dim_head": "dim_head", "dropout": "dropout", "emb_dropout": "emb_dropout",
}
# Keys under which training loops often nest the model's weights in a checkpoint dict (an EMA copy may sit beside).
_NESTED_KEYS = ("state_dict", "model_state_dict", "model")


def read_state_dict(path, key: str | None = None) -> dict:
    """Tensors from a .safetensors file or a torch.save'd state dict (never unpickling arbitrary objects). `key`
    names the entry of a training checkpoint dict to import, where it holds several state dicts."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(f"{path} is a folder. Pass the weights file in it (torch.save(model.state_dict(), ...)).")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist. Pass the file written by torch.save(model.state_dict(), ...).")
    # Read by content: save_file(sd, "vit.pt") and torch.save(sd, "vit.safetensors") both happen.
    if _looks_like_safetensors(path) or (path.suffix == ".safetensors" and not _looks_like_torch_save(path)):
        from safetensors.torch import load_file

        try:
            tensors = load_file(path)
        except Exception as err:  # safetensors raises its own SafetensorError, not an OSError
            raise ValueError(
                f"{path} is damaged ({err}): it was probably cut short by an interrupted copy or save. Copy or save "
                "it again."
            ) from None
        return _whole(path, tensors, key)
    try:
        # weights_only: only tensors and plain containers load; a pickled class or function is refused.
        # A file object: given a path ending in .safetensors, torch.load reads it with safetensors.
        with open(path, "rb") as file:
            obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:
        raise _load_error(path, err) from err
    if _is_state_dict(obj):
        return _whole(path, obj, key)
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a state dict (a dict of name -> tensor). Pass the "
                         "file written by `torch.save(model.state_dict(), path)`.")
    return _checkpoint_entry(path, obj, key)


def _whole(path: Path, state_dict: dict, key) -> dict:
    """A file that is one state dict: a key to pick from it would name one tensor, not the model's weights."""
    if key is not None:
        raise ValueError(f"{path} holds one state dict, not a checkpoint dict of several: "
                         f"{setting('key', key, quote=False)} has nothing to choose. Leave {setting('key')} out.")
    return state_dict


def _checkpoint_entry(path: Path, obj: dict, key) -> dict:
    """The state dict a training checkpoint holds beside the optimizer, epoch, ... under a key of the loop's choosing.
    Of several (the model and its EMA copy, a student and a teacher), the model's own is taken and the others named,
    or, where none is plainly the model's, the import stops naming them: importing either silently could be the
    wrong model."""
    nested = [name for name, value in obj.items() if _is_state_dict(value)]
    listed = _joined(list(map(repr, nested)), "and") if nested else ""
    if key is not None:
        if key in nested:
            return obj[key]
        held = (f"has no entry {key!r}" if key not in obj
                else f"holds a value of type {type(obj[key]).__name__} under {key!r}")
        where = f"its state dicts are under {listed}" if nested else "it holds no state dict under any key"
        raise ValueError(f"{path} {held}, not a state dict ({setting('key', key, quote=False)}): {where}. Pass "
                         f"{setting('key')} naming one of them.")
    if len(nested) == 1:
        return obj[nested[0]]
    if not nested:
        shown = ", ".join(map(repr, list(obj)[:8])) + (", ..." if len(obj) > 8 else "")
        keys = f"a dict of {shown}" if obj else "an empty dict"
        raise ValueError(
            f"{path} holds {keys} with no state dict (a dict of name -> tensor) in it or under any of its keys. Pass "
            "the file written by `torch.save(model.state_dict(), path)`."
        )
    # The model's own: under a name training loops give it, else the one that is not an averaged (EMA/SWA) copy.
    known = [name for name in _NESTED_KEYS if name in nested]
    own = known or [name for name in nested if not AVERAGED.search(name)]
    if len(own) != 1:  # e.g. a student and a teacher
        raise ValueError(
            f"{path} holds {len(nested)} state dicts, under {listed}: which one to import is not clear. Pass the one "
            f"to import with {setting('key', nested[0], quote=False)}."
        )
    left = [name for name in nested if name != own[0]]
    logger.warning(
        "%s holds %d state dicts: imported the one under %r, the model's own, and left %s. To import %r instead, "
        "pass %s.", path, len(nested), own[0], " and ".join(map(repr, left)), left[0],
        setting("key", left[0], quote=False),
    )
    return obj[own[0]]


def _in_memory(weights: Mapping, key) -> tuple[str, dict]:
    """(its name in messages, the state dict) of weights passed as a dict: a state dict, or a checkpoint dict holding
    one (chosen as from a file)."""
    weights = dict(weights)
    if _is_state_dict(weights):
        return "the state dict", _whole("the state dict", weights, key)
    return "the checkpoint dict", _checkpoint_entry("the checkpoint dict", weights, key)


def _head(path: Path, size: int) -> bytes:
    """The file's first `size` bytes (fewer for a shorter file): what each format check below reads."""
    with open(path, "rb") as file:
        return file.read(size)


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's zip archive starts so


def _looks_like_safetensors(path: Path) -> bool:
    """A safetensors file starts with its JSON header's length (8 bytes, little-endian), then the header's '{'."""
    head = _head(path, 9)
    return len(head) == 9 and head[8:] == b"{" and 0 < int.from_bytes(head[:8], "little") < path.stat().st_size


def _looks_like_torch_save(path: Path) -> bool:
    """torch.save's zip archive (PK), or its legacy pickle (protocol 2+: 0x80 then the protocol number)."""
    head = _head(path, 4)
    return head == _ZIP_MAGIC or (len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5)


def _load_error(path: Path, err: Exception) -> ValueError:
    """What torch.load(weights_only=True) refused, in the import's terms: torch's own text advises turning
    weights_only off or add_safe_globals, which no flag of the import does."""
    text = str(err)
    pickled = re.search(r"GLOBAL (\S+) was not an allowed global", text)
    if pickled:
        return ValueError(
            f"{path} holds a pickled Python object ({pickled.group(1)}), not tensors alone: torch.save(model) saves a "
            "whole model so, and a checkpoint may hold such objects beside the weights. The import reads tensors only "
            "(torch.load(weights_only=True)), as unpickling can run any code the file carries. If you trust the file, "
            "load it where the lesson's classes are defined (its notebook) with weights_only set to False, save its "
            "state_dict() alone with torch.save (for a checkpoint dict: the entry holding it, e.g. obj['model']), and "
            "import that file."
        )
    zipped = _head(path, 4) == _ZIP_MAGIC  # torch.save's zip archive, which torch.load cannot read whole
    if zipped or isinstance(err, EOFError):  # EOFError: a pickle (the legacy format) cut short
        return ValueError(
            f"{path} is damaged ({text.split('. ')[0]}): it was probably cut short by an interrupted copy or save. "
            "Copy or save it again."
        )
    return ValueError(
        f"Could not load {path} as a state dict with torch.load(weights_only=True): {text}\n"
        "Pass the file written by `torch.save(model.state_dict(), path)`, or the weights as .safetensors."
    )


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


# cfg fields that are whole numbers (image_size and patch_size may be a (height, width) pair).
_INT_FIELDS = {"image_size", "patch_size", "num_classes", "num_labels", "dim", "depth", "heads", "dim_head", "mlp_dim",
               "channels", "num_channels"}


def _check_cfg_value(key, value):
    """A cfg value of the wrong type (e.g. "8" from a hand-written JSON) named before it meets any arithmetic."""
    def whole(v):
        return isinstance(v, int) and not isinstance(v, bool)

    if key in _INT_FIELDS:
        pair = key in ("image_size", "patch_size") and isinstance(value, (list, tuple)) and len(value) == 2
        if not (whole(value) or (pair and all(whole(v) for v in value))):
            raise ValueError(f'The cfg field `{key}` must be a whole number, got {value!r}. Write a number, e.g. "{key}": 8.')
        if min(value if pair else [value]) < 1:  # 0 heads or channels would divide by zero reading the shapes
            raise ValueError(f"The cfg field `{key}` must be a whole number of at least 1, got {value!r}. Give the "
                             "lesson's own value.")
    elif key in ("dropout", "emb_dropout"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f'The cfg field `{key}` must be a number, got {value!r}. Write it as "{key}": 0.1.')
    elif key == "pool" and value not in ("cls", "mean"):
        raise ValueError(f"The cfg field `pool` must be 'cls' or 'mean', got {value!r}.")


def _check_blocks(layers: set, cfg: dict):
    """The encoder blocks the weights hold are numbered 0, 1, ... and the cfg's depth is their number: the model
    is built before the weights load, and a key `transformer.layers.99999...` made it build 100000 blocks."""
    if layers != set(range(len(layers))):
        listed = ", ".join(map(str, sorted(layers)[:5])) + (" ..." if len(layers) > 5 else "")
        raise ValueError(
            f"The weights hold {len(layers)} encoder block{'s' if len(layers) != 1 else ''} numbered {listed}, not "
            f"0 to {len(layers) - 1}: the model would be built with {max(layers) + 1} blocks. Pass the lesson "
            "model's own state_dict(), whose blocks are numbered from 0 without gaps."
        )
    if "depth" in cfg and cfg["depth"] != len(layers):
        raise ValueError(
            f"The cfg field `depth` is {cfg['depth']} but the weights hold {len(layers)} encoder "
            f"block{'s' if len(layers) != 1 else ''}. Leave "
            "`depth` out (the weights give it) or give the depth the weights were trained with."
        )


# A width the weights give, the lesson's name for it, and how the weights hold it.
_WIDTHS = (("dim", "dim", "the weights' embedding width (of cls_token, pos_embedding and every block) is {}"),
           ("mlp_dim", "mlp_dim", "the weights' feed-forward width (transformer.layers.0.1.fn.net.0) is {}"),
           ("num_labels", "num_classes", "the weights' head (mlp_head.1) has {} classes"))


def _check_widths(cfg: dict, found: dict, inner: int | None):
    """Widths given that the weights do not hold, named with the field, as a depth is (the strict load listed every
    mismatched tensor under 'set dim/depth/heads/... to the lesson's values', naming no field)."""
    for field, name, held in _WIDTHS:
        if field in cfg and field in found and cfg[field] != found[field]:
            raise ValueError(
                f"The cfg field `{name}` is {cfg[field]} but {held.format(found[field])}. Leave `{name}` out (the "
                "weights give it) or give the value the weights were trained with."
            )
    if inner is not None and "heads" in cfg and "dim_head" in cfg and cfg["heads"] * cfg["dim_head"] != inner:
        raise ValueError(
            f"The cfg fields `heads` = {cfg['heads']} and `dim_head` = {cfg['dim_head']} make an attention width "
            f"heads * dim_head = {cfg['heads'] * cfg['dim_head']}, but the weights' attention is {inner} wide "
            f"(to_qkv). Give `heads` alone (dim_head follows) or the values the weights were trained with."
        )


_OR_IN_CONFIG = ', or "heads" in the --config JSON'


def _cfg_field(name: str, *value) -> str:
    """A cfg field to pass, as messages name it: the script's flag (`--image_size H W`) within
    data.flags_in_messages, else the cfg dict a Python caller passes (`cfg={'image_size': (H, W)}`)."""
    if messages_name_flags():
        return " ".join(map(str, (setting(name), *value)))
    shown = value[0] if len(value) == 1 else f"({', '.join(map(str, value))})"
    return f"cfg={{{name!r}: {shown}}}"


def _cfg_fields(cfg) -> dict:
    """The lesson's cfg fields from a dict, or from the lesson's own cfg object (its ViTConfig dataclass, or a
    namespace), which its notebook holds and a caller passes as it is."""
    if cfg is None:
        return {}
    if isinstance(cfg, Mapping):
        return dict(cfg)
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {field.name: getattr(cfg, field.name) for field in dataclasses.fields(cfg)}
    if isinstance(cfg, (SimpleNamespace, argparse.Namespace)):
        return vars(cfg).copy()
    raise ValueError(
        f"cfg must be a dict of the lesson's cfg fields (or the lesson's cfg object itself), got a "
        f"{type(cfg).__name__}: {cfg!r:.80}. Pass e.g. {{'heads': 8}}"
        f"{', or the JSON file read with json.load' if isinstance(cfg, (str, Path)) else ''}."
    )


def _shapes(count: int, cell=(1, 1), most: int | None = 3) -> list:
    """The (height, width) of `count` cells of `cell` laid out in a whole grid, nearest a square first: the sizes that
    fit a count read off the weights, as advice in an error (a weight's shape bounds `count`: the search is short)."""
    grids = [(h, count // h) for h in range(1, math.isqrt(count) + 1) if count % h == 0]
    sizes = {(h * cell[0], w * cell[1]) for grid in grids for h, w in (grid, grid[::-1])}
    return sorted(sizes, key=lambda hw: (max(hw) / min(hw), hw[0]))[:most]


def _size_field(name: str, size) -> str:
    """A size as a cfg field to pass (`_cfg_field`), one number for a square: `--image_size 16 64` or
    `cfg={'image_size': (16, 64)}`."""
    height, width = _pair(size)
    return _cfg_field(name, *((height,) if height == width else (height, width)))


def _joined(items: list, word: str = "or") -> str:
    """`a, b or c` (`a, b and c` with word="and")."""
    return f" {word} ".join(filter(None, (", ".join(items[:-1]), items[-1])))


def _listed_sizes(name: str, sizes) -> str:
    """`sizes` as the fields to pass, one of which to choose: `--patch_size 4 or --patch_size 2 8`."""
    return _joined([_size_field(name, size) for size in sizes])


def _patches_for(values: int, channels: int) -> str:
    """The patch sizes that `channels` channels fit in the weights' `values` per patch, as a sentence of advice."""
    if values % channels:
        return ""
    return (f"With {channels} channel{'s' if channels != 1 else ''} the weights fit patches of {values // channels} "
            f"pixels: {_listed_sizes('patch_size', _shapes(values // channels))}.")


def _images_for(count: int, patch) -> str:
    """The image sizes that `count` patch positions fit with `patch`, as a sentence of advice."""
    height, width = _pair(patch)
    return (f"With {height}x{width} patches the weights fit images of {count * height * width} pixels: "
            f"{_listed_sizes('image_size', _shapes(count, (height, width)))}.")


def _patch_size(cfg: dict, values: int) -> dict:
    """The patch size that the weights' `values` per patch (channels x patch height x patch width) hold: the given
    one checked (with the given channels, else the lesson's 3), else the square that fits."""
    channels = cfg.get("num_channels", 3)
    if "patch_size" not in cfg:
        side = math.isqrt(values // channels)
        if side * side * channels == values:
            return {"patch_size": side}
        # Grey, grey and alpha, RGB, RGBA: the channel counts whose square patches the weights could hold.
        sides = {c: math.isqrt(values // c) for c in range(1, 5) if values % c == 0}
        square = [f"{_cfg_field('channels', c)} ({side}x{side})" for c, side in sides.items() if side**2 * c == values]
        raise ValueError(" ".join(filter(None, (
            f"The weights take {values} values per patch (channels x patch height x patch width), not {channels} "
            f"channel{'s' if channels != 1 else ''} x a square patch. Pass the lesson's {setting('channels')} (3 "
            f"unless given: 1 for grey images) and, for a non-square patch, {_cfg_field('patch_size', 'H', 'W')}.",
            f"The weights fit square patches with {_joined(square)}." if square else "",
            _patches_for(values, channels) if values // channels > 1 else "",
        ))))
    height, width = _pair(cfg["patch_size"])
    if channels * height * width == values:
        return {}
    default = "" if "num_channels" in cfg else f" ({setting('channels')} not given: the lesson's default)"
    fits = []
    if values % (height * width) == 0:
        fit = values // (height * width)
        fits.append(f"With {height}x{width} patches the weights fit {fit} channel{'s' if fit != 1 else ''}: "
                    f"{_cfg_field('channels', fit)}.")
    fits.append(_patches_for(values, channels))
    raise ValueError(" ".join(filter(None, (
        f"{_size_field('patch_size', cfg['patch_size'])} with {channels} channel{'s' if channels != 1 else ''}"
        f"{default} makes {channels * height * width} values per patch (channels x patch height x patch width), but "
        f"the weights take {values}.", *fits, f"Pass the lesson's own {setting('patch_size')} and "
        f"{setting('channels')}.",
    ))))


def _image_size(cfg: dict, count: int, patch) -> dict:
    """The image size that the weights' `count` patch positions hold with `patch`: the given one checked, else the
    square that fits."""
    if "image_size" not in cfg:
        grid = math.isqrt(count)
        if grid * grid != count:
            raise ValueError(
                f"The weights hold {count} patch positions, not a square grid: the lesson's images (or "
                f"patches) are not square. Pass the lesson's {_cfg_field('image_size', 'H', 'W')} (and "
                f"{_cfg_field('patch_size', 'H', 'W')} for a non-square patch). {_images_for(count, patch)}"
            )
        if not isinstance(patch, int):  # the default 32x32 could fit the positions by chance, at the wrong geometry
            raise ValueError(
                f"The image size cannot be read off the weights for a non-square patch {tuple(patch)}: "
                f"{count} patch positions fit several grids. Pass the lesson's "
                f"{_cfg_field('image_size', 'H', 'W')}. {_images_for(count, patch)}"
            )
        return {"image_size": grid * patch}
    (height, width), (patch_height, patch_width) = _pair(cfg["image_size"]), _pair(patch)
    read = "patch_size" not in cfg  # then the patch may be the size at fault
    whole = not (height % patch_height or width % patch_width)
    if not (whole or read):
        return {}  # HfViTConfig names the patch sizes that divide the image
    patch_read, and_patch = (f" ({setting('patch_size')} not given: read off the weights)",
                             f" (and {setting('patch_size')})") if read else ("", "")
    image, pixels = _size_field("image_size", cfg["image_size"]), patch_height * patch_width
    if height * width == count * pixels:
        if whole:
            return {}
        # As many pixels as the weights' patch positions hold: some patch of `pixels` pixels always cuts it whole.
        cutting = [_size_field("patch_size", size) for size in _shapes(pixels, most=None)
                   if height % size[0] == 0 and width % size[1] == 0]
        raise ValueError(
            f"{image} is not cut whole by {patch_height}x{patch_width} patches{patch_read}. Of the patches of {pixels} "
            f"pixels that the weights fit, {_joined(cutting[:3])} cut{'s' if len(cutting) == 1 else ''} it whole. Pass "
            f"the lesson's own {setting('patch_size')}."
        )
    grid = (height // patch_height, width // patch_width)
    made = (f"cut into {patch_height}x{patch_width} patches{patch_read} makes a {grid[0]}x{grid[1]} grid of "
            f"{grid[0] * grid[1]} patch positions, but the weights hold {count}" if whole else
            f"is not cut whole by {patch_height}x{patch_width} patches{patch_read}, and holds {height * width} pixels "
            f"where the weights' {count} patch positions hold {count * pixels}")
    raise ValueError(
        f"{image} {made}. {_images_for(count, patch)} Pass the lesson's own {setting('image_size')}{and_patch}."
    )


def lesson_config(state_dict: dict, cfg: dict | None = None, labels=None) -> HfViTConfig:
    """An `HfViTConfig` from the lesson's cfg fields in `cfg` (a dict, or the lesson's cfg object), the rest read from
    the weight shapes (said in a warning, see `_read_sizes_said`).

    The weights carry no class names: `labels` names them, in the head's order; without it a 10-class head gets
    CIFAR-10's names (the lesson's dataset, as the default image mean and std are CIFAR-10's) and any other head
    LABEL_0, LABEL_1, ... as transformers names classes it knows nothing of."""
    config, said = _lesson_config(state_dict, cfg, labels)
    if said:
        logger.warning(said)
    return config


def _lesson_config(state_dict: dict, cfg, labels) -> tuple[HfViTConfig, str | None]:
    """`lesson_config`'s config, and its warning of the sizes read off the weights (None if all were given), for the
    caller to say when it sees fit: an import says it once its folder is written, not before a refusal."""
    cfg = _cfg_fields(cfg)
    unknown = sorted(set(cfg) - set(LESSON_FIELDS) - set(LESSON_FIELDS.values()))
    if unknown:
        raise ValueError(f"Unknown config fields {unknown}. The lesson's cfg fields are: {', '.join(LESSON_FIELDS)}.")
    for key, value in cfg.items():
        _check_cfg_value(key, value)
    cfg = {LESSON_FIELDS.get(k, k): v for k, v in cfg.items()}
    sd = convert_lesson_state_dict(state_dict)

    def shape(key):
        return tuple(sd[key].shape) if key in sd else None

    found = {}
    if shape("vit.embeddings.cls_token"):
        found["dim"] = shape("vit.embeddings.cls_token")[-1]
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"vit\.transformer\.layers\.(\d+)\.", k))}
    _check_blocks(layers, cfg)
    if layers:
        found["depth"] = max(layers) + 1
    if shape("vit.transformer.layers.0.ff.net.0.weight"):
        found["mlp_dim"] = shape("vit.transformer.layers.0.ff.net.0.weight")[0]
    if shape("mlp_head.1.weight"):
        found["num_labels"] = shape("mlp_head.1.weight")[0]
    patch_dim = shape("vit.embeddings.to_patch_embedding.1.weight")
    positions = shape("vit.embeddings.pos_embedding")
    if patch_dim:
        found.update(_patch_size(cfg, patch_dim[1]))
    if positions and positions[1] > 1 and (patch_dim or "patch_size" in cfg):  # else the strict load names the gap
        found.update(_image_size(cfg, positions[1] - 1, cfg.get("patch_size", found.get("patch_size"))))
    qkv = shape("vit.transformer.layers.0.attn.to_qkv.weight")
    has_out = "vit.transformer.layers.0.attn.to_out.0.weight" in sd
    if qkv and not has_out and "dim" in found:  # the lesson drops to_out only for one head as wide as dim
        found.update(heads=1, dim_head=found["dim"])
        given = {k: cfg[k] for k in ("heads", "dim_head") if k in cfg and cfg[k] != found[k]}
        if given:
            raise ValueError(
                "The weights' attention has no output projection (to_out), which the lesson's ViT leaves out only for "
                f"one head as wide as dim (heads=1, dim_head={found['dim']}), so "
                f"{', '.join(f'{k}={v}' for k, v in given.items())} cannot hold them. Leave heads and dim_head out "
                f"(the weights give them), or pass {_cfg_field('heads', 1)}."
            )
    elif qkv:
        inner = qkv[0] // 3
        for given, other in (("heads", "dim_head"), ("dim_head", "heads")):
            if given in cfg and other not in cfg and inner % cfg[given]:
                raise ValueError(
                    f"{given} = {cfg[given]} does not divide the attention width heads * dim_head = {inner} that the "
                    f"weights hold. Pass the lesson's own {given} (a divisor of {inner}), or its {other} instead."
                )
        if "heads" in cfg and "dim_head" not in cfg:
            found["dim_head"] = inner // cfg["heads"]
        elif "dim_head" in cfg and "heads" not in cfg:
            found["heads"] = inner // cfg["dim_head"]
        elif "heads" not in cfg and "dim_head" not in cfg:
            raise ValueError(
                f"The weights give the attention width heads * dim_head = {inner} but not how it splits into heads. "
                f"Pass the lesson's `heads` (e.g. {_cfg_field('heads', 8)}{_OR_IN_CONFIG if messages_name_flags() else ''})."
            )
    _check_widths(cfg, found, qkv[0] // 3 if qkv and has_out else None)
    merged = {**found, **cfg}
    merged.setdefault("pool", "cls")
    classes = merged.get("num_classes", merged.get("num_labels"))
    if labels is not None:
        if isinstance(labels, str):  # its letters would be taken as the names, and fit a head of as many classes
            raise ValueError(f"{setting('labels')} takes one name per class, in the order of the head's outputs, not "
                             f"one string: got {labels!r}. Pass a list, e.g. {labels.split()[:3] or ['cat', 'dog']}.")
        labels = [str(name) for name in labels]
        twice = sorted({name for name in labels if labels.count(name) > 1})
        if twice or "" in labels:
            problem = f"names {', '.join(map(repr, twice))} more than once" if twice else "holds an empty name"
            raise ValueError(
                f"{setting('labels')} {problem}: each class needs its own name (label2id maps names back to classes). "
                "Name every class once, in the order of the head's outputs."
            )
        if classes is not None and len(labels) != classes:
            raise ValueError(
                f"{len(labels)} class names given ({setting('labels')}) but the model has {classes} classes (its "
                "head's outputs). Name every class once, in the order of the head's outputs."
            )
        merged["id2label"] = dict(enumerate(labels))
    elif classes == len(CIFAR10_LABELS):
        merged["id2label"] = dict(enumerate(CIFAR10_LABELS))
    config = HfViTConfig(**merged)
    return config, _read_sizes_said(cfg, found, config)


def _read_sizes_said(cfg: dict, found: dict, config: HfViTConfig) -> str | None:
    """The warning naming the sizes read off the weights, and how to give the lesson's: 16x64 images in 8-px patches
    hold as many positions as 32x32 ones, a (2, 8) patch as many values as a (4, 4) one, and 1 channel x 4x12 as many
    as 3 x 4x4. The weights fit either reading; only the lesson's cfg tells them apart."""
    image, patch = "image_size" in found, "patch_size" in found
    channels = patch and "num_channels" not in cfg  # the square patch was read with the lesson's default of 3
    if not (image or patch):
        return None
    height, width = _pair(config.image_size)
    takes = " ".join(filter(None, (
        f"{height}x{width} images" if image else "images",
        f"of {config.num_channels} channels" if channels else "",
        f"in {config.patch_size}x{config.patch_size} patches" if patch else "",
    )))
    why = f"the square{'s that fit' if image and patch else ' that fits'} the weight shapes" + (
        f" and the lesson's default of {config.num_channels} channels" if channels else "")
    read = [name for name, is_read in (("image_size", image), ("patch_size", patch), ("channels", channels)) if is_read]
    to_give = [name for name in ("channels", "image_size", "patch_size") if name in read]
    if messages_name_flags():
        again = " ".join(_cfg_field(name, *(("C",) if name == "channels" else ("H", "W"))) for name in to_give)
        again += f" {setting('overwrite')}"
    else:
        fields = ", ".join(f"{name!r}: {'C' if name == 'channels' else '(H, W)'}" for name in to_give)
        again = f"cfg={{{fields}}} and overwrite=True"
    return (
        f"{_joined(list(map(setting, read)), 'and')} not given: the model "
        f"takes {takes}, {why}. If the lesson's cfg gave a (height, width) pair"
        f"{' or another channel count (1 for grey images)' if channels else ''}, import again with {again}: the "
        f"weights fit either way, but the model would "
        f"{'cut the images into the wrong patches' if patch else 'place the patches at the wrong positions'}."
    )


DTYPES = ("auto", "float32", "float16", "bfloat16")  # what `dtype` takes, as transformers' from_pretrained names them


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _saved_dtype(state_dict: dict, dtype) -> tuple[torch.dtype, str | None]:
    """The dtype the imported folder's weights are saved in (see import_lesson_weights' `dtype`), and the warning of a
    change to them (None if none)."""
    if isinstance(dtype, torch.dtype):
        dtype = _dtype_name(dtype)
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"{setting('dtype', dtype)} is not a dtype the import saves in: use one of "
                         f"{', '.join(DTYPES)} ('auto': the weights' own).")
    own = sorted({_dtype_name(v.dtype) for v in state_dict.values() if v.is_floating_point()})
    if dtype == "auto":
        if len(own) != 1:  # transformers' "auto" would take the first weight's, by chance of the order
            raise ValueError(
                f"The weights mix {' and '.join(own)} tensors: {setting('dtype', 'auto', quote=False)} cannot keep "
                f"one dtype for them. Pass the one to save in, e.g. {setting('dtype', 'float32', quote=False)}."
            )
        return getattr(torch, own[0]), None
    changed = None
    if dtype is None and own != ["float32"]:
        # Not kept by default: transformers' from_pretrained (dtype="auto") would load half weights as half, and a
        # fine-tuning from the folder would then train in them.
        kept = f" To keep {own[0]}, pass {setting('dtype', 'auto', quote=False)}." if len(own) == 1 else ""
        changed = (f"The weights are {' and '.join(own)}: the model folder holds them as float32 (the default, what "
                   f"training from it needs).{kept}")
    return getattr(torch, dtype or "float32"), changed


def import_lesson_weights(
    weights, output_dir, cfg: dict | None = None, *, overwrite=False, write_card=True, image_mean=None, image_std=None,
    labels=None, key=None, dtype=None,
) -> Path:
    """Load a lesson state dict strictly into hf_vit and save a complete model folder; returns it. `weights`: the
    file (`torch.save(net.state_dict(), path)`, or .safetensors), or the state dict itself (`net.state_dict()`, or a
    checkpoint dict holding it) where the lesson's model is still in memory.

    Raises `ValueError` listing missing and unexpected keys (and shape
    mismatches) when the weights do not fit the config. `image_mean` /
    `image_std` (one value per channel) are the normalisation the weights were
    trained with; the default is CIFAR-10's, which only fits 3 channels. The
    folder is written whole or not at all, and `overwrite` never deletes `weights`. `labels` names the classes
    (see `lesson_config`). `key` names the entry of a checkpoint dict to import where it holds several state dicts
    (without it the model's own is taken, said in a warning of this module's logger, or the import stops).
    `dtype` is the one the folder's weights are saved in, as transformers' from_pretrained(dtype=...): 'float32' (the
    default, what training from the folder needs: half-precision weights are said in a warning when it changes
    them), 'float16', 'bfloat16', or 'auto' for the weights' own.
    """
    from . import make_image_processor  # the package __init__ registers the classes for save_pretrained
    from .configuration_hf_vit import CIFAR10_MEAN, CIFAR10_STD
    from .modeling_hf_vit import HfViTForImageClassification
    from .output_folder import check_output_folder, hold_folders, staged_folder

    overwriting = setting("overwrite", True)  # as the refusals below name it
    refuse_a_model(weights)
    in_memory = isinstance(weights, Mapping)  # a notebook's net.state_dict(): no file to read, none to keep safe
    inputs = [] if in_memory else [weights]
    check_output_folder(output_dir, overwrite=overwrite, inputs=inputs, flag=overwriting)
    if in_memory:
        name, state_dict = _in_memory(weights, key)
    else:
        name, state_dict = Path(weights).expanduser(), read_state_dict(weights, key)
    state_dict, left = one_model(state_dict)
    if left:  # said now, as the choice of a checkpoint's entry is
        logger.warning(left)
    bad = non_finite_summary(state_dict)
    if bad:
        raise ValueError(
            f"{name}: the weights hold NaN or infinite values ({bad}): the imported model would "
            "score every image NaN. The lesson's training diverged before they were saved (e.g. an overflow in fp16): "
            "import a checkpoint saved before it did."
        )
    # Said once the folder is written (the sizes, then the dtype): a refusal below must not tell to "import again".
    config, sizes_said = _lesson_config(state_dict, cfg, labels)
    saved_dtype, dtype_said = _saved_dtype(state_dict, dtype)
    model = HfViTForImageClassification(config).eval()
    load_lesson_state_dict(model, state_dict)  # strict: ValueError listing missing / unexpected keys
    model.to(saved_dtype)  # save_pretrained records it in config.json, which from_pretrained(dtype="auto") reads
    bad = non_finite_summary(model.state_dict())
    if bad:  # float32 values beyond float16's range (65504) become infinities
        raise ValueError(
            f"{name}: the weights hold values beyond {_dtype_name(saved_dtype)}'s range ({bad}): "
            "saved so the model would score every image NaN. Import them with "
            f"{setting('dtype', 'float32', quote=False)} or {setting('dtype', 'bfloat16', quote=False)}."
        )
    processor = make_image_processor(
        config,
        image_mean=CIFAR10_MEAN if image_mean is None else image_mean,
        image_std=CIFAR10_STD if image_std is None else image_std,
    )

    # A training writing output_dir meanwhile would have its folder replaced under it.
    with hold_folders(output_dir, "an import of lesson weights", flag="output_dir"), staged_folder(
        output_dir, overwrite=overwrite, inputs=inputs, flag=overwriting
    ) as staged:
        model.save_pretrained(staged)
        processor.save_pretrained(staged)
        if write_card:
            from .card import write_model_card

            write_model_card(staged)
    for said in filter(None, (sizes_said, dtype_said)):
        logger.warning(said)
    return Path(output_dir).expanduser()


__all__ = ["read_state_dict", "lesson_config", "import_lesson_weights", "LESSON_FIELDS"]
