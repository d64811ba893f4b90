"""Reports of what `MaskPayloads` did, packet by packet and stream by stream, for notebooks and views.

`MaskPayloads.explain(packet)` returns a `PacketMasking`: the bytes of the
frame that were kept and zeroed, in frame offsets, with a `ZeroReason` per
zeroed range and the TLS records the TCP payload overlaps.
`MaskPayloads.streams()` returns a `MaskedStream` per direction of each
TCP connection: how far its record boundaries were trusted and what was
found in it. Both are read-only snapshots taken after a run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from pktmask_nb.dissection import Dissection
from pktmask_nb.fastpath import TcpSegment
from pktmask_nb.http import HttpHeadFinder
from pktmask_nb.maskspans import IPPROTO_TCP, ReasonSpan, ZeroReason, masked_payload, zeroed_payload
from pktmask_nb.seqspace import (
    SEQ_MODULUS,
    DirectionStream,
    FlowKey,
    StreamParser,
    StreamTable,
    StreamVerdict,
    pack_flow,
    unpack_flow,
)
from pktmask_nb.tls import CONTENT_TYPE_NAMES, HEADER_LEN, TlsRecord, TlsRecordFinder

__all__ = [
    "MaskedStream",
    "PacketMasking",
    "PayloadPlan",
    "RecordInPacket",
    "ZeroReason",
    "ZeroedRange",
    "explain_dissection",
    "masked_stream",
    "stream_snapshots",
]

logger = logging.getLogger(__name__)

Span = tuple[int, int]


TLS_TYPE_REASONS = {
    content_type: ZeroReason(f"tls_{name}") for content_type, name in CONTENT_TYPE_NAMES.items()
}


@dataclass(frozen=True, slots=True)
class ZeroedRange:
    """Frame bytes [start, end) that masking zeroed, and why."""

    start: int
    end: int
    reason: ZeroReason

    def __len__(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class RecordInPacket:
    """A TLS record that overlaps a packet's TCP payload.

    `seq` is the TCP sequence number of the first header byte (modulo 2**32)
    and `stream_offset` its offset in the direction's stream. `frame_offset`
    is where that byte is (or would be) in this frame: negative or past the
    payload when the record starts in another segment. `length` is the body
    length from the header, without the 5 header bytes.
    """

    content_type: int
    seq: int
    stream_offset: int
    frame_offset: int
    length: int

    @property
    def type_name(self) -> str:
        return CONTENT_TYPE_NAMES[self.content_type]

    @property
    def frame_end(self) -> int:
        """Frame offset just past the record body."""
        return self.frame_offset + HEADER_LEN + self.length


@dataclass(frozen=True, slots=True, eq=False)
class MaskedStream:
    """One direction of one TCP connection, as masking followed it, after the run.

    `connection` counts the connections that reused `flow` (0 for the
    first). Stream offset 0 is the byte after the ISN when `syn_seen`, or
    the first byte seen otherwise, and `base` is its sequence number. `end`
    is the stream offset after the last payload byte seen. `protocol` is
    "tls" or "http" for the parser that read the stream, None when the
    stream carried no payload. From `trusted_until` on (a stream offset),
    every byte was zeroed, for the reason in `verdict`. Two snapshots of the
    same stream compare equal.
    """

    flow: FlowKey
    connection: int
    base: int
    syn_seen: bool
    end: int
    protocol: str | None
    verdict: StreamVerdict | None
    trusted_until: int | None
    tls_records: int
    http_heads: int
    _parser: StreamParser | None = field(repr=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MaskedStream):
            return NotImplemented
        return (self.flow, self.connection) == (other.flow, other.connection)

    def __hash__(self) -> int:
        return hash((self.flow, self.connection))

    def records(self, start: int | None = None, end: int | None = None) -> list[TlsRecord]:
        """Return the TLS records that overlap stream offsets [start, end), all by default."""
        if isinstance(self._parser, TlsRecordFinder):
            return self._parser.records(start, end)
        return []

    def kept(self, start: int = 0, end: int | None = None) -> list[Span]:
        """Return the kept [start, end) stream offsets inside [start, end), to the stream end by default."""
        if self._parser is None:
            return []
        return self._parser.kept.overlapping(start, self.end if end is None else end)


@dataclass(frozen=True, slots=True)
class PayloadPlan:
    """The masking decision for the TCP payload of one segment.

    `kept` lists the [start, end) byte ranges of the payload that stay, in
    payload coordinates where 0 is the first payload byte. All other payload
    bytes are zeroed. `records` are the TLS records that overlap the
    segment, in stream offsets like `stream_offset`. `verdict` and
    `trusted_until` (a stream offset, or None) mark where the direction's
    record boundaries stopped being trusted.
    """

    flow: FlowKey
    stream_offset: int
    length: int
    records: list[TlsRecord]
    kept: list[tuple[int, int]]
    verdict: StreamVerdict | None
    trusted_until: int | None


def payload_plan(table: StreamTable, flow: FlowKey, seq: int, length: int, *, syn: bool) -> PayloadPlan:
    """Return the `PayloadPlan` of `length` payload bytes at `seq` in `flow`; raise LookupError."""
    stream, offset = table.find(pack_flow(flow), seq, syn=syn)
    parser = stream.parser
    if parser is None:
        return PayloadPlan(flow, offset, length, [], [], None, None)
    kept = [(a - offset, b - offset) for a, b in parser.kept.overlapping(offset, offset + length)]
    records = parser.records(offset, offset + length) if isinstance(parser, TlsRecordFinder) else []
    return PayloadPlan(flow, offset, length, records, kept, parser.verdict, parser.trusted_until)


def stream_snapshots(table: StreamTable) -> list[MaskedStream]:
    """Return a snapshot of every stream of `table`, grouped by flow, in order of first appearance."""
    found = []
    last_flow, connection = None, 0
    for stream in table.streams():
        connection = connection + 1 if stream.key == last_flow else 0
        last_flow = stream.key
        found.append(masked_stream(stream, connection))
    return found


def snapshot(table: StreamTable, stream: DirectionStream) -> MaskedStream:
    """Return the snapshot of one stream of `table`, numbered among the connections of its flow."""
    return masked_stream(stream, table.streams_of(stream.key).index(stream))


def masked_stream(stream: DirectionStream, connection: int) -> MaskedStream:
    """Return the snapshot of a scanned stream, the `connection`-th on its flow key."""
    parser = stream.parser
    protocol = None
    if isinstance(parser, TlsRecordFinder):
        protocol = "tls"
    elif isinstance(parser, HttpHeadFinder):
        protocol = "http"
    return MaskedStream(
        flow=unpack_flow(stream.key),
        connection=connection,
        base=stream.base,
        syn_seen=stream.syn_seen,
        end=stream.end,
        protocol=protocol,
        verdict=None if parser is None else parser.verdict,
        trusted_until=None if parser is None else parser.trusted_until,
        tls_records=len(parser) if protocol == "tls" else 0,
        http_heads=parser.messages if protocol == "http" else 0,
        _parser=parser,
    )


@dataclass(frozen=True, slots=True)
class PacketMasking:
    """The masking of one frame: its kept and zeroed bytes, in frame offsets.

    `payload` is the [start, end) range masking decided on: the TCP or UDP
    payload, the bytes after the innermost IP header for other IP packets,
    the ARP message, or the bytes after the link header for other frames.
    `kept` lists the parts of `payload` left as they were, and `zeroed` every
    zeroed range of the frame, payload or not (an Ethernet trailer), sorted.
    For TCP, `stream` and `stream_offset` locate the payload's first byte,
    and `records` lists the TLS records it overlaps. Header fields are never
    zeroed, but checksum fields change when bytes under them do.
    """

    payload: Span
    kept: list[Span]
    zeroed: list[ZeroedRange]
    records: list[RecordInPacket] = field(default_factory=list)
    stream: MaskedStream | None = None
    stream_offset: int | None = None

    @property
    def kept_bytes(self) -> int:
        return sum(end - start for start, end in self.kept)

    @property
    def zeroed_bytes(self) -> int:
        """Zeroed bytes inside `payload`."""
        start, end = self.payload
        return sum(max(0, min(z.end, end) - max(z.start, start)) for z in self.zeroed)


def explain_dissection(
    table: StreamTable,
    dissection: Dissection,
    data: bytes,
    other: list[ReasonSpan],
    *,
    addresses: Mapping[bytes, bytes] | None = None,
) -> PacketMasking:
    """Return the `PacketMasking` of a frame, after both passes.

    `other` are the frame's zeroed ranges outside TCP payloads
    (`maskspans.frame_spans`), and `table` the streams that the scan found.
    `addresses` maps the frame's addresses to those the scan saw. Raises
    LookupError for TCP payload of a stream the scan did not see.
    """
    zeroed = [ZeroedRange(start, end, reason) for start, end, reason in other]
    payload = masked_payload(dissection, len(data))
    transport = dissection.transport
    if transport is None or transport.protocol != IPPROTO_TCP:
        return PacketMasking(payload, kept_in_payload(payload, zeroed), _sorted(zeroed))

    segment = TcpSegment.from_transport(transport)
    flow = segment.flow
    if addresses:
        src, dst, sport, dport = unpack_flow(flow)
        flow = pack_flow((addresses.get(src, src), addresses.get(dst, dst), sport, dport))
    start, end = segment.payload_offset, segment.payload_end
    try:
        stream, offset = table.find(flow, segment.seq, syn=segment.syn)
    except LookupError:
        if start < end:
            raise
        return PacketMasking(payload, [], _sorted(zeroed))  # a bare ACK of a direction without payload

    shift = start - offset
    zeroed += tcp_zeroed_ranges(stream.parser, zeroed_payload(stream.parser, offset, start, end), shift=shift)
    records = records_in_packet(stream, offset, end - start, shift=shift) if start < end else []
    return PacketMasking(
        payload, kept_in_payload(payload, zeroed), _sorted(zeroed), records, snapshot(table, stream), offset
    )


def _sorted(zeroed: list[ZeroedRange]) -> list[ZeroedRange]:
    return sorted(zeroed, key=lambda piece: piece.start)


def kept_in_payload(payload: Span, zeroed: list[ZeroedRange]) -> list[Span]:
    """Return the parts of `payload` that no zeroed range covers."""
    kept = []
    position, end = payload
    for piece in sorted(zeroed, key=lambda z: z.start):
        if piece.end <= position or piece.start >= end:
            continue
        if piece.start > position:
            kept.append((position, piece.start))
        position = max(position, piece.end)
    if position < end:
        kept.append((position, end))
    return kept


def tcp_zeroed_ranges(parser: StreamParser | None, zeroed: list[Span], *, shift: int) -> list[ZeroedRange]:
    """Give each zeroed TCP payload span (frame offsets) its reasons, splitting it where they change.

    `shift` converts stream offsets to frame offsets: frame = stream + shift.
    """
    ranges = []
    for start, end in zeroed:
        for piece_start, piece_end, reason in _reasons(parser, start - shift, end - shift):
            ranges.append(ZeroedRange(piece_start + shift, piece_end + shift, reason))
    return ranges


def _reasons(parser: StreamParser | None, start: int, end: int) -> list[tuple[int, int, ZeroReason]]:
    """Split stream offsets [start, end), all zeroed, by the reason they were zeroed."""
    if parser is None:
        return [(start, end, ZeroReason.UNPARSED)]
    pieces = []
    trusted_end = end if parser.trusted_until is None else max(start, min(end, parser.trusted_until))
    if start < trusted_end:
        if isinstance(parser, TlsRecordFinder):
            pieces += _tls_reasons(parser, start, trusted_end)
        else:
            pieces.append((start, trusted_end, ZeroReason.HTTP_BODY))
    if trusted_end < end:
        if parser.verdict is StreamVerdict.GAP:
            reason = ZeroReason.GAP
        elif isinstance(parser, TlsRecordFinder):
            reason = ZeroReason.NOT_TLS
        else:
            reason = ZeroReason.NOT_HTTP
        pieces.append((trusted_end, end, reason))
    return pieces


def _tls_reasons(parser: TlsRecordFinder, start: int, end: int) -> list[tuple[int, int, ZeroReason]]:
    """Split trusted, zeroed stream offsets by the TLS record whose body they are in."""
    pieces = []
    position = start
    for record in parser.records(start, end):
        if record.start > position:
            pieces.append((position, min(record.start, end), ZeroReason.UNPARSED))
        piece_start, piece_end = max(position, record.start), min(end, record.end)
        if piece_start < piece_end:
            pieces.append((piece_start, piece_end, TLS_TYPE_REASONS[record.content_type]))
        position = max(position, piece_end)
    if position < end:
        pieces.append((position, end, ZeroReason.UNPARSED))
    return pieces


def records_in_packet(
    stream: DirectionStream, offset: int, length: int, *, shift: int
) -> list[RecordInPacket]:
    """Return the TLS records overlapping `length` payload bytes at stream `offset`; frame = stream + shift."""
    parser = stream.parser
    if not isinstance(parser, TlsRecordFinder):
        return []
    return [
        RecordInPacket(
            record.content_type,
            (stream.base + record.start) % SEQ_MODULUS,
            record.start,
            record.start + shift,
            record.length,
        )
        for record in parser.records(offset, offset + length)
    ]
