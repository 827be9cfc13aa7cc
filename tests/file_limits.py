"""A full disk, without filling one: a file-size limit (RLIMIT_FSIZE, what `ulimit -f` sets) in this process refuses
every write past it (EFBIG), as a full disk refuses one (ENOSPC)."""

import resource
import signal
from contextlib import contextmanager


@contextmanager
def file_size_limit(nbytes: int):
    """Writes of this process past `nbytes` in any file fail while inside; the limit and SIGXFSZ are put back after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    xfsz = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write over the limit fails (EFBIG), not the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, xfsz)
