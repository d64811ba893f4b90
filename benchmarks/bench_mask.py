"""Time MaskPayloads (scan pass and final pass) against reading and writing alone.

Usage: python benchmarks/bench_mask.py [CAPTURE ...]   (default: the TLS-heavy
and the largest corpus captures)

`measure_mask(capture)` is what `benchmarks/run.py` can call; `CONFIGS` are
the stage lists to add to its configurations.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from pktmask_nb import Pipeline
from pktmask_nb.stages.mask import MaskPayloads

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
DEFAULT_CAPTURES = ["ppp_tls2.pcap", "ppp_example2.pcap", "zeek_echo-connections.pcap"]
RATIO_TARGET = 3.0

# Configuration name -> stage list expression, for benchmarks/run.py.
CONFIGS = {"mask": "[MaskPayloads()]", "mask+http": "[MaskPayloads(keep_http_headers=True)]"}


def best_time(capture: Path, output: Path, make_stages, *, repeat: int) -> tuple[float, int]:
    """Return the fastest of `repeat` runs in seconds, and the packet count."""
    best = float("inf")
    packets = 0
    for _ in range(repeat):
        started = time.perf_counter()
        result = Pipeline(make_stages(), progress=False).run(capture, output)
        best = min(best, time.perf_counter() - started)
        packets = result.packets_in
        result.close()
        output.unlink()
    return best, packets


def measure_mask(capture: Path, *, repeat: int = 3) -> dict[str, float]:
    """Time read+write alone and masking on `capture`; return seconds, packets/s and their ratio."""
    with tempfile.TemporaryDirectory(prefix="pktmask-bench-mask-") as work:
        output = Path(work) / f"out{capture.suffix}"
        copy_seconds, packets = best_time(capture, output, list, repeat=repeat)
        mask_seconds, _ = best_time(capture, output, lambda: [MaskPayloads()], repeat=repeat)
    return {
        "packets": packets,
        "read_write_seconds": copy_seconds,
        "mask_seconds": mask_seconds,
        "mask_packets_per_second": packets / mask_seconds,
        "ratio": mask_seconds / copy_seconds,
    }


def main() -> None:
    captures = [Path(arg) for arg in sys.argv[1:]] or [CORPUS / name for name in DEFAULT_CAPTURES]
    print(f"{'capture':<32} {'packets':>8} {'r+w s':>7} {'mask s':>7} {'mask pkt/s':>11} {'ratio':>6}")
    for capture in captures:
        figures = measure_mask(capture)
        print(
            f"{capture.name:<32} {figures['packets']:>8} {figures['read_write_seconds']:>7.3f} "
            f"{figures['mask_seconds']:>7.3f} {figures['mask_packets_per_second']:>11,.0f} "
            f"{figures['ratio']:>6.1f}",
            flush=True,
        )
    print(f"target ratio: at most {RATIO_TARGET}")


if __name__ == "__main__":
    main()
