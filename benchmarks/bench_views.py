"""Benchmark: memory of `RunResult.payloads()` on a 200 MB capture, against its bound.

A view of 1,000 rows must stream the input and output files and stop: it
may use at most `BOUND_MIB` beyond the memory of the rows it returns,
whatever the size of the capture. `bench_views()` builds the capture
(`build.build_capture`), runs the three stages over it in a fresh Python
process, and measures there, with `MemoryMonitor`, the peak memory above
the start of each call:

* `first`: the first 1,000 rows, which read the first packets only;
* `last`: the last 1,000 frames, which stream both files to their end;
* `flows`: `flows()`, which reads everything (reported, not bounded).

`run()` returns the figures for `benchmarks/run.py`; run alone with
`python benchmarks/bench_views.py [--size-mb 200] [--work-dir DIR]`.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).absolute().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from build import build_capture  # noqa: E402

logger = logging.getLogger(__name__)

CORPUS = HERE.parent.parent / "shared" / "corpus"
BOUND_MIB = 8.0
ROWS = 1000

CHILD = r"""
import gc, json, sys, time
from pktmask_nb import Deduplicate, Pipeline
from pktmask_nb.memory import MemoryMonitor, MIB
from pktmask_nb.stages.anonymize import AnonymizeIPs
from pktmask_nb.stages.mask import MaskPayloads

capture, output, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
stages = [Deduplicate(), AnonymizeIPs(key=bytes(range(32))), MaskPayloads()]
started = time.perf_counter()
result = Pipeline(stages, progress=False, monitor_memory=False).run(capture, output)
figures = {"packets": result.packets_in, "run_seconds": time.perf_counter() - started}

def measure(name, call):
    gc.collect()
    monitor = MemoryMonitor(interval=0.005)
    begin = time.perf_counter()
    value = monitor.run(call)
    figures[name + "_seconds"] = time.perf_counter() - begin
    figures[name + "_peak_mib"] = monitor.peak_mib_
    figures[name + "_rows"] = len(value)
    figures[name + "_rows_mib"] = value.memory_usage(deep=True).sum() / MIB
    del value

last = (result.packets_in - rows + 1, result.packets_in)
measure("first", lambda: result.payloads(limit=rows))
measure("last", lambda: result.payloads(frames=last, limit=rows))
measure("flows", result.flows)
result.close()
print(json.dumps(figures))
"""


def bench_views(*, size_mb: int = 200, rows: int = ROWS, work_dir: Path | None = None) -> dict[str, float]:
    """Build a `size_mb` MB capture, sanitize it and measure the views; return the figures.

    Keys: packets, run_seconds, and for first, last and flows: _seconds,
    _peak_mib (above the start of the call), _rows, _rows_mib; and
    first_ok / last_ok, whether peak minus rows stayed within BOUND_MIB.
    The capture is kept in `work_dir` when given, for later runs.
    """
    with tempfile.TemporaryDirectory(prefix="pktmask-bench-views-") as scratch:
        work = Path(work_dir or scratch)
        work.mkdir(parents=True, exist_ok=True)
        capture = work / f"bench-{size_mb}MB.pcap"
        if not capture.exists():
            logger.info("building %s", capture)
            build_capture(CORPUS, capture, size_mb * 1_000_000)
        output = Path(scratch) / "out.pcap"
        completed = subprocess.run(
            [sys.executable, "-c", CHILD, str(capture), str(output), str(rows)],
            check=True,
            capture_output=True,
            text=True,
            cwd=HERE.parent,
        )
    figures = json.loads(completed.stdout.strip().splitlines()[-1])
    for name in ("first", "last"):
        beyond_rows = figures[f"{name}_peak_mib"] - figures[f"{name}_rows_mib"]
        figures[f"{name}_ok"] = beyond_rows <= BOUND_MIB
    figures["bound_mib"] = BOUND_MIB
    return figures


def run() -> dict[str, dict]:
    """Run the benchmark at 200 MB and return its figures by name."""
    return {"views_200MB": bench_views()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--work-dir", type=Path, help="folder that keeps the generated capture")
    args = parser.parse_args()
    figures = bench_views(size_mb=args.size_mb, rows=args.rows, work_dir=args.work_dir)
    for key, value in figures.items():
        print(f"{key:>20}: {value:.3f}" if isinstance(value, float) else f"{key:>20}: {value}")
    if not (figures["first_ok"] and figures["last_ok"]):
        sys.exit(f"payloads() used more than {BOUND_MIB} MiB beyond its rows")


if __name__ == "__main__":
    main()
