"""A datasets cache of its own for each local dataset folder (and each state of its files).

datasets 5.2 names the Arrow cache of a local folder whose README has a `configs:` block after the folder's
name and the config only, not its files: another folder with the same name, or the same folder after a file
was fixed or replaced, silently loads the rows cached the first time (checked: two folders `tiny/` with 7 and
9 test rows both load 7). Passing `cache_dir=local_cache_dir(folder)` keys the cache by the folder's path and
its files' sizes and modification times, so changed files are read again:

    <HF_DATASETS_CACHE>/hf_vit-local/<hash of the folder's path>/<hash of its files>/

Once a newer state of a folder has loaded, `prune_other_states` removes the folder's older states (each a
whole Arrow copy plus the decoded pixels, hundreds of MB for CIFAR-10), which no load can reach again.
"""

import hashlib
import shutil
from pathlib import Path


def local_cache_dir(folder) -> str:
    """The cache folder of `folder` as its files are now, for `load_dataset(..., cache_dir=)`."""
    from datasets import config

    folder = Path(folder).resolve()
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            stat = path.stat()
            digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    by_path = hashlib.sha256(str(folder).encode()).hexdigest()[:16]
    return str(Path(config.HF_DATASETS_CACHE) / "hf_vit-local" / by_path / digest.hexdigest()[:16])


def prune_other_states(cache_dir) -> None:
    """Remove the caches of the same folder's earlier file states (best effort: another process may hold one)."""
    cache_dir = Path(cache_dir)
    for other in cache_dir.parent.iterdir():
        if other != cache_dir and other.is_dir():
            shutil.rmtree(other, ignore_errors=True)
