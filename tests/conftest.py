"""Shared fixtures: the real capture corpus and tshark, the independent oracle."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CORPUS_DIR = (PROJECT_ROOT / ".." / "shared" / "corpus").resolve()


def corpus_files() -> list[Path]:
    """Every capture of the shared corpus, sorted by name."""
    return sorted(p for p in CORPUS_DIR.glob("*") if p.suffix in (".pcap", ".pcapng"))


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    assert CORPUS_DIR.is_dir(), f"the capture corpus is missing at {CORPUS_DIR}"
    return CORPUS_DIR


@pytest.fixture(scope="session")
def tshark() -> str:
    path = shutil.which("tshark")
    assert path, "tshark is required for the tests: apt-get install -y tshark"
    return path


def tshark_fields(path: Path, fields: list[str], *extra: str) -> list[list[str]]:
    """Run tshark on `path` and return one list of field values per frame."""
    command = ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "separator=\t", *extra]
    for field in fields:
        command += ["-e", field]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return [line.split("\t") for line in output.splitlines()]


@pytest.fixture(scope="session", autouse=True)
def no_leftover_temp_dirs():
    """After the whole session, no temp folder of this package may remain but this process's own."""
    yield
    from pktmask_nb.resources import leftover_temp_dirs

    assert leftover_temp_dirs() == []
