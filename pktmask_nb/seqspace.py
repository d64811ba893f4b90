"""TCP sequence space: stream offsets and in-order delivery of one direction's bytes.

A direction's bytes are addressed by stream offset: the distance from the
first payload byte (ISN + 1 when the SYN was captured), unwrapped past 2**32
so that offsets only grow. `SegmentOrderer` hands the captured payload to a
`StreamParser` in stream order, and each byte only once. Retransmitted and
overlapping bytes are delivered the first time only. Out-of-order segments
wait in a bounded buffer. Bytes that were never captured (a lost segment, a
tail cut by the snaplen) are reported as a hole.
"""

from __future__ import annotations

import bisect
import ipaddress
import logging
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

logger = logging.getLogger(__name__)

SEQ_MODULUS = 1 << 32
_HALF_SEQ_SPACE = SEQ_MODULUS >> 1

# An out-of-order segment waits until the bytes before it arrive. A direction
# whose buffer grows past these limits gives up waiting: the bytes still
# missing become a hole.
MAX_PENDING_BYTES = 1 << 20
MAX_PENDING_SEGMENTS = 256
# All directions of one capture together wait with at most this many bytes.
MAX_PENDING_BYTES_TOTAL = 32 << 20


def unwrap_seq(seq: int, *, base: int, near: int) -> int:
    """Return the stream offset of the 32-bit sequence number `seq`.

    `base` is the sequence number of stream offset 0. Of the offsets that are
    congruent to `seq - base` modulo 2**32, the one nearest to `near` (an offset
    already seen in this direction) is returned, so a stream may run past
    2**32 bytes and wrap around any number of times. The result is negative
    for bytes before `base`.
    """
    offset = (seq - base) % SEQ_MODULUS
    wraps = (near - offset + _HALF_SEQ_SPACE) // SEQ_MODULUS
    return offset + wraps * SEQ_MODULUS


class StreamVerdict(Enum):
    """How far a parser trusted a direction's stream."""

    # Every message boundary up to the end of the capture was found.
    COMPLETE = "complete"
    # The bytes at a boundary were not the expected protocol: zeroed from there on.
    UNRECOGNIZED = "unrecognized"
    # A boundary fell into bytes missing from the capture: zeroed from there on.
    GAP = "gap"


class StreamParser(Protocol):
    """A parser of one direction's byte stream, driven by `SegmentOrderer`."""

    @property
    def done(self) -> bool:
        """True once the parser needs no more bytes (it stopped trusting the stream)."""

    def feed(self, offset: int, data: bytes) -> None:
        """Consume `data`, which starts at stream offset `offset`, right after the last bytes fed."""

    def skip(self, start: int, end: int) -> None:
        """Note that the bytes at offsets [start, end) were never captured."""

    def finish(self, end: int) -> None:
        """Note that the capture contains no more bytes of this stream; `end` is the next offset."""


class PendingBudget:
    """The out-of-order bytes that all `SegmentOrderer`s of one capture may hold together."""

    def __init__(self, limit: int = MAX_PENDING_BYTES_TOTAL) -> None:
        self.limit = limit
        self.used = 0


