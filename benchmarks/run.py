"""Print throughput and peak memory of the pipeline on captures of about 10, 50 and 200 MB.

Usage: python benchmarks/run.py [--sizes 10,50,200] [--work-dir DIR]

Each configuration runs in a fresh Python process, so its peak RSS
(getrusage ru_maxrss) is its own, imports included.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_views import bench_views  # noqa: E402
from build import build_capture  # noqa: E402

CORPUS = HERE.parent.parent / "shared" / "corpus"

KEY = "bytes(range(32))"
# name -> (Python expression for the stage list, evaluated in the child process; memory monitor on?)
CONFIGS = {
    "read+write": ("[]", False),
    "dedup": ("[Deduplicate()]", False),
    "dedup-window": ("[Deduplicate(window_packets=100_000)]", False),
    "anonymize": (f"[AnonymizeIPs(key={KEY})]", False),
    "mask": ("[MaskPayloads()]", False),
    "full": (f"[Deduplicate(), AnonymizeIPs(key={KEY}), MaskPayloads()]", False),
    "full+monitor": (f"[Deduplicate(), AnonymizeIPs(key={KEY}), MaskPayloads()]", True),
}
# Ratios printed after each size: (config, baseline).
RATIOS = [("anonymize", "read+write"), ("mask", "read+write"), ("full+monitor", "full")]

CHILD = r"""
import json, resource, sys, time
from pktmask_nb import *
stages = eval(sys.argv[3])
started = time.perf_counter()
result = Pipeline(stages, progress=False, monitor_memory=sys.argv[4] == "1").run(sys.argv[1], sys.argv[2])
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "packets": result.packets_in, "out": result.packets_out, "peak_mib": peak}))
result.close()
"""


def run_config(capture: Path, output: Path, stages_expression: str, monitor: bool) -> dict:
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, str(capture), str(output), stages_expression, "1" if monitor else "0"],
        check=True,
        capture_output=True,
        text=True,
    )
    output.unlink()
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,50,200", help="capture sizes in MB (default 10,50,200)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="configurations to run")
    parser.add_argument("--work-dir", help="folder for the generated captures (default: a temp folder)")
    parser.add_argument(
        "--views-mb",
        type=int,
        default=200,
        help="capture size for the payloads() memory check, in MB (0 skips it; default 200)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pktmask-bench-") as default_dir:
        work = Path(args.work_dir or default_dir)
        work.mkdir(parents=True, exist_ok=True)
        print(f"{'size':>6} {'config':<14} {'packets':>9} {'seconds':>8} {'packets/s':>10} {'peak MiB':>9}")
        for size in [int(s) for s in args.sizes.split(",")]:
            capture = work / f"bench-{size}MB.pcap"
            if not capture.exists():
                build_capture(CORPUS, capture, size * 1_000_000)
            seconds = {}
            for name in args.configs.split(","):
                figures = run_config(capture, work / f"out-{os.getpid()}.pcap", *CONFIGS[name])
                seconds[name] = figures["seconds"]
                rate = figures["packets"] / figures["seconds"]
                print(
                    f"{size:>4}MB {name:<14} {figures['packets']:>9} {figures['seconds']:>8.2f} "
                    f"{rate:>10,.0f} {figures['peak_mib']:>9.1f}",
                    flush=True,
                )
            for name, baseline in RATIOS:
                if name in seconds and baseline in seconds:
                    print(f"{size:>4}MB ratio {name} / {baseline}: {seconds[name] / seconds[baseline]:.2f}")
        if args.views_mb:
            _report_views(bench_views(size_mb=args.views_mb, work_dir=work))


def _report_views(figures: dict) -> None:
    """Print the payloads() figures; exit non-zero when the memory bound was passed."""
    print(f"payloads() on {figures['packets']:,} packets, bound {figures['bound_mib']} MiB beyond the rows:")
    for name in ("first", "last"):
        beyond = figures[f"{name}_peak_mib"] - figures[f"{name}_rows_mib"]
        verdict = "ok" if figures[f"{name}_ok"] else "OVER THE BOUND"
        print(
            f"  {name} {figures[f'{name}_rows']} rows: {figures[f'{name}_seconds']:.2f} s, "
            f"{beyond:.1f} MiB beyond the rows ({verdict})"
        )
    if not (figures["first_ok"] and figures["last_ok"]):
        sys.exit("payloads() used more memory than its bound")


if __name__ == "__main__":
    main()
