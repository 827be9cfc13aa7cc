"""A datasets cache of its own for each local dataset folder (and each state of its files).

datasets 5.2 names the Arrow cache of a local folder whose README has a `configs:` block after the folder's
name and the config only, not its files: another folder with the same name, or the same folder after a file
was fixed or replaced, silently loads the rows cached the first time (checked: two folders `tiny/` with 7 and
9 test rows both load 7). Passing `cache_dir=local_cache_dir(folder)` keys the cache by the folder's path and
its files' sizes and modification times, so changed files are read again:

    <HF_DATASETS_CACHE>/hf_vit-local/<hash of the folder's path>/<hash of its files>/

Once a state of a folder has loaded, `prune_other_states` removes the folder's other states (each a whole
Arrow copy plus the decoded pixels, hundreds of MB for CIFAR-10), which no load can reach again, once nothing
has been written in them for an hour: another process may still be building or decoding one.
"""

import hashlib
import os
import shutil
import time
from pathlib import Path

IDLE_BEFORE_PRUNE_S = 3600


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


def _last_write(folder: Path) -> float:
    """The newest modification time of anything in `folder` (a few Arrow shards, JSON and .npy files)."""
    newest = folder.stat().st_mtime
    for root, dirs, files in os.walk(folder):
        for name in (*dirs, *files):
            try:
                newest = max(newest, os.stat(os.path.join(root, name)).st_mtime)
            except OSError:  # removed meanwhile
                pass
    return newest


def prune_other_states(cache_dir, idle_s: float = IDLE_BEFORE_PRUNE_S) -> None:
    """Remove the caches of the same folder's other file states, once untouched for `idle_s` seconds: a state
    another process is still building (a slow first load) or decoding into is written to all the while."""
    cache_dir = Path(cache_dir)
    now = time.time()
    for other in cache_dir.parent.iterdir():
        if other != cache_dir and other.is_dir() and now - _last_write(other) > idle_s:
            shutil.rmtree(other, ignore_errors=True)
    # hf_vit 0.1's layout, one folder per state without the folder level (<hash>/data/...), pruned the same way
    for old in cache_dir.parent.parent.iterdir():
        if old.is_dir() and not all(_is_state(p) for p in old.iterdir()) and now - _last_write(old) > idle_s:
            shutil.rmtree(old, ignore_errors=True)


def _is_state(path: Path) -> bool:
    return path.is_dir() and len(path.name) == 16 and all(c in "0123456789abcdef" for c in path.name)
