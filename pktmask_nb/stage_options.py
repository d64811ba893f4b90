"""Command-line options of each stage, and the stages they build."""

from __future__ import annotations

import argparse

from pktmask_nb.stages.base import Stage
from pktmask_nb.stages.dedup import Deduplicate

STAGE_NAMES = ("dedup",)


def add_stage_arguments(parser: argparse.ArgumentParser) -> None:
    dedup = parser.add_argument_group("dedup stage")
    dedup.add_argument(
        "--dedup-window-packets",
        type=int,
        metavar="N",
        help="compare each packet only with the last N packets kept (bounds memory; default: all)",
    )
    dedup.add_argument(
        "--dedup-window-seconds",
        type=float,
        metavar="T",
        help="compare each packet only with packets up to T seconds older (default: all)",
    )
    dedup.add_argument(
        "--span-duplicates",
        action="store_true",
        help="also drop copies that differ only in VLAN tags, IPv4 TTL/checksum or IPv6 hop limit",
    )


def build_stages(names: list[str], args: argparse.Namespace) -> list[Stage]:
    """Build the stages named on the command line, in pipeline order.

    Raises ValueError for an unknown stage name.
    """
    unknown = [name for name in names if name not in STAGE_NAMES]
    if unknown:
        raise ValueError(f"unknown stage {', '.join(unknown)}; choose from {', '.join(STAGE_NAMES)}")
    stages: list[Stage] = []
    for name in STAGE_NAMES:
        if name not in names:
            continue
        if name == "dedup":
            stages.append(
                Deduplicate(
                    window_packets=args.dedup_window_packets,
                    window_seconds=args.dedup_window_seconds,
                    ignore_span_differences=args.span_duplicates,
                )
            )
    return stages


def finish_run(stages: list[Stage], args: argparse.Namespace) -> None:
    """Do what the options ask once all files ran (save a generated key, write the mapping)."""
