"""Data for training: load, check, decode once, split, batch, augment.

    load_dataset(name)                 Hub id ("uoft-cs/cifar10") or a local folder in the Hub layout
      -> find_columns                  img/image + label/labels, or the names given
      -> decode_images                 every image once -> uint8 (N, C, H, W), cached on disk
      -> stratified_split              seeded per-class validation carve from train
      -> ImageTensorDataset            __getitems__ hands out whole batches (no per-sample Python)
      -> BatchCollator                 batched torch augmentation + normalisation (hf_vit.augment)

The normalisation statistics come from the model's image processor, so a model
served through `pipeline(...)` sees the same numbers it was trained on.

A DatasetError names each setting as the caller gave it: `label_column` to Python code,
`--label_column` inside `flags_in_messages()`, where the scripts call these functions.
"""

import contextvars
import errno
import io
import json
import logging
import math
import numbers
import os
import re
import shutil
import socket
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch

from .augment import AugmentConfig, BatchAugment, seed_for_batch
from .dataset_cache import folder_files, local_cache_dir, record_source, tidy
# The conversion a 1-channel model's image processor (shipped as remote code) makes too: one copy of the rule.
from .image_processing_hf_vit import ImageDepthError, as_mode, check_eight_bit  # noqa: F401 (re-exported)
from .output_folder import replace_file, unwritable_reason
from .public import is_local, looks_local  # one rule for "a path, not a Hub id", shared with the card and the push

logger = logging.getLogger(__name__)

DEFAULT_DATASET = "uoft-cs/cifar10"
IMAGE_COLUMNS = ("img", "image")
LABEL_COLUMNS = ("label", "labels")
VALIDATION_SPLITS = ("validation", "valid", "val", "dev")  # the names datasets reads as a validation split


class DatasetError(ValueError):
    """A dataset problem the user can fix; the message says how. Scripts print it without a traceback."""


# A message names each setting as its reader gave it: Python code that called prepare_data(label_column=...) the
# argument, a script's user the flag (--label_column). Each script's flags are its functions' argument names
# with -- before them, so the script only says that its messages are read as flags.
_AS_FLAGS = contextvars.ContextVar("hf_vit_data_as_flags", default=False)


@contextmanager
def flags_in_messages():
    """Within it (a script's main), messages name settings as command-line flags: --label_column, not label_column."""
    token = _AS_FLAGS.set(True)
    try:
        yield
    finally:
        _AS_FLAGS.reset(token)


def messages_name_flags() -> bool:
    """Whether messages now name command-line flags (within flags_in_messages) rather than Python arguments."""
    return _AS_FLAGS.get()


_NO_VALUE = object()


def setting(name: str, value=_NO_VALUE, quote: bool = True, flag: str | None = None) -> str:
    """The setting `name` as messages name it: the flag `--name` within flags_in_messages, else the argument `name`.
    With a value: `--name 'test'` (`--name test` with quote=False, as a shell command reads) or `name='test'`;
    True is a switch: `--name` or `name=True`. `flag`: the script's name for it where that differs from the
    argument's (evaluate_model's `model_name_or_path` is evaluate_model.py's `--model`)."""
    if not messages_name_flags():
        return name if value is _NO_VALUE else f"{name}={value!r}"
    flag = f"--{flag or name}"
    if value is _NO_VALUE or value is True:
        return flag
    return f"{flag} {value!r}" if quote and isinstance(value, str) else f"{flag} {value}"


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------
def _offline_message(name: str, reason: str, argument: str = "dataset_name") -> str:
    return (
        f"cannot load the dataset '{name}' from the Hugging Face Hub ({reason}). "
        "Pass a local copy in the Hub layout instead, e.g. "
        f"`{setting(argument, '../shared/data/cifar10', quote=False)}` "
        "(a folder with README.md and plain_text/{train,test}-*.parquet; on a connected machine: "
        f"`hf download {name} --repo-type dataset --local-dir DIR`)."
    )


def dataset_reference(name: str) -> str:
    """`name` as metrics.json and training_recipe.json record it: a local folder whose name reads like a
    Hub id (`data/cifar`) gets a leading ./, so that the card, rendered later from anywhere, still knows
    it was a folder and never links it as a Hub dataset."""
    if not looks_local(name) and Path(name).expanduser().is_dir():
        return "./" + Path(name).as_posix()
    return name


def _through_a_proxy(url) -> bool:
    """Whether requests to `url` go through a proxy from the environment (HTTPS_PROXY, ALL_PROXY, not NO_PROXY),
    as huggingface_hub's HTTP client sends them."""
    import urllib.request

    proxies = urllib.request.getproxies()
    return bool(proxies.get(url.scheme) or proxies.get("all")) and not urllib.request.proxy_bypass(url.hostname or "")


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP connect to the Hub endpoint, so that no network fails in seconds, not after minutes of retries."""
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    if _through_a_proxy(url):  # the client goes through it (HTTPS_PROXY ...): a direct connect proves nothing
        return True
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def hub_unreachable_reason() -> str | None:
    """Why the Hub cannot be asked now ("HF_HUB_OFFLINE is set", or no connection within seconds), None when it can:
    what the evaluation, train.py --push_to_hub and a push's dry run say before any of them waits on the network."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    if not _hub_reachable():
        return f"no connection to {constants.ENDPOINT}"
    return None


def revision_problem(name, revision, named: str, revision_named: str, kind: str) -> str | None:
    """Why `revision` (a branch, tag or commit of the Hub repository `name`) cannot be used, or None. A local folder
    has no revisions: datasets and transformers take a revision there without a word and read the folder as it is
    now, so a run would record a pin it never had. `named`/`revision_named`: the settings as messages name them
    (`setting`); `kind`: "dataset" or "model". What counts as local is public.is_local, the card's and the push's
    rule."""
    if revision is None:
        return None
    if not isinstance(revision, str) or not revision.strip():
        return (f"{revision_named} {revision!r} names no revision: pass a branch, tag or commit of the {kind}'s Hub "
                "repository, or leave it out.")
    if not is_local(str(name), "dataset_name" if kind == "dataset" else "model_name_or_path"):
        return None
    if Path(str(name)).expanduser().is_dir():
        reads = "datasets would read the folder as it is now" if kind == "dataset" else (
            "transformers would load the folder as it is now")
        where = f"a local folder, which has no revisions: {reads}"
    else:  # nothing to read there either: the path is the slip, not the revision
        where = "a local path, not a Hub id, and no folder is there"
    return (f"{revision_named} applies to a Hub {kind}; {named} {str(name)!r} is {where}. Leave "
            f"{revision_named} out, or pass the {kind}'s Hub id (owner/name).")


def check_dataset_revision(dataset_name, dataset_revision, argument: str = "dataset_name") -> None:
    """`dataset_revision` refused for a local folder (revision_problem), naming the caller's `argument`."""
    problem = revision_problem(dataset_name, dataset_revision, setting(argument), setting("dataset_revision"),
                               "dataset")
    if problem:
        raise DatasetError(problem)


