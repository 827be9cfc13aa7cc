"""Real signals at a chosen instant of a real script: a sitecustomize in a temp dir, first on PYTHONPATH, replaces one
function of the script's process with one that prints STALLED and sleeps (or stalls an import: STALL_IMPORT); the test
then signals that process."""

import os
import signal
import subprocess

STALL = """
import importlib, time
def stalled(*args, **kwargs):
    print("STALLED", flush=True)
    time.sleep(600)
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
            time.sleep(600)
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
    # SIGINT at its default: a shell running the tests in the background ignores it, and the child would inherit that
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONPATH=f"{site}{os.pathsep}{root}", **env),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    while "STALLED" not in proc.stdout.readline():
        assert proc.poll() is None, proc.communicate()[0][-3000:]
    return proc


def signal_and_wait(proc: subprocess.Popen, sig) -> str:
    """Send `sig` and wait for the process to end; returns the rest of its output."""
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=120)
    return output