class SegmentOrderer:
    """Deliver one direction's captured payload to `parser` in stream order.

    The first call to `add` fixes the stream start unless `start` is given
    (ISN + 1 is offset 0 when the SYN was seen). Bytes before the delivery
    point are dropped, as they were already delivered or come before the
    start. Segments past the delivery point wait in a buffer of at most
    `max_pending_bytes` bytes in `max_pending_segments` segments. When the
    buffer is full, and at `finish()`, the bytes missing before the first
    waiting segment are reported to the parser as a hole. The same happens
    when the orderers sharing `budget` hold more than its limit together.
    """

    def __init__(
        self,
        parser: StreamParser,
        *,
        start: int | None = None,
        max_pending_bytes: int = MAX_PENDING_BYTES,
        max_pending_segments: int = MAX_PENDING_SEGMENTS,
        budget: PendingBudget | None = None,
    ) -> None:
        self.parser = parser
        self.delivered: int | None = start
        self.max_pending_bytes = max_pending_bytes
        self.max_pending_segments = max_pending_segments
        self.budget = budget or PendingBudget()
        self.holes = 0
        self._pending_offsets: list[int] = []
        self._pending_data: dict[int, bytes] = {}
        self._pending_bytes = 0

    def add(self, offset: int, payload: bytes) -> None:
        """Take the captured payload of a segment that starts at stream offset `offset`."""
        if self.parser.done:
            if self._pending_offsets:
                self._drop_pending()
            return
        if not payload:
            return
        delivered = self.delivered
        if delivered is None:
            delivered = self.delivered = offset

        if offset + len(payload) <= delivered:
            return
        if offset > delivered:
            self._hold(offset, payload)
            return

        self._deliver(offset, payload)
        if self._pending_offsets:
            self._drain()

    def finish(self) -> None:
        """Deliver what still waits, reporting the holes before it, and end the stream."""
        while self._pending_offsets and not self.parser.done:
            self._skip_to(self._pending_offsets[0])
            self._drain()
        self._drop_pending()
        if self.delivered is not None:
            self.parser.finish(self.delivered)

    @property
    def pending_bytes(self) -> int:
        """Bytes held in out-of-order segments."""
        return self._pending_bytes

    def _deliver(self, offset: int, payload: bytes) -> None:
        new = payload[self.delivered - offset :]
        self.parser.feed(self.delivered, new)
        self.delivered += len(new)

    def _hold(self, offset: int, payload: bytes) -> None:
        held = self._pending_data.get(offset)
        if held is not None and len(held) >= len(payload):
            return
        if held is None:
            bisect.insort(self._pending_offsets, offset)
        else:
            self._count_pending(-len(held))
        self._pending_data[offset] = payload
        self._count_pending(len(payload))

        while self._pending_offsets and (
            self._pending_bytes > self.max_pending_bytes
            or len(self._pending_offsets) > self.max_pending_segments
            or self.budget.used > self.budget.limit
        ):
            logger.debug(
                "out-of-order buffer full at offset %d (%d bytes in %d segments)",
                self.delivered,
                self._pending_bytes,
                len(self._pending_offsets),
            )
            self._skip_to(self._pending_offsets[0])
            self._drain()

    def _drain(self) -> None:
        """Deliver the waiting segments that start at or before the delivery point."""
        while self._pending_offsets and self._pending_offsets[0] <= self.delivered:
            offset = self._pending_offsets.pop(0)
            payload = self._pending_data.pop(offset)
            self._count_pending(-len(payload))
            if offset + len(payload) > self.delivered and not self.parser.done:
                self._deliver(offset, payload)
        if self.parser.done:
            self._drop_pending()

    def _skip_to(self, offset: int) -> None:
        self.holes += 1
        self.parser.skip(self.delivered, offset)
        self.delivered = offset

    def _drop_pending(self) -> None:
        self._pending_offsets.clear()
        self._pending_data.clear()
        self._count_pending(-self._pending_bytes)

    def _count_pending(self, change: int) -> None:
        self._pending_bytes += change
        self.budget.used += change


class SpanList:
    """Sorted, disjoint [start, end) spans of stream offsets, stored in two arrays.

    Spans must be added in increasing order of `start`; a span that touches or
    overlaps the last one is merged into it.
    """

    def __init__(self) -> None:
        self.starts = array("q")
        self.ends = array("q")

    def add(self, start: int, end: int) -> None:
        """Append [start, end); `start` must not precede the start of the last span."""
        if end <= start:
            return
        if self.ends and start <= self.ends[-1]:
            if start < self.starts[-1]:
                raise ValueError(f"span [{start}, {end}) added out of order")
            self.ends[-1] = max(self.ends[-1], end)
            return
        self.starts.append(start)
        self.ends.append(end)

    def overlapping(self, start: int, end: int) -> list[tuple[int, int]]:
        """Return the parts of the spans that fall inside [start, end), in order."""
        starts, ends = self.starts, self.ends
        index = bisect.bisect_right(ends, start)
        found = []
        while index < len(starts) and starts[index] < end:
            found.append((max(starts[index], start), min(ends[index], end)))
            index += 1
        return found

    def total(self) -> int:
        """Return the number of offsets the spans cover."""
        return sum(self.ends) - sum(self.starts)

    def __len__(self) -> int:
        return len(self.starts)


FlowKey = tuple[bytes, bytes, int, int]
"""One direction of a TCP connection: source address, destination address, sport, dport."""

PackedFlow = bytes
"""A `FlowKey` as one bytes object: the addresses, then sport and dport as 16-bit big-endian.

These are the bytes of a plain IPv4 or IPv6 TCP frame from the source
address to the destination port, so a fast parser takes them with one slice.
"""


def pack_flow(flow: FlowKey) -> PackedFlow:
    """Return `flow` as a `PackedFlow`."""
    src, dst, sport, dport = flow
    return src + dst + sport.to_bytes(2) + dport.to_bytes(2)


def unpack_flow(packed: PackedFlow) -> FlowKey:
    """Return the `FlowKey` of a `PackedFlow`."""
    size = (len(packed) - 4) // 2
    ports = packed[2 * size :]
    return packed[:size], packed[size : 2 * size], int.from_bytes(ports[:2]), int.from_bytes(ports[2:])


@dataclass(slots=True, eq=False)
class DirectionStream:
    """The byte stream of one direction of one TCP connection.

    It starts at a SYN (offset 0 is ISN + 1) or, when the SYN was not
    captured, at the first packet seen (offset 0 is that packet's seq).
    `parser` and `orderer` are set by the stage that scans the stream's payload.
    """

    key: PackedFlow
    base: int
    syn_seen: bool
    parser: StreamParser | None = None
    orderer: SegmentOrderer | None = None
    # Highest stream offset of payload seen, plus one.
    end: int = 0