def load_dataset(
    dataset_name: str = DEFAULT_DATASET, dataset_config: str | None = None, argument: str = "dataset_name",
    dataset_revision: str | None = None, label_column: str | None = None,
):
    """`datasets.load_dataset` on a local Hub-layout folder or a Hub id, with clear errors offline.

    `argument` is the caller's name for the dataset (evaluate_model's is `dataset`), for the messages.
    `dataset_revision`: a branch, tag or commit of a Hub dataset (datasets' `revision`); refused for a folder.
    `label_column` (else label/labels) is checked to hold one kind of value, names or ids, in every split.
    """
    import datasets
    from datasets.exceptions import DatasetGenerationError, DatasetNotFoundError
    from huggingface_hub import constants
    from huggingface_hub.errors import RevisionNotFoundError

    named = setting(argument)  # --dataset_name, or dataset_name for Python code
    if not isinstance(dataset_name, (str, os.PathLike)):  # a loaded DatasetDict: Path() failed with a TypeError
        if isinstance(dataset_name, (datasets.IterableDataset, datasets.IterableDatasetDict)):
            # A stream has no save_to_disk (the advice below failed with an AttributeError), and training reads
            # every image anyway: the id or folder it streams from is what to pass.
            raise DatasetError(
                f"{named} takes a dataset's Hub id or folder, got an {type(dataset_name).__name__} object (a dataset "
                "loaded with streaming=True). Training decodes every image once, so it reads the dataset whole, not as "
                f"a stream: pass the Hub id or folder it streams from, e.g. "
                f"`{setting(argument, 'uoft-cs/cifar10', quote=False)}` (loaded whole here, without streaming)."
            )
        if isinstance(dataset_name, datasets.Dataset):
            # One split saved alone has no split name, and datasets refuses its folder here (see below).
            save = ("`datasets.DatasetDict({'test': ds}).save_to_disk('my_data')` for one split (its name as the key; "
                    "training needs 'train' and 'test')")
        else:
            save = "`dataset_dict.save_to_disk('my_data')`"
        raise DatasetError(
            f"{named} takes a dataset's Hub id or folder, got a {type(dataset_name).__name__} object. Save a loaded "
            f"dataset first, e.g. {save}, and pass 'my_data'."
        )
    check_dataset_revision(dataset_name, dataset_revision, argument)
    path = Path(dataset_name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise DatasetError(
                f"{named} {dataset_name!r} is a file; pass the dataset's folder (the one holding README.md)."
            )
        try:
            # A cache of its own per folder state: datasets would reuse a same-named folder's rows.
            cache_dir = local_cache_dir(path)
            _check_cache_writable(cache_dir)
            built = not os.path.isdir(cache_dir)  # a new state: this load builds it
            try:
                loaded = datasets.load_dataset(str(path), dataset_config, cache_dir=cache_dir)
            except (DatasetGenerationError, OSError) as err:  # e.g. pyarrow's "Failed to parse string: 'cat' as a
                # scalar of type int64", or a full disk under the Arrow copy
                if no_room := _no_room(err):
                    size = sum(stat.st_size for _, stat in folder_files(path))
                    raise _no_room_error(no_room, f"the datasets cache '{cache_dir}'",
                                         f", about as large as the folder's files ({size / 1e6:,.1f} MB)") from None
                if isinstance(err, DatasetGenerationError):
                    _check_split_files(path, dataset_config, cache_dir, f"{named} {dataset_name!r}")
                raise
            finally:  # a failed load leaves datasets' locks: recorded, they go once the folder is gone
                record_source(cache_dir, path)
            # Ids in another split's files read as text ('0', '1', ...; other columns may mix harmlessly), or read
            # with another split's class names
            labels = [label_column] if label_column else LABEL_COLUMNS
            _check_split_files(path, dataset_config, cache_dir, f"{named} {dataset_name!r}", labels, loaded)
            tidy(cache_dir, built)  # the folder's earlier states, and gone folders' caches, can never load again
            return loaded
        except ValueError as err:
            if "corresponds to no data" in str(err):  # datasets' wording for a split without rows
                split = str(err).split('"')[1] if '"' in str(err) else "?"
                raise DatasetError(
                    f"the {split!r} split of {dataset_name!r} is empty: every split needs at least one image."
                ) from None
            if "label names are duplicated" in str(err):  # datasets' ClassLabel check of the card's names
                raise DatasetError(
                    f"{named} {dataset_name!r}: its README.md lists a class name twice (datasets: {err}). Give each "
                    "class its own name in the card's `class_label: names:`."
                ) from None
            if "load_from_disk" in str(err):  # one split's Dataset.save_to_disk: datasets reads only a DatasetDict's
                raise DatasetError(
                    f"{named} {dataset_name!r} holds one split saved alone (Dataset.save_to_disk), without a split "
                    "name. Save it as a split of a DatasetDict, e.g. `datasets.DatasetDict({'test': "
                    f"datasets.load_from_disk({str(dataset_name)!r})}}).save_to_disk('my_data')` (its split's name as the key; "
                    "training needs 'train' and 'test'), and pass 'my_data'."
                ) from None
            if "BuilderConfig" in str(err):  # an unknown --dataset_config; datasets lists the ones there are
                raise DatasetError(
                    f"{str(err).splitlines()[0]} Fix {setting('dataset_config')}, or leave it out."
                ) from None
            raise
        except FileNotFoundError as err:  # datasets' EmptyDatasetError: no data files in the folder
            raise DatasetError(
                f"{named} {dataset_name!r} holds no dataset files ({str(err).splitlines()[0]}). Pass a folder in the "
                "Hub's layout: README.md and the splits' parquet files (e.g. plain_text/train-*.parquet)."
            ) from None
    if looks_local(dataset_name):
        raise DatasetError(
            f"no dataset folder at {str(path.resolve())!r} (from {named} {dataset_name!r}). "
            "Check the path, or pass a Hub id such as 'uoft-cs/cifar10'."
        )
    if not constants.HF_HUB_OFFLINE and not _hub_reachable():
        raise DatasetError(_offline_message(dataset_name, f"no connection to {constants.ENDPOINT}", argument))
    if constants.HF_HUB_OFFLINE and dataset_revision is not None:  # datasets would not honour the pin
        pinned = setting("dataset_revision", dataset_revision)
        raise DatasetError(
            f"{pinned} needs the Hugging Face Hub, and HF_HUB_OFFLINE is set: offline, datasets reads the latest "
            f"cached copy of {dataset_name!r}, whatever its revision, so the run would record a revision it may not "
            "have read. Unset HF_HUB_OFFLINE, or pass a local copy of that revision "
            f"(`hf download {dataset_name} --repo-type dataset --revision {dataset_revision} --local-dir DIR`, then "
            f"`{setting(argument, 'DIR', quote=False)}`) without {setting('dataset_revision')}."
        )
    _check_cache_writable(datasets.config.HF_DATASETS_CACHE)
    try:
        # Offline mode still finds a copy in the Hugging Face cache, if there is one.
        return datasets.load_dataset(dataset_name, dataset_config, revision=dataset_revision)
    except (OSError, DatasetNotFoundError, DatasetGenerationError) as err:  # ConnectionError is an OSError
        if no_room := _no_room(err):  # not the Hub's fault: a local copy would need the same room
            raise _no_room_error(no_room, f"the Hugging Face cache ('{constants.HF_HUB_CACHE}' for the download, "
                                 f"'{datasets.config.HF_DATASETS_CACHE}' for the Arrow copy)", "") from None
        if isinstance(err, DatasetGenerationError):
            raise
        # datasets names a revision the repository lacks in a DatasetNotFoundError caused by the Hub's answer
        if dataset_revision is not None and RevisionNotFoundError in (type(err), type(err.__cause__)):
            raise DatasetError(
                f"the dataset {dataset_name!r} on the Hugging Face Hub has no revision {dataset_revision!r}. Fix "
                f"{setting('dataset_revision')}: a branch, tag or commit of the dataset's repository (its 'Files and "
                "versions' tab lists them)."
            ) from None
        if constants.HF_HUB_OFFLINE:
            raise DatasetError(
                _offline_message(dataset_name, "HF_HUB_OFFLINE=1 and no copy in the cache", argument)
            ) from None
        raise DatasetError(_offline_message(dataset_name, str(err).splitlines()[0], argument)) from None


def _check_split_files(path: Path, dataset_config, cache_dir, dataset: str, columns=None, loaded=None) -> None:
    """A DatasetError for what datasets reads wrongly from the splits' parquet files, each split saved on its own:

    - a column (of `columns`, else any) of text in one split and numbers in another (class names in train, ids in
      test): datasets reads every split as one type, so it fails to parse the text as numbers, or reads the ids as
      class names '0', '1', ... that match no class;
    - a ClassLabel column numbered by other classes in one split's file than the ones `loaded` (the dataset card's,
      or the first split's) gives it (`class_encode_column` run on each split alone, one lacking a class): datasets
      keeps the ids, so each would name another class, and the test accuracy scores the wrong labels silently.
    """
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    def kind(arrow_type):
        if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
            return "text"
        return "numbers" if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) else None

    if not _holds_parquet(path):  # an image folder: resolving its files again would cost seconds per 1000 images
        return
    try:
        data_files = datasets.load_dataset_builder(str(path), dataset_config, cache_dir=cache_dir).config.data_files
        schemas = [(str(split), Path(file).name, pq.read_schema(file)) for split, files in (data_files or {}).items()
                   for file in files if str(file).endswith(".parquet")]
    except Exception:  # noqa: BLE001 -- only a better message is at stake: datasets' own result or error stands
        return
    kinds: dict[str, dict[str, tuple[str, str]]] = {}  # column -> {kind: (split, file)}, the first file of each kind
    for split, file, schema in schemas:
        for field in schema:
            if kind(field.type) and (columns is None or field.name in columns):
                kinds.setdefault(field.name, {}).setdefault(kind(field.type), (split, file))
    for column, found in kinds.items():
        if len(found) > 1:
            (text_split, text_file), (number_split, number_file) = found["text"], found["numbers"]
            raise DatasetError(
                f"{dataset}: the column {column!r} holds text in the {text_split!r} split ({text_file}) but numbers in "
                f"the {number_split!r} split ({number_file}). datasets reads every split as one type, so class ids "
                "would become names '0', '1', ... (or the text fails to read as numbers). Give the column one kind in "
                f"every split, e.g. cast each split to the same classes: `ds = ds.cast_column({column!r}, "
                "datasets.ClassLabel(names=[...]))` with the class names in id order (text cells become their ids; "
                "integer cells must be those ids already), and save the splits again."
            )
    for split, file, schema in schemas if loaded is not None else ():
        try:
            saved = json.loads((schema.metadata or {}).get(b"huggingface", b"{}"))["info"]["features"]
        except (ValueError, KeyError, TypeError):
            continue  # written without datasets' features: nothing to compare
        for column, feature in saved.items() if isinstance(saved, dict) else ():
            read = loaded[split].features.get(column) if split in loaded else None
            if not isinstance(read, datasets.ClassLabel) or not isinstance(feature, dict) or feature.get("_type") != "ClassLabel":
                continue
            own, names = [str(n) for n in feature.get("names") or []], [str(n) for n in read.names]
            # A class both name at different ids is renumbered; wholly other names (a card renaming '0', '1') pass.
            moved = [i for i, name in enumerate(own) if name in names and names.index(name) != i]
            if moved:
                differ = moved[0]
                label2id = ({n: i for i, n in enumerate(names)} if len(names) <= 20 else
                            f"{{name: i for i, name in enumerate(<the {len(names)} classes in that order>)}}")
                raise DatasetError(
                    f"{dataset}: the {split!r} split's file {file} numbers the column {column!r} by its own classes "
                    f"{_listed(own)}, but datasets reads it with the classes {_listed(names)}, so its ids would name "
                    f"other classes ({_id_meaning(differ, own, names)}) and it would be scored against wrong labels. "
                    f"Renumber that split by the others' classes: `ds = ds.align_labels_with_mapping({label2id}, "
                    f"{column!r})`, and save it again."
                )


