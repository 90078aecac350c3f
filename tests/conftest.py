"""Session fixtures shared by every test module."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One tokenized-cache folder for the whole session, so recipes are built once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def out_dir(tmp_path) -> Path:
    return tmp_path / "outputs"
