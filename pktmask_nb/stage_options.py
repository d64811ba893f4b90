"""Command-line options of each stage, and the stages they build."""

from __future__ import annotations

import argparse

from pktmask_nb.stages.base import Stage
from pktmask_nb.stages.dedup import Deduplicate
from pktmask_nb.stages.mask import MaskPayloads

STAGE_NAMES = ("dedup", "mask")


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
    _add_mask_arguments(parser)


def _add_mask_arguments(parser: argparse.ArgumentParser) -> None:
    mask = parser.add_argument_group("mask stage")
    for kind in ("handshake", "alert", "change-cipher-spec", "heartbeat"):
        mask.add_argument(
            f"--zero-tls-{kind}",
            action="store_true",
            help=f"zero the body of TLS {kind.replace('-', '_')} records too (kept by default)",
        )
    mask.add_argument(
        "--keep-http-headers",
        action="store_true",
        help="keep HTTP/1.x start lines and headers; bodies are still zeroed",
    )
    mask.add_argument(
        "--keep-dns",
        action="store_true",
        help="keep DNS payloads on UDP port 53 (names inside are not anonymized)",
    )
    mask.add_argument(
        "--keep-udp-port",
        type=int,
        action="append",
        default=[],
        metavar="PORT",
        help="keep UDP payloads to or from PORT (repeat for several ports)",
    )
    mask.add_argument(
        "--keep-non-ip",
        action="store_true",
        help="keep frames that carry neither IP nor ARP (CDP, LLDP, STP...) unchanged; zeroed by default",
    )


def _mask_stage(args: argparse.Namespace) -> MaskPayloads:
    return MaskPayloads(
        keep_handshake=not args.zero_tls_handshake,
        keep_alert=not args.zero_tls_alert,
        keep_change_cipher_spec=not args.zero_tls_change_cipher_spec,
        keep_heartbeat=not args.zero_tls_heartbeat,
        keep_http_headers=args.keep_http_headers,
        keep_dns=args.keep_dns,
        keep_udp_ports=tuple(args.keep_udp_port),
        keep_non_ip=args.keep_non_ip,
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
        elif name == "mask":
            stages.append(_mask_stage(args))
    return stages


def finish_run(stages: list[Stage], args: argparse.Namespace) -> None:
    """Do what the options ask once all files ran (save a generated key, write the mapping)."""
