"""Benchmarks: MemoryMonitor's overhead on a CPU-bound run, and the cost of the import-time sweep.

`bench_memory()` times a packet-parsing loop alone and under `MemoryMonitor`
(with and without a memory limit, which adds the pressure-polling thread), for
a streaming workload and for one that keeps every frame in memory. The target
is under 10 % overhead. `bench_sweep()` times `sweep_stale()` when nothing is
stale. `run()` returns both sets of figures for `benchmarks/run.py`.

Run alone: `python benchmarks/bench_memory.py` from the project root.
"""

from __future__ import annotations

import logging
import statistics
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).absolute().parents[1]))

from pktmask_nb.memory import MemoryMonitor
from pktmask_nb.tempdirs import process_temp_dir, sweep_stale, user_temp_root

logger = logging.getLogger(__name__)

_ETHERTYPE_IPV4 = 0x0800
_IPPROTO_TCP = 6


def make_frames(count: int) -> list[bytes]:
    """Build `count` Ethernet/IPv4/TCP frames with varying addresses, ports and payload sizes."""
    frames = []
    for i in range(count):
        payload = bytes(i % 200)
        tcp = struct.pack("!HHIIBBHHH", 1024 + i % 50000, 443, i, 0, 5 << 4, 0x18, 65535, 0, 0)
        ip = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(tcp) + len(payload),
            i & 0xFFFF,
            0,
            64,
            _IPPROTO_TCP,
            0,
            (0x0A000000 + i % 65536).to_bytes(4, "big"),
            bytes((192, 0, 2, i % 256)),
        )
        ethernet = b"\x02" * 6 + b"\x04" * 6 + _ETHERTYPE_IPV4.to_bytes(2, "big")
        frames.append(ethernet + ip + tcp + payload)
    return frames


def parse_frames(frames: list[bytes]) -> int:
    """Parse each frame's IPv4 and TCP headers with struct, as a stage's hot path does.

    Returns the total TCP payload length in bytes plus a checksum of ports and
    seq numbers, so no parsed field goes unused.
    """
    total = 0
    checksum = 0
    for frame in frames:
        if int.from_bytes(frame[12:14], "big") != _ETHERTYPE_IPV4:
            continue
        version_ihl, total_length, protocol = frame[14], *struct.unpack_from("!H5xB", frame, 16)
        ihl = (version_ihl & 0x0F) * 4
        if protocol != _IPPROTO_TCP:
            continue
        tcp_start = 14 + ihl
        sport, dport, seq, _ack, offset_flags = struct.unpack_from("!HHIIH", frame, tcp_start)
        data_offset = (offset_flags >> 12) * 4
        total += total_length - ihl - data_offset
        checksum = (checksum + sport + dport + seq) & 0xFFFFFFFF
    return total + checksum


def _time(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _stream(frames: list[bytes], rounds: int) -> int:
    """Parse the same small set of frames `rounds` times, as a pipeline streaming a file does."""
    return sum(parse_frames(frames) for _ in range(rounds))


def _time_variants(work: Callable[[], object], interval: float) -> tuple[float, float, float, int]:
    """Time `work` alone, monitored, and monitored with a limit. Also return the sample count."""
    plain_s = _time(work)
    monitor = MemoryMonitor(interval=interval)
    monitored_s = _time(lambda: monitor.run(work))
    watched = MemoryMonitor(interval=interval, limit_mib=1e6)
    watched_s = _time(lambda: watched.run(work))
    return plain_s, monitored_s, watched_s, len(monitor.frame())


def bench_memory(*, frames: int = 600_000, repeats: int = 5, interval: float = 0.05) -> dict[str, float]:
    """Time parsing `frames` frames alone and under MemoryMonitor, in two workloads.

    "stream" parses a set of 2000 frames over and over, so little memory is
    written, as when a pipeline streams a capture. "held" parses `frames`
    distinct frames kept in a list. The sampler is a forked process, so while
    it lives every page the parent writes (reference counts included) is
    copied once, and "held" shows that cost at its worst.

    Keys per workload W: W_plain_s, W_monitored_s, W_watched_s (with
    `limit_mib` set, so the pressure thread runs too), W_overhead and
    W_watched_overhead (fractions of W_plain_s). Times are the minimum of
    `repeats` interleaved runs. Also: frames, samples (of the last monitored
    run), noop_s (one monitored call of a function that does nothing).
    """
    stream_set = make_frames(2000)
    held_set = make_frames(frames)
    workloads: dict[str, Callable[[], object]] = {
        "stream": lambda: _stream(stream_set, frames // len(stream_set)),
        "held": lambda: parse_frames(held_set),
    }

    figures: dict[str, float] = {"frames": frames}
    for name, work in workloads.items():
        work()  # warm up
        timings: dict[str, list[float]] = {"plain": [], "monitored": [], "watched": []}
        for _ in range(repeats):
            # Interleaved, so drift in machine load affects every variant alike.
            plain_s, monitored_s, watched_s, samples = _time_variants(work, interval)
            timings["plain"].append(plain_s)
            timings["monitored"].append(monitored_s)
            timings["watched"].append(watched_s)

        plain = min(timings["plain"])
        figures[f"{name}_plain_s"] = plain
        figures[f"{name}_monitored_s"] = min(timings["monitored"])
        figures[f"{name}_watched_s"] = min(timings["watched"])
        figures[f"{name}_overhead"] = min(timings["monitored"]) / plain - 1
        figures[f"{name}_watched_overhead"] = min(timings["watched"]) / plain - 1
        figures["samples"] = samples

    figures["noop_s"] = min(_time(lambda: MemoryMonitor().run(lambda: None)) for _ in range(5))
    return figures


def bench_sweep(*, calls: int = 2000) -> dict:
    """Time `sweep_stale()` with nothing stale; return the median and max in microseconds.

    Keys: folders (process folders in the per-user temp folder, this
    process's included), median_us, max_us.
    """
    process_temp_dir()
    sweep_stale()
    durations = [_time(sweep_stale) for _ in range(calls)]
    folders = sum(1 for path in user_temp_root().iterdir() if path.is_dir())
    return {
        "folders": folders,
        "median_us": statistics.median(durations) * 1e6,
        "max_us": max(durations) * 1e6,
    }


def run() -> dict[str, dict]:
    """Run both benchmarks and return their figures by name."""
    return {"memory_monitor": bench_memory(), "sweep_stale": bench_sweep()}


def main() -> None:
    for name, figures in run().items():
        print(name)
        for key, value in figures.items():
            text = f"{value:.4f}" if isinstance(value, float) else str(value)
            print(f"  {key:24} {text}")


if __name__ == "__main__":
    main()
