"""Evaluate a trained classifier on a labelled split, and study what it gets wrong.

    model folder / Hub id ──> AutoModelForImageClassification + AutoImageProcessor
    dataset folder / Hub id ─> split ──> batches of decoded images
        pass 1: logits for every image (no attention weights: fast kernels)   (N, C)
        -> metrics.json (accuracy, top-k, per-class P/R/F1, confusion matrix)
        -> misclassified.csv + misclassified/<index>_<true>_as_<pred>.png
        pass 2: only the mistakes, with output_attentions=True
        -> attention/<index>_<true>_as_<pred>.png (rollout and last-layer attention into what the head
           reads: [CLS]'s row, or all tokens' rows averaged for pool="mean")
        -> gallery.png, confusion_matrix.png, per_class_accuracy.png, report.html

`evaluate_model(...)` does it all; `scripts/evaluate_model.py` is its command line.
"""

import csv
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .attention_maps import (
    HEAT_MAP_LAYOUT,
    HEAT_SCALE_NAME,
    head_reads,
    patch_map_to_grid,
    pooled_attention,
    pooled_rollout,
)
from .configuration_hf_vit import _pair
from .data import (
    DEFAULT_DATASET,
    TEST_SAMPLE,
    DatasetError,
    ImageDepthError,
    _label_array,
    as_mode,
    check_eight_bit,
    check_image_column,
    check_dataset_revision,
    check_no_blank_names,
    check_no_empty_cells,
    check_no_unlabelled_rows,
    class_ids,
    config_name,
    dataset_reference,
    find_columns,
    get_split,
    holds_names,
    image_format,
    load_dataset,
    looks_local,
    revision_problem,
    sample_rows,
    setting,
    unlabelled_reason,
)
from .eval_pictures import (
    BLACK,
    GREY,
    MAX_PICTURE_SIDE,
    RED,
    attention_strip,
    confusion_matrix_image,
    gallery_capacity,
    gallery_image,
    per_class_accuracy_image,
)
from .image_processing import processor_size_mismatch
from .metrics import (
    class_score,
    classification_metrics,
    macro_scope,
    no_score_note,
    part_of_split,
    percent,
    shown_top_k,
)
from .output_folder import EVALUATION_FILES, EVALUATION_SUBFOLDERS, hold_folders, holds_an_evaluation, replace_text
from .report import NONE_DRAWN  # how a note saying why no map was drawn ends: the report reads the reason back
from .spreadsheet import csv_cell

CSV_FIELDS = [
    "index",
    "true_label",
    "predicted_label",
    "confidence",
    "true_class_probability",
    "top1_label",
    "top1_probability",
    "top2_label",
    "top2_probability",
    "top3_label",
    "top3_probability",
    "image",
    "attention",
]


# ---------------------------------------------------------------------------
# Loading: model, processor, dataset
# ---------------------------------------------------------------------------
def resolve_device(device: str | None) -> torch.device:
    """"auto" (or None) -> cuda, then mps, then cpu; anything else as given."""
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):  # torch's own message lists twenty device types
        raise ValueError(
            f"{setting('device', device)} is not a device torch knows. Use auto, cpu, cuda, cuda:<index> or mps."
        ) from None
    given, use_cpu = setting("device", device, quote=False), setting("device", "cpu", quote=False)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{given}: CUDA is not available on this machine. Use {use_cpu}.")
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(f"{given}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}.")
    if resolved.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"{given}: MPS (Apple GPU) is not available on this machine. Use {use_cpu}.")
    return resolved


def locate_model(
    model_name_or_path, argument: str = "model_name_or_path", flag: str | None = "model"
) -> tuple[str, bool]:
    """(what to pass to from_pretrained, is it a local folder); a local folder is checked here. Messages name it
    as `argument`, or within flags_in_messages as the script's `--flag` (hf_vit.data.setting).

    A path that does not exist and is clearly local (`./runs/x`, `/data/m`, `runs/a/b`) is an error
    naming the path, not a Hub lookup. The folder must hold config.json and safetensors weights:
    a pickle (pytorch_model.bin) alone is refused, never unpickled.
    """
    from .hub import check_weights

    if not isinstance(model_name_or_path, (str, os.PathLike)):  # a model in memory: str() of it named no file
        raise TypeError(
            f"{setting(argument, flag=flag)} takes a model folder or a Hub id, got a "
            f"{type(model_name_or_path).__name__} object. Save a model in memory first: "
            "`model.save_pretrained('my-vit')` and `hf_vit.make_image_processor(model.config).save_pretrained('my-vit')`"
            " (its own image_mean/image_std if it was trained with others), then pass 'my-vit'."
        )
    name = str(model_name_or_path)
    path = Path(name).expanduser()
    if not path.exists():
        if looks_local(name):
            raise FileNotFoundError(
                f"no model folder at {str(path.resolve())!r} (from {setting(argument, name, flag=flag)}). Check the "
                "path: pass the folder training wrote (config.json, model.safetensors, preprocessor_config.json), "
                "e.g. runs/<name>."
            )
        return name, False
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path} is not a model folder: it has no config.json. Pass the folder training wrote "
            "(config.json, model.safetensors, preprocessor_config.json), e.g. runs/<name>, or a Hub id."
        )
    problem = check_weights(path)
    if problem:
        missing = not any(path.glob("*.safetensors"))
        raise (FileNotFoundError if missing else ValueError)(f"{path}: {problem}")
    return str(path), True


def hub_unreachable() -> bool:
    """True when the Hub cannot be asked (HF_HUB_OFFLINE=1, or no connection within seconds)."""
    from .data import hub_unreachable_reason

    return hub_unreachable_reason() is not None


def check_model_revision(model_name_or_path, revision, argument: str = "model_name_or_path",
                         flag: str | None = "model", revision_argument: str = "revision") -> None:
    """`revision` (a Hub model's branch, tag or commit) refused for a local folder, which has none. Messages name
    the settings as `argument` (the script's `--flag`) and `revision_argument` (train.py's --model_revision)."""
    problem = revision_problem(model_name_or_path, revision, setting(argument, flag=flag), setting(revision_argument),
                               "model")
    if problem:
        raise ValueError(problem)


