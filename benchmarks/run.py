"""Print throughput and peak memory of the pipeline on captures of about 10, 50 and 200 MB.

Usage: python benchmarks/run.py [--sizes 10,50,200] [--work-dir DIR]

Each configuration runs in a fresh Python process, so its peak RSS
(getrusage ru_maxrss) is its own, imports included.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from build import build_capture  # noqa: E402

CORPUS = HERE.parent.parent / "shared" / "corpus"

# name -> Python expression for the stage list, evaluated in the child process.
CONFIGS = {
    "read+write": "[]",
    "dedup": "[Deduplicate()]",
    "dedup-window": "[Deduplicate(window_packets=100_000)]",
}

CHILD = r"""
import json, resource, sys, time
from pktmask_nb import *
stages = eval(sys.argv[3])
started = time.perf_counter()
result = Pipeline(stages, progress=False).run(sys.argv[1], sys.argv[2])
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "packets": result.packets_in, "out": result.packets_out, "peak_mib": peak}))
result.close()
"""


def add_config(name: str, stages_expression: str) -> None:
    CONFIGS[name] = stages_expression


def run_config(capture: Path, output: Path, stages_expression: str) -> dict:
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, str(capture), str(output), stages_expression],
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
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pktmask-bench-") as default_dir:
        work = Path(args.work_dir or default_dir)
        work.mkdir(parents=True, exist_ok=True)
        print(f"{'size':>6} {'config':<14} {'packets':>9} {'seconds':>8} {'packets/s':>10} {'peak MiB':>9}")
        for size in [int(s) for s in args.sizes.split(",")]:
            capture = work / f"bench-{size}MB.pcap"
            if not capture.exists():
                build_capture(CORPUS, capture, size * 1_000_000)
            for name in args.configs.split(","):
                figures = run_config(capture, work / "out.pcap", CONFIGS[name])
                rate = figures["packets"] / figures["seconds"]
                print(
                    f"{size:>4}MB {name:<14} {figures['packets']:>9} {figures['seconds']:>8.2f} "
                    f"{rate:>10,.0f} {figures['peak_mib']:>9.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
