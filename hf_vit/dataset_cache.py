"""A datasets cache of its own for each local dataset folder (and each state of its files).

datasets 5.2 names the Arrow cache of a local folder whose README has a `configs:` block after the folder's
name and the config only, not its files: another folder with the same name, or the same folder after a file
was fixed or replaced, silently loads the rows cached the first time (checked: two folders `tiny/` with 7 and
9 test rows both load 7). Passing `cache_dir=local_cache_dir(folder)` keys the cache by the folder's path and
its files' sizes and modification times, so changed files are read again:

    <HF_DATASETS_CACHE>/hf_vit-local/<hash of the folder's path>/<hash of its files>/

Each state is a whole Arrow copy plus the decoded pixels (hundreds of MB for CIFAR-10), so `tidy` removes those
no load can reach again, once nothing has been written in them for an hour (another process may still be
building or decoding one): the folder's other states, and the caches of folders that are gone (a tmp folder, a
moved copy), known by the folder's path that `record_source` keeps beside its states.
"""

import contextlib
import hashlib
import os
import shutil
import time
from pathlib import Path
from stat import S_ISDIR

from .output_folder import replace_file

IDLE_BEFORE_PRUNE_S = 3600
UNRECORDED_IDLE_S = 7 * 24 * 3600  # see prune_other_folders
SOURCE = "source-folder"  # in <hash of the folder's path>/: the folder's path
SWEPT = ".swept"  # in hf_vit-local/: its time is hf_vit-local's as of the last sweep; it holds when the next is due
SWEEP_EVERY_S = 24 * 3600  # see prune_other_folders


def local_cache_dir(folder) -> str:
    """The cache folder of `folder` as its files are now, for `load_dataset(..., cache_dir=)`."""
    from datasets import config

    folder = Path(folder).resolve()
    digest = hashlib.sha256()
    for relative, stat in sorted(folder_files(folder)):
        digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    by_path = hashlib.sha256(str(folder).encode()).hexdigest()[:16]
    return str(Path(config.HF_DATASETS_CACHE) / "hf_vit-local" / by_path / digest.hexdigest()[:16])


def folder_files(folder: Path):
    """(relative path, stat) of each file under `folder` as datasets reads them: through linked folders too (a
    `plain_text -> /data/cifar10/plain_text` link; Path.rglob does not follow it, so changed data behind it kept
    the old key), each real folder once (a link back up would loop), hidden entries left out."""
    seen = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            path = Path(root, name)
            if name.startswith(".") or not path.is_file():
                continue
            yield path.relative_to(folder).as_posix(), path.stat()


def record_source(cache_dir, folder) -> None:
    """Keep `folder`'s path beside its states, once datasets has written there (a refused load may write nothing),
    whole or not at all: a sweep reading half a path would take the folder for gone."""
    by_path = Path(cache_dir).parent
    partial = by_path / f".{SOURCE}-{os.getpid()}"
    try:
        if not by_path.is_dir() or (by_path / SOURCE).exists():
            return
        partial.write_bytes(os.fsencode(Path(folder).resolve()))
        os.replace(partial, by_path / SOURCE)
    except OSError:  # e.g. a full disk (the load says so); unrecorded, the cache goes after UNRECORDED_IDLE_S
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)


def tidy(cache_dir, built: bool, idle_s: float = IDLE_BEFORE_PRUNE_S) -> None:
    """After a load from `cache_dir`: remove the folder's other states, and the caches of folders that are gone.
    The second reads every cache folder there (5,000 of them on a test machine, before they were removed), so it
    runs only when this load `built` its state (slower anyway: an Arrow copy is written) or hf_vit-local itself
    changed since the last sweep (a folder's first load elsewhere, or hf_vit 0.1's layout written there), or a
    cache the last sweep spared for being written lately may be idle now, or a day passed (a folder is deleted
    without a trace in hf_vit-local): a warm load stays a few stats, whatever the number of folders."""
    prune_other_states(cache_dir, idle_s)
    root = Path(cache_dir).parent.parent
    if built or not _swept(root):
        prune_other_folders(root, idle_s)


def prune_other_states(cache_dir, idle_s: float = IDLE_BEFORE_PRUNE_S) -> None:
    """Remove the caches of the same folder's other file states, once untouched for `idle_s` seconds: a state
    another process is still building (a slow first load) or decoding into is written to all the while."""
    cache_dir = Path(cache_dir)
    now = time.time()
    for other in cache_dir.parent.iterdir():
        if other != cache_dir and other.is_dir() and _idle(other, idle_s, now):
            shutil.rmtree(other, ignore_errors=True)


