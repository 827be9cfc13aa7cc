"""What every test gets: torch's thread count as the session started with it.

Some tests run train.py's real `main` in the pytest process (cheaper than a fresh Python), and training sets
torch's threads (`--num_threads 1`, or the CPUs over the local processes). Left so, every later test ran on one
thread, and children given OMP_NUM_THREADS=torch.get_num_threads() too: the suite took 17:53 instead of ~12.
"""

import pytest
import torch

THREADS_AT_START = torch.get_num_threads()


@pytest.fixture(autouse=True)
def torch_threads_as_at_start():
    yield
    if torch.get_num_threads() != THREADS_AT_START:
        torch.set_num_threads(THREADS_AT_START)
