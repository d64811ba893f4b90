"""Transport checksums of fragmented datagrams after masking, checked after reassembly.

Two oracles: tshark with IP reassembly and checksum validation on, and a
small reassembler here that sums each datagram with scapy's checksum
function. A checksum correct in the input must be correct in the output,
a wrong one must stay wrong by the same amount, and a UDP zero stays zero.
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6, IPv6ExtHdrFragment, fragment6
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import checksum

from pktmask_nb import Pipeline
from pktmask_nb.capture import open_reader
from pktmask_nb.fragments import FragmentLedger
from pktmask_nb.stages.mask import MaskPayloads
from tests.capture_builders import pcap_bytes
from tests.corpus_tools import CHECKSUM_OPTIONS

SRC4, DST4 = "192.0.2.10", "198.51.100.20"
SRC6, DST6 = "2001:db8::10", "2001:db8:1::20"
STATUS_FIELDS = [
    "tcp.checksum.status",
    "udp.checksum.status",
    "icmp.checksum.status",
    "icmpv6.checksum.status",
]


def ether() -> Ether:
    """An Ethernet header with fixed addresses, so that scapy never resolves a neighbor to fill them in."""
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def noise(length: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(length)


def ipv4_fragments(l4, *, ident: int, size: int = 64) -> list[bytes]:
    return [bytes(ether() / frag) for frag in fragment(IP(src=SRC4, dst=DST4, id=ident) / l4, fragsize=size)]


def ipv6_fragments(l4, *, ident: int, size: int = 120) -> list[bytes]:
    packet = IPv6(src=SRC6, dst=DST6) / IPv6ExtHdrFragment(id=ident) / l4
    return [bytes(ether() / frag) for frag in fragment6(packet, size)]


def with_checksum(frames: list[bytes], offset: int, value: int) -> list[bytes]:
    """Set the 16-bit field at `offset` of the first frame (a first fragment)."""
    first = bytearray(frames[0])
    first[offset : offset + 2] = value.to_bytes(2, "big")
    return [bytes(first), *frames[1:]]


def mask_file(tmp_path: Path, frames: list[bytes], stage: MaskPayloads | None = None) -> list[bytes]:
    source = tmp_path / "in.pcap"
    source.write_bytes(pcap_bytes([(i, 0, frame, len(frame)) for i, frame in enumerate(frames)]))
    target = tmp_path / "out.pcap"
    Pipeline([stage or MaskPayloads()], progress=False, monitor_memory=False).run(source, target).close()
    reader = open_reader(target)
    try:
        return [packet.data for packet in reader]
    finally:
        reader.close()


def tshark_statuses(tmp_path: Path, frames: list[bytes], name: str) -> list[tuple[str, ...]]:
    """Per frame, the transport checksum statuses tshark reports after reassembly (1 good, 0 bad)."""
    path = tmp_path / name
    path.write_bytes(pcap_bytes([(i, 0, frame, len(frame)) for i, frame in enumerate(frames)]))
    command = ["tshark", "-n", "-r", str(path), "-T", "fields", *CHECKSUM_OPTIONS]
    for field in STATUS_FIELDS:
        command += ["-e", field]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return [tuple(line.split("\t")) for line in output.splitlines()]


def parse_fragment(frame: bytes) -> tuple[tuple, int, bool, bytes, tuple[bytes, bytes, int]]:
    """(key, offset, more fragments, payload, (src, dst, protocol)) of an Ethernet IPv4 or IPv6 fragment."""
    ip = frame[14:]
    if ip[0] >> 4 == 4:
        header_len, total = (ip[0] & 0x0F) * 4, int.from_bytes(ip[2:4])
        flags = int.from_bytes(ip[6:8])
        key = (4, int.from_bytes(ip[4:6]))
        return (
            key,
            (flags & 0x1FFF) * 8,
            bool(flags & 0x2000),
            ip[header_len:total],
            (ip[12:16], ip[16:20], ip[9]),
        )
    assert ip[6] == 44, "a fragment header right after the fixed header"
    word = int.from_bytes(ip[42:44])
    key = (6, int.from_bytes(ip[44:48]))
    payload = ip[48 : 40 + int.from_bytes(ip[4:6])]
    return key, word & 0xFFF8, bool(word & 1), payload, (ip[8:24], ip[24:40], ip[40])


def reassemble(frames: list[bytes]) -> dict[tuple, tuple[bytes, bytes]]:
    """(version, id) -> (pseudo-header, upper-layer bytes) of every datagram, all fragments present."""
    pieces: dict[tuple, dict[int, bytes]] = {}
    ends: dict[tuple, int] = {}
    heads: dict[tuple, tuple[bytes, bytes, int]] = {}
    for frame in frames:
        key, offset, more, payload, head = parse_fragment(frame)
        pieces.setdefault(key, {})[offset] = payload
        heads[key] = head
        if not more:
            ends[key] = offset + len(payload)
    datagrams = {}
    for key, parts in pieces.items():
        upper = b"".join(parts[offset] for offset in sorted(parts))
        assert len(upper) == ends[key], "all fragments present, without overlap"
        src, dst, protocol = heads[key]
        if protocol == 1:
            pseudo = b""  # ICMPv4 sums its message only
        elif key[0] == 4:
            pseudo = src + dst + bytes((0, protocol)) + len(upper).to_bytes(2, "big")
        else:
            pseudo = src + dst + len(upper).to_bytes(4, "big") + bytes((0, 0, 0, protocol))
        datagrams[key] = (pseudo, upper)
    return datagrams


def residues(frames: list[bytes]) -> dict[tuple, int]:
    """(version, id) -> what the reassembled datagram's checksum sums to: 0 when correct."""
    return {key: checksum(pseudo + upper) for key, (pseudo, upper) in reassemble(frames).items()}


