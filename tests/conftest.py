"""Shared fixtures: the real capture corpus and tshark, the independent oracle."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from corpus_tools import CORPUS_DIR


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    assert CORPUS_DIR.is_dir(), f"the capture corpus is missing at {CORPUS_DIR}"
    return CORPUS_DIR


@pytest.fixture(scope="session")
def tshark() -> str:
    path = shutil.which("tshark")
    assert path, "tshark is required for the tests: apt-get install -y tshark"
    return path


@pytest.fixture(scope="session", autouse=True)
def no_leftover_temp_dirs():
    """After the whole session, no temp folder of this package may remain but this process's own."""
    yield
    from pktmask_nb.resources import leftover_temp_dirs

    assert leftover_temp_dirs() == []