def _holds_parquet(path: Path) -> bool:
    """Whether a .parquet file lies under `path`, found as the cache key finds files (through linked folders, each
    once: a link back up would loop)."""
    return any(relative.endswith(".parquet") for relative, _ in folder_files(Path(path)))


def _listed(names: list[str]) -> str:
    return "(" + ", ".join(map(repr, names[:10])) + (", ..." if len(names) > 10 else "") + ")"


def _id_meaning(i: int, own: list[str], names: list[str]) -> str:
    """What class id `i` is in the file, and what it would be read as."""
    return f"its id {i} is {own[i]!r}, read as {names[i]!r}" if i < len(names) else f"its id {i}, {own[i]!r}, has no class"


def _no_room(err: BaseException) -> OSError | None:
    """The OSError in `err`'s chain (datasets wraps pyarrow's in a DatasetGenerationError) saying a disk is full, a
    quota spent or a file-size limit reached; None for any other error."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return err
        err = err.__cause__ or err.__context__
    return None


def _no_room_error(err: OSError, where: str, size: str) -> DatasetError:
    """A full disk under the datasets cache: datasets' traceback ended in "An error occurred while generating the
    dataset" (the Hub's path blamed the Hub and advised a local copy, which needs the same room)."""
    limit = " (a file-size limit: `ulimit -f`, or the file system's)" if err.errno == errno.EFBIG else ""
    return DatasetError(
        f"no room to write {where} ({err.strerror or err}{limit}): datasets keeps an Arrow copy of the dataset "
        f"there{size}. Free space there, or point HF_DATASETS_CACHE (or HF_HOME) at a disk with room, and run again."
    )


def _check_cache_writable(cache_dir) -> None:
    """datasets writes its Arrow copy there first; unwritable, it fails with a bare PermissionError traceback."""
    problem = unwritable_reason(cache_dir)
    if problem:
        raise DatasetError(
            f"cannot write the datasets cache {str(cache_dir)!r} ({problem}), where the decoded dataset is kept. "
            "Point HF_DATASETS_CACHE (or HF_HOME) at a writable folder."
        )


def get_split(dataset_dict, split: str, dataset_name: str, arguments=("train_split", "test_split")):
    """`dataset_dict[split]`, or an error naming the splits there are and the setting(s) that choose one."""
    if split not in dataset_dict:
        chosen_by = " / ".join(setting(a) for a in ((arguments,) if isinstance(arguments, str) else arguments))
        raise DatasetError(
            f"the dataset {dataset_name!r} has no split {split!r}; its splits are {sorted(dataset_dict)}. "
            f"Choose one with {chosen_by}."
        )
    ds = dataset_dict[split]
    if len(ds) == 0:
        raise DatasetError(f"the {split!r} split of {dataset_name!r} is empty: it needs at least one image.")
    return ds


def find_columns(
    ds, image_column: str | None = None, label_column: str | None = None, label_required: bool = True
) -> tuple[str, str | None]:
    """The image and label column names: the ones given, else the first of img/image and label/labels present.

    With label_required=False (drawing one image) a dataset without a label column gives None for it.
    """
    import datasets

    columns = list(ds.column_names)

    def pick(given, candidates, what, argument, required=True):
        if given is not None:
            if given not in columns:
                raise DatasetError(
                    f"no {what} column {given!r} in the dataset; its columns are {columns}. Fix {setting(argument)}."
                )
            return given
        for name in candidates:
            if name in columns:
                return name
        if not required:
            return None
        # The columns whose type says what they hold: the fix names one, not a <column> to look for.
        kind, holds = (datasets.Image, "images") if what == "image" else (datasets.ClassLabel, "class labels")
        typed = [c for c in columns if isinstance(ds.features[c], kind)]
        name = typed[0] if len(typed) == 1 else "<column>"
        hint = f" ({', '.join(map(repr, typed))} {'holds' if len(typed) == 1 else 'hold'} {holds})" if typed else ""
        raise DatasetError(
            f"found no {what} column (looked for {' / '.join(candidates)}); the dataset's columns are {columns}. "
            f"Name it with {setting(argument, name, quote=False)}{hint}."
        )

    return (
        pick(image_column, IMAGE_COLUMNS, "image", "image_column"),
        pick(label_column, LABEL_COLUMNS, "label", "label_column", label_required),
    )


def holds_names(feature) -> bool:
    """Whether a label column holds class names as text ("cat", "dog") rather than class ids."""
    import datasets

    return isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")


