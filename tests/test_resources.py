"""ResourceOwner: registration, explicit and implicit cleanup, failures, held_resources."""

from __future__ import annotations

import gc
import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pktmask_nb.resources import (
    CleanupReport,
    ResourceOwner,
    held_resources,
    process_temp_dir,
    retry_failed_cleanup,
)
from pktmask_nb.tempdirs import remove_process_dir


class Undeletable:
    """Makes files that cannot be unlinked, and undoes that.

    Root bypasses permission bits, so a read-only folder stops nothing there.
    The immutable attribute (`chattr +i`, which ext4, xfs and btrfs support)
    makes every unlink fail with EPERM, root's included. As another user, a
    folder without write permission has the same effect.
    """

    def __init__(self) -> None:
        self.as_root = os.geteuid() == 0
        self.made: list[Path] = []

    def make(self, path: Path) -> Path:
        if self.as_root:
            if shutil.which("chattr") is None:
                pytest.skip("chattr is not installed, so root cannot make an undeletable file")
            result = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
            if result.returncode != 0:
                pytest.skip(f"chattr +i is not supported here: {result.stderr.strip()}")
        else:
            path.parent.chmod(0o500)
        self.made.append(path)
        return path

    def undo(self, path: Path) -> None:
        if self.as_root:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        else:
            path.parent.chmod(0o700)
        self.made.remove(path)


@pytest.fixture
def undeletable():
    helper = Undeletable()
    yield helper
    for path in list(helper.made):
        helper.undo(path)


def test_temp_path_is_registered_in_process_dir():
    owner = ResourceOwner("unit")
    path = owner.temp_path(".pcap", prefix="run-")

    assert path.parent == process_temp_dir()
    assert path.exists()
    assert path.stat().st_size == 0
    assert path.name.startswith("run-")
    assert path.suffix == ".pcap"
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)
    owner.close()


def test_close_removes_files_and_folders(tmp_path):
    owner = ResourceOwner("unit")
    file_path = owner.temp_path()
    file_path.write_bytes(b"payload")
    folder = owner.temp_dir()
    (folder / "inner.bin").write_bytes(b"x" * 10)
    adopted = owner.adopt(tmp_path / "out.pcap.partial")
    adopted.write_bytes(b"partial")

    report = owner.close()

    assert report.ok
    assert report.steps == 3
    assert not file_path.exists()
    assert not folder.exists()
    assert not adopted.exists()
    assert owner.closed


def test_close_is_idempotent():
    owner = ResourceOwner("unit")
    owner.temp_path()
    first = owner.close()
    second = owner.close()

    assert first.steps == 1
    assert second.steps == 0
    assert second.ok
    assert owner.cleanup_report is first


def test_closed_owner_rejects_new_paths():
    owner = ResourceOwner("unit")
    owner.close()

    with pytest.raises(ValueError, match="closed"):
        owner.temp_path()
    with pytest.raises(ValueError, match="closed"):
        owner.add_cleanup("late", lambda: None)


def test_context_manager_cleans_up_on_error():
    with pytest.raises(RuntimeError):
        with ResourceOwner("unit") as owner:
            path = owner.temp_path()
            raise RuntimeError("work failed")

    assert not path.exists()
    assert owner.closed


def test_garbage_collection_cleans_up_with_warning():
    owner = ResourceOwner("dropped")
    path = owner.temp_path()

    with pytest.warns(ResourceWarning, match="dropped"):
        del owner
        gc.collect()

    assert not path.exists()


def test_empty_owner_finalizes_without_warning(recwarn):
    owner = ResourceOwner("empty")
    del owner
    gc.collect()

    assert not [w for w in recwarn if issubclass(w.category, ResourceWarning)]


def test_steps_run_in_reverse_order():
    order = []
    owner = ResourceOwner("unit")
    owner.add_cleanup("first", lambda: order.append("first"))
    owner.add_cleanup("second", lambda: order.append("second"))
    owner.close()

    assert order == ["second", "first"]


def test_release_deletes_and_forget_keeps(tmp_path):
    owner = ResourceOwner("unit")
    released = owner.temp_path()
    kept = owner.adopt(tmp_path / "final.pcap")
    kept.write_bytes(b"final output")

    owner.release(released)
    owner.forget(kept)
    report = owner.close()

    assert not released.exists()
    assert kept.read_bytes() == b"final output"
    assert report.steps == 0


def test_release_of_unknown_path_raises(tmp_path):
    owner = ResourceOwner("unit")
    with pytest.raises(ValueError, match="not registered"):
        owner.release(tmp_path / "never-registered")
    with pytest.raises(ValueError, match="not registered"):
        owner.forget(tmp_path / "never-registered")
    owner.close()


def test_adopt_twice_registers_once(tmp_path):
    owner = ResourceOwner("unit")
    owner.adopt(tmp_path / "a")
    owner.adopt(str(tmp_path / "a"))

    assert owner.close().steps == 1


def test_add_cleanup_rejects_own_method():
    owner = ResourceOwner("unit")
    with pytest.raises(ValueError, match="keep the owner alive"):
        owner.add_cleanup("self", owner.close)
    with pytest.raises(TypeError, match="not callable"):
        owner.add_cleanup("bad", "not a function")
    owner.close()


