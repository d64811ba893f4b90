"""The per-process temp folder, its lock, and the sweep of folders left by dead processes.

Layout: `<tempfile.gettempdir()>/pktmask_nb-<uid>/<pid>-<random>/`. The
per-user folder has mode 0700. Each process folder contains a `.lock` file
that its process keeps locked with `flock(LOCK_EX)` from creation until it
exits. The kernel drops the lock when it closes the process's descriptors, so
the lock is free exactly when that process is gone, SIGKILL and the OOM killer
included.

`sweep_stale()` removes the folders whose lock is free. A process builds its
folder under a `.new-` name and renames it once the lock is held, so the sweep
never sees a folder with a final name whose lock is free while its process lives.

Paths a process adopts outside its folder (a partial output beside the final
output) are journaled in `adopted.jsonl` inside the folder, so the sweep that
removes a dead process's folder also removes the adopted paths it still held.

NOTE: flock is POSIX only, so this module does not run on Windows.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

logger = logging.getLogger(__name__)

LOCK_NAME = ".lock"
ADOPTED_JOURNAL = "adopted.jsonl"
_ROOT_PREFIX = "pktmask_nb-"
_STAGING_PREFIX = ".new-"
# A staging folder, or a folder without a lock file, is left alone for this
# long (seconds) because its process may still be creating it.
_CREATION_GRACE_SECONDS = 60.0


class _ProcessDir:
    """This process's folder and lock descriptor, both None until first use."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.path: Path | None = None
        self.lock_fd: int | None = None


_own = _ProcessDir()


def user_temp_root() -> Path:
    """Return the per-user folder that contains every process folder of this package."""
    return Path(tempfile.gettempdir()) / f"{_ROOT_PREFIX}{os.getuid()}"


def process_temp_dir() -> Path:
    """Return this process's temp folder, creating and locking it on first use.

    Raises PermissionError when the per-user folder above it belongs to another
    user, is a symlink or is open to other users, and OSError when a folder
    cannot be made.
    """
    with _own.lock:
        if _own.path is None:
            _own.path, _own.lock_fd = _create_process_dir()
            logger.debug("Created temp folder %s", _own.path)
        return _own.path


def _check_private(root: Path) -> None:
    """Raise PermissionError unless `root` is a real folder of this user that only it can open."""
    info = os.lstat(root)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise PermissionError(
            f"temp folder {root} is not a private folder of user {os.getuid()} (it is a "
            "symlink, belongs to another user or is open to other users); remove it or set "
            "TMPDIR to another folder"
        )