def label_names(ds, label_column: str, split: str = "train") -> list[str] | None:
    """The class names: a ClassLabel column's, those a column of names holds (sorted, the ids datasets'
    `class_encode_column` would give; whole numbers as numbers, '2' before '10'), or None for plain integers.
    The model's id2label keeps the names, and the evaluation finds a text label's class by its name."""
    feature = ds.features[label_column]
    if holds_names(feature):
        check_no_empty_cells(ds, label_column, f"the {split!r} split")
        values = ds.with_format("arrow")[label_column].to_pylist()
        check_no_blank_names(values, label_column, f"the {split!r} split")
        return sort_class_names(set(values), label_column, split)
    return list(feature.names) if hasattr(feature, "names") else None


def check_no_blank_names(values, label_column: str, where: str) -> None:
    """Refuse '' or ' ' among class names read as text (a CSV's empty field), naming the rows: in the train split it
    would train as a class without a name; in a split scored against the classes, it is no class to add."""
    blank = [i for i, name in enumerate(values) if isinstance(name, str) and not name.strip()]
    if blank:
        raise DatasetError(
            f"{len(blank)} row(s) of {where} have a blank {label_column!r} cell (first: row {blank[0]}, "
            f"{values[blank[0]]!r}), which would be a class without a name. Drop them, e.g. "
            f"`ds = ds.filter(lambda r: r[{label_column!r}].strip() != '')`, or give them their class, and save the "
            "dataset again."
        )


def _name_key(name: str):
    """What two spellings of one class share: 'Cat ' and 'cat' give 'cat', '01' and '1' give 1."""
    key = name.strip().casefold()
    return int(key) if re.fullmatch(r"[+-]?\d+", key) else key


def sort_class_names(names, label_column: str, split: str) -> list[str]:
    """Class names read as text, in class-id order, refusing names that differ only in case or surrounding spaces
    ('cat' and 'Cat ', '1' and '01'): a slip in the data that would silently split one class in two."""
    alike: dict = {}
    for name in names:
        alike.setdefault(_name_key(name), []).append(name)
    clashes = [sorted(group) for group in alike.values() if len(group) > 1]
    if clashes:
        shown = "; ".join(" / ".join(map(repr, group)) for group in sorted(clashes)[:5])
        raise DatasetError(
            f"the label column {label_column!r} of the {split!r} split holds class names that differ only in case or "
            f"surrounding spaces (or leading zeros): {shown}{'; ...' if len(clashes) > 5 else ''}. Each would be a "
            f"class of its own. Clean the column, e.g. `ds = ds.map(lambda r: {{{label_column!r}: r[{label_column!r}].strip().lower()}})`, and "
            "save the dataset again; or, if they are meant as different classes, cast the column to the classes you "
            f"want yourself: `ds = ds.cast_column({label_column!r}, datasets.ClassLabel(names=[...]))`."
        )
    if all(re.fullmatch(r"[+-]?\d+", name) for name in names):
        # Text order would put '10' between '1' and '2': number the classes as the numbers count.
        ordered = sorted(names, key=lambda name: (int(name), name))
        # A warning where the orders differ: the ids are not those a user converting the column as text (datasets'
        # class_encode_column) would expect, and train.py shows warnings only.
        moved = next(((a, b) for a, b in zip(sorted(names), ordered) if a != b), None)
        if moved:
            shown = ", ".join(f"{name!r} -> {i}" for i, name in enumerate(ordered[:10]))
            logger.warning(
                "the class names of %r are whole numbers, numbered in numeric order: %s%s (in text order, as datasets' "
                "class_encode_column numbers them, %r would come before %r)", label_column, shown,
                ", ..." if len(ordered) > 10 else "", *moved,
            )
        return ordered
    return sorted(names)


def class_ids(values, names, where: str, whose: str, fix: str) -> np.ndarray:
    """(N,) int64: each class name of `values` as its position in `names`; a DatasetError naming those not there."""
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(values) - index.keys())
    if unknown:
        shown = ", ".join(map(repr, unknown[:5])) + (", ..." if len(unknown) > 5 else "")
        known = ", ".join(map(repr, names[:10])) + (", ..." if len(names) > 10 else "")
        keys = {_name_key(name): name for name in names}
        near = [f"{v!r} is {keys[_name_key(v)]!r}" for v in unknown if _name_key(v) in keys][:3]
        if near:  # 'Cat ' for 'cat': one class spelled two ways, not a class the model lacks
            fix = (f"Spelled differently from a class ({', '.join(near)}, but for case or spaces): clean the column, "
                   "e.g. with `.strip()` and the classes' case, and save the dataset again.")
        raise DatasetError(
            f"{len(unknown)} class name(s) in {where} are not among the {len(names)} classes of {whose} ({known}): "
            f"{shown}. {fix}"
        )
    return np.fromiter((index[v] for v in values), dtype=np.int64, count=len(values))


def check_label_column(ds, label_column: str, split: str) -> None:
    """A label column must hold one class per row (ClassLabel, integer ids or class names), not images or lists."""
    import datasets

    feature = ds.features[label_column]
    if not isinstance(feature, (datasets.ClassLabel, datasets.Value)):
        raise DatasetError(
            f"the label column {label_column!r} of the {split!r} split holds {type(feature).__name__} values, not "
            f"class ids. Name the column of integer class ids with {setting('label_column')}."
        )


def check_image_column(ds, image_column: str, where: str) -> None:
    """An image column holds images (datasets' Image, or what it reads as images: encoded bytes, file paths, uint8
    arrays); arrays of floats, such as an image processor's pixel_values, failed with a traceback of datasets'."""
    import datasets

    feature = ds.features[image_column]
    if isinstance(feature, datasets.Image) or not len(ds):
        return
    try:  # the first row, as the decoding will read every row
        datasets.Image().cast_storage(ds.with_format("arrow")[:1][image_column].combine_chunks())
    except (TypeError, ValueError, RuntimeError) as err:  # pyarrow's refusals are these too
        raise DatasetError(
            f"the image column {image_column!r} of {where} holds {feature} values, which are not images (datasets: "
            f"{str(err).splitlines()[0].rstrip('.')}). Name the column of images with {setting('image_column')}: "
            "images are decoded, resized and normalised here, so an image processor's output (pixel_values) is not needed; "
            "keep the original images in the dataset (a datasets.Image() column)."
        ) from None


