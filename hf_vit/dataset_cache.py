"""A datasets cache of its own for each local dataset folder (and each state of its files).

datasets 5.2 names the Arrow cache of a local folder whose README has a `configs:` block after the folder's
name and the config only, not its files: another folder with the same name, or the same folder after a file
was fixed or replaced, silently loads the rows cached the first time (checked: two folders `tiny/` with 7 and
9 test rows both load 7). Passing `cache_dir=local_cache_dir(folder)` keys the cache by the folder's path and
its files' sizes and modification times, so changed files are read again:

    <HF_DATASETS_CACHE>/hf_vit-local/<hash of the folder's path>/<hash of its files>/

Once a state of a folder has loaded, `tidy` removes the folder's other states (each a whole Arrow copy plus the
decoded pixels, hundreds of MB for CIFAR-10), which no load can reach again, once nothing has been written in
them for an hour: another process may still be building or decoding one.
"""

import hashlib
import os
import shutil
import time
from pathlib import Path

IDLE_BEFORE_PRUNE_S = 3600
SWEPT = ".swept"  # in hf_vit-local/: its time is hf_vit-local's as of the last sweep


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


def tidy(cache_dir, built: bool, idle_s: float = IDLE_BEFORE_PRUNE_S) -> None:
    """After a load from `cache_dir`: remove the folder's other states, and hf_vit 0.1's caches.
    The second reads every cache folder there (5,000 of them on a test machine, before they were removed), so it
    runs only when this load `built` its state (slower anyway: an Arrow copy is written) or hf_vit-local itself
    changed since the last sweep (a folder's first load elsewhere, or hf_vit 0.1's layout written there): a warm
    load stays a few stats, whatever the number of folders."""
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


def prune_other_folders(root, idle_s: float = IDLE_BEFORE_PRUNE_S) -> None:
    """Remove, from `root` (hf_vit-local), once untouched for `idle_s` seconds, hf_vit 0.1's caches (one folder
    per state, <hash>/<dataset>/..., which no load reaches)."""
    root = Path(root)
    now = time.time()
    with os.scandir(root) as entries:
        folders = [entry for entry in entries if entry.is_dir(follow_symlinks=False)]
    for entry in folders:
        # A folder whose own time is within the hour (a state added then) is not idle: one stat
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime <= idle_s:
                continue
        except OSError:  # removed meanwhile
            continue
        if _old_layout(entry.path) and _idle(entry.path, idle_s, now):
            shutil.rmtree(entry.path, ignore_errors=True)
    _mark_swept(root)


def _swept(root: Path) -> bool:
    """Nothing was added to or removed from `root` since the last sweep (the marker carries root's time then)."""
    try:
        return os.stat(root / SWEPT).st_mtime_ns == os.stat(root).st_mtime_ns
    except OSError:
        return False


def _mark_swept(root: Path) -> None:
    marker = root / SWEPT
    try:
        marker.touch()  # creating it changes root's time: read that after
        now = os.stat(root).st_mtime_ns
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
