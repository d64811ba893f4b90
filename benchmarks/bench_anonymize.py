"""Time the AnonymizeIPs stage alone against reading and writing alone, on the same captures.

Usage: python benchmarks/bench_anonymize.py [--repeat N] [CAPTURE ...]

Without captures, the corpus captures that benchmarks/build.py uses are
timed. "read+write" is a pipeline with no stage. "anonymize" is the time
the pipeline spends inside AnonymizeIPs.process, measured by the pipeline
itself: "cold" for a fresh stage (every distinct address costs one
Crypto-PAn computation, about 0.1 ms for IPv4 and 0.5 ms for IPv6 with
yacryptopan 1.0.2), "warm" for later runs of the same stage object, whose
address cache is filled. The ratio anonymize / read+write aims at 2 or less.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pktmask_nb import Pipeline
from pktmask_nb.stages.anonymize import AnonymizeIPs

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parent.parent / "shared" / "corpus"
DEFAULT_CAPTURES = [
    "zeek_echo-connections.pcap",
    "ppp_tls2.pcap",
    "ppp_example2.pcap",
    "pktmask_tls_1_2_single_vlan.pcap",
]
KEY = bytes(range(32))


def _run(capture: Path, output: Path, stages: list) -> tuple[float, float, int]:
    """Return (pipeline seconds, seconds inside the first stage or 0, packets)."""
    result = Pipeline(stages, progress=False).run(capture, output)
    stage_seconds = result.stage_runs[0].seconds if result.stage_runs else 0.0
    figures = (result.seconds, stage_seconds, result.packets_in)
    result.close()
    output.unlink()
    return figures


def bench_anonymize(
    captures: Sequence[str | Path], *, repeat: int = 3, work_dir: str | Path | None = None
) -> list[dict[str, float | int | str]]:
    """Time anonymization against read+write on each capture; return one row per capture.

    Row keys: capture, packets, read_write_s (best pipeline time with no
    stage), anonymize_cold_s (stage time of a fresh stage), anonymize_s
    (best stage time with a warm cache), anonymize_pipeline_s (best total
    pipeline time with the stage), ratio (anonymize_s / read_write_s) and
    ratio_cold. Times are wall-clock seconds (time.perf_counter).
    """
    rows = []
    with tempfile.TemporaryDirectory(prefix="pktmask-bench-anon-") as default_dir:
        output = Path(work_dir or default_dir) / "out.pcap"
        for capture in map(Path, captures):
            read_write = min(_run(capture, output, [])[0] for _ in range(repeat))

            stage = AnonymizeIPs(key=KEY)
            pipeline_cold, cold, packets = _run(capture, output, [stage])
            warm_runs = [_run(capture, output, [stage]) for _ in range(repeat)]
            warm = min(seconds for _, seconds, _ in warm_runs)
            pipeline = min([pipeline_cold] + [total for total, _, _ in warm_runs])

            rows.append(
                {
                    "capture": capture.name,
                    "packets": packets,
                    "read_write_s": read_write,
                    "anonymize_cold_s": cold,
                    "anonymize_s": warm,
                    "anonymize_pipeline_s": pipeline,
                    "ratio": warm / read_write,
                    "ratio_cold": cold / read_write,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("captures", nargs="*", help="captures to time (default: four corpus captures)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per configuration; the best counts (default 3)"
    )
    args = parser.parse_args()
    captures = args.captures or [CORPUS / name for name in DEFAULT_CAPTURES]

    print(
        f"{'capture':<36} {'packets':>8} {'r+w s':>7} {'anon s':>7} {'cold s':>7} "
        f"{'us/pkt':>7} {'ratio':>6} {'cold':>6}"
    )
    for row in bench_anonymize(captures, repeat=args.repeat):
        per_packet = row["anonymize_s"] / row["packets"] * 1e6
        print(
            f"{row['capture']:<36} {row['packets']:>8} {row['read_write_s']:>7.3f} {row['anonymize_s']:>7.3f} "
            f"{row['anonymize_cold_s']:>7.3f} {per_packet:>7.2f} {row['ratio']:>6.2f} {row['ratio_cold']:>6.2f}",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
