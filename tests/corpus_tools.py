"""Test helpers shared by the test modules: the corpus location and tshark field extraction.

A module of its own, not conftest.py: `from conftest import ...` breaks as
soon as another conftest.py (notebooks/) is imported first.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CORPUS_DIR = (PROJECT_ROOT / ".." / "shared" / "corpus").resolve()


def corpus_files() -> list[Path]:
    """Every capture of the shared corpus, sorted by name.

    Raises FileNotFoundError when the corpus is missing, so that parametrized
    tests fail at collection instead of being skipped with no cases.
    """
    captures = sorted(p for p in CORPUS_DIR.glob("*") if p.suffix in (".pcap", ".pcapng"))
    if not captures:
        raise FileNotFoundError(f"no captures in {CORPUS_DIR}: the tests need the shared corpus there")
    return captures


def tshark_fields(path: Path, fields: list[str], *extra: str) -> list[list[str]]:
    """Run tshark on `path` and return one list of field values per frame."""
    command = ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "separator=\t", *extra]
    for field in fields:
        command += ["-e", field]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return [line.split("\t") for line in output.splitlines()]


# tshark options that validate TCP and UDP checksums after IP reassembly, so that the
# checksum of a fragmented datagram is checked over all its fragments.
CHECKSUM_OPTIONS = [
    "-o",
    "ip.defragment:TRUE",
    "-o",
    "ipv6.defragment:TRUE",
    "-o",
    "tcp.check_checksum:TRUE",
    "-o",
    "udp.check_checksum:TRUE",
]
