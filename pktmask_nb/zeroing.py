"""Zero byte ranges of a frame and update the Internet checksums that cover them (RFC 1624).

`zero_spans` handles any stack of checksums (tunnels, ICMP quotes, the
first fragment of a datagram). `zero_tcp_payload` is its fast path for the
common frame with a single TCP checksum. Both update incrementally, so a
correct checksum stays correct and a wrong one stays wrong by the same
amount, even in a frame cut short by the snaplen.
"""

from __future__ import annotations

import logging

from pktmask_nb.checksum import adjust_checksum, zeroing_delta
from pktmask_nb.dissection import ChecksumField

logger = logging.getLogger(__name__)

Span = tuple[int, int]


def zero_tcp_payload(data: bytes, spans: list[Span], tcp_offset: int, ip_end: int) -> bytes:
    """Return `data` with `spans` and the bytes after `ip_end` zeroed, and the TCP checksum updated.

    `spans` are sorted, disjoint [start, end) frame offsets in the payload of
    the TCP segment at `tcp_offset`, whose header is complete in `data`.
    The bytes after the IP packet (padding, trailer) are outside the checksum.
    """
    residue = 0
    for start, end in spans:
        value = int.from_bytes(data[start:end])
        if (end - tcp_offset) % 2:
            value <<= 8  # the last byte is the high byte of its 16-bit word
        residue += value
    residue %= 0xFFFF

    checksum_offset = tcp_offset + 16
    field = data[checksum_offset : checksum_offset + 2]
    if residue:
        # RFC 1624 equation 3 with every new word zero: HC' = ~(~HC + ~m).
        total = (~int.from_bytes(field) & 0xFFFF) + 0xFFFF - residue
        total = (total & 0xFFFF) + (total >> 16)
        field = (~total & 0xFFFF).to_bytes(2)

    # Joining slices costs less than copying into a bytearray and back.
    trailer = bytes(len(data) - ip_end) if ip_end < len(data) else b""
    if len(spans) == 1:
        start, end = spans[0]
        head = data[:checksum_offset]
        return b"".join(
            (head, field, data[checksum_offset + 2 : start], bytes(end - start), data[end:ip_end], trailer)
        )
    pieces = [data[:checksum_offset], field]
    position = checksum_offset + 2
    for start, end in spans:
        pieces += (data[position:start], bytes(end - start))
        position = end
    pieces += (data[position:ip_end], trailer)
    return b"".join(pieces)


def zero_spans(
    data: bytes,
    spans: list[Span],
    checksums: list[ChecksumField],
    *,
    extra_deltas: dict[int, int] | None = None,
) -> bytes:
    """Return `data` with the byte ranges `spans` zeroed and the checksums over them updated.

    `checksums` are listed outer first. They are updated inner first, so an
    outer checksum (a tunnel's UDP header) also accounts for the inner
    checksum fields that changed. `extra_deltas` maps a checksum field's
    offset to an RFC 1624 delta to add for changes outside the frame (the
    other fragments of a datagram). A UDP checksum of zero ("none") stays
    zero, and a checksum field inside a zeroed span stays zero.
    """
    extra_deltas = extra_deltas or {}
    zeroed = merge_spans(spans)
    frame = bytearray(data)
    for start, end in zeroed:
        frame[start:end] = bytes(end - start)

    changed = list(zeroed)
    for checksum in reversed(checksums):
        if checksum.offset + 2 > len(frame):
            continue
        if any(start < checksum.offset + 2 and checksum.offset < end for start, end in zeroed):
            continue  # the field itself was zeroed, as in a TCP header quoted by ICMP
        current = int.from_bytes(frame[checksum.offset : checksum.offset + 2])
        if current == 0 and checksum.zero_means_none:
            continue
        delta = extra_deltas.get(checksum.offset, 0) + _delta_within(data, frame, changed, checksum)
        updated = adjust_checksum(current, delta)
        if updated == current:
            continue
        if updated == 0 and checksum.zero_means_none:
            updated = 0xFFFF
        frame[checksum.offset : checksum.offset + 2] = updated.to_bytes(2)
        changed.append((checksum.offset, checksum.offset + 2))
    return bytes(frame)


def _delta_within(data: bytes, frame: bytearray, changed: list[Span], checksum: ChecksumField) -> int:
    """Return the delta of the `changed` spans (zeroed payloads, rewritten checksums) under `checksum`."""
    delta = 0
    for start, end in changed:
        start, end = max(start, checksum.start), min(end, checksum.end)
        if start >= end:
            continue
        odd = (start - checksum.start) % 2 == 1
        # A zeroed span and a rewritten checksum field both replace `data` by `frame` there.
        delta += zeroing_delta(data[start:end], odd=odd) - zeroing_delta(frame[start:end], odd=odd)
    return delta % 0xFFFF


def merge_spans(spans: list[Span]) -> list[Span]:
    """Return the spans sorted, with overlapping and touching ones merged and empty ones dropped."""
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        elif start < end:
            merged.append((start, end))
    return merged