def unlabelled_reason(ds, label_column: str, where: str, need: str = "be scored") -> str | None:
    """Why `ds` cannot be scored when its label column is empty in every row, or -1 in every row (ClassLabel's mark
    for no label, which the Hub's unlabelled test sets hold), None when it has labels."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cells = ds.with_format("arrow")[label_column]
    if not len(ds):
        return None
    if cells.null_count == len(ds):
        held = "empty,"
    elif pa.types.is_integer(cells.type) and not cells.null_count and pc.all(pc.equal(cells, -1)).as_py():
        held = "-1, the mark for no label,"
    else:
        return None
    return (f"{where} holds no labels (its {len(ds)} {label_column!r} cells are all {held} as in a competition's "
            f"unlabelled test set): only labelled images can {need}")


def check_no_empty_cells(ds, column: str, where: str) -> None:
    """A DatasetError naming the rows whose `column` cell is empty (null): an image or a label left out."""
    cells = ds.with_format("arrow")[column]  # Arrow keeps a null a null (numpy would make a label NaN)
    if cells.null_count:
        rows = np.flatnonzero(cells.is_null().to_numpy(zero_copy_only=False))
        raise DatasetError(
            f"{len(rows)} row(s) of {where} have an empty {column!r} cell (first: row {rows[0]}). "
            f"Drop them, e.g. `ds = ds.filter(lambda r: r[{column!r}] is not None)`, and save the dataset again."
        )


def _label_array(ds, label_column: str, split: str, names=None) -> np.ndarray:
    """(N,) the label column as integers (class names as their place in `names`), or a DatasetError naming what it
    holds instead."""
    check_label_column(ds, label_column, split)
    check_no_empty_cells(ds, label_column, f"the {split!r} split")
    if names is not None and holds_names(ds.features[label_column]):
        values = ds.with_format("arrow")[label_column].to_pylist()
        check_no_blank_names(values, label_column, f"the {split!r} split")
        return class_ids(
            values, names, f"the {split!r} split", "the train split",
            "A model learns only the classes it trains on: drop or relabel those rows, or add training images of them.",
        )
    labels = np.asarray(ds.with_format("numpy")[label_column])
    if labels.dtype.kind not in "iu":
        raise DatasetError(
            f"the label column {label_column!r} of the {split!r} split holds {labels.dtype} values; it must hold "
            "integer class ids 0..num_labels-1 or class names. Cast it, e.g. "
            f"`ds = ds.cast_column({label_column!r}, datasets.Value('int64'))` for whole numbers stored as floats, and "
            "save the dataset again."
        )
    return labels


def get_labels(ds, label_column: str, num_labels: int, split: str, names=None) -> torch.Tensor:
    """(N,) int64 labels, checked to lie in 0..num_labels-1; a column of class names is read by `names`."""
    labels = _label_array(ds, label_column, split, names)
    check_no_unlabelled_rows(labels, label_column, f"the {split!r} split")
    bad = (labels < 0) | (labels >= num_labels)
    if bad.any():
        raise DatasetError(
            f"{int(bad.sum())} labels in the {split!r} split lie outside 0..{num_labels - 1} "
            f"(e.g. {int(labels[bad][0])}): the model has {num_labels} classes (the train split's ClassLabel names, else "
            "its largest label + 1). Fix the labels, or the dataset's class names."
        )
    return torch.from_numpy(labels.astype(np.int64))


def check_no_unlabelled_rows(labels: np.ndarray, label_column: str, where: str) -> None:
    """Rows labelled -1, ClassLabel's mark for no label, among labelled ones (a split of both kinds): named with the
    filter that drops them, not as labels outside the classes (a split of -1 only is unlabelled_reason's)."""
    unlabelled = np.flatnonzero(labels == -1)
    if len(unlabelled):
        raise DatasetError(
            f"{len(unlabelled)} row(s) of {where} have the {label_column!r} -1, the mark for an image without a label "
            f"(first: row {unlabelled[0]}): only labelled images can be trained on or scored. Drop them, e.g. "
            f"`ds = ds.filter(lambda r: r[{label_column!r}] != -1)`, and save the dataset again."
        )


def _class_name(label: int, names) -> str:
    return repr(names[label]) if names else f"label {label}"


def check_two_classes(labels: torch.Tensor, names, split: str) -> None:
    """A classifier learns to tell classes apart: a train split of one class has nothing to learn, and a
    one-class head would even be trained as a regression (transformers' loss for `num_labels == 1`)."""
    present = torch.unique(labels).tolist()
    if len(present) < 2:
        which = f"only {_class_name(present[0], names)}" if present else "no labels"
        raise DatasetError(
            f"the {split!r} split holds {which}: a classifier needs images of at least two classes to learn to tell "
            f"them apart. Train on a split with two classes or more (check {setting('train_split')} and "
            f"{setting('label_column')})."
        )


def warn_untrained_classes(labels: torch.Tensor, num_labels: int, names) -> None:
    """Say which classes have no training image: the model keeps them but can never predict them well."""
    missing = sorted(set(range(num_labels)) - set(torch.unique(labels).tolist()))
    if missing:
        shown = ", ".join(_class_name(i, names) for i in missing[:10]) + (", ..." if len(missing) > 10 else "")
        logger.warning(
            "%d of the %d classes have no training images (%s): the model keeps them but never learns them. Raise "
            "%s or check the dataset if that is not intended.", len(missing), num_labels, shown,
            setting("max_train_samples"),
        )


# ---------------------------------------------------------------------------
# Decode once
# ---------------------------------------------------------------------------
_MEMORY_CACHE: dict[tuple, torch.Tensor] = {}


# Part of the decoded-pixel cache's key: bump it whenever _decode_one or as_mode (image_processing_hf_vit.py, shared
# with the grey processor) change what pixels they make, or a cache written by the older rules would still be read.
# 2: EXIF orientation applied.
DECODE_VERSION = 2


def _decode_one(value, mode: str, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image, ImageOps

    if value.get("bytes") is not None:
        image = Image.open(io.BytesIO(value["bytes"]))
    elif value.get("path"):
        image = Image.open(value["path"])
    else:
        raise OSError("the cell holds neither image bytes nor a file path")  # named with its row by the caller
    # A phone photo's EXIF orientation: the datasets library and transformers' load_image turn the image upright,
    # so pipeline() sees it so; training and the test score must see the same pixels.
    image = ImageOps.exif_transpose(image)
    image = as_mode(image, mode)
    if image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.BILINEAR)  # the image processor's resample
    array = np.asarray(image)
    return array[:, :, None] if array.ndim == 2 else array  # (H, W, C)


def config_name(ds) -> str | None:
    """The configuration `load_dataset` resolved for the split: --dataset_config, else the dataset's default
    ("plain_text" for CIFAR-10, "default" for one without configurations). The card's model-index names it."""
    name = getattr(ds.info, "config_name", None)
    return name if isinstance(name, str) and name else None


def image_format(ds, image_column: str) -> str | None:
    """The file format of the split's first image ("JPEG", "PNG"), as encoded in the dataset; None when it cannot
    be told (an empty split, images stored as arrays). The card says "JPEG copy" of CIFAR-10 only on this record."""
    first = _first_image(ds, image_column)
    return first.format if first is not None else None


def _first_image(ds, image_column: str):
    """The split's first image as PIL opens it (its header read, its pixels not), None when it cannot be opened."""
    import datasets
    from PIL import Image

    if not len(ds):
        return None
    value = ds.cast_column(image_column, datasets.Image(decode=False)).with_format("arrow")[:1][image_column].to_pylist()[0]
    try:
        if isinstance(value, dict) and value.get("bytes") is not None:
            return Image.open(io.BytesIO(value["bytes"]))
        if isinstance(value, dict) and value.get("path"):
            return Image.open(value["path"])
    except OSError:
        return None  # the decoding pass names an unreadable image
    return None


def warn_downscaled(ds, image_column: str, image_size, split: str) -> None:
    """Say when the images are shrunk to a small part of their size (224x224 photos read at CIFAR-10's 32x32):
    the model's image_size, not the dataset, sets the size, and a user training on their own images at the
    default size would otherwise learn from thumbnails without a word."""
    first = _first_image(ds, image_column)
    height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if first is not None and first.width * first.height >= 4 * height * width:
        logger.warning(
            "the %r split's images are %dx%d (its first one) and are shrunk to %dx%d, the model's image size; pass "
            "%s (with a %s that divides it) to train on more of their detail.", split, first.width, first.height,
            width, height, setting("image_size"), setting("patch_size"),
        )


def _remove_older_decodes(cache_path: Path, key: str) -> None:
    """The same images decoded by older rules (no version, or another one): never read again, ~180 MB for CIFAR-10."""
    rest = key.split("-", 3)[3]  # <fingerprint>-<column>-<mode><size>, after hf_vit-pixels-v<N>-
    folder = cache_path.parent
    for older in (*folder.glob(f"hf_vit-pixels-{rest}.npy"), *folder.glob(f"hf_vit-pixels-v*-{rest}.npy")):
        if older != cache_path:
            older.unlink(missing_ok=True)


def _save_synced(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())  # on disk before the rename: a power loss must not leave an empty cache file


def _why_unwritten(err: OSError, folder: Path, size: int) -> str:
    """Why `size` bytes could not be written in `folder`: numpy's short write names no cause ("122880 requested and
    49024 written"), so the file-size limit or the free space it met is named, with the fix."""
    try:
        import resource  # not on Windows

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY and limit < size:
            return (f"{err}: the file-size limit (`ulimit -f`) is {limit:,} bytes and the decoded images take "
                    f"{size:,}; raise it")
    except ImportError:
        pass
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return str(err)
    if _no_room(err) or free < size:
        return (f"{err}: the decoded images take {size / 1e6:,.1f} MB and the disk has {free / 1e6:,.1f} MB free; free "
                "space there, or point HF_DATASETS_CACHE (or HF_HOME) at a disk with room")
    return str(err)


def decode_images(
    ds, image_column: str, image_size, num_channels: int = 3, cache: bool = True, split: str | None = None
) -> torch.Tensor:
    """Every image of `ds` as one uint8 tensor (N, C, H, W), decoded once.

    The result is cached as a .npy next to the dataset's Arrow cache, keyed by the dataset's fingerprint, so
    later runs (and the second process of a DDP run) load it in a fraction of a second, and kept in memory for
    this process. `cache=False` decodes afresh and keeps nothing (neither cache is read or written).
    """
    import datasets
    from PIL import Image

    height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    mode = {1: "L", 3: "RGB"}.get(num_channels)
    if mode is None:
        raise DatasetError(f"images can be decoded to 1 or 3 channels, not {num_channels}.")
    # The column is part of the key: a dataset with two image columns must not share one cache.
    key = f"hf_vit-pixels-v{DECODE_VERSION}-{ds._fingerprint}-{image_column}-{mode}{height}x{width}"
    # datasets fingerprints a local folder by its name, not its files: the memory cache also keys on where the
    # Arrow files lie (a folder of its own per folder state, see local_cache_dir), and checks the row count.
    memory_key = (key, ds.cache_files[0]["filename"] if ds.cache_files else None)
    hit = _MEMORY_CACHE.get(memory_key) if cache else None
    if hit is not None and hit.shape == (len(ds), num_channels, height, width):
        return hit
    cache_path = None
    if cache and ds.cache_files:
        cache_path = Path(ds.cache_files[0]["filename"]).parent / f"{key}.npy"
        if cache_path.exists():
            try:
                pixels = torch.from_numpy(np.load(cache_path))
                if pixels.shape == (len(ds), num_channels, height, width):
                    _MEMORY_CACHE[memory_key] = pixels
                    return pixels
            except (OSError, ValueError, EOFError):
                pass  # a damaged cache file (EOFError: empty, e.g. after a power loss): decode again and overwrite it

    where = f"the {split!r} split" if split else "the dataset"
    check_no_empty_cells(ds, image_column, where)  # a null cell: all of them named, before any decoding
    raw = ds.cast_column(image_column, datasets.Image(decode=False)).with_format("arrow")
    out = np.empty((len(ds), height, width, num_channels), dtype=np.uint8)  # (N, H, W, C)
    chunk = 4096
    for start in range(0, len(ds), chunk):
        for i, value in enumerate(raw[start : start + chunk][image_column].to_pylist()):
            try:
                out[start + i] = _decode_one(value, mode, (height, width))
            except (OSError, SyntaxError) as err:  # PIL: truncated file, or not an image at all
                raise DatasetError(
                    f"row {start + i} of {where} cannot be decoded: its {image_column!r} cell is not a readable "
                    f"image ({err}). Re-encode or drop that row."
                ) from None
            except Image.DecompressionBombError as err:  # over PIL's pixel limit: not an OSError
                raise DatasetError(
                    f"row {start + i} of {where} is too large to decode safely ({err}). Downscale that image, or "
                    "raise PIL.Image.MAX_IMAGE_PIXELS if you trust the dataset."
                ) from None
            except ImageDepthError as err:
                raise DatasetError(f"row {start + i} of {where}: {err}") from None
    pixels = torch.from_numpy(np.ascontiguousarray(out.transpose(0, 3, 1, 2)))  # (N, C, H, W)

    if cache_path is not None:
        try:
            # A temporary file of its own, never named by the pid: two machines sharing the cache (a multi-node
            # run: each node's first rank decodes) may run writers with one pid, which wrote into one file.
            replace_file(cache_path, lambda tmp: _save_synced(tmp, pixels.numpy()))  # a reader never sees half
            _remove_older_decodes(cache_path, key)
        except OSError as err:
            logger.warning("could not cache decoded images at %s (%s); keeping them in memory only: each run decodes "
                           "them again", cache_path, _why_unwritten(err, cache_path.parent, pixels.numpy().nbytes))
    if cache:
        _MEMORY_CACHE[memory_key] = pixels
    return pixels


# ---------------------------------------------------------------------------
# Validation carve
# ---------------------------------------------------------------------------
def stratified_split(labels, validation_size: int, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """(train_indices, validation_indices): each class gives its share of `validation_size`, picked at random."""
    labels = np.asarray(labels)
    n = len(labels)
    if validation_size <= 0:
        return np.arange(n), np.arange(0)
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * validation_size / n
    room = counts - 1  # every class keeps at least one training image (a class seen only in validation is unlearnable)
    if validation_size >= n or validation_size > room.sum():
        problem = (
            f"leaves no training images (the train split has {n})" if validation_size >= n else
            f"would leave some class without training images (at most {int(room.sum())} can be carved while every "
            "class keeps one)"
        )
        # A CIFAR-sized default (5000) meets a small dataset first: offer a number that fits.
        fits = min(max(n // 10, 1), int(room.sum()))
        offer = setting("validation_size", fits) + (" (a tenth of the train split)" if fits == n // 10 else "")
        if not fits:
            offer = f"{setting('validation_size', 0)} (no validation)"
        raise DatasetError(
            f"{setting('validation_size', validation_size)} {problem}. Choose a smaller validation size, e.g. {offer}."
        )
    take = np.minimum(np.floor(quota).astype(int), room)
    # Hand the rest to the classes with the largest fractional quota, one each per round, where there is room.
    order = np.argsort(-(quota - take), kind="stable")
    while take.sum() < validation_size:
        for i in order:
            if take.sum() < validation_size and take[i] < room[i]:
                take[i] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    val = np.sort(np.concatenate(chosen))
    train = np.setdiff1d(np.arange(n), val)
    return train, val


# ---------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------
class _Batch(dict):
    """One batch as ImageTensorDataset hands it out, whole, for BatchCollator. torch's default collate reads it as a
    list of samples (batch[0]) and failed with `KeyError: 0`: that read says which collate_fn to pass instead."""

    def __getitem__(self, key):
        if isinstance(key, int):
            raise TypeError(
                "ImageTensorDataset hands out whole batches of uint8 images, which hf_vit.data.BatchCollator augments "
                "and normalises; this DataLoader's collate_fn reads them as a list of samples. Pass "
                "collate_fn=BatchCollator(BatchAugment(mean, std, AugmentConfig())) (hf_vit.augment; the model's "
                "image_mean and image_std, e.g. hf_vit.CIFAR10_MEAN and CIFAR10_STD) to the DataLoader."
            )
        return super().__getitem__(key)


class ImageTensorDataset(torch.utils.data.Dataset):
    """Decoded images + labels. `__getitems__` lets the DataLoader fetch a whole batch with one indexing op.

    `augment=True` marks the training set: the collator augments its batches and only normalises the others.
    """

    def __init__(self, pixels: torch.Tensor, labels: torch.Tensor, indices=None, augment: bool = False):
        # The collator divides by 255 and normalises: float pixels would come out at hundreds of standard deviations.
        if not torch.is_tensor(pixels) or pixels.dtype != torch.uint8 or pixels.ndim != 4:
            got = f"{pixels.dtype} {tuple(pixels.shape)}" if torch.is_tensor(pixels) else type(pixels).__name__
            raise ValueError(f"ImageTensorDataset takes uint8 pixels (N, C, H, W), as decode_images gives, got {got}. "
                             "Convert them first, e.g. torch.from_numpy(images_nhwc).permute(0, 3, 1, 2).contiguous(), "
                             "or (pixels * 255).round().to(torch.uint8) for floats in [0, 1].")
        if not torch.is_tensor(labels) or labels.dtype != torch.int64 or tuple(labels.shape) != (len(pixels),):
            got = f"{labels.dtype} {tuple(labels.shape)}" if torch.is_tensor(labels) else type(labels).__name__
            raise ValueError(f"ImageTensorDataset takes int64 labels (N,) = ({len(pixels)},), one class id per image, "
                             f"got {got}. Pass torch.as_tensor(labels, dtype=torch.int64).")
        self.pixels = pixels  # (N_all, C, H, W) uint8, shared between subsets
        self.labels = labels  # (N_all,) int64
        self.indices = torch.arange(len(labels)) if indices is None else torch.as_tensor(indices, dtype=torch.long)
        self.augment = augment

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        j = self.indices[i]
        return {"pixel_values": self.pixels[j], "labels": self.labels[j], "index": int(i), "augment": self.augment}

    def __getitems__(self, batch_indices):
        idx = torch.as_tensor(batch_indices, dtype=torch.long)  # (B,) positions in this subset
        j = self.indices[idx]
        # One batch, not a list of samples: the collator receives it as it is.
        return _Batch(pixel_values=self.pixels[j], labels=self.labels[j], index=idx, augment=self.augment)


class BatchCollator:
    """Turns a fetched uint8 batch into model inputs.

    Training batches: augmentation seeded by (seed, the batch's indices) -- the same batch always gets the same
    pixels, which makes resuming exact. With `on_device=True` it only passes the uint8 batch and that seed on;
    `hf_vit.training.HfViTTrainer` then augments on the accelerator. Other batches: normalisation only.
    """

    KEYS = ("pixel_values", "labels", "index", "augment")  # what ImageTensorDataset hands out

    def __init__(self, augment: BatchAugment, seed: int = 42, on_device: bool = False):
        self.augment, self.seed, self.on_device = augment, seed, on_device

    def _check_keys(self, sample) -> None:
        """Another dataset's rows (a datasets.Dataset, processor outputs) lack the index and train/eval mark."""
        if not isinstance(sample, dict) or not set(self.KEYS) <= sample.keys():
            keys = sorted(sample) if isinstance(sample, dict) else type(sample).__name__
            raise ValueError(
                f"BatchCollator collates what hf_vit.data.ImageTensorDataset hands out (keys {list(self.KEYS)}), got "
                f"{keys}. Wrap uint8 images (N, C, H, W) and int64 labels (N,) as ImageTensorDataset(pixels, labels, "
                "augment=True) for training (augment=False to normalise only), or collate image processor outputs "
                "with transformers' DefaultDataCollator."
            )

    def __call__(self, batch):
        self._check_keys(batch[0] if isinstance(batch, (list, tuple)) and batch else batch)
        if isinstance(batch, (list, tuple)):  # fetched sample by sample (e.g. a wrapped dataset)
            batch = {
                "pixel_values": torch.stack([b["pixel_values"] for b in batch]),
                "labels": torch.stack([torch.as_tensor(b["labels"]) for b in batch]),
                "index": torch.tensor([int(b["index"]) for b in batch]),
                "augment": batch[0]["augment"],
            }
        images, labels = batch["pixel_values"], batch["labels"]
        with one_thread():
            if not batch["augment"]:
                return {"pixel_values": self.augment.normalize(images), "labels": labels}
            seed = seed_for_batch(self.seed, batch["index"].tolist())
            if self.on_device:
                return {"pixel_values": images, "labels": labels, "aug_seed": seed}  # an int: no device sync
            return self.augment(images, labels, seed)


@contextmanager
def one_thread():
    """Run small batch ops on one thread: on a busy 2-core machine, waking a second thread for a 32x32 batch
    costs more than the op (measured: crop+flip 65k img/s on 1 thread, ~4k img/s on 2 under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _check_num_labels(num_labels, names, label_column: str) -> int | None:
    """prepare_data's `num_labels` (library use only: the scripts take the dataset's) must fit the class names:
    more classes than names failed with an IndexError, fewer blamed the labels. Returns it as a plain int (numpy
    integers, e.g. a count read off an array, are whole numbers too)."""
    if num_labels is None:
        return None
    if isinstance(num_labels, bool) or not isinstance(num_labels, numbers.Integral) or num_labels < 1:
        raise DatasetError(f"num_labels must be a whole number of classes >= 1, got {num_labels!r}. Leave it out "
                           "(None) to take the count from the dataset.")
    num_labels = int(num_labels)
    if names and num_labels != len(names):
        raise DatasetError(
            f"num_labels={num_labels} disagrees with the {len(names)} class names of the dataset's {label_column!r} "
            "column: the labels would lie outside the model's classes, or classes go without names. Leave num_labels "
            "out (None) to take the dataset's classes."
        )
    return num_labels


@dataclass
class PreparedData:
    train: ImageTensorDataset
    validation: ImageTensorDataset | None
    test: ImageTensorDataset
    label_names: list[str] | None
    num_labels: int
    collator: BatchCollator
    image_format: str | None = None  # of the train split's images, for metrics.json and the card
    dataset_config: str | None = None  # the configuration loaded, for metrics.json and the card
    train_split_size: int | None = None  # the train split's images as loaded (before validation and caps), for the card
    # max_train/eval/test_samples not below the images they would sample (all taken): name -> the note saying so
    uncapped: dict[str, str] = field(default_factory=dict)


TEST_SAMPLE = 2  # sample_rows' stream for the test split: evaluate_model.py's sample of it draws the same images


def sample_rows(indices, cap: int | None, seed: int, stream: int) -> np.ndarray:
    """`cap` of `indices` drawn at random, in row order (all of them when `cap` is None or not smaller).

    A generator per `stream` (0 train, 1 validation, TEST_SAMPLE test): each sample depends only on the seed and
    its own cap (a data-scaling study that changes --max_train_samples still scores every run on the same
    validation and test images)."""
    if cap is None or cap >= len(indices):
        return np.asarray(indices)
    return np.sort(np.random.default_rng([seed, stream]).choice(indices, cap, replace=False))


def whole_not_sampled(cap: str, count: int, images: str, outcome: str = "all of them are used") -> str:
    """The note for a sample cap (`cap`: "--max_test_samples 1000") not below the images it would sample: a user who
    asked for a sample learns that there was none (evaluate_model.py --max_eval_samples, train.py --max_*_samples)."""
    return f"{cap} is not below the {count:,} {images}: {outcome}, not a sample."


def prepare_data(
    dataset_name: str,
    image_size,
    num_channels: int,
    image_mean,
    image_std,
    augment: AugmentConfig | None = None,
    num_labels: int | None = None,
    seed: int = 42,
    validation_size: int = 5000,
    dataset_config: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    train_split: str = "train",
    test_split: str = "test",
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    max_test_samples: int | None = None,
    augment_on_device: bool = False,
    validation_split: str | None = None,
    dataset_revision: str | None = None,
) -> PreparedData:
    """Everything training needs, from a dataset name to three datasets and a collator.

    `num_labels=None` takes the class count from the dataset (its ClassLabel names, else the largest label + 1).
    Validation is carved from the train split (`validation_size`, stratified) unless `validation_split` names
    a split of its own. `dataset_revision` pins a Hub dataset's branch, tag or commit.
    """
    for argument, value in (("max_train_samples", max_train_samples), ("max_eval_samples", max_eval_samples),
                            ("max_test_samples", max_test_samples)):
        if value is not None and value < 1:
            hint = f" ({setting('validation_size', 0)} trains without validation)" if argument == "max_eval_samples" else ""
            raise DatasetError(
                f"{setting(argument)} must be at least 1, got {value}; leave it out to use every image{hint}."
            )
    # counted as BatchAugment reads them (a 0-d tensor or array is one value: len() refused it)
    counts = [torch.as_tensor(values, dtype=torch.float32).numel() for values in (image_mean, image_std)]
    if counts != [num_channels, num_channels]:
        # The collator normalises channel by channel: a mismatch passed here and failed at the first training batch.
        raise DatasetError(
            f"{setting('image_mean')} and {setting('image_std')} need one value per channel "
            f"({setting('num_channels', num_channels)}), got {counts[0]} and {counts[1]}. Pass the statistics of "
            f"{num_channels}-channel images (the model's image processor's image_mean and image_std), or the "
            "num_channels they were computed for."
        )
    height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    pad = (augment or AugmentConfig()).pad  # BatchAugment's default without one
    if pad >= min(height, width):
        # The crop's window starts anywhere in 0..2 * pad: from pad = side on, it can miss the image entirely.
        raise DatasetError(
            f"{setting('pad', pad)} pads each side of the {height}x{width} images by {pad} pixels, as much as their "
            "shorter side or more: a random crop could then hold only padding, a black image trained with its label. "
            "Pad by less than the side, e.g. "
            f"{setting('pad', max(1, min(height, width) // 8))} (an eighth of it, as CIFAR-10's 4 is of 32), or "
            f"{setting('pad', 0)} for no crop."
        )
    if validation_split is not None and validation_split in (train_split, test_split):
        raise DatasetError(
            f"{setting('validation_split', validation_split)} is also the "
            f"{'train' if validation_split == train_split else 'test'} split: checkpoints must be chosen on images that "
            "are neither trained on nor tested. Name another split, or leave it out to carve validation images from the "
            f"train split ({setting('validation_size')})."
        )
    dataset_dict = load_dataset(dataset_name, dataset_config, dataset_revision=dataset_revision,
                                label_column=label_column)
    train_ds = get_split(dataset_dict, train_split, dataset_name)
    image_column, label_column = find_columns(train_ds, image_column, label_column)
    check_image_column(train_ds, image_column, f"the {train_split!r} split")
    # The test accuracy (metrics.json, the card) must be of labelled images the model never trained on.
    held_out = test_split != train_split and test_split in dataset_dict
    if held_out:
        find_columns(dataset_dict[test_split], image_column, label_column)  # same names in the test split
    unlabelled = held_out and unlabelled_reason(dataset_dict[test_split], label_column,
                                                f"the {test_split!r} split of {dataset_name!r}")
    if not held_out or unlabelled:
        import datasets

        stratify = (f", stratify_by_column={label_column!r}"  # only a ClassLabel column can be stratified by
                    if isinstance(train_ds.features[label_column], datasets.ClassLabel) else "")
        test_size = "0.1"
        if stratify:  # datasets' stratified split needs a test image and a train image of every class present
            classes = len(np.unique(train_ds.with_format("numpy")[label_column]))
            if math.ceil(0.1 * len(train_ds)) < classes:
                test_size, stratify = (str(classes), stratify) if len(train_ds) >= 2 * classes else ("0.1", "")
        pinned = f", revision={dataset_revision!r}" if dataset_revision is not None else ""  # the same files
        make_test = (
            "a dataset without a held-out test split needs one made from its train split first, e.g. "
            f"`d = datasets.load_dataset({', '.join(map(repr, filter(None, (str(dataset_name), dataset_config))))}"
            f"{pinned})"
            f"[{train_split!r}].train_test_split(test_size={test_size}, seed=0{stratify})`, "
            "then `d['train'].to_parquet('new/train.parquet')`, `d['test'].to_parquet('new/test.parquet')` and "
            f"{setting('dataset_name', 'new', quote=False)}"
        )
        others = sorted(set(dataset_dict) - {train_split, validation_split, test_split})
        choose = f"Choose one of {others} with {setting('test_split')}, or: {make_test}" if others else make_test[0].upper() + make_test[1:]
        problem = unlabelled or (
            f"{setting('test_split', test_split)} is also the train split: the test accuracy would score images the model "
            "trained on" if test_split == train_split else
            f"the dataset {dataset_name!r} has no split {test_split!r}; its splits are {sorted(dataset_dict)}"
        )
        raise DatasetError(f"{problem}. {choose}.")
    test_ds = get_split(dataset_dict, test_split, dataset_name)
    names = label_names(train_ds, label_column, train_split)
    num_labels = _check_num_labels(num_labels, names, label_column)
    if num_labels is None:
        if names:
            num_labels = len(names)
        else:
            num_labels = int(np.max(_label_array(train_ds, label_column, train_split))) + 1

    train_labels = get_labels(train_ds, label_column, num_labels, train_split, names)
    check_two_classes(train_labels, names, train_split)
    test_labels = get_labels(test_ds, label_column, num_labels, test_split, names)
    train_pixels = decode_images(train_ds, image_column, image_size, num_channels, split=train_split)
    warn_downscaled(train_ds, image_column, image_size, train_split)
    test_pixels = decode_images(test_ds, image_column, image_size, num_channels, split=test_split)

    if validation_split is not None:
        val_ds = get_split(dataset_dict, validation_split, dataset_name, "validation_split")
        find_columns(val_ds, image_column, label_column)
        unlabelled = unlabelled_reason(val_ds, label_column, f"the {validation_split!r} split of {dataset_name!r}",
                                       "choose checkpoints")
        if unlabelled:  # dropping its empty rows, as check_no_empty_cells advises, would leave none
            raise DatasetError(
                f"{unlabelled}. Name a labelled split with "
                f"{setting('validation_split')}, or leave it out to carve validation images from the train split "
                f"({setting('validation_size')})."
            )
        val_labels = get_labels(val_ds, label_column, num_labels, validation_split, names)
        val_pixels = decode_images(val_ds, image_column, image_size, num_channels, split=validation_split)
        train_idx, val_idx = np.arange(len(train_labels)), np.arange(len(val_labels))
    else:
        unused = [s for s in VALIDATION_SPLITS if s in dataset_dict and s not in (train_split, test_split)]
        if unused:
            how = (f"validation images are carved from {train_split!r} ({setting('validation_size', validation_size)})"
                   if validation_size > 0 else f"training runs without validation ({setting('validation_size', 0)})")
            logger.warning(
                "the dataset has a %r split, which is not used: %s. Pass %s to choose checkpoints on it instead.",
                unused[0], how, setting("validation_split", unused[0], quote=False),
            )
        train_idx, val_idx = stratified_split(train_labels.numpy(), validation_size, seed)
        val_pixels, val_labels = train_pixels, train_labels

    test_idx = np.arange(len(test_labels))
    uncapped = {
        name: whole_not_sampled(setting(name, cap), len(rows), images)
        for name, cap, rows, images in (
            ("max_train_samples", max_train_samples, train_idx, "training images"),
            ("max_eval_samples", max_eval_samples, val_idx, "validation images"),
            ("max_test_samples", max_test_samples, test_idx, f"images of the {test_split!r} split"),
        )
        if cap is not None and cap >= len(rows) > 0  # no validation images: nothing was asked of this cap
    }
    train_idx = sample_rows(train_idx, max_train_samples, seed, 0)
    warn_untrained_classes(train_labels[train_idx], num_labels, names)
    val_idx = sample_rows(val_idx, max_eval_samples, seed, 1)
    test_idx = sample_rows(test_idx, max_test_samples, seed, TEST_SAMPLE)

    return PreparedData(
        train=ImageTensorDataset(train_pixels, train_labels, train_idx, augment=True),
        validation=ImageTensorDataset(val_pixels, val_labels, val_idx) if len(val_idx) else None,
        test=ImageTensorDataset(test_pixels, test_labels, test_idx),
        label_names=names,
        num_labels=num_labels,
        collator=BatchCollator(BatchAugment(image_mean, image_std, augment), seed=seed, on_device=augment_on_device),
        image_format=image_format(train_ds, image_column),
        dataset_config=config_name(test_ds),
        train_split_size=len(train_ds),
        uncapped=uncapped,
    )
