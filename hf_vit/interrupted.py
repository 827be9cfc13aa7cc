"""Ctrl-C in a script (evaluate_model.py, the export, the import, visualize.py, the push, the benchmarks): one line
saying what the run left, and the shell's status for it, not a KeyboardInterrupt traceback; a kill that exits through
the clean-up (sigterm_exits) says so too. train.py's own answer (which also names the checkpoint to resume from) is in
hf_vit.training.main."""

import signal
import sys
from pathlib import Path

from .output_folder import SIGTERM_EXIT

INTERRUPTED_EXIT = 128 + signal.SIGINT  # 130: what a shell reports for a process Ctrl-C ended


def run_script(script: str, main, left) -> int | str | None:
    """`main()`'s result, for sys.exit; on Ctrl-C, `<script>: interrupted; <left>` on stderr and 130, and on a kill
    inside sigterm_exits, `<script>: stopped by SIGTERM (kill); <left>` and 143 (as train.py). `left` says what the run
    left: a string, or a function called only then, once the `finally` and `with` exits have cleaned up, so that it
    may look at the disk. (A kill elsewhere ends the script at once, as Python's default does: nothing to clean up.)"""
    try:
        return main()
    except KeyboardInterrupt:
        stopped, status = "interrupted", INTERRUPTED_EXIT
    except SystemExit as err:
        if err.code != SIGTERM_EXIT:  # the script's own exits: `error: ...` lines, statuses
            raise
        stopped, status = "stopped by SIGTERM (kill)", SIGTERM_EXIT
    print(f"{script}: {stopped}; {left() if callable(left) else left}", file=sys.stderr, flush=True)
    return status


def results_left(folder, marker: str, what: str) -> str:
    """What an interrupted run left in `folder`, where it writes `marker` last (so that a folder with one is whole)."""
    folder = Path(folder).expanduser()
    if (folder / marker).is_file():
        return f"{folder} holds the earlier {what} as it was ({marker}); rerun the same command to replace it."
    if folder.is_dir():
        return (f"{folder} holds no complete {what} (no {marker}: any files there are not a whole one). Rerun the "
                "same command.")
    return f"nothing was written ({folder} does not exist). Rerun the same command."


# benchmark.py and benchmark_input.py print figures only (the end-to-end run trains in a temporary folder)
NOTHING_LEFT = "the benchmark writes no files of its own, so nothing is left over: rerun the same command for its figures."