def load_classifier(model_name_or_path, argument: str = "model_name_or_path", flag: str | None = "model",
                    revision: str | None = None, **kwargs):
    """(model, source, local_files_only): `AutoModelForImageClassification` from a checked folder or a Hub id
    (at `revision`, a branch, tag or commit of it; refused for a folder).

    Weights load with use_safetensors=True: never unpickled. For a Hub id without a connection only the
    Hugging Face cache is read (at once, instead of the client's retries), and a failure says that there
    is no local folder of that name either.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import HFValidationError
    from transformers import AutoModelForImageClassification

    from . import HfViTConfig  # noqa: F401  (importing hf_vit registers the Auto classes)

    check_model_revision(model_name_or_path, revision, argument, flag)
    source, is_local = locate_model(model_name_or_path, argument, flag)
    named = setting(argument, flag=flag)  # as the messages below name it
    local_only = not is_local and hub_unreachable()
    if is_local:  # config.json against the safetensors headers: names the missing or mis-shaped weight
        from .hub import weights_against_config

        try:
            config = json.loads((Path(source) / "config.json").read_text(encoding="utf-8"))
            problems = weights_against_config(Path(source), config) if isinstance(config, dict) else []
        except Exception:  # unreadable files: transformers' load below names them
            problems = []
        if problems:
            raise ValueError(f"{source!r} ({named}): {problems[0]}")
    mismatch = (
        f"{source!r} ({named}): config.json does not describe the saved weights ({{}}): the model would run with "
        "layers the weights do not fill. Use the folder as training (or save_pretrained) wrote it."
    )
    try:
        model, info = AutoModelForImageClassification.from_pretrained(
            source, use_safetensors=True, local_files_only=local_only, output_loading_info=True, revision=revision,
            **kwargs,
        )
    except RuntimeError as err:  # a Hub model's weight of another shape (a local folder's is named above)
        if "ignore_mismatched_sizes" not in str(err):
            raise
        raise ValueError(mismatch.format("weights of other shapes")) from None
    except ValueError as err:
        if str(err).startswith("Unrecognized configuration class"):  # transformers lists ~60 image model types
            try:  # a local folder's own word; a Hub model's config class name from the message
                model_type = json.loads((Path(source) / "config.json").read_text(encoding="utf-8"))["model_type"]
            except Exception:
                model_type = str(err).split("<class '")[-1].split("'")[0].rsplit(".", 1)[-1]
            raise ValueError(
                f"{source!r} ({named}) is a {model_type!r} model, which has no image-classification head. Pass an image "
                "classifier: an hf_vit model folder (config.json says \"model_type\": \"hf_vit\"), e.g. runs/<name>."
            ) from None
        if "trust_remote_code" not in str(err):
            raise
        # An architecture neither hf_vit nor transformers knows: its own .py files would run. Only on request.
        raise ValueError(
            f"{source!r} ({named}) is a model whose code comes with it (auto_map in config.json names .py files that "
            "would run here). hf_vit models load without it. If you trust its author, pass "
            f"{setting('trust_remote_code', True)}."
        ) from None
    except (OSError, HFValidationError) as err:
        if is_local:
            raise
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if not local_only:
            hub = f"loading it from the Hugging Face Hub failed ({reason})"
        elif constants.HF_HUB_OFFLINE:
            hub = f"with HF_HUB_OFFLINE=1 only the local Hugging Face cache was searched, without a copy ({reason})"
        else:
            hub = f"the Hugging Face Hub cannot be reached and the local cache has no copy ({reason})"
        raise OSError(
            f"Could not load the model {source!r} ({named}): there is no local folder {str(Path(source).resolve())!r}, "
            f"and {hub}. Pass the path of a model folder (config.json + model.safetensors), e.g. runs/<name>, or a "
            "Hub id you can reach."
        ) from err
    missing = sorted(info.get("missing_keys") or [])
    if missing and all(key.startswith("mlp_head.") for key in missing):
        raise ValueError(
            f"{source!r} ({named}) holds a model without a classification head (saved from HfViTModel): its "
            "predictions would come from a random head. Pass the folder training wrote (HfViTForImageClassification)."
        )
    if missing or info.get("mismatched_keys"):  # newly initialised at random: the scores would be noise
        named = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise ValueError(mismatch.format(f"missing: {named}" if missing else "weights of other shapes"))
    return model, source, local_only


def load_image_processor(source, name, trust_remote_code: bool, local_only: bool, revision: str | None = None):
    """The image processor saved beside the weights of `source` (`name`: as the user gave it; `revision`: the Hub
    model's, as the weights were loaded). A missing or broken preprocessor_config.json is a FileNotFoundError
    naming the fix; its cause is the loader's own error."""
    # From its module: transformers 5.17 without torchvision turns the top-level name into a placeholder that
    # raises (5.24 does not); the module's class loads the PIL processor on both.
    from transformers.models.auto.image_processing_auto import AutoImageProcessor

    try:
        return AutoImageProcessor.from_pretrained(
            source, trust_remote_code=trust_remote_code, local_files_only=local_only, revision=revision
        )
    except (OSError, ValueError) as err:
        raise FileNotFoundError(
            f"No image processor for {str(name)!r} ({err}). Save one beside the weights: "
            "`hf_vit.make_image_processor(model.config).save_pretrained(folder)` writes preprocessor_config.json."
        ) from err


def load_model_and_processor(model_name_or_path: str, device="cpu", trust_remote_code: bool = False,
                             revision: str | None = None):
    """The classifier (eval mode, on `device`) and its saved image processor, at the Hub model's `revision`."""
    model, source, local_only = load_classifier(model_name_or_path, trust_remote_code=trust_remote_code,
                                                revision=revision)
    processor = load_image_processor(source, model_name_or_path, trust_remote_code, local_only, revision)
    check_processor_size(processor, model.config, model_name_or_path, setting("model_name_or_path", flag="model"))
    model.to(device).eval()
    return model, processor


def check_processor_size(processor, config, name, named: str):
    """The image processor makes images of the model's size: a 2000x2000 processor over a 32x32 model
    resized and normalised a whole batch of 4M-pixel images before the model refused them."""
    mismatch = processor_size_mismatch(processor.to_dict(), getattr(config, "image_size", None))
    if mismatch:
        (mh, mw), (wh, ww) = mismatch
        raise ValueError(
            f"{name!r} ({named}): preprocessor_config.json makes images of {mh}x{mw} but the model takes {wh}x{ww} "
            "(config.json's image_size). Save the model's own processor beside the weights: "
            "`hf_vit.make_image_processor(model.config).save_pretrained(folder)`."
        )


def load_split(dataset: str, split: str = "test", dataset_revision: str | None = None,
               label_column: str | None = None):
    """One split of a dataset folder (Hub layout) or Hub id (at `dataset_revision`); `hf_vit.data` says what is
    wrong and how to fix it."""
    return get_split(load_dataset(dataset, argument="dataset", dataset_revision=dataset_revision,
                                  label_column=label_column), split, dataset, "split")


def model_label_names(config) -> list[str]:
    return [str(config.id2label[i]) for i in range(config.num_labels)]


def match_labels(dataset_names, model_names) -> np.ndarray | None:
    """A dataset-id -> model-id lookup table, None when the ids already agree.

    Same names in another order are re-mapped by name; anything else is an
    error naming both lists (the model would be scored against the wrong classes).
    """
    # As text: a YAML class list can load `yes`/`no` as booleans, which would not sort next to strings.
    dataset_names, model_names = [str(n) for n in dataset_names], [str(n) for n in model_names]
    if dataset_names == model_names:
        return None
    generic = all(re.fullmatch(r"LABEL_\d+", n) for n in model_names)
    if generic and len(dataset_names) == len(model_names):
        return None  # the model has no names of its own: take the dataset's ids as they are
    if sorted(dataset_names) == sorted(model_names):
        return np.array([model_names.index(n) for n in dataset_names], dtype=np.int64)
    raise ValueError(
        "The dataset's class names do not match the model's id2label, so its predictions cannot be scored:\n"
        f"  dataset ({len(dataset_names)}): {dataset_names}\n"
        f"  model   ({len(model_names)}): {model_names}\n"
        "Evaluate on the dataset the model was trained on (e.g. "
        f"{setting('dataset', '../shared/data/cifar10', quote=False)}), "
        "or train a model on this dataset's classes."
    )


# ---------------------------------------------------------------------------
# Fast preprocessing: the saved processor's statistics, applied to whole batches
# ---------------------------------------------------------------------------
class BatchPreprocessor:
    """Turn a list of PIL images into the processor's `pixel_values`, one tensor operation per batch.

    Calling the image processor per image through PIL costs more than a small
    model's forward pass; here each image is only decoded (and resized when its
    size differs from the model's, with the processor's resampling filter),
    then rescaling and normalisation run on the stacked uint8 batch in torch.
    Processors this does not understand (crops, shortest-edge resizes) are
    called as they are.
    """

    def __init__(self, processor, num_channels: int = 3):
        self.processor = processor
        self.num_channels = num_channels
        size = getattr(processor, "size", None)
        height = size.get("height") if hasattr(size, "get") else None
        width = size.get("width") if hasattr(size, "get") else None
        self.fast = (
            height is not None
            and width is not None
            and not getattr(processor, "do_center_crop", False)
            and not getattr(processor, "do_pad", False)
        )
        self.size = (int(height), int(width)) if self.fast else None
        self.do_resize = bool(getattr(processor, "do_resize", True))
        self.resample = getattr(processor, "resample", Image.BILINEAR)
        self.resample = Image.BILINEAR if self.resample is None else int(self.resample)
        scale = getattr(processor, "rescale_factor", 1 / 255) if getattr(processor, "do_rescale", True) else 1.0
        do_norm = getattr(processor, "do_normalize", True)
        mean = getattr(processor, "image_mean", None) if do_norm else None
        std = getattr(processor, "image_std", None) if do_norm else None
        mean = [0.0] * num_channels if mean is None else list(np.broadcast_to(mean, (num_channels,)))
        std = [1.0] * num_channels if std is None else list(np.broadcast_to(std, (num_channels,)))
        # (x * scale - mean) / std  ==  x * (scale / std) - mean / std, one fused multiply-add per pixel
        self.mul = (scale / torch.tensor(std, dtype=torch.float32)).view(1, -1, 1, 1)  # (1, C, 1, 1)
        self.add = (-torch.tensor(mean, dtype=torch.float32) / torch.tensor(std, dtype=torch.float32)).view(1, -1, 1, 1)

    def to_array(self, image: Image.Image) -> np.ndarray:
        """One image as (H, W, C) uint8 at the model's size."""
        image = as_mode(image, "RGB" if self.num_channels == 3 else "L")  # transparency on white, as the processor
        height, width = self.size
        if self.do_resize and (image.height, image.width) != (height, width):
            image = image.resize((width, height), resample=self.resample)
        array = np.asarray(image)
        return array[..., None] if array.ndim == 2 else array

    def __call__(self, images) -> torch.Tensor:
        if not self.fast:
            # Grey or RGB first, as training decodes them: a plain 1-channel ViTImageProcessor (an export's, or one
            # saved before hf_vit's grey processor) reads a palette image's indices (and fails on LA or RGBA, 'mean
            # must have 2 elements'); the grey processor and a 3-channel one convert as as_mode does.
            images = [as_mode(image, "RGB" if self.num_channels == 3 else "L") for image in images]
            return self.processor(images=images, return_tensors="pt")["pixel_values"]
        arrays = [self.to_array(im) for im in images]
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise ValueError(
                f"Images of different sizes {sorted(shapes)} with do_resize=False in the image processor: "
                "set do_resize=True in preprocessor_config.json so every image gets the model's size."
            )
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()  # (B, C, H, W)
        return batch * self.mul + self.add  # (B, C, H, W)


class _Batches(torch.utils.data.Dataset):
    """Item k = batch k of the split, decoded and preprocessed (so DataLoader workers can share the work)."""

    def __init__(self, ds, indices, image_column, preprocess, batch_size):
        self.ds, self.indices = ds, np.asarray(indices, dtype=np.int64)
        self.image_column = image_column  # the labels are read once, as a column (ids or class names)
        self.preprocess, self.batch_size = preprocess, batch_size

    def __len__(self):
        return (len(self.indices) + self.batch_size - 1) // self.batch_size

    def __getitem__(self, k):
        idx = self.indices[k * self.batch_size : (k + 1) * self.batch_size]
        try:
            rows = self.ds[idx.tolist()]  # one Arrow read per batch
        except (OSError, SyntaxError) as err:  # PIL: truncated or not an image (UnidentifiedImageError is an OSError)
            raise ValueError(_undecodable_row_message(self.ds, idx, self.image_column, err)) from err
        try:
            pixel_values = self.preprocess(rows[self.image_column])  # (B, C, H, W)
        except ImageDepthError as err:
            bad = next(int(i) for i, im in zip(idx, rows[self.image_column]) if not _eight_bit(im))
            raise ValueError(f"Row {bad} of the dataset: {err}") from None
        return pixel_values, torch.from_numpy(idx)


def _undecodable_row_message(ds, indices, image_column, err) -> str:
    """Find which row of a batch failed to decode, and say so."""
    bad = next((int(i) for i in indices if not _decodes(ds, int(i))), None)
    where = f"Row {bad}" if bad is not None else f"A row among {int(indices[0])}..{int(indices[-1])}"
    return (
        f"{where} of the dataset cannot be decoded: its {image_column!r} cell is not a readable image ({err}). "
        "Re-encode or drop that row (e.g. `ds.select(...)` without it) and evaluate again."
    )


def _eight_bit(image) -> bool:
    try:
        check_eight_bit(image)
        return True
    except ImageDepthError:
        return False


def _decodes(ds, i: int) -> bool:
    try:
        ds[i]
        return True
    except (OSError, SyntaxError):
        return False


def _loader(ds, indices, image_column, preprocess, batch_size, num_workers):
    batches = _Batches(ds, indices, image_column, preprocess, batch_size)
    return _WorkerErrors(torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False, num_workers=num_workers))


