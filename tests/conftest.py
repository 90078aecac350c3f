"""Session fixtures shared by every test module."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the CLI sets for its analyses (before numpy): small fits, threads only contend

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One tokenized-cache folder for the whole session, so recipes are built once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def corpora(cache_dir) -> Path:
    """The built-in corpora extracted once per test process (3-4 CPU s) into the session's cache folder."""
    from proxyscale.data import sources

    for name in sources.BUILTIN:
        sources.builtin_corpus(name, str(cache_dir))
    return cache_dir / "corpora"


@pytest.fixture
def fresh_cache(tmp_path, corpora) -> Path:
    """An empty token-cache folder (tmp_path) with only the built-in corpora in it, as any earlier run on the machine
    leaves them: recipe and eval caches start cold, without extracting the corpora again for each test."""
    shutil.copytree(corpora, tmp_path / "corpora")
    return tmp_path


@pytest.fixture
def out_dir(tmp_path) -> Path:
    return tmp_path / "outputs"