def _create_process_dir() -> tuple[Path, int]:
    """Create and lock this process's folder. Return it and the open lock descriptor."""
    root = user_temp_root()
    try:
        os.mkdir(root, 0o700)
    except FileExistsError:
        pass
    _check_private(root)

    staging = Path(tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{os.getpid()}-", dir=root))
    final = root / staging.name.removeprefix(_STAGING_PREFIX)
    fd = os.open(staging / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(staging, final)
    except OSError:
        os.close(fd)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final, fd


def journal_adopted(path: Path, *, held: bool) -> None:
    """Append to this process's journal that it adopted `path` (held) or let it go.

    Raises OSError when the journal cannot be written, so that nothing is
    adopted without a record.
    """
    line = json.dumps({"held": held, "path": str(path)}) + "\n"
    with open(process_temp_dir() / ADOPTED_JOURNAL, "a", encoding="utf-8") as journal:
        journal.write(line)


def _held_adopted_paths(folder: Path) -> list[Path] | None:
    """Replay a process folder's journal and return the adopted paths still held.

    Returns None when the journal exists but cannot be read.
    """
    try:
        lines = (folder / ADOPTED_JOURNAL).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as error:
        logger.warning("Failed to read the adopted-path journal of %s: %s", folder, error)
        return None

    held: dict[str, None] = {}
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short when the process was killed mid-write
        if record["held"]:
            held[record["path"]] = None
        else:
            held.pop(record["path"], None)
    return [Path(path) for path in held]


def remove_process_dir() -> None:
    """Remove this process's folder, unregistered files included, and drop its lock.

    Called at interpreter exit after every owner has cleaned up. A failure to
    remove the folder (OSError) is logged, not raised, and the next sweep of
    another process retries once this process has ended.
    """
    with _own.lock:
        path, lock_fd = _own.path, _own.lock_fd
        _own.path = _own.lock_fd = None
    if path is None or lock_fd is None:
        return

    try:
        unregistered = [name for name in os.listdir(path) if name not in (LOCK_NAME, ADOPTED_JOURNAL)]
        if unregistered:
            logger.warning("Removing %d unregistered files left in temp folder %s", len(unregistered), path)
        remove_path(path)
        logger.debug("Removed temp folder %s", path)
    except OSError as error:
        logger.warning("Failed to remove temp folder %s at exit: %s", path, error)
    finally:
        os.close(lock_fd)


def _forget_parent_dir() -> None:
    """Give a forked child no folder, so it makes its own on first use.

    The child also closes its copy of the lock descriptor, because an flock
    lock stays held while any copy is open: a child that outlived its parent
    would otherwise keep the parent's folder from being swept.
    """
    global _own
    inherited_fd = _own.lock_fd
    _own = _ProcessDir()
    if inherited_fd is not None:
        os.close(inherited_fd)


os.register_at_fork(after_in_child=_forget_parent_dir)


# -- sweeping ----------------------------------------------------------------


def sweep_stale() -> list[Path]:
    """Remove the temp folders of processes that ended without cleanup, and list them.

    A folder is stale when its lock is free, so a live process's folder is
    never removed. The package calls this on import. The cost is one
    `scandir` plus one `open` and non-blocking `flock` per process folder.
    File-system errors are not raised: a folder that cannot be removed is
    logged as a warning and tried again by the next sweep.
    """
    removed = []
    for entry in _scan_user_root():
        path = Path(entry.path)
        with _lock_if_stale(path) as stale:
            if stale and _remove_stale_dir(path):
                removed.append(path)

    if removed:
        logger.info(
            "Removed %d temp folders left by processes that ended without cleanup: %s",
            len(removed),
            ", ".join(path.name for path in removed),
        )
    return removed


def _remove_stale_dir(folder: Path) -> bool:
    """Remove a dead process's adopted paths, then its folder. Return True when all is gone.

    The journal stays in the folder until every adopted path is removed, so
    the next sweep retries the ones that failed.
    """
    held = _held_adopted_paths(folder)
    if held is None:
        return False

    adopted_failures = 0
    for adopted in held:
        try:
            remove_path(adopted)
            logger.debug("Removed %s, adopted by a dead process", adopted)
        except OSError as error:
            adopted_failures += 1
            logger.warning("Failed to remove %s, adopted by a dead process: %s", adopted, error)
    if adopted_failures:
        return False

    try:
        remove_path(folder)
    except OSError as error:
        logger.warning("Failed to remove stale temp folder %s: %s", folder, error)
        return False
    return True


def leftover_temp_dirs() -> list[Path]:
    """List the folders of other processes that a test session must not leave behind.

    These are the stale folders, and the folders held by a live descendant of
    this process (a kernel or worker that was started and never stopped). The
    folders of unrelated live processes, and this process's own, are not listed.
    """
    descendants = {child.pid for child in psutil.Process().children(recursive=True)}
    leftovers = []
    for entry in _scan_user_root():
        path = Path(entry.path)
        if path == _own.path:
            continue

        pid_text = entry.name.removeprefix(_STAGING_PREFIX).split("-", 1)[0]
        held_by_descendant = pid_text.isdigit() and int(pid_text) in descendants
        with _lock_if_stale(path) as stale:
            if stale or held_by_descendant:
                leftovers.append(path)
    return leftovers


def _scan_user_root() -> list[os.DirEntry[str]]:
    """Return the process folders in the per-user folder, or [] when it is missing or unsafe."""
    root = user_temp_root()
    try:
        _check_private(root)
        with os.scandir(root) as entries:
            return [entry for entry in entries if entry.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []
    except OSError as error:
        logger.warning("Skipped the sweep of stale temp folders: %s", error)
        return []


@contextlib.contextmanager
def _lock_if_stale(path: Path) -> Iterator[bool]:
    """Yield True, holding the folder's lock, when the process that made it is gone."""
    if path.name.startswith(_STAGING_PREFIX) and _is_young(path):
        yield False
        return

    try:
        fd = os.open(path / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        yield not _is_young(path)
        return
    except OSError as error:
        logger.debug("Cannot open the lock file of %s: %s", path, error)
        yield False
        return

    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        except OSError as error:
            logger.debug("Cannot lock %s: %s", path, error)
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _is_young(path: Path) -> bool:
    try:
        return time.time() - os.lstat(path).st_mtime < _CREATION_GRACE_SECONDS
    except OSError:
        return True  # gone already, or not ours to judge


def remove_path(path: Path) -> None:
    """Delete a file, symlink or folder tree. A missing path counts as removed.

    In a tree, removes every entry it can before it raises OSError naming the
    count of entries left and the first of them.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(mode):
        os.unlink(path)
        return

    errors: list[str] = []

    def record(function: object, failed_path: str, error: BaseException) -> None:
        if not isinstance(error, FileNotFoundError):
            errors.append(f"{failed_path}: {error}")

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=record)
    else:
        shutil.rmtree(path, onerror=lambda function, name, info: record(function, name, info[1]))
    if errors:
        raise OSError(f"{len(errors)} entries not removed, first {errors[0]}")