class _WorkerErrors:
    """A DataLoader whose workers' errors come out as they were raised: torch re-raises one as "Caught
    ValueError in DataLoader worker process 0. Original Traceback ...", which a script would print whole."""

    def __init__(self, loader):
        self.loader = loader

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        try:
            yield from self.loader
        except ValueError as err:
            lines = str(err).splitlines()
            if not (lines and lines[0].startswith("Caught ") and any(line.startswith("  ") for line in lines)):
                raise
            last_frame = max(i for i, line in enumerate(lines) if line.startswith("  "))
            error = "\n".join(lines[last_frame + 1 :])  # "hf_vit.data.DatasetError: Row 3 of ..."
            raise type(err)(error.split(": ", 1)[-1]) from None


# ---------------------------------------------------------------------------
# Small helpers for names and files
# ---------------------------------------------------------------------------
NAME_BYTES = 80  # two names, the index and ".png" stay well under the 255-byte file name limit


def safe_name(label: str) -> str:
    """A class name usable in a file name: `"pick-up truck"` -> `"pick-up-truck"`, `"고양이"` as it is.

    Letters and digits of any script the file system can name stay (ASCII only under an ASCII locale);
    anything else (separators, dots, `_`) becomes `-`. Names longer than NAME_BYTES in UTF-8 are cut: the
    index in front keeps the files apart.
    """
    name = re.sub(r"[\W_]+", "-", str(label)).strip("-")
    try:
        name.encode(sys.getfilesystemencoding())
    except UnicodeEncodeError:
        name = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")
    name = name.encode("utf-8")[:NAME_BYTES].decode("utf-8", errors="ignore").strip("-")
    return name or "class"


