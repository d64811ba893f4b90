"""Process temp folders: exit cleanup, and the sweep of folders whose process died.

Each test that starts processes points them (TMPDIR) and this process
(`tempfile.tempdir`) at its own temp root, so other processes on the machine
neither disturb nor see these folders.
"""

from __future__ import annotations

import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from pktmask_nb.tempdirs import (
    leftover_temp_dirs,
    process_temp_dir,
    sweep_stale,
    user_temp_root,
)

PROJECT_ROOT = Path(__file__).absolute().parents[1]

CREATE_THEN_SIGKILL = """
import os, signal
from pktmask_nb.resources import ResourceOwner
owner = ResourceOwner("victim")
path = owner.temp_path(".pcap")
path.write_bytes(b"secret payload")
print(path, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""

CREATE_THEN_WAIT = """
import sys
from pktmask_nb.resources import ResourceOwner
owner = ResourceOwner("live")
path = owner.temp_path(".pcap")
print(path, flush=True)
sys.stdin.read()
owner.close()
"""


@pytest.fixture
def private_root(tmp_path, monkeypatch):
    """Point this process at an empty temp root and return the per-user folder in it."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    root = user_temp_root()
    root.mkdir(mode=0o700)
    return root


def run_child(code: str, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args, "-c", textwrap.dedent(code)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "TMPDIR": str(root.parent)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def start_child(code: str, root: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "TMPDIR": str(root.parent)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_sweep_removes_killed_process_dir(private_root, caplog):
    result = run_child(CREATE_THEN_SIGKILL, private_root)
    path = Path(result.stdout.strip())

    assert result.returncode == -signal.SIGKILL
    assert path.read_bytes() == b"secret payload"

    with caplog.at_level(logging.INFO, logger="pktmask_nb.tempdirs"):
        removed = sweep_stale()

    assert removed == [path.parent]
    assert not path.parent.exists()
    assert "Removed 1 temp folders left by processes" in caplog.text


def test_sweep_removes_adopted_paths_of_dead_process(private_root, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    code = f"""
    import os, signal
    from pathlib import Path
    from pktmask_nb.resources import ResourceOwner
    owner = ResourceOwner("pipeline")
    partial = owner.adopt({str(out / ".capture.pcap.partial-1")!r})
    partial.write_bytes(b"half written")
    done = owner.adopt({str(out / ".other.pcap.partial-2")!r})
    done.write_bytes(b"complete")
    os.replace(done, {str(out / "other.pcap")!r})
    owner.forget(done)
    kept = owner.adopt({str(out / "kept.pcap")!r})
    kept.write_bytes(b"kept")
    owner.forget(kept)
    os.kill(os.getpid(), signal.SIGKILL)
    """
    result = run_child(code, private_root)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert sorted(path.name for path in out.iterdir()) == [
        ".capture.pcap.partial-1",
        "kept.pcap",
        "other.pcap",
    ]

    assert len(sweep_stale()) == 1
    assert sorted(path.name for path in out.iterdir()) == ["kept.pcap", "other.pcap"]
    assert list(private_root.iterdir()) == []


def test_sweep_keeps_live_process_dir(private_root):
    child = start_child(CREATE_THEN_WAIT, private_root)
    try:
        path = Path(child.stdout.readline().strip())
        removed = sweep_stale()

        assert removed == []
        assert path.exists()
    finally:
        child.communicate(input="", timeout=30)

    assert child.returncode == 0
    assert not path.parent.exists()


def test_exit_cleans_leaked_owner_with_warning(private_root):
    code = """
    from pktmask_nb.resources import ResourceOwner
    leaked = ResourceOwner("leaky")
    leaked.temp_path().write_bytes(b"secret")
    """
    result = run_child(code, private_root, "-W", "always::ResourceWarning")

    assert result.returncode == 0, result.stderr
    assert "ResourceWarning: Implicitly cleaning up resource owner 'leaky'" in result.stderr
    assert list(private_root.iterdir()) == []


def test_exit_removes_unregistered_files(private_root):
    code = """
    import logging
    from pktmask_nb.resources import process_temp_dir
    logging.basicConfig(level=logging.WARNING)
    (process_temp_dir() / "stray.bin").write_bytes(b"secret")
    """
    result = run_child(code, private_root)

    assert result.returncode == 0, result.stderr
    assert "Removing 1 unregistered files left in temp folder" in result.stderr
    assert list(private_root.iterdir()) == []


def test_forked_child_does_not_hold_parent_lock(private_root):
    code = """
    import os, signal, time
    from pktmask_nb.resources import ResourceOwner
    owner = ResourceOwner("parent")
    path = owner.temp_path()
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 1)  # let the test's pipe reach EOF while this child sleeps
        os.dup2(devnull, 2)
        time.sleep(30)
        os._exit(0)
    print(path, pid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
    result = run_child(code, private_root)
    path_text, pid_text = result.stdout.split()
    orphan_pid = int(pid_text)
    try:
        assert result.returncode == -signal.SIGKILL
        assert sweep_stale() == [Path(path_text).parent]
    finally:
        os.kill(orphan_pid, signal.SIGKILL)


def test_sweep_waits_for_folders_being_created(private_root):
    staging = private_root / ".new-1-abcdefgh"
    staging.mkdir()
    (staging / ".lock").touch()
    lockless = private_root / "2-abcdefgh"
    lockless.mkdir()

    assert sweep_stale() == []
    assert staging.exists()
    assert lockless.exists()

    an_hour_ago = time.time() - 3600
    for folder in (staging, lockless):
        os.utime(folder, (an_hour_ago, an_hour_ago))

    assert sorted(sweep_stale()) == sorted([staging, lockless])
    assert list(private_root.iterdir()) == []


def test_unsafe_user_root_is_rejected(private_root, caplog):
    stale = private_root / "3-abcdefgh"
    stale.mkdir()
    (stale / ".lock").touch()
    private_root.chmod(0o777)

    with caplog.at_level(logging.WARNING, logger="pktmask_nb.tempdirs"):
        assert sweep_stale() == []
    assert "is not a private folder" in caplog.text
    assert stale.exists()

    code = """
    from pktmask_nb.resources import ResourceOwner
    ResourceOwner("x").temp_path()
    """
    result = run_child(code, private_root)
    assert result.returncode == 1
    assert "PermissionError" in result.stderr
    assert "set TMPDIR to another folder" in result.stderr


def test_sweep_is_fast_when_nothing_stale():
    process_temp_dir()
    sweep_stale()
    durations = []
    for _ in range(200):
        start = time.perf_counter()
        removed = sweep_stale()
        durations.append(time.perf_counter() - start)
        assert removed == []

    # benchmarks/bench_memory.py measured a median of about 25 microseconds with
    # one live folder on a 2-core VM. The bound is generous for a shared CPU.
    assert statistics.median(durations) < 1e-3


def test_leftover_dirs_lists_stale_and_descendants(private_root):
    # The live child starts first, because importing the package sweeps stale folders.
    child = start_child(CREATE_THEN_WAIT, private_root)
    try:
        live = Path(child.stdout.readline().strip()).parent
        killed = Path(run_child(CREATE_THEN_SIGKILL, private_root).stdout.strip()).parent
        assert sorted(leftover_temp_dirs()) == sorted([killed, live])
    finally:
        child.communicate(input="", timeout=30)

    assert leftover_temp_dirs() == [killed]
    sweep_stale()
    assert leftover_temp_dirs() == []
