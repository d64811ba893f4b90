"""Command-line options of each stage, and the stages they build."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

from pktmask_nb.stages.anonymize import AnonymizeIPs
from pktmask_nb.stages.base import Stage
from pktmask_nb.stages.dedup import Deduplicate
from pktmask_nb.stages.mask import MaskPayloads

STAGE_NAMES = ("dedup", "anonymize", "mask")


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
    _add_anonymize_arguments(parser)
    _add_mask_arguments(parser)


def _add_anonymize_arguments(parser: argparse.ArgumentParser) -> None:
    anonymize = parser.add_argument_group("anonymize stage")
    anonymize.add_argument(
        "--key-file",
        metavar="FILE",
        help="32-byte Crypto-PAn key as 64 hex digits (or 32 raw bytes); the same key gives the "
        "same mapping in every file and run (default: a random key for this run)",
    )
    anonymize.add_argument(
        "--save-key",
        metavar="FILE",
        help="write the key used (a generated one too) to FILE with mode 0600, to sanitize "
        "more captures consistently later; keep it secret",
    )
    anonymize.add_argument(
        "--keep-prefix",
        action="append",
        default=[],
        metavar="CIDR",
        help="leave addresses in this network unchanged, e.g. a public server (repeat for several)",
    )
    anonymize.add_argument(
        "--no-keep-special",
        action="store_true",
        help="also anonymize unspecified, loopback, multicast, broadcast and link-local "
        "addresses (kept by default)",
    )
    anonymize.add_argument(
        "--anonymize-macs",
        action="store_true",
        help="also replace MAC addresses with keyed ones (the unicast/multicast bit is kept)",
    )
    anonymize.add_argument(
        "--keep-oui", action="store_true", help="with --anonymize-macs, keep the vendor OUI (first 3 bytes)"
    )
    anonymize.add_argument(
        "--mapping-out",
        metavar="FILE",
        help="write the address mapping (original, anonymized) as CSV; the file reveals the "
        "original addresses, so it is as sensitive as the capture",
    )


def _check_anonymize_options(names: list[str], args: argparse.Namespace) -> None:
    """Reject anonymize options that would do nothing, and a --save-key that would replace a key."""
    given = [
        flag
        for flag, value in (
            ("--key-file", args.key_file),
            ("--save-key", args.save_key),
            ("--mapping-out", args.mapping_out),
            ("--keep-prefix", args.keep_prefix),
            ("--anonymize-macs", args.anonymize_macs),
        )
        if value
    ]
    if given and "anonymize" not in names:
        raise ValueError(f"{', '.join(given)} needs the anonymize stage, which --stages leaves out")
    if args.keep_oui and not args.anonymize_macs:
        raise ValueError("--keep-oui applies only with --anonymize-macs")
    if args.save_key and Path(args.save_key).exists():
        raise ValueError(
            f"--save-key {args.save_key}: the file exists and would be replaced; pass it as "
            "--key-file to keep its mapping, or choose a new name"
        )


def _anonymize_stage(args: argparse.Namespace) -> AnonymizeIPs:
    return AnonymizeIPs(
        key_file=args.key_file,
        keep_prefixes=tuple(args.keep_prefix),
        keep_special=not args.no_keep_special,
        anonymize_macs=args.anonymize_macs,
        keep_oui=args.keep_oui,
    )


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
    if not names:
        raise ValueError(
            f"--stages names no stage, so the output would be an unsanitized copy; "
            f"choose from {', '.join(STAGE_NAMES)}"
        )
    _check_anonymize_options(names, args)
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
        elif name == "anonymize":
            stages.append(_anonymize_stage(args))
        elif name == "mask":
            stages.append(_mask_stage(args))
    return stages


def anonymizer(stages: list[Stage]) -> AnonymizeIPs | None:
    for stage in stages:
        if isinstance(stage, AnonymizeIPs):
            return stage
    return None


def finish_run(stages: list[Stage], mappings: list[pd.DataFrame], args: argparse.Namespace) -> None:
    """Save the key and write the address mapping of all files, as the options ask."""
    stage = anonymizer(stages)
    if stage is None:
        return
    if args.save_key:
        stage.save_key(args.save_key)
        print(f"Saved the anonymization key to {args.save_key}; keep it as secret as the captures.")
    elif args.key_file is None:
        print(
            "pktmask-nb: note: a random anonymization key was used and not saved; pass "
            "--save-key FILE to sanitize more captures with the same mapping later",
            file=sys.stderr,
        )
    if args.mapping_out and mappings:
        combined = pd.concat(mappings, ignore_index=True)
        combined = combined.groupby(["original", "anonymized", "ip_version"], as_index=False)["packets"].sum()
        # Created readable by the owner only: the mapping undoes the anonymization.
        descriptor = os.open(args.mapping_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", newline="") as mapping_file:
            combined.to_csv(mapping_file, index=False)
        print(
            f"Wrote the address mapping to {args.mapping_out}; it reveals the original "
            "addresses, so share it no more than the original capture."
        )