def mistake_file_name(index: int, true_label: str, predicted_label: str) -> str:
    """`000123_cat_as_dog.png`: dataset index, true class, predicted class."""
    return f"{index:06d}_{safe_name(true_label)}_as_{safe_name(predicted_label)}.png"


def _as_rgb(image: Image.Image) -> Image.Image:
    """The saved mistake shows what the model scored: transparent pixels on white (hf_vit.data.as_mode)."""
    return image if image.mode in ("RGB", "L") else as_mode(image, "RGB")


def format_metrics_table(metrics: dict) -> str:
    """The headline numbers and the per-class table, as plain text."""
    part = part_of_split(metrics)
    examples = f"{part}: not the whole split" if part else metrics["num_examples"]
    lines = [f"examples: {examples}", f"accuracy: {100 * metrics['accuracy']:.2f}%"]
    for k in shown_top_k(metrics):  # no top-3 line for 3 classes: 100% for any model
        lines.append(f"{k.replace('_', ' ')}: {100 * metrics[k]:.2f}%")
    lines.append(
        f"macro precision / recall / F1{macro_scope(metrics['per_class'])}: {metrics['macro_precision']:.4f} / "
        f"{metrics['macro_recall']:.4f} / {metrics['macro_f1']:.4f}"
    )
    # a score of 0/0 is a word (never predicted, no images): its column widens to fit it
    table = [("class", "precision", "recall", "f1", "support")] + [
        (name, *(class_score(row, key, "{:.4f}".format) for key in ("precision", "recall", "f1")), str(row["support"]))
        for name, row in metrics["per_class"].items()
    ]
    widths = [max(len(cells[k]) for cells in table) for k in range(5)]
    lines += [
        "  ".join([cells[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(cells[1:], widths[1:])])
        for cells in table
    ]
    note = no_score_note(metrics["per_class"])
    return "\n".join(lines + ([note] if note else []))


# ---------------------------------------------------------------------------
# The whole evaluation
# ---------------------------------------------------------------------------
def default_output_dir(model_name_or_path: str, revision: str | None = None) -> Path:
    """`<model_dir>/evaluation` for a local folder, `evaluation-<owner>--<name>` here for a Hub id, with
    `@<revision>` for a pinned one (so evaluating two revisions of one model keeps both)."""
    path = Path(model_name_or_path).expanduser()  # as locate_model reads it
    if path.exists():
        return path / "evaluation"
    pinned = f"@{revision}" if revision else ""
    return Path(f"evaluation-{str(model_name_or_path)}{pinned}".replace("/", "--"))


def _check_output_dir(output_dir: Path, model_name_or_path) -> None:
    """Refuse an output folder that is a model folder: metrics.json there is training's, which the card reads."""
    model_path = Path(str(model_name_or_path)).expanduser()
    given, flag = setting("output_dir", str(output_dir)), setting("output_dir")  # as the messages name it
    is_model = (output_dir / "config.json").is_file() or (
        model_path.exists() and output_dir.resolve() == model_path.resolve()
    )
    if is_model:
        raise ValueError(
            f"{given} is a model folder: the evaluation's metrics.json would overwrite "
            "training's (its validation accuracy and training curve, which the model card reads). Leave out "
            f"{flag} (default: <model folder>/evaluation) or pass another folder."
        )
    _refuse_other_models_evaluation(output_dir, model_path)
    _refuse_linked_output(output_dir)  # before anything below probes, deletes or writes through a link
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"{given} is a file. Pass a folder (it is created if absent).")
    blocking = next((p for p in output_dir.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise ValueError(f"{given} lies under {str(blocking)!r}, which is a file. Pass a folder.")
    from .output_folder import unwritable_reason

    problem = unwritable_reason(output_dir)  # now, not after the whole split has been scored
    if problem:
        raise PermissionError(
            f"cannot write {given} ({problem}). Pass a writable {flag} (default: "
            "<model folder>/evaluation, which a read-only model folder cannot hold)."
        )
    # A rerun clears the earlier evaluation's files (EVALUATION_FILES): only in a folder that an evaluation wrote
    # (misclassified/ is made before anything else is written), never in one of the user's.
    earlier = holds_an_evaluation(output_dir)
    own = sorted(p.name for p in output_dir.iterdir() if not p.name.startswith(".")) if output_dir.is_dir() else []
    if own and not earlier:  # hidden files (.DS_Store, .gitkeep) are no one's evaluation and no one's photos
        example = own[0]
        raise ValueError(
            f"{given} holds other files ({example!r}, ...) and no earlier evaluation: the evaluation would write "
            f"its own among them ({', '.join(EVALUATION_FILES)} and the folders {', '.join(EVALUATION_SUBFOLDERS)}), "
            "replacing any of the same names, and a push would take the pictures there for the evaluation's. Pass a "
            "new or empty folder."
        )


def _refuse_other_models_evaluation(output_dir: Path, model_path: Path) -> None:
    """Refuse <another model folder>/evaluation: that folder's card and push read it as the model's own results."""
    owner = output_dir.parent
    if output_dir.name != "evaluation" or not (owner / "config.json").is_file():
        return
    if model_path.exists() and owner.resolve() == model_path.resolve():
        return
    given, flag = setting("output_dir", str(output_dir)), setting("output_dir")
    raise ValueError(
        f"{given} is the evaluation folder of the model folder {str(owner)!r}, not of "
        f"{setting('model_name_or_path', str(model_path), flag='model')}: that folder's card and push would "
        "publish these results as its model's. "
        f"Leave out {flag} (default: <model folder>/evaluation) or pass another folder."
    )


def _refuse_linked_output(output_dir: Path) -> None:
    """Refuse an output folder, or a sub-folder the evaluation clears, that is a symbolic link: the rerun's
    deletion of old .png files and the new files would land wherever the link points, outside the folder."""
    given, flag = setting("output_dir", str(output_dir)), setting("output_dir")
    for folder in (output_dir, *(output_dir / sub for sub in EVALUATION_SUBFOLDERS)):
        if folder.is_symlink():
            which = "" if folder == output_dir else f" holds {folder.name}/, which"
            raise ValueError(
                f"{given}{which} is a symbolic link to {os.readlink(folder)!r}: the "
                "evaluation deletes the old .png files of the folders it writes into, and would delete and write "
                f"them there. Remove the link, or pass another {flag}."
            )


def _hold_folders(output_dir: Path, model_name_or_path):
    """Lock the output folder alone (two evaluations there would mix their files) and share the model folder with
    other evaluations (a training writing new weights and deleting evaluation/ there holds it alone)."""
    model = Path(str(model_name_or_path)).expanduser()  # (a Hub id is no folder: nothing to share)
    return hold_folders(output_dir, "an evaluation", reads=[model], flag=setting("output_dir"),
                        clash="two evaluations there would mix their files")


def _weights_state(model_name_or_path) -> dict:
    """Size, time and identity of a local model folder's config and weight files ({} for a Hub id)."""
    folder = Path(str(model_name_or_path)).expanduser()
    if not folder.is_dir():
        return {}
    files = [folder / "config.json", *folder.glob("*.safetensors"), *folder.glob("*.safetensors.index.json")]
    return {p.name: (s.st_size, s.st_mtime_ns, s.st_ino) for p in files if p.is_file() for s in [p.stat()]}


def _check_weights_unchanged(model_name_or_path, before: dict) -> None:
    """Refuse to write results beside weights other than the evaluated ones (rewritten by another program)."""
    now = _weights_state(model_name_or_path)
    changed = sorted(name for name in before.keys() | now.keys() if before.get(name) != now.get(name))
    if changed:
        raise OSError(
            f"{', '.join(changed)} in the model folder {str(model_name_or_path)!r} changed while it was evaluated: the "
            "results would describe other weights, so no metrics.json or report.html was written. Evaluate it again once "
            "nothing writes the folder."
        )


@torch.inference_mode()
def evaluate_model(
    model_name_or_path: str,
    dataset: str = DEFAULT_DATASET,
    split: str = "test",
    output_dir: str | Path | None = None,
    batch_size: int = 256,
    device: str | None = "auto",
    num_workers: int = 0,
    num_threads: int | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    max_attention_maps: int | None = 500,
    gallery_size: int = 32,
    trust_remote_code: bool = False,
    progress: bool = True,
    report: bool = True,
    revision: str | None = None,
    dataset_revision: str | None = None,
    max_eval_samples: int | None = None,
    seed: int = 42,
) -> dict:
    """Run the evaluation and write every output (see the module docstring); returns the metrics dict.

    `revision` and `dataset_revision` pin a Hub model's and a Hub dataset's branch, tag or commit (recorded in
    metrics.json); a local folder has none and is refused with one.
    `max_eval_samples`: score only that many images of the split, drawn at random with `seed` (in row order; of a
    test split, the images training's --max_test_samples N --seed S scored). metrics.json, the report and the model
    card then say how many of how many images were scored."""
    # Every argument is checked before the model and the data load (and before anything is written).
    for name, value, least in (("batch_size", batch_size, 1), ("num_threads", num_threads, 1),
                               ("num_workers", num_workers, 0), ("gallery_size", gallery_size, 0)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise ValueError(f"{setting(name)} must be a whole number of at least {least}, got {value!r}.")
    if max_attention_maps is not None and (
        isinstance(max_attention_maps, bool) or not isinstance(max_attention_maps, int) or max_attention_maps < -1
    ):  # -1 is the documented "all"; -5 is more likely a typo than a wish
        raise ValueError(
            f"{setting('max_attention_maps')} must be a whole number of at least 0, or -1 for all, got "
            f"{max_attention_maps!r}."
        )
    if gallery_size is not None and gallery_size > gallery_capacity():  # 1000 made gallery.png 19,159 px tall
        raise ValueError(
            f"{setting('gallery_size')} must be at most {gallery_capacity()}, got {gallery_size}: gallery.png holds "
            f"that many mistakes within {MAX_PICTURE_SIDE} px a side (misclassified/ and report.html hold them all)."
        )
    if max_eval_samples is not None and (
        isinstance(max_eval_samples, bool) or not isinstance(max_eval_samples, int) or max_eval_samples < 1
    ):
        raise ValueError(
            f"{setting('max_eval_samples')} must be a whole number of at least 1, got {max_eval_samples!r}; leave it "
            "out to evaluate every image of the split."
        )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"{setting('seed')} must be a whole number, got {seed!r}.")
    device = resolve_device(device)
    check_model_revision(model_name_or_path, revision)
    check_dataset_revision(dataset, dataset_revision, "dataset")  # before the model loads (load_dataset would too)
    locate_model(model_name_or_path)  # a mistyped folder is named as such, not as an unwritable output
    output_dir = Path(output_dir).expanduser() if output_dir is not None else default_output_dir(model_name_or_path, revision)
    _check_output_dir(output_dir, model_name_or_path)
    with _hold_folders(output_dir, model_name_or_path):
        return _evaluate(
            model_name_or_path, dataset, split, output_dir, batch_size, device, num_workers, num_threads, image_column,
            label_column, max_attention_maps, gallery_size, trust_remote_code, progress, report, revision,
            dataset_revision, max_eval_samples, seed,
        )


def _evaluate(
    model_name_or_path, dataset, split, output_dir, batch_size, device, num_workers, num_threads, image_column,
    label_column, max_attention_maps, gallery_size, trust_remote_code, progress, report, revision, dataset_revision,
    max_eval_samples, seed,
) -> dict:
    """evaluate_model's work, once its arguments are checked and its folders held."""
    import datasets
    from tqdm import tqdm

    if num_threads:
        torch.set_num_threads(num_threads)
    start = time.perf_counter()

    weights = _weights_state(model_name_or_path)  # before loading: a change from here on is caught below
    model, processor = load_model_and_processor(model_name_or_path, device, trust_remote_code, revision)
    ds = load_split(dataset, split, dataset_revision, label_column)
    image_column, label_column = find_columns(ds, image_column, label_column)
    check_image_column(ds, image_column, f"the {split!r} split of {dataset!r}")
    if not isinstance(ds.features[image_column], datasets.Image):  # bytes, paths, pixel arrays: read as training reads them
        ds = ds.cast_column(image_column, datasets.Image())
    unlabelled = unlabelled_reason(ds, label_column, f"the {split!r} split of {dataset!r}")
    if unlabelled:
        raise DatasetError(f"{unlabelled}. Pass a labelled split with {setting('split')}.")
    names = model_label_names(model.config)
    label_feature = ds.features[label_column]
    remap = match_labels(label_feature.names, names) if hasattr(label_feature, "names") else None
    preprocess = BatchPreprocessor(processor, getattr(model.config, "num_channels", 3))
    for column in (label_column, image_column):  # before a worker meets one: a row left empty, named
        check_no_empty_cells(ds, column, f"the {split!r} split of {dataset!r}")
    if holds_names(label_feature):  # class names as text ("cat"): the model's class of that name
        values = ds.with_format("arrow")[label_column].to_pylist()
        check_no_blank_names(values, label_column, f"the {split!r} split of {dataset!r}")
        labels = class_ids(
            values, names, f"the {split!r} split of {dataset!r}", "the model",
            "Evaluate on the dataset the model was trained on, or train a model on this dataset's classes.",
        )
    else:
        # (N,), one column read; floats are refused as training refuses them (a cast would truncate 3.7 to 3)
        labels = _label_array(ds, label_column, split).astype(np.int64)
    check_no_unlabelled_rows(labels, label_column, f"the {split!r} split of {dataset!r}")
    if labels.min() < 0 or labels.max() >= len(names):
        raise ValueError(
            f"Labels of {dataset!r}/{split} run from {labels.min()} to {labels.max()}, but the model knows "
            f"{len(names)} classes (0..{len(names) - 1}); a split without labels (-1) cannot be evaluated."
        )
    if remap is not None:
        labels = remap[labels]
    # The images scored: all, or a seeded sample in row order (rows keep their dataset index in every file).
    split_size = len(ds)
    scored = sample_rows(np.arange(split_size), max_eval_samples, seed, TEST_SAMPLE)  # (n,) dataset rows
    labels = labels[scored]  # (n,)
    load_s = time.perf_counter() - start

    # -- pass 1: logits for every image scored ---------------------------------
    num = len(scored)
    logits = np.zeros((num, model.config.num_labels), dtype=np.float32)
    loader = _loader(ds, scored, image_column, preprocess, batch_size, num_workers)
    for pixel_values, idx in tqdm(loader, desc=f"evaluate {split}", unit="batch", disable=not progress):
        out = model(pixel_values=pixel_values.to(device))
        logits[np.searchsorted(scored, idx.numpy())] = out.logits.float().cpu().numpy()
    inference_s = time.perf_counter() - start - load_s

    metrics = classification_metrics(logits, labels, label_names=names)
    metrics.update(
        dataset=dataset_reference(str(dataset)), dataset_config=config_name(ds), split=split,
        dataset_revision=dataset_revision,  # None: a folder, or the Hub dataset's main branch as it was
        image_format=image_format(ds, image_column),
        model=dataset_reference(str(model_name_or_path)),  # runs/vit is recorded as ./runs/vit: a folder, not a Hub id
        model_revision=revision,
        # the dtype the model ran in, no autocast: training's metrics.json records its own (often bf16 autocast)
        numeric_precision=str(model.dtype).removeprefix("torch."),
        split_size=split_size,  # num_examples below it: part of the split (the report and the card say so)
    )
    if num < split_size:
        metrics["sample"] = {"max_eval_samples": num, "seed": seed}

    # -- the mistakes ------------------------------------------------------------
    probs = torch.from_numpy(logits).softmax(dim=-1).numpy()  # (N, C)
    # Ranked by the logits, as the metrics are: far-apart logits give float32 probabilities of exactly 0, whose
    # ties would put another class in the CSV's top 3 than the one top-3 accuracy counted.
    preds = logits.argmax(axis=1)
    wrong_at = np.flatnonzero(preds != labels)  # positions among the scored images
    # Most confident first, by the predicted class's log-probability in float64: confident mistakes tie in float32
    # (exactly 1.0) and in the CSV's six decimals, and ties in row order put the attention maps, the gallery and the
    # report's cards on different mistakes. The CSV keeps this order; the report's stable sort of it keeps it too.
    log_confidence = torch.from_numpy(logits).double().log_softmax(dim=-1).numpy()[wrong_at, preds[wrong_at]]
    wrong_at = wrong_at[np.argsort(-log_confidence, kind="stable")]
    wrong = scored[wrong_at]  # their dataset rows
    top3 = np.argsort(-logits, axis=1, kind="stable")[:, :3]  # (N, 3)
    rows = []
    for i, row_index in zip(wrong_at, wrong):
        row = {
            "index": int(row_index),
            "true_label": names[labels[i]],
            "predicted_label": names[preds[i]],
            "confidence": float(probs[i, preds[i]]),
            "true_class_probability": float(probs[i, labels[i]]),
        }
        for r in range(3):
            has = r < top3.shape[1]
            row[f"top{r + 1}_label"] = names[top3[i, r]] if has else ""
            row[f"top{r + 1}_probability"] = float(probs[i, top3[i, r]]) if has else ""
        row["image"] = f"misclassified/{mistake_file_name(int(row_index), row['true_label'], row['predicted_label'])}"
        row["attention"] = ""
        rows.append(row)  # most confident mistake first (ranked above)

    # A rerun must not leave a previous run's files behind: its mistakes, its pictures, and above all its
    # metrics.json, which is written last and so marks a complete evaluation (the card and the push read it). It goes
    # first: a Ctrl-C amid the removals must not leave it beside half the pictures it describes.
    for name in EVALUATION_FILES:  # metrics.json first
        (output_dir / name).unlink(missing_ok=True)
    for sub in EVALUATION_SUBFOLDERS:
        folder = output_dir / sub
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.png"):
            old.unlink()

    # Each wrong image as stored in the dataset (not the normalised tensor), read in row order.
    row_of = {r["index"]: r for r in rows}
    in_row_order = np.sort(wrong)
    starts = range(0, len(wrong), batch_size)
    for start_k in tqdm(starts, desc="save mistakes", unit="batch", disable=not progress or not len(wrong)):
        chunk = in_row_order[start_k : start_k + batch_size]
        for i, image in zip(chunk, ds[chunk.tolist()][image_column]):
            _as_rgb(image).save(output_dir / row_of[int(i)]["image"])

    # -- pass 2: attention maps, only for the (most confident) mistakes ----------
    n_maps = len(rows) if max_attention_maps is None or max_attention_maps < 0 else max_attention_maps
    attention_rows = rows[:n_maps]
    attention_note = _attention_maps(
        model, ds, attention_rows, image_column, preprocess, batch_size, device, output_dir, progress
    )

    # -- files -------------------------------------------------------------------
    with open(output_dir / "misclassified.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in rows:
            # class names come from a dataset card: one like =HYPERLINK(...) must stay text in a spreadsheet
            writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else csv_cell(v)) for k, v in row.items()})

    # Pictures of a sample say so in their titles: they are shown on their own (the card, the Hub page, a slide).
    of = f" ({num:,} of {split_size:,} images)" if num < split_size else ""
    confusion_matrix_image(metrics["confusion_matrix"], names, title=f"Confusion matrix{of}").save(
        output_dir / "confusion_matrix.png"
    )
    # A class without images in this split has no accuracy: drawn as such, not as a 0% bar.
    recalls = [row["recall"] if row["support"] else None for row in (metrics["per_class"][n] for n in names)]
    per_class_accuracy_image(recalls, names, overall=metrics["accuracy"], title=f"Accuracy per class{of}").save(
        output_dir / "per_class_accuracy.png"
    )
    shown = rows[: gallery_capacity() if gallery_size is None else gallery_size]
    gallery_images = [Image.open(output_dir / r["image"]) for r in shown]
    captions = [
        [
            (f"true: {r['true_label']}", BLACK),
            (f"pred: {r['predicted_label']}", RED),
            (f"{percent(r['confidence'], 0)} sure, #{r['index']}", GREY),
        ]
        for r in shown
    ]
    among = f" in {num:,} of {split_size:,} images" if of else ""
    title = f"The {len(shown)} most confident mistakes (of {len(rows)}{among})"
    gallery_image(gallery_images, captions, title=title).save(output_dir / "gallery.png")

    elapsed = time.perf_counter() - start
    metrics["evaluation"] = {
        "output_dir": str(output_dir),
        "device": str(device),
        "batch_size": batch_size,
        "num_misclassified": len(rows),
        "attention_maps": sum(1 for r in rows if r["attention"]),
        "attention_note": attention_note,
        "attention_colours": HEAT_SCALE_NAME,  # a report rebuilt later describes the scale these pictures have
        "attention_follows": head_reads(model.config),  # and what the maps follow: "cls" or "mean" (config.pool)
        "attention_layout": HEAT_MAP_LAYOUT,  # and how they are drawn
        "load_s": round(load_s, 3),
        "inference_s": round(inference_s, 3),
        "total_s": round(elapsed, 3),
        "images_per_second": round(num / max(inference_s, 1e-9), 1),
    }
    _check_weights_unchanged(model_name_or_path, weights)
    if report:
        from .report import write_report

        write_report(output_dir, metrics=metrics)
    replace_text(output_dir / "metrics.json", json.dumps(metrics, indent=2))  # last: it marks a finished evaluation
    return metrics


