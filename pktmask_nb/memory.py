"""Memory use of a run, sampled while it runs, with the stage and pass that were running.

`MemoryMonitor.run(f)` calls `memory_profiler.memory_usage`. In
memory_profiler 0.61 that function takes a baseline RSS reading in this
process and forks a sampler process (`MemTimer`, a `multiprocessing.Process`)
that reads this process's RSS through psutil every `interval` seconds. It runs
f here, and receives every sample at once through a pipe only when f has
returned, so the samples cannot drive anything while f runs.

NOTE: while the forked sampler lives, the kernel copies each page this process
writes, once (copy-on-write), reference counts included. That costs about
0.9 ms per MiB written, measured by `benchmarks/bench_memory.py` on a 2-core
VM: under 5 % for a pipeline that streams packets, about 30 % for a 0.35 s run
over 117 MiB of frames held in a list.

Pressure callbacks run in this process instead, in a daemon thread named
`pktmask_nb-memory-watch`. That thread starts only when `limit_mib` is set. It
reads RSS through psutil every `interval` seconds while f runs, and calls the
callbacks when the RSS rises to `threshold * limit_mib`. It calls them once per
crossing, and again only after the RSS has fallen below the threshold. A
callback runs in that thread, not in the thread that runs f, so it must be
thread-safe: setting a flag that the running code checks is the usual way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pandas as pd
import psutil

logger = logging.getLogger(__name__)

MIB = 2**20
_T = TypeVar("_T")
PressureCallback = Callable[[float, float], object]

_FRAME_COLUMNS = ["seconds", "mib", "rss_mib", "stage", "pass"]


class MemoryMonitor:
    """Sample this process's RSS while a function runs, and warn on memory pressure.

    `interval` is the sampling period in seconds. `limit_mib` is the memory
    the process may use, in MiB (None turns pressure callbacks off), and
    `threshold` is the fraction of it at which callbacks fire. Raises
    ValueError for an interval or limit that is not positive, or a threshold
    outside (0, 1].

    After `run`, `frame()` returns the samples, `baseline_mib_` is the RSS at
    the start and `peak_mib_` the highest rise above it, both in MiB.
    """

    def __init__(
        self, *, interval: float = 0.05, limit_mib: float | None = None, threshold: float = 0.8
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        if limit_mib is not None and limit_mib <= 0:
            raise ValueError(f"limit_mib must be positive or None, got {limit_mib!r}")
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be a fraction in (0, 1], got {threshold!r}")

        self.interval = interval
        self.limit_mib = limit_mib
        self.threshold = threshold
        self._callbacks: list[PressureCallback] = []
        self._running = False
        self._samples: list[tuple[float, float]] = []
        self._marks: list[tuple[float, str, str]] = []
        self.pressure_events_: list[tuple[float, float, float]] = []
        self.baseline_mib_: float | None = None
        self.peak_mib_: float | None = None

    def __repr__(self) -> str:
        return (
            f"MemoryMonitor(interval={self.interval!r}, limit_mib={self.limit_mib!r}, "
            f"threshold={self.threshold!r})"
        )

    def add_callback(self, callback: PressureCallback) -> None:
        """Register `callback(pressure, rss_mib)`, called when RSS reaches the threshold.

        `pressure` is RSS divided by `limit_mib`. A callback that raises is
        logged and neither stops the run nor the other callbacks.
        Raises TypeError when `callback` is not callable.
        """
        if not callable(callback):
            raise TypeError(f"memory pressure callback is not callable: {callback!r}")
        self._callbacks.append(callback)

    def mark(self, *, stage: str, pass_name: str) -> None:
        """Record that `stage` starts its `pass_name` pass now ("scan" or "process").

        Call it from the running code. Samples taken after the mark carry its
        stage and pass in `frame()`. A stage shorter than `interval` may get
        no sample. Outside `run` the call is ignored.
        """
        if not self._running:
            logger.debug("Ignored memory mark %s/%s outside a monitored run", stage, pass_name)
            return
        self._marks.append((time.time(), stage, pass_name))

    def run(self, f: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        """Call `f(*args, **kwargs)` once while sampling RSS, and return its value.

        An exception from f is raised again here, after the sampler has stopped.
        Raises RuntimeError when this monitor is already running.
        """
        if self._running:
            raise RuntimeError("this MemoryMonitor is already running; use one per run")
        self._samples, self._marks, self.pressure_events_ = [], [], []
        outcome: dict[str, BaseException] = {}

        def monitored() -> _T | None:
            stop = threading.Event()
            watcher = self._start_watcher(stop)
            try:
                return f(*args, **kwargs)
            # On an exception from f, memory_profiler sends SIGKILL to every
            # child process of this process (kernels and tshark included), and
            # a KeyboardInterrupt would leave its sampler running. So the error
            # is kept here and raised again once the sampler has stopped.
            except BaseException as error:
                outcome["error"] = error
                return None
            finally:
                stop.set()
                if watcher is not None:
                    watcher.join()

        self._running = True
        try:
            # Imported here: memory_profiler imports IPython, which costs 0.2 s and 25 MiB.
            from memory_profiler import memory_usage

            samples, value = memory_usage(
                (monitored, (), {}),
                interval=self.interval,
                timestamps=True,
                max_iterations=1,  # memory_profiler re-runs f after fewer than 5 samples
                retval=True,
                include_children=False,
            )
        finally:
            self._running = False

        self._store(samples)
        if "error" in outcome:
            raise outcome["error"]
        return value

    def frame(self) -> pd.DataFrame:
        """Return the samples of the last run, one row each, in time order.

        Columns: seconds since the baseline reading, mib (RSS minus the
        baseline, in MiB), rss_mib (RSS in MiB), and the stage and pass of the
        last mark before the sample (None before the first mark).
        """
        if not self._samples:
            return pd.DataFrame(columns=_FRAME_COLUMNS)

        samples = pd.DataFrame(self._samples, columns=["rss_mib", "time"])
        marks = pd.DataFrame(self._marks, columns=["time", "stage", "pass"])
        marks = marks.astype({"time": "float64", "stage": "object", "pass": "object"})
        joined = pd.merge_asof(samples, marks, on="time", direction="backward")

        joined["seconds"] = joined["time"] - samples["time"].iloc[0]
        joined["mib"] = joined["rss_mib"] - self.baseline_mib_
        labels = joined[["stage", "pass"]].astype("object")
        joined[["stage", "pass"]] = labels.where(labels.notna(), None)
        return joined[_FRAME_COLUMNS]

    def _store(self, samples: list[tuple[float, float]]) -> None:
        self._samples = sorted(samples, key=lambda sample: sample[1])
        rss_values = [rss for rss, _ in self._samples]
        self.baseline_mib_ = rss_values[0]
        self.peak_mib_ = max(rss_values) - self.baseline_mib_
        logger.info(
            "Memory: baseline %.1f MiB, peak %+.1f MiB over %d samples",
            self.baseline_mib_,
            self.peak_mib_,
            len(self._samples),
        )

    # -- memory pressure ------------------------------------------------------

    def _start_watcher(self, stop: threading.Event) -> threading.Thread | None:
        if self.limit_mib is None:
            return None
        watcher = threading.Thread(
            target=self._watch, args=(stop,), name="pktmask_nb-memory-watch", daemon=True
        )
        watcher.start()
        return watcher

    def _watch(self, stop: threading.Event) -> None:
        """Poll RSS until `stop` is set, firing the callbacks once per upward crossing."""
        process = psutil.Process()
        above = False
        while True:
            rss_mib = process.memory_info().rss / MIB
            pressure = rss_mib / self.limit_mib
            if pressure < self.threshold:
                above = False
            elif not above:
                above = True
                self._fire(pressure, rss_mib)
            if stop.wait(self.interval):
                return

    def _fire(self, pressure: float, rss_mib: float) -> None:
        self.pressure_events_.append((time.time(), pressure, rss_mib))
        logger.warning(
            "Memory pressure: RSS %.0f MiB is %.0f%% of the %.0f MiB limit",
            rss_mib,
            100 * pressure,
            self.limit_mib,
        )
        for callback in self._callbacks:
            try:
                callback(pressure, rss_mib)
            # A callback may raise anything, and the run and the other callbacks
            # must go on: the error is logged with its traceback, never hidden.
            except Exception:
                logger.warning("Memory pressure callback %r failed", callback, exc_info=True)
