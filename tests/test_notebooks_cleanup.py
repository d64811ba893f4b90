"""A notebook run by nbval leaves no temp folder once the package is imported again.

nbval kills each notebook's kernel with SIGKILL, so nothing in the kernel
cleans up: its temp folder stays on disk. The package removes such folders
when it is imported. This test runs nbval on one real notebook in a
subprocess, check that the killed kernel did leave its folder, and then check
that importing the package in a fresh process leaves none.

Both subprocesses use a private temp root (TMPDIR), so folders of other
processes on the machine neither disturb the test nor get swept by it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pktmask_nb.tempdirs import ADOPTED_JOURNAL, LOCK_NAME

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = PROJECT_ROOT / "notebooks" / "02-tls-masking.ipynb"
SANITIZE = PROJECT_ROOT / "notebooks" / "nbval-sanitize.cfg"

IMPORT_THEN_LIST = """
import json
import pktmask_nb
from pktmask_nb.resources import leftover_temp_dirs
print(json.dumps([str(path) for path in leftover_temp_dirs()]))
"""


def run_in(temp_root: Path, command: list[str]) -> subprocess.CompletedProcess[str]:
    """Run `command` in the project folder with TMPDIR set to `temp_root`."""
    return subprocess.run(
        command,
        cwd=PROJECT_ROOT,
        env={**os.environ, "TMPDIR": str(temp_root)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def package_folders(temp_root: Path) -> list[Path]:
    """Return the process folders of the package under `temp_root`, stale or not."""
    user_root = temp_root / f"pktmask_nb-{os.getuid()}"
    return sorted(user_root.iterdir()) if user_root.is_dir() else []


@pytest.fixture
def killed_notebook_root(tmp_path: Path) -> Path:
    """Run nbval on one notebook with a private TMPDIR and return that temp root.

    `--noconftest` leaves out notebooks/conftest.py, whose sweep after the
    notebooks would otherwise remove the folder this test is about, and
    `-o addopts=` the project's defaults, so the command shows all it runs.
    """
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-o",
        "addopts=",
        "-p",
        "no:cacheprovider",
        "--noconftest",
        "-q",
        "--nbval",
        "--nbval-current-env",
        "--nbval-sanitize-with",
        str(SANITIZE),
        str(NOTEBOOK),
    ]
    completed = run_in(tmp_path, command)
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-2000:]
    return tmp_path


def test_import_sweeps_killed_kernel_folder(killed_notebook_root: Path) -> None:
    # The killed kernel left its folder, with the journal its pipeline runs
    # wrote: without this, the test would pass if the kernel made no temp file.
    left = package_folders(killed_notebook_root)
    assert len(left) == 1, left
    assert (left[0] / LOCK_NAME).is_file()
    assert (left[0] / ADOPTED_JOURNAL).is_file()

    completed = run_in(killed_notebook_root, [sys.executable, "-c", textwrap.dedent(IMPORT_THEN_LIST)])

    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == []
    assert package_folders(killed_notebook_root) == []