def _patch_grid(config):
    """(rows, columns) of the model's patch grid: hf_vit's grid_size, else image_size // patch_size (transformers'
    ViT has no grid_size; the square root of the patch count put a 16x64 image's 2 x 8 patches on a 4 x 4 grid)."""
    grid = getattr(config, "grid_size", None)
    if grid is None and getattr(config, "image_size", None) and getattr(config, "patch_size", None):
        (height, width), (patch_h, patch_w) = _pair(config.image_size), _pair(config.patch_size)
        grid = (height // patch_h, width // patch_w)
    return grid


# What one attention forward may hold of attention weights, all layers together: output_attentions keeps every
# layer's (B, heads, N+1, N+1), 22 MB an image for a ViT-B/16 at 224 px (5.7 GB for a batch of 256). The lesson's
# models (under 1 MB an image) still take a whole batch in one forward.
ATTENTION_BYTES = 256 * 2**20


def _pooled_maps(model, pixel_values, device, pool, chunk):
    """(rollout, last layer) into what the head reads, (B, N) each, float32 on the CPU; None if the model returned no
    attention weights. The batch goes through in chunks of chunk[0] images, each reduced on the model's device as
    it comes out (heads averaged, only the pooled row kept) and dropped before the next: at most ATTENTION_BYTES
    of attention weights are held. chunk[0] starts at 1 and is set from that first image's weights."""
    rollouts, lasts = [], []
    start = 0
    while start < len(pixel_values):
        part = pixel_values[start : start + chunk[0]]
        out = model(pixel_values=part.to(device), output_attentions=True)
        attentions = out.attentions
        del out  # its logits and states: only the weights are needed
        if not attentions:
            return None
        if pool is None:  # the caller says why no maps
            return torch.empty(0), torch.empty(0)
        per_image = sum(a[:1].numel() * a.element_size() for a in attentions)
        rollouts.append(pooled_rollout(attentions, pool).float().cpu())
        lasts.append(pooled_attention([attentions[-1].float()], pool).cpu())
        del attentions
        start += len(part)
        chunk[0] = max(1, ATTENTION_BYTES // max(per_image, 1))
    return torch.cat(rollouts), torch.cat(lasts)


def _attention_maps(model, ds, rows, image_column, preprocess, batch_size, device, output_dir, progress):
    """Second pass over `rows` with output_attentions=True; writes attention/<name>.png, fills row["attention"]."""
    from tqdm import tqdm

    if not rows:
        return ""
    attn_impl = getattr(model.config, "_attn_implementation", "eager")
    if getattr(model.config, "model_type", "") != "hf_vit" and attn_impl != "eager":
        # Other models (e.g. transformers' ViT) return attention weights only from the eager kernel.
        try:
            model.set_attn_implementation("eager")
        except (AttributeError, ValueError) as err:
            return f"Could not switch {type(model).__name__} to eager attention ({err}){NONE_DRAWN}"
    grid = _patch_grid(model.config)
    pool = head_reads(model.config)  # the maps follow what the head reads: [CLS]'s row, or all rows averaged
    indices = np.array([r["index"] for r in rows], dtype=np.int64)
    row_of = {r["index"]: r for r in rows}
    loader = _loader(ds, indices, image_column, preprocess, batch_size, 0)
    not_finite = 0  # maps with NaN or inf weights (an overflow in the model): drawn, but they show nothing
    chunk = [1]  # images per forward: the first image alone measures what one image's attentions take
    for pixel_values, idx in tqdm(loader, desc="attention maps", unit="batch", disable=not progress):
        maps = _pooled_maps(model, pixel_values, device, pool, chunk)
        if maps is None:
            return f"{type(model).__name__} returned no attention weights{NONE_DRAWN}"
        if pool is None:
            return (
                f"{type(model).__name__}'s config does not say which tokens its head reads (no `pool` as hf_vit's, "
                f"and not transformers' ViT, which reads [CLS]){NONE_DRAWN}"
            )
        rollout, last = maps  # (B, N) each
        num_patches = last.shape[1]
        if grid is None or grid[0] * grid[1] != num_patches:
            side = int(round(num_patches**0.5))
            if side * side != num_patches:
                return f"Cannot place {num_patches} attention weights on a patch grid{NONE_DRAWN}"
            grid = (side, side)
        for b, i in enumerate(idx.tolist()):
            row = row_of[i]
            not_finite += not (torch.isfinite(rollout[b]).all() and torch.isfinite(last[b]).all())
            image = Image.open(output_dir / row["image"])
            caption = (
                f"#{i} true: {row['true_label']} | pred: {row['predicted_label']} ({percent(row['confidence'], 0)})"
            )
            strip = attention_strip(
                image, patch_map_to_grid(rollout[b], grid), patch_map_to_grid(last[b], grid), caption=caption,
                pool=pool,
            )
            row["attention"] = f"attention/{Path(row['image']).name}"
            strip.save(output_dir / row["attention"], compress_level=1)  # fast; these are many
    notes = []
    if pool == "mean":  # the maps are not [CLS]'s, as a reader of ViT pictures may expect: say whose they are
        notes.append(
            "This model pools by mean: its head reads the average of all final tokens, so the maps show the "
            "attention into that average (all tokens' rows averaged), not [CLS]'s."
        )
    if not_finite:
        notes.append(
            f"{not_finite} of {len(rows)} attention maps hold NaN or infinite weights (an overflow in the model, "
            "e.g. in fp16): they are drawn, but their colours say nothing about attention."
        )
    return " ".join(notes)
