"""Temp files and cleanup steps, owned by the objects that use them.

Every temp file belongs to a `ResourceOwner` and lives in this process's temp
folder (see `pktmask_nb.tempdirs`). An owner's files are removed by `close()`,
by leaving a `with` block, or by a `weakref.finalize` callback when the owner
is garbage-collected or the interpreter exits. That implicit path emits a
`ResourceWarning`. Hard ends (SIGKILL, the OOM killer,
`restart_kernel(now=True)`) run no Python code at all. For those the package
calls `sweep_stale()` on import, which removes the folders of dead processes.

Cleanup runs every step even when an earlier one fails. Each failure is
logged as a warning and collected into the `CleanupReport` that `close()`
returns. Nothing is raised from a finalizer.

Jupyter keeps every object shown as a cell's result in IPython's output cache
(`Out`, `_`, `__`, `___`), so that object is not garbage-collected and its
finalizer does not run until the kernel stops. To release its files now, call
`obj.close()`, which works whatever still refers to the object. Alternatively
`%xdel obj` deletes the name and IPython's cached references to it, and
`%reset -f out` clears the whole output cache. A cell that ends with `;` does
not store its result. `held_resources()` lists what this process holds.
"""

from __future__ import annotations

import atexit
import enum
import logging
import os
import stat
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from pktmask_nb.tempdirs import (
    journal_adopted,
    leftover_temp_dirs,
    process_temp_dir,
    remove_path,
    remove_process_dir,
    sweep_stale,
)

logger = logging.getLogger(__name__)

__all__ = [
    "CleanupReport",
    "ResourceOwner",
    "held_resources",
    "leftover_temp_dirs",
    "process_temp_dir",
    "retry_failed_cleanup",
    "sweep_stale",
]


class StepKind(enum.StrEnum):
    TEMP = "temp"  # a file or folder made in the process temp folder
    ADOPTED = "adopted"  # a path elsewhere, registered with adopt()
    CLEANUP = "cleanup"  # a component's callback


@dataclass(frozen=True)
class _Step:
    kind: StepKind
    owner: str
    label: str  # the path, or the component's label
    path: Path | None
    callback: Callable[[], object] | None
    created: float  # time.time() at registration


@dataclass(frozen=True)
class CleanupReport:
    """Outcome of one cleanup: the step count and the (path or component, error) failures."""

    owner: str
    steps: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every step succeeded."""
        return not self.failures

    def to_frame(self) -> pd.DataFrame:
        """Return the failures as a DataFrame with columns `what` and `error`."""
        return pd.DataFrame(self.failures, columns=["what", "error"])

    def __repr__(self) -> str:
        if self.ok:
            return f"CleanupReport({self.owner!r}: {self.steps} steps, all succeeded)"
        lines = [f"CleanupReport({self.owner!r}: {self.steps} steps, {len(self.failures)} failed"]
        lines += [f"  {what}: {error}" for what, error in self.failures]
        return "\n".join(lines) + ")"


class _OwnerState:
    """The steps of one owner. Its finalizer gets this object, never the owner."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.pid = os.getpid()
        self.steps: list[_Step] = []
        self.lock = threading.Lock()


