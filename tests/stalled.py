"""Real signals at a chosen instant of a real script: a sitecustomize in a temp dir, first on PYTHONPATH, replaces one
function of the script's process with one that prints STALLED and sleeps (or stalls an import: STALL_IMPORT); the test
then signals that process."""

import os
import signal
import subprocess
import threading
from pathlib import Path

# The stalls sleep 0.1 s at a time, not 600 s in one call: a signal whose handler ran outside that one sleep (just before
# it began, or on another thread) never woke it, and Python acted on the signal only when it ended.
STALL = """
import importlib, time
def stalled(*args, **kwargs):
    print("STALLED", flush=True)
    for _ in range(6000):
        time.sleep(0.1)
setattr(importlib.import_module({module!r}), {name!r}, stalled)
"""


# The first import of one of `names` prints STALLED and sleeps (before any of its code runs): a script still loading
# its libraries.
STALL_IMPORT = """
import sys, time
class Stall:
    def find_spec(self, name, path=None, target=None):
        if name in {names!r}:
            sys.meta_path.remove(self)
            print("STALLED", flush=True)
            for _ in range(6000):
                time.sleep(0.1)
sys.meta_path.insert(0, Stall())
"""


def start_stalled(tmp_path, cmd, stall_at: str, root, **env) -> subprocess.Popen:
    """Start `cmd` (cwd `root`, which is also on PYTHONPATH) with `stall_at` ("package.module.function") stalled;
    return once the process has reached it."""
    module, name = stall_at.rsplit(".", 1)
    return start_with_site(tmp_path, cmd, STALL.format(module=module, name=name), root, **env)


def start_with_site(tmp_path, cmd, sitecustomize: str, root, **env) -> subprocess.Popen:
    """Start `cmd` as start_stalled does, with this sitecustomize; return once it has printed STALLED."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(sitecustomize)
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **WATCHED_ENV, "PYTHONPATH": f"{site}{os.pathsep}{root}", **env},
                            preexec_fn=sigint_at_default)  # fmt: skip
    read_until(proc, "STALLED", "its stall")
    return proc


def signal_and_wait(proc: subprocess.Popen, sig) -> str:
    """Send `sig` and wait for the process to end; returns the rest of its output."""
    proc.send_signal(sig)
    return ended(proc, f"{signal.Signals(sig).name} it was sent")


# A child that is sent a real signal prints every thread's Python stack on SIGABRT (faulthandler), which `ended` and
# `read_until` send one that hangs: the failure then says where it stood.
WATCHED_ENV = {"PYTHONFAULTHANDLER": "1"}
ENDED_WITHIN = 60  # s: a signalled child cleans up and exits in a few seconds, loaded machine included
REACHED_WITHIN = 300  # s: a child's start (torch, transformers) and its work up to the awaited point, loaded


def sigint_at_default():
    """preexec_fn of a child that is sent a real Ctrl-C: SIGINT at its default, so that Python answers it with
    KeyboardInterrupt. A shell running the tests in the background without job control (`pytest ... &` in a script,
    nohup) ignores SIGINT, the child would inherit that, and sleep through the test's Ctrl-C (`timeout` resets it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def read_until(proc: subprocess.Popen, marker: str, what: str, within: float = REACHED_WITHIN) -> str:
    """Read `proc`'s output up to the line holding `marker` (what the child prints on reaching `what`) and return that
    line. A child that ends first, or has not got there within `within` s, fails the test, with its output (and, for
    one that hung, where its threads stood)."""
    hung = []

    def stop():
        hung.append(_dispositions(proc.pid))
        _abort(proc)  # the pipe closes, so the readline below returns

    watchdog = threading.Timer(within, stop)
    watchdog.daemon = True
    watchdog.start()
    seen = []
    try:
        while marker not in (line := proc.stdout.readline()):
            seen.append(line)
            if not line and proc.poll() is not None:
                output = "".join(seen) + proc.communicate()[0]
                if hung:
                    raise AssertionError(f"the child did not reach {what} ({marker!r}) within {within:.0f} s "
                                         f"({hung[0]}); its output, with its threads' stacks:\n{output[-6000:]}")
                raise AssertionError(f"the child ended (status {proc.returncode}) before {what} ({marker!r}): "
                                     f"{output[-3000:]}")
    finally:
        watchdog.cancel()
    return line


def ended(proc: subprocess.Popen, what: str, within: float = ENDED_WITHIN) -> str:
    """Wait for `proc` to end after `what` ("SIGINT it was sent"); returns the rest of its output (stdout, and stderr
    where it has its own pipe, appended). One still running after `within` s fails the test at once, saying what was
    awaited, how the child handled SIGINT and SIGTERM then, and where its threads stood (a stuck handler, a signal it
    ignores), with its output; it is stopped, not left behind."""
    try:
        output, errors = proc.communicate(timeout=within)
        return output + (errors or "")
    except subprocess.TimeoutExpired:
        pass
    dispositions = _dispositions(proc.pid)
    _abort(proc)
    output, errors = proc.communicate()
    raise AssertionError(f"the child did not end within {within:.0f} s of {what} ({dispositions}); its output, with "
                         f"its threads' stacks:\n{(output + (errors or ''))[-6000:]}")


def _abort(proc: subprocess.Popen) -> None:
    """SIGABRT (faulthandler prints every thread's stack), then SIGKILL for one that outlives it."""
    try:
        proc.send_signal(signal.SIGABRT)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _dispositions(pid: int) -> str:
    """How the process handles SIGINT and SIGTERM: ignored, caught (a handler), blocked, or at the default."""
    try:
        masks = dict(line.split(":\t") for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                     if line.startswith(("SigBlk", "SigIgn", "SigCgt")))  # fmt: skip
    except OSError:  # no /proc (macOS), or it is gone
        return "its signal handling unknown"
    said = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        bit = 1 << (sig - 1)
        how = [word for key, word in (("SigIgn", "ignored"), ("SigCgt", "caught"), ("SigBlk", "blocked"))
               if int(masks.get(key, "0"), 16) & bit]  # fmt: skip
        said.append(f"{sig.name} {' and '.join(how) or 'at its default'}")
    return ", ".join(said)