def test_nested_owner_failures_join_report():
    inner = ResourceOwner("stage mask")
    inner.add_cleanup("tshark", _raise_oserror)
    outer = ResourceOwner("pipeline")
    outer.add_cleanup("stage mask", inner.close)

    report = outer.close()

    assert inner.closed
    assert report.failures == [("stage mask: tshark", "OSError: tshark pipe already closed")]


def _raise_oserror() -> None:
    raise OSError("tshark pipe already closed")


def test_raising_component_does_not_stop_cleanup(caplog):
    owner = ResourceOwner("run x")
    first = owner.temp_path()
    owner.add_cleanup("writer", _raise_oserror)
    last = owner.temp_path()

    with caplog.at_level(logging.WARNING, logger="pktmask_nb.resources"):
        report = owner.close()

    assert not first.exists()
    assert not last.exists()
    assert not report.ok
    assert report.failures == [("writer", "OSError: tshark pipe already closed")]
    assert "Cleanup of run x failed for writer: tshark pipe already closed" in caplog.text


def test_undeletable_file_is_reported_then_retried(caplog, undeletable):
    owner = ResourceOwner("run y")
    stuck = owner.temp_path(".pcap")
    removable = owner.temp_path(".pcap")
    undeletable.make(stuck)

    with caplog.at_level(logging.WARNING, logger="pktmask_nb.resources"):
        report = owner.close()

    assert [what for what, _ in report.failures] == [str(stuck)]
    assert "PermissionError" in report.failures[0][1]
    assert f"failed for {stuck}" in caplog.text
    assert stuck.exists()
    assert not removable.exists()

    held = held_resources()
    row = held[held["path"] == str(stuck)]
    assert list(row["status"]) == ["cleanup failed"]
    assert list(row["owner"]) == ["run y"]

    undeletable.undo(stuck)
    assert retry_failed_cleanup().ok
    assert not stuck.exists()
    assert str(stuck) not in set(held_resources()["path"])


def test_undeletable_adopted_file_keeps_release_registered(tmp_path, undeletable):
    owner = ResourceOwner("unit")
    folder = tmp_path / "out"
    folder.mkdir()
    partial = owner.adopt(folder / "out.pcap.partial")
    partial.write_bytes(b"partial")
    undeletable.make(partial)

    with pytest.raises(PermissionError):
        owner.release(partial)

    assert str(partial) in set(held_resources()["path"])
    report = owner.close()
    assert [what for what, _ in report.failures] == [str(partial)]
    undeletable.undo(partial)
    assert retry_failed_cleanup().ok


def test_held_resources_lists_paths_and_sizes():
    owner = ResourceOwner("display")
    path = owner.temp_path()
    path.write_bytes(b"x" * 1234)
    folder = owner.temp_dir()
    (folder / "a").write_bytes(b"y" * 100)
    (folder / "b").write_bytes(b"z" * 11)
    owner.add_cleanup("decoder", lambda: None)

    held = held_resources()
    mine = held[held["owner"] == "display"].set_index("kind", append=True)

    assert list(held.columns) == ["owner", "kind", "path", "bytes", "created", "status"]
    assert len(mine) == 3
    sizes = dict(zip(held["path"], held["bytes"], strict=True))
    assert sizes[str(path)] == 1234
    assert sizes[str(folder)] == 111
    cleanup_rows = held[(held["owner"] == "display") & (held["kind"] == "cleanup")]
    assert cleanup_rows["path"].isna().all()
    assert cleanup_rows["bytes"].isna().all()

    owner.close()
    assert "display" not in set(held_resources()["owner"])


def test_report_repr_and_frame():
    report = CleanupReport("run z", 3, [("/tmp/a", "PermissionError: denied")])

    assert not report.ok
    assert "1 failed" in repr(report)
    assert "/tmp/a: PermissionError: denied" in repr(report)
    assert report.to_frame().to_dict("records") == [{"what": "/tmp/a", "error": "PermissionError: denied"}]
    assert "all succeeded" in repr(CleanupReport("run z", 2))


def test_forked_child_leaves_parent_files():
    owner = ResourceOwner("parent")
    parent_file = owner.temp_path()
    read_end, write_end = os.pipe()

    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            inherited_report = owner.close()
            child_owner = ResourceOwner("child")
            child_file = child_owner.temp_path()
            os.write(write_end, f"{inherited_report.steps} {child_file}".encode())
            child_owner.close()
            remove_process_dir()  # os._exit skips the exit hook that would do this
            status = 0
        finally:
            os._exit(status)

    os.close(write_end)
    message = os.read(read_end, 4096).decode()
    os.close(read_end)
    _, wait_status = os.waitpid(pid, 0)
    steps, child_file = message.split(" ", 1)

    assert os.waitstatus_to_exitcode(wait_status) == 0
    assert parent_file.exists()
    assert steps == "0"
    assert Path(child_file).parent != parent_file.parent
    assert Path(child_file).parent.name.startswith(f"{pid}-")
    owner.close()
