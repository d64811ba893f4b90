"""MemoryMonitor: samples, stage marks, pressure callbacks, and running the work once."""

from __future__ import annotations

import logging
import subprocess
import time

import psutil
import pytest

from pktmask_nb.memory import MIB, MemoryMonitor


def rss_mib() -> float:
    return psutil.Process().memory_info().rss / MIB


def hold_bytes(mib: int, seconds: float) -> int:
    """Keep `mib` MiB resident for `seconds`, and return its length."""
    block = b"\x01" * (mib * MIB)  # filled, so every page is resident
    time.sleep(seconds)
    return len(block)


def test_run_returns_value_and_calls_once():
    calls = []

    def short_work(a, *, b):
        calls.append((a, b))
        return a + b

    # Without max_iterations=1, memory_profiler calls a function again when it
    # got fewer than 5 samples, and this one finishes before the first interval.
    value = MemoryMonitor(interval=0.05).run(short_work, 2, b=3)

    assert value == 5
    assert calls == [(2, 3)]


def test_samples_arrive_during_run():
    monitor = MemoryMonitor(interval=0.02)
    monitor.run(hold_bytes, 64, 0.3)
    frame = monitor.frame()

    assert list(frame.columns) == ["seconds", "mib", "rss_mib", "stage", "pass"]
    assert len(frame) >= 8
    assert frame["seconds"].is_monotonic_increasing
    assert frame["seconds"].iloc[0] == 0
    assert frame["mib"].iloc[0] == 0
    assert frame["mib"].max() >= 60
    assert monitor.peak_mib_ == pytest.approx(frame["mib"].max())
    assert monitor.baseline_mib_ == pytest.approx(frame["rss_mib"].iloc[0])


def test_marks_label_later_samples():
    monitor = MemoryMonitor(interval=0.02)

    def two_stages():
        time.sleep(0.1)
        monitor.mark(stage="mask", pass_name="scan")
        time.sleep(0.2)
        monitor.mark(stage="dedup", pass_name="process")
        time.sleep(0.2)

    monitor.run(two_stages)
    frame = monitor.frame()
    labels = list(zip(frame["stage"], frame["pass"], strict=True))
    first_change = labels.index(("mask", "scan"))
    second_change = labels.index(("dedup", "process"))

    assert set(labels) == {(None, None), ("mask", "scan"), ("dedup", "process")}
    assert labels[:first_change] == [(None, None)] * first_change
    assert set(labels[first_change:second_change]) == {("mask", "scan")}
    assert set(labels[second_change:]) == {("dedup", "process")}
    assert second_change - first_change >= 5


def test_mark_outside_run_is_ignored():
    monitor = MemoryMonitor(interval=0.02)
    monitor.mark(stage="mask", pass_name="scan")
    monitor.run(time.sleep, 0.1)

    assert set(monitor.frame()["stage"]) == {None}


def test_callbacks_fire_above_threshold():
    baseline = rss_mib()
    monitor = MemoryMonitor(interval=0.02, limit_mib=baseline * 2, threshold=0.8)
    calls = []
    monitor.add_callback(lambda pressure, rss: calls.append((time.time(), pressure, rss)))
    allocated_at = []

    def grow():
        time.sleep(0.2)
        allocated_at.append(time.time())
        return hold_bytes(int(baseline) + 32, 0.3)

    monitor.run(grow)

    assert len(calls) == 1
    called_at, pressure, rss = calls[0]
    assert called_at >= allocated_at[0]
    assert pressure >= 0.8
    assert rss == pytest.approx(pressure * baseline * 2)
    assert len(monitor.pressure_events_) == 1


def test_no_callback_below_threshold():
    monitor = MemoryMonitor(interval=0.02, limit_mib=rss_mib() * 100, threshold=0.8)
    calls = []
    monitor.add_callback(lambda pressure, rss: calls.append(pressure))
    monitor.run(hold_bytes, 32, 0.2)

    assert calls == []


def test_raising_callback_is_logged_others_run(caplog):
    monitor = MemoryMonitor(interval=0.02, limit_mib=rss_mib() / 2, threshold=0.8)
    calls = []

    def broken(pressure, rss):
        raise RuntimeError("flush failed")

    monitor.add_callback(broken)
    monitor.add_callback(lambda pressure, rss: calls.append(pressure))

    with caplog.at_level(logging.WARNING, logger="pktmask_nb.memory"):
        value = monitor.run(hold_bytes, 1, 0.1)

    assert value == MIB
    assert len(calls) == 1
    assert calls[0] > 1
    assert "Memory pressure callback" in caplog.text
    assert "RuntimeError: flush failed" in caplog.text


def test_error_in_work_spares_child_processes():
    # memory_profiler itself would SIGKILL every child of this process here.
    sleeper = subprocess.Popen(["sleep", "30"])
    monitor = MemoryMonitor(interval=0.02)

    def failing():
        time.sleep(0.05)
        raise ValueError("bad capture")

    try:
        with pytest.raises(ValueError, match="bad capture"):
            monitor.run(failing)
        assert sleeper.poll() is None
        assert len(monitor.frame()) >= 1
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"interval": 0}, "interval"),
        ({"limit_mib": -1}, "limit_mib"),
        ({"threshold": 0}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
    ],
)
def test_invalid_options_raise(options, message):
    with pytest.raises(ValueError, match=message):
        MemoryMonitor(**options)


def test_non_callable_callback_raises():
    with pytest.raises(TypeError, match="not callable"):
        MemoryMonitor().add_callback(42)
