"""A datasets cache of its own for each local dataset folder (and each state of its files).

datasets 5.2 names the Arrow cache of a local folder whose README has a `configs:` block after the folder's
name and the config only, not its files: another folder with the same name, or the same folder after a file
was fixed or replaced, silently loads the rows cached the first time (checked: two folders `tiny/` with 7 and
9 test rows both load 7). Passing `cache_dir=local_cache_dir(folder)` keys the cache by the folder's path and
its files' sizes and modification times, so changed files are read again.
"""

import hashlib
from pathlib import Path


def local_cache_dir(folder) -> str:
    """`<HF_DATASETS_CACHE>/hf_vit-local/<hash of the folder's path and files>` for `load_dataset(..., cache_dir=)`."""
    from datasets import config

    folder = Path(folder).resolve()
    digest = hashlib.sha256(str(folder).encode())
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            stat = path.stat()
            digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return str(Path(config.HF_DATASETS_CACHE) / "hf_vit-local" / digest.hexdigest()[:16])