class _Registry:
    """Live owners and the paths whose removal failed, in this process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.owners: dict[_OwnerState, weakref.finalize] = {}
        # Retried at exit and listed by held_resources() until then.
        self.failed_paths: list[_Step] = []


_registry = _Registry()


class ResourceOwner:
    """Temp files, adopted paths and cleanup steps of one object, removed together.

    Stages, pipelines and results hold one by composition
    (`self._resources = ResourceOwner("Pipeline run x")`). Cleanup runs the
    steps in reverse order of registration, as `contextlib.ExitStack` does, so
    a component's cleanup that closes a file runs before that file is removed.
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self.cleanup_report: CleanupReport | None = None
        self._state = _OwnerState(label)
        self._finalizer = weakref.finalize(self, _finalize, self._state)
        with _registry.lock:
            _registry.owners[self._state] = self._finalizer

    @property
    def closed(self) -> bool:
        """True once `close()` ran or the owner was finalized."""
        return not self._finalizer.alive

    def temp_path(self, suffix: str = "", *, prefix: str = "") -> Path:
        """Create an empty file (mode 0600) in the process temp folder and register it.

        Raises ValueError when the owner is closed.
        """
        self._check_open()
        fd, name = tempfile.mkstemp(suffix=suffix, prefix=prefix, dir=process_temp_dir())
        os.close(fd)
        return self._register(StepKind.TEMP, Path(name))

    def temp_dir(self, *, prefix: str = "") -> Path:
        """Create an empty folder in the process temp folder and register it.

        Cleanup removes the folder with everything in it.
        Raises ValueError when the owner is closed.
        """
        self._check_open()
        name = tempfile.mkdtemp(prefix=prefix, dir=process_temp_dir())
        return self._register(StepKind.TEMP, Path(name))

    def adopt(self, path: str | os.PathLike[str]) -> Path:
        """Register a path outside the temp folder for removal at cleanup.

        Use it for a partial output written beside the final output. The path
        need not exist yet, and adopting a registered path again changes
        nothing. The path is also journaled in the process temp folder, so a
        sweep removes it if this process dies without cleanup. Returns the
        absolute path. Raises ValueError when the owner is closed, and OSError
        when the journal cannot be written.
        """
        self._check_open()
        absolute = Path(path).absolute()
        with self._state.lock:
            if any(step.path == absolute for step in self._state.steps):
                return absolute
        journal_adopted(absolute, held=True)
        return self._register(StepKind.ADOPTED, absolute)

    def add_cleanup(self, label: str, callback: Callable[[], object]) -> None:
        """Register a component's cleanup step, which cleanup calls once.

        `callback` must not refer to this owner, or the owner could never be
        garbage-collected. When it returns a `CleanupReport` (another owner's
        `close`), that report's failures join this owner's report.
        Raises TypeError when `callback` is not callable, and ValueError for a
        bound method of this owner or when the owner is closed.
        """
        self._check_open()
        if not callable(callback):
            raise TypeError(f"cleanup callback for {label!r} is not callable: {callback!r}")
        if getattr(callback, "__self__", None) is self:
            raise ValueError(
                f"cleanup callback {callback!r} is a method of the owner {self.label!r}, which "
                "would keep the owner alive; pass a function that takes what it needs instead"
            )
        step = _Step(StepKind.CLEANUP, self.label, label, None, callback, time.time())
        with self._state.lock:
            self._state.steps.append(step)

    def release(self, path: str | os.PathLike[str]) -> None:
        """Delete one registered path now and unregister it.

        Raises ValueError when the path is not registered with this owner, and
        OSError when the removal fails. After a failure the path stays
        registered, so `close()` tries again.
        """
        step = self._pop_path(path)
        try:
            _remove_step_path(step)
        except OSError:
            with self._state.lock:
                self._state.steps.append(step)
            raise

    def forget(self, path: str | os.PathLike[str]) -> None:
        """Unregister one path without deleting it, after it was renamed into place.

        Raises ValueError when the path is not registered with this owner.
        """
        step = self._pop_path(path)
        if step.kind is StepKind.ADOPTED:
            journal_adopted(step.path, held=False)

    def close(self) -> CleanupReport:
        """Run every cleanup step now and return what failed. Idempotent.

        Failures are logged as warnings and returned, never raised. The report
        is also kept in `cleanup_report`. A second call runs nothing and
        returns an empty report.
        """
        if self._finalizer.detach() is None:
            return CleanupReport(self.label)
        self.cleanup_report = _clean_up(self._state, implicit=False)
        return self.cleanup_report

    def __enter__(self) -> ResourceOwner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self._state.steps)} steps held"
        return f"ResourceOwner({self.label!r}, {state})"

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError(f"resource owner {self.label!r} is closed")

    def _register(self, kind: StepKind, path: Path) -> Path:
        step = _Step(kind, self.label, str(path), path, None, time.time())
        with self._state.lock:
            self._state.steps.append(step)
        logger.debug("%s registered %s path %s", self.label, kind.value, path)
        return path

    def _pop_path(self, path: str | os.PathLike[str]) -> _Step:
        absolute = Path(path).absolute()
        with self._state.lock:
            for index, step in enumerate(self._state.steps):
                if step.path == absolute:
                    return self._state.steps.pop(index)
        raise ValueError(f"{absolute} is not registered with resource owner {self.label!r}")


def _finalize(state: _OwnerState) -> None:
    """Clean up after an owner that was garbage-collected or still alive at exit."""
    _clean_up(state, implicit=True)


