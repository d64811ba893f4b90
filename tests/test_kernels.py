"""Temp files made in real Jupyter kernels are gone after every way a kernel can end.

A graceful restart or shutdown runs the interpreter's exit hooks, which clean
up. A forced restart (`restart_kernel(now=True)`) or SIGKILL runs nothing, so
the next import of the package in another process sweeps the dead kernel's
folder. A live kernel's folder is never swept.

Each test points its kernels and processes at a private temp root (TMPDIR).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel

from pktmask_nb.tempdirs import leftover_temp_dirs, user_temp_root

PROJECT_ROOT = Path(__file__).absolute().parents[1]

MAKE_TEMP_FILE = """
import os
import pktmask_nb
from pktmask_nb.resources import ResourceOwner
owner = ResourceOwner("kernel test")
path = owner.temp_path(".pcap")
path.write_bytes(b"secret payload")
print(path, os.getpid())
owner
"""


@pytest.fixture
def private_root(tmp_path, monkeypatch):
    """Point this process at an empty temp root, and check that nothing is left there."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    yield user_temp_root()
    assert leftover_temp_dirs() == []


@pytest.fixture
def kernel(private_root) -> Iterator[tuple[KernelManager, BlockingKernelClient]]:
    env = {**os.environ, "TMPDIR": str(private_root.parent)}
    manager, client = start_new_kernel(
        kernel_name="python3", startup_timeout=30, cwd=str(PROJECT_ROOT), env=env
    )
    try:
        yield manager, client
    finally:
        client.stop_channels()
        if manager.is_alive():
            manager.shutdown_kernel(now=True)


def execute(client: BlockingKernelClient, code: str) -> str:
    """Run `code` in the kernel and return its printed output; fail on an error."""
    outputs: list[str] = []

    def collect(message: dict) -> None:
        if message["msg_type"] == "stream":
            outputs.append(message["content"]["text"])
        elif message["msg_type"] == "error":
            outputs.append("\n".join(message["content"]["traceback"]))

    reply = client.execute_interactive(code, timeout=20, output_hook=collect)
    assert reply["content"]["status"] == "ok", "".join(outputs)
    return "".join(outputs)


def make_temp_file(client: BlockingKernelClient) -> tuple[Path, int]:
    path_text, pid_text = execute(client, MAKE_TEMP_FILE).split()
    path = Path(path_text)
    assert path.read_bytes() == b"secret payload"
    return path, int(pid_text)


def import_in_new_process(root: Path) -> None:
    subprocess.run(
        [sys.executable, "-c", "import pktmask_nb"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "TMPDIR": str(root.parent)},
        check=True,
        timeout=60,
    )


def wait_for_exit(pid: int, *, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}") and _state_of(pid) != "Z":
        assert time.monotonic() < deadline, f"kernel process {pid} is still running"
        time.sleep(0.05)


def _state_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def test_graceful_restart_removes_files(kernel):
    manager, client = kernel
    path, pid = make_temp_file(client)

    manager.restart_kernel(now=False)
    wait_for_exit(pid)

    assert not path.exists()
    assert not path.parent.exists()


def test_shutdown_removes_files(kernel):
    manager, client = kernel
    path, pid = make_temp_file(client)

    manager.shutdown_kernel(now=False)
    wait_for_exit(pid)

    assert not path.exists()
    assert not path.parent.exists()


@pytest.mark.parametrize("hard_end", ["restart_now", "sigkill"])
def test_hard_end_is_swept_by_next_import(kernel, private_root, hard_end):
    manager, client = kernel
    path, pid = make_temp_file(client)

    if hard_end == "restart_now":
        manager.restart_kernel(now=True)
    else:
        os.kill(pid, signal.SIGKILL)
    wait_for_exit(pid)

    assert path.exists(), "a hard end should leave the files for the sweep"
    import_in_new_process(private_root)
    assert not path.parent.exists()


def test_live_kernel_is_never_swept(kernel, private_root):
    manager, client = kernel
    path, pid = make_temp_file(client)

    import_in_new_process(private_root)

    assert path.exists()
    assert execute(client, "print(path.read_bytes())").strip() == "b'secret payload'"
    manager.shutdown_kernel(now=False)
    wait_for_exit(pid)
    assert not path.parent.exists()