@dataclass(slots=True)
class _Direction:
    streams: list[DirectionStream] = field(default_factory=list)
    cursor: int = -1
    # The stream at `cursor`, None before the first segment of a pass.
    current: DirectionStream | None = None
    near: int = 0


class StreamTable:
    """Map (packed flow, seq) to a `DirectionStream` and a stream offset, pass after pass.

    A SYN whose ISN differs from the current stream's starts a new stream on
    the same key (port reuse). The first pass creates streams; `rewind()`
    then lets a later pass that sees the same packets in the same order walk
    the same streams, with the same unwrapping of sequence numbers.
    """

    def __init__(self) -> None:
        self._directions: dict[PackedFlow, _Direction] = {}

    def locate(
        self, key: PackedFlow, seq: int, syn: bool, payload_len: int, *, create: bool = False
    ) -> tuple[DirectionStream, int]:
        """Return the stream of a segment and the stream offset of its first payload byte.

        `syn` is the segment's SYN flag and `payload_len` its captured payload
        length. The first pass sets `create`; in later passes, a segment that
        would start a stream the first pass did not create raises LookupError.
        The arguments are positional in the per-packet callers, which is cheaper.
        """
        payload_seq = (seq + 1) % SEQ_MODULUS if syn else seq
        direction = self._directions.get(key)
        if direction is None:
            if not create:
                raise LookupError(f"no stream was scanned for {format_flow(unpack_flow(key))}")
            direction = self._directions[key] = _Direction()
        stream = direction.current
        if stream is None or (syn and payload_seq != stream.base):
            stream = self._next_stream(direction, key, seq, syn=syn, create=create)

        # unwrap_seq, inline: this runs for every segment with payload, in both passes.
        offset = (payload_seq - stream.base) % SEQ_MODULUS
        near = direction.near
        if offset - near > _HALF_SEQ_SPACE or near - offset >= _HALF_SEQ_SPACE:
            offset += (near - offset + _HALF_SEQ_SPACE) // SEQ_MODULUS * SEQ_MODULUS
        if payload_len:
            if offset > near:
                direction.near = offset
            if offset + payload_len > stream.end:
                stream.end = offset + payload_len
        return stream, offset

    def _next_stream(
        self, direction: _Direction, key: PackedFlow, seq: int, *, syn: bool, create: bool
    ) -> DirectionStream:
        """Move `direction` to its next stream, which starts at the segment with `seq`; create it in the first pass."""
        direction.cursor += 1
        direction.near = 0
        if direction.cursor == len(direction.streams):
            if not create:
                raise LookupError(f"no stream was scanned for {format_flow(unpack_flow(key))} at {seq}")
            payload_seq = (seq + 1) % SEQ_MODULUS if syn else seq
            direction.streams.append(DirectionStream(key, payload_seq, syn))
        direction.current = direction.streams[direction.cursor]
        return direction.current

    def rewind(self) -> None:
        """Prepare for a pass that sees the same packets again, from the first."""
        for direction in self._directions.values():
            direction.cursor = -1
            direction.current = None
            direction.near = 0

    def streams(self) -> Iterator[DirectionStream]:
        """Yield every stream, grouped by flow key in order of first appearance."""
        for direction in self._directions.values():
            yield from direction.streams

    def streams_of(self, key: PackedFlow) -> list[DirectionStream]:
        """Return the streams of one flow key, one per connection, oldest first (empty if none)."""
        direction = self._directions.get(key)
        return list(direction.streams) if direction else []

    def find(self, key: PackedFlow, seq: int, *, syn: bool = False) -> tuple[DirectionStream, int]:
        """Return the stream holding `seq` on `key` and its stream offset, after all passes.

        When a key carried several connections, the last stream whose scanned
        offsets hold `seq` wins. Raises LookupError when none does.
        """
        payload_seq = (seq + 1) % SEQ_MODULUS if syn else seq
        direction = self._directions.get(key)
        for stream in reversed(direction.streams if direction else []):
            offset = unwrap_seq(payload_seq, base=stream.base, near=stream.end // 2)
            if 0 <= offset <= stream.end:
                return stream, offset
        raise LookupError(f"no stream of {format_flow(unpack_flow(key))} contains seq {seq}")


def format_flow(key: FlowKey) -> str:
    """Return 'src:sport -> dst:dport' for log and error messages."""
    src, dst, sport, dport = key
    return f"{_format_address(src)}:{sport} -> {_format_address(dst)}:{dport}"


def _format_address(address: bytes) -> str:
    if len(address) == 4:
        return str(ipaddress.IPv4Address(address))
    if len(address) == 16:
        return f"[{ipaddress.IPv6Address(address)}]"
    return address.hex()
