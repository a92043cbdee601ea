"""Fixtures shared by the tests of the torch side."""

from pathlib import Path

import socket

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


@pytest.fixture(scope="session")
def real_lm():
    """The bundled default model, loaded once per test process with the network refused.

    The converted weights come from the per-user GGUF cache, so every process after the
    first loads in seconds.
    """
    from llm_bridge.models import load_model

    def refuse(*args, **kwargs):
        raise OSError("network access attempted while loading the default model")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket, "create_connection", refuse)
        return load_model(device="cpu")


def pytest_collection_modifyitems(config, items):
    """Deprecations raised inside transformers or torch by this package's calls are errors.

    A library attributes its deprecation warning to the frame that called it (often inside
    torch's module machinery), so the module filter of the pytest configuration cannot see
    that the call came from ``llm_bridge``; every test of the torch side turns them into
    errors instead.
    """
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.filterwarnings("error::DeprecationWarning"))
            item.add_marker(pytest.mark.filterwarnings("error::FutureWarning"))