def _clean_up(state: _OwnerState, *, implicit: bool) -> CleanupReport:
    with state.lock:
        steps = state.steps[::-1]
        state.steps.clear()
    with _registry.lock:
        _registry.owners.pop(state, None)

    # A forked child inherits the parent's owners, but the files stay the parent's.
    if state.pid != os.getpid():
        logger.debug("Skipped cleanup of %r inherited from process %d", state.label, state.pid)
        return CleanupReport(state.label)

    if implicit and steps:
        warnings.warn(
            f"Implicitly cleaning up resource owner {state.label!r} ({len(steps)} steps); "
            "call close() or use a with block",
            ResourceWarning,
            stacklevel=2,
        )

    report, failed_paths = _run_steps(state.label, steps)
    with _registry.lock:
        _registry.failed_paths += failed_paths
    if report.steps:
        logger.debug("Cleaned up %s: %r", state.label, report)
    return report


def _run_steps(owner: str, steps: list[_Step]) -> tuple[CleanupReport, list[_Step]]:
    """Run every step in the given order. Return the report and the path steps that failed."""
    failures: list[tuple[str, str]] = []
    failed_paths: list[_Step] = []
    for step in steps:
        try:
            if step.callback is None:
                _remove_step_path(step)
                continue
            result = step.callback()
            if isinstance(result, CleanupReport):
                failures += [(f"{step.label}: {what}", error) for what, error in result.failures]
        # A component's callback may raise anything, and cleanup must still go on
        # to the next step: the error is logged and reported, never hidden.
        except Exception as error:
            if step.callback is None:
                failed_paths.append(step)
            failures.append((step.label, f"{type(error).__name__}: {error}"))
            logger.warning("Cleanup of %s failed for %s: %s", owner, step.label, error)

    return CleanupReport(owner, len(steps), failures), failed_paths


def _remove_step_path(step: _Step) -> None:
    remove_path(step.path)
    if step.kind is StepKind.ADOPTED:
        journal_adopted(step.path, held=False)


_HELD_COLUMNS = ["owner", "kind", "path", "bytes", "created", "status"]


def held_resources() -> pd.DataFrame:
    """List the paths and cleanup steps registered in this process now, one row each.

    Columns: owner, kind ("temp", "adopted" or "cleanup"), path (None for a
    cleanup step), bytes (size on disk of a file or a whole folder, <NA> when
    the path is missing or for a cleanup step), created (local time), and
    status ("held", or "cleanup failed" for a path to be retried at exit).
    """
    with _registry.lock:
        owner_states = list(_registry.owners)
        failed_paths = list(_registry.failed_paths)

    rows = []
    for state in owner_states:
        with state.lock:
            rows += [_describe(step, "held") for step in state.steps]
    rows += [_describe(step, "cleanup failed") for step in failed_paths]

    frame = pd.DataFrame(rows, columns=_HELD_COLUMNS)
    frame["bytes"] = frame["bytes"].astype("Int64")
    return frame.sort_values("created", ignore_index=True)


def _describe(step: _Step, status: str) -> dict[str, object]:
    size = None
    if step.path is not None:
        try:
            size = _disk_bytes(step.path)
        except OSError:
            size = None
    return {
        "owner": step.owner,
        "kind": step.kind.value,
        "path": None if step.path is None else str(step.path),
        "bytes": size,
        "created": datetime.fromtimestamp(step.created),
        "status": status,
    }


def _disk_bytes(path: Path) -> int:
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        return info.st_size
    total = 0
    for folder, _, names in os.walk(path):
        for name in names:
            total += os.lstat(os.path.join(folder, name)).st_size
    return total


def retry_failed_cleanup() -> CleanupReport:
    """Try again to remove the paths whose removal failed, and return what still fails.

    Call it after fixing the cause (a file held open, an immutable flag).
    Paths that fail again stay listed and are retried at exit.
    """
    with _registry.lock:
        failed_paths, _registry.failed_paths = _registry.failed_paths, []
    report, still_failed = _run_steps("paths whose cleanup failed earlier", failed_paths)
    with _registry.lock:
        _registry.failed_paths += still_failed
    return report


@atexit.register
def _clean_up_at_exit() -> None:
    """Finalize the live owners, retry the failed paths, then remove the process folder.

    This hook calls the finalizers itself rather than leaving them to
    weakref's own exit hook, whose order relative to this one depends on
    import order, so that the folder is empty when it is removed.
    """
    with _registry.lock:
        finalizers = list(_registry.owners.values())
    for finalizer in finalizers:
        finalizer()

    retry_failed_cleanup()
    remove_process_dir()


def _forget_parent_owners() -> None:
    """Give a forked child an empty registry, so it never removes its parent's files."""
    global _registry
    _registry = _Registry()


os.register_at_fork(after_in_child=_forget_parent_owners)
