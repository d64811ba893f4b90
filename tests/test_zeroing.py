"""Zeroing byte ranges under Internet checksums: the one-checksum fast path against the general one."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from pktmask_nb.dissection import ChecksumField
from pktmask_nb.zeroing import merge_spans, zero_spans, zero_tcp_payload

TCP_OFFSET = 34


def ether() -> Ether:
    """An Ethernet header with fixed addresses, so that scapy never resolves a neighbor to fill them in."""
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def tcp_checksum_valid(frame: bytes) -> bool:
    parsed = Ether(frame)
    stored = parsed[TCP].chksum
    del parsed[TCP].chksum
    return Ether(bytes(parsed))[TCP].chksum == stored


@st.composite
def frames_with_spans(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, int]], int]:
    """A TCP frame with a valid checksum, sorted disjoint payload spans, and its IP end."""
    payload = draw(st.binary(min_size=1, max_size=300))
    trailer = draw(st.binary(max_size=8))
    frame = bytes(ether() / IP(src="192.0.2.1", dst="198.51.100.2") / TCP(sport=1, dport=2) / Raw(payload))
    ip_end = len(frame)
    start = TCP_OFFSET + 20
    cuts = sorted(draw(st.sets(st.integers(start, ip_end), max_size=6)))
    spans = [(a, b) for a, b in zip(cuts[::2], cuts[1::2], strict=False) if a < b]
    return frame + trailer, spans, ip_end


@settings(max_examples=300)
@given(case=frames_with_spans())
def test_fast_path_equals_general_zeroing(case):
    frame, spans, ip_end = case
    checksum = ChecksumField(TCP_OFFSET + 16, TCP_OFFSET, ip_end, None, False)
    trailer = [(ip_end, len(frame))] if ip_end < len(frame) else []

    fast = zero_tcp_payload(frame, spans, TCP_OFFSET, ip_end)

    assert fast == zero_spans(frame, spans + trailer, [checksum])
    assert tcp_checksum_valid(fast[:ip_end])
    assert len(fast) == len(frame)
    assert not any(fast[ip_end:])


def test_udp_zero_checksum_stays_zero():
    frame = bytearray(range(64))
    frame[20:22] = b"\0\0"
    udp = ChecksumField(20, 14, 64, None, True)

    out = zero_spans(bytes(frame), [(30, 50)], [udp])

    assert out[20:22] == b"\0\0"
    assert out[30:50] == bytes(20)


def test_extra_delta_changes_only_its_checksum():
    frame = bytes(range(1, 65))
    inner = ChecksumField(40, 30, 64, None, False)
    outer = ChecksumField(20, 14, 64, None, False)

    plain = zero_spans(frame, [], [outer, inner], extra_deltas={})
    shifted = zero_spans(frame, [], [outer, inner], extra_deltas={40: 0x0100})

    assert plain == frame
    assert shifted[40:42] != frame[40:42]
    # The outer checksum covers the inner field, so it changes too.
    assert shifted[20:22] != frame[20:22]
    assert shifted[:20] + shifted[22:40] + shifted[42:] == frame[:20] + frame[22:40] + frame[42:]


def test_merge_spans_sorts_and_joins():
    assert merge_spans([(10, 20), (0, 5), (5, 7), (15, 30), (40, 40)]) == [(0, 7), (10, 30)]