CASES = {
    "ipv4-udp": lambda: ipv4_fragments(UDP(sport=5000, dport=6000) / Raw(noise(300, 1)), ident=0x1234),
    "ipv4-tcp": lambda: ipv4_fragments(
        TCP(sport=40000, dport=443, seq=1000, flags="PA") / Raw(bytes((23, 3, 3, 1, 39)) + noise(295, 2)),
        ident=0x2345,
    ),
    "ipv4-icmp-echo": lambda: ipv4_fragments(ICMP(type=8, id=7, seq=1) / Raw(noise(1000, 3)), ident=0x3456),
    "ipv6-udp": lambda: ipv6_fragments(UDP(sport=5000, dport=6000) / Raw(noise(500, 4)), ident=0x01020304),
    "ipv6-icmpv6-echo": lambda: ipv6_fragments(ICMPv6EchoRequest(id=9, data=noise(700, 5)), ident=0x0A0B0C0D),
}


@pytest.mark.parametrize("first_last", [False, True], ids=["first-fragment-first", "first-fragment-last"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_checksum_correct_after_reassembly(case, first_last, tmp_path, tshark):
    frames = CASES[case]()
    assert len(frames) >= 3
    if first_last:
        frames = frames[1:] + frames[:1]

    out = mask_file(tmp_path, frames)

    assert set(residues(frames).values()) == {0}
    assert residues(out) == residues(frames)
    later = [parse_fragment(frame)[3] for frame in out if parse_fragment(frame)[1] > 0]
    assert later
    assert all(not any(payload) for payload in later), "payload of later fragments zeroed"
    statuses = [
        status for frame in tshark_statuses(tmp_path, out, "after.pcap") for status in frame if status
    ]
    assert statuses == ["1"], "tshark reassembles one datagram and finds its checksum correct"


@pytest.mark.parametrize("case", ["ipv4-udp", "ipv4-icmp-echo", "ipv6-udp", "ipv6-icmpv6-echo"])
def test_wrong_checksum_keeps_its_error(case, tmp_path):
    frames = CASES[case]()
    offset = {"ipv4-udp": 40, "ipv4-icmp-echo": 36, "ipv6-udp": 68, "ipv6-icmpv6-echo": 64}[case]
    stored = int.from_bytes(frames[0][offset : offset + 2])
    frames = with_checksum(frames, offset, stored ^ 0x0F0F)

    out = mask_file(tmp_path, frames[::-1])

    assert 0 not in residues(frames).values()
    assert residues(out) == residues(frames)


@pytest.mark.parametrize("case", ["ipv4-udp", "ipv6-udp"])
def test_udp_zero_checksum_stays_zero(case, tmp_path):
    frames = CASES[case]()
    offset = 40 if case == "ipv4-udp" else 68
    frames = with_checksum(frames, offset, 0)

    out = mask_file(tmp_path, frames)

    assert out[0][offset : offset + 2] == b"\0\0"


def test_reused_id_and_duplicate_fragments(tmp_path):
    """Two datagrams with the same identification; the first has its first and second fragments twice."""
    first = ipv4_fragments(UDP(sport=5000, dport=6000) / Raw(noise(300, 6)), ident=77)
    second = ipv4_fragments(UDP(sport=5000, dport=6000) / Raw(noise(300, 7)), ident=77)
    frames_a = [first[1], first[0], first[1], *first[2:], first[0]]

    out_a = mask_file(tmp_path, frames_a)
    out_b = mask_file(tmp_path, second[::-1])
    out_both = mask_file(tmp_path, frames_a + second[::-1])

    assert out_both == out_a + out_b
    assert out_a[1] == out_a[-1], "both copies of the first fragment get the same checksum"
    assert residues(out_a) == {(4, 77): 0}
    assert residues(out_b) == {(4, 77): 0}


def test_timeout_starts_new_datagram():
    ledger = FragmentLedger()
    payload = noise(64, 8)
    key = (b"\x01" * 4, b"\x02" * 4, 17, 5)
    ledger.add_fragment(
        key, number=1, timestamp_ns=0, fragment_offset=0, payload=payload, more_fragments=True, zeroed=False
    )
    late = 61 * 1_000_000_000
    ledger.add_fragment(
        key,
        number=2,
        timestamp_ns=late,
        fragment_offset=64,
        payload=payload,
        more_fragments=False,
        zeroed=True,
    )
    ledger.finish()

    assert ledger.delta(1) == 0
    assert ledger.datagrams == 2


def test_remembered_datagrams_are_bounded(monkeypatch):
    monkeypatch.setattr("pktmask_nb.fragments.MAX_DATAGRAMS", 100)
    ledger = FragmentLedger()
    for ident in range(1000):
        key = (b"\x01" * 4, b"\x02" * 4, 17, ident)
        ledger.add_fragment(
            key,
            number=ident + 1,
            timestamp_ns=0,
            fragment_offset=0,
            payload=b"abcdefgh",
            more_fragments=True,
            zeroed=False,
        )
        assert len(ledger._datagrams) <= 100
    assert ledger.closed_incomplete == 900