def prune_other_folders(root, idle_s: float = IDLE_BEFORE_PRUNE_S, unrecorded_idle_s: float = UNRECORDED_IDLE_S):
    """Remove, from `root` (hf_vit-local), once untouched for `idle_s` seconds, the caches of folders that are gone
    and hf_vit 0.1's (one folder per state, <hash>/<dataset>/..., which no load reaches); a cache without the
    folder's path (written before it was recorded) once untouched for `unrecorded_idle_s`."""
    root = Path(root)
    now = time.time()
    spared = False  # a cache kept only because it was written lately: the sweep is due again once it may be idle
    with os.scandir(root) as entries:
        folders = [entry for entry in entries if entry.is_dir(follow_symlinks=False)]
    for entry in folders:
        # A folder whose own time is within the hour (a state or the record added then) is not idle: one stat
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime <= idle_s:
                spared = True
                continue
        except OSError:  # removed meanwhile
            continue
        source = _recorded_source(entry.path)
        if source is not None and not _gone(source):
            continue
        # An unrecorded cache (written before paths were recorded) belongs to an unknown folder (its name is a
        # hash); every load records its folder, so this one's has not loaded since. It may still exist (a CIFAR-10
        # copy, slow to decode again), hence the longer wait; removing it costs a rebuild only.
        unrecorded = source is None and not _old_layout(entry.path)
        if _idle(entry.path, unrecorded_idle_s if unrecorded else idle_s, now):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            spared = True
    # Without a due time a cache spared now (a test's tmp folder, gone minutes ago), or one whose folder is deleted
    # later (nothing in hf_vit-local changes then), would wait for the next load that builds a state, which a user
    # loading only CIFAR-10 never makes: it stayed for good. So one warm load sweeps again (tens of ms with thousands
    # of folders) an hour on while caches wait, else a day on.
    _mark_swept(root, now + (idle_s if spared else SWEEP_EVERY_S))


def _recorded_source(folder: str) -> str | None:
    try:  # os.open, not pathlib: a sweep reads thousands of these
        record = os.open(os.path.join(folder, SOURCE), os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.fsdecode(os.read(record, 1 << 16)) or None  # a path is at most 4 kB (PATH_MAX)
    except OSError:
        return None
    finally:
        os.close(record)


def _gone(source: str) -> bool:
    try:
        return not S_ISDIR(os.stat(source).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:  # e.g. a folder we may not read: not known to be gone
        return False


def _swept(root: Path) -> bool:
    """Nothing was added to or removed from `root` since the last sweep (the marker carries root's time then), and
    the next sweep is not due (the time the marker holds)."""
    try:
        if os.stat(root / SWEPT).st_mtime_ns != os.stat(root).st_mtime_ns:
            return False
        marker = os.open(root / SWEPT, os.O_RDONLY)
        try:
            due = os.read(marker, 64).strip()
        finally:
            os.close(marker)
        now = time.time()
        # A sweep is never due more than SWEEP_EVERY_S on: a time further ahead (the clock set back since, a marker
        # written by a machine whose clock runs ahead, a corrupt "inf") would stop warm loads sweeping until then.
        # A minute's slack: the marker holds whole seconds, rounded up or down.
        return now < float(due) <= now + SWEEP_EVERY_S + 60
    except (OSError, ValueError):  # no marker, or an unreadable or empty one (from before it held a time): sweep
        return False


def _mark_swept(root: Path, due: float) -> None:
    marker = root / SWEPT
    try:
        # A new file in its place, not one rewritten: another user's marker (a cache shared by a group) may not be
        # written to, and unmarked every load would sweep.
        replace_file(marker, lambda tmp: tmp.write_text(f"{due:.0f}"))
        now = os.stat(root).st_mtime_ns  # the replace changed root's time: read it after
        os.utime(marker, ns=(now, now))
    except OSError:  # unmarked: the next load sweeps again
        pass


def _idle(folder, idle_s: float, now: float) -> bool:
    """Nothing in `folder` (a few Arrow shards, JSON and .npy files) written for `idle_s` seconds; the folder's own
    time first, and the walk stops at the first recent write."""
    since = now - idle_s
    try:
        if os.stat(folder).st_mtime > since:
            return False
    except OSError:  # removed meanwhile
        return False
    for root, dirs, files in os.walk(folder):
        for name in (*dirs, *files):
            try:
                if os.stat(os.path.join(root, name)).st_mtime > since:
                    return False
            except OSError:  # removed meanwhile
                pass
    return True


def _old_layout(folder: str) -> bool:
    """hf_vit 0.1's <hash>/<dataset>/... rather than <hash of the path>/<hash of the files>/..."""
    try:
        with os.scandir(folder) as entries:
            return any(entry.is_dir() and not _is_state_name(entry.name) for entry in entries)
    except OSError:  # removed meanwhile
        return False


def _is_state_name(name: str) -> bool:
    return len(name) == 16 and all(c in "0123456789abcdef" for c in name)
