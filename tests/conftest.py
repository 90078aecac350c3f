"""Session fixtures shared by every test module."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the CLI sets for its analyses (before numpy): small fits, threads only contend

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One tokenized-cache folder for the whole session, so recipes are built once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def out_dir(tmp_path) -> Path:
    return tmp_path / "outputs"
