"""Output folders written whole or not at all.

The export and import scripts write a complete model folder (config, weights, processor, card).
They write into a staging folder beside the target, with the target's name (the card names the
model after its folder), and move it into place only once every file is written: a failure halfway
leaves the old folder, or nothing, never half a model. `--overwrite` replaces the old folder only
after the new one is complete, and never when the old one holds an input of the same run.
"""

import os
import shutil
import signal
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path


def check_output_folder(output_dir, *, overwrite: bool, inputs=(), flag: str = "--overwrite") -> None:
    """Raise before any work when `output_dir` cannot take a new folder; the message names the fix."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(f"{output_dir} is a file, not a folder. Pass the path of a folder for the output.")
    if not (output_dir.is_dir() and any(output_dir.iterdir())):
        return
    if not overwrite:
        raise FileExistsError(f"{output_dir} exists and is not empty. Choose another folder or pass {flag}.")
    target = output_dir.resolve()
    for item in inputs:
        source = Path(item).resolve()
        if source == target or target in source.parents:
            raise ValueError(
                f"{flag} would delete {item}, which lies inside {output_dir}, the output folder. "
                "Choose an output folder that does not hold the inputs."
            )


@contextmanager
def staged_folder(output_dir, *, overwrite: bool, inputs=(), flag: str = "--overwrite"):
    """Yield an empty folder named like `output_dir` to write into; it replaces `output_dir` on success.

    On an exception the staging folder is removed and `output_dir` is left as it was.
    """
    check_output_folder(output_dir, overwrite=overwrite, inputs=inputs, flag=flag)
    output_dir = Path(output_dir).resolve()
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    # Same parent, so the final move is a rename on one filesystem, not a copy.
    staging_root = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.staging-", dir=output_dir.parent))
    # A plain `kill` (SIGTERM) ends Python without running `finally`, which would leave the hidden staging
    # folder behind: while staging, it exits through SystemExit instead (status 143, as the signal would).
    own_handler = threading.current_thread() is threading.main_thread()  # signal.signal works only there
    if own_handler:
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        staged = staging_root / output_dir.name
        staged.mkdir()
        yield staged
        if output_dir.exists():
            os.replace(output_dir, staging_root / "replaced")  # removed with the staging folder below
        os.replace(staged, output_dir)
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)
        if own_handler:  # None: a handler set outside Python, which the default stands for
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


__all__ = ["check_output_folder", "staged_folder"]
