"""Fixtures shared by the tests of the torch side."""

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Run torch on one intra-op thread, restored afterwards.

    The models in these tests are tiny (or run on short batches), so extra threads gain
    nothing, while on a 2-core machine shared with other processes two threads per process
    oversubscribe the cores (measured: 5-10x slower forward passes under load).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
