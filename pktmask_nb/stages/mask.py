"""Payload masking: zero every payload byte except TLS record headers and handshakes.

The first pass (`scan`) follows each direction of each TCP connection in
sequence space and finds its TLS record boundaries (`pktmask_nb.tls`), or,
on request, its HTTP/1.x message heads (`pktmask_nb.http`). It stores no
payload: only record positions, and out-of-order segments until the bytes
before them arrive. It also sums what the final pass zeroes in each IP
fragment (`pktmask_nb.fragments`). The final pass (`process`) zeroes every
TCP payload byte outside the kept ranges. It also zeroes UDP payloads, bytes
quoted in ICMP errors, ICMP echo data, the payload of other IP protocols
and of non-first fragments, the bytes after the IP packet (Ethernet
padding, trailers) and non-IP frames. Lengths, sequence numbers and headers
stay as they were. The checksums that cover zeroed bytes are updated
incrementally (RFC 1624), also across the fragments of a datagram, so a
correct checksum stays correct and a wrong one stays wrong by the same amount.

After a run, `explain` and `streams` (`pktmask_nb.maskreport`) report what
was done to each packet and found in each TCP stream.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from pktmask_nb.dissect import Dissection, MalformedPacket, UnsupportedLinktype, dissect
from pktmask_nb.errors import CaptureError, UnparseablePacketError
from pktmask_nb.fastpath import TcpSegment, plain_tcp_segment
from pktmask_nb.fragments import FragmentLedger, first_fragment_deltas, fragmented_header
from pktmask_nb.http import HttpHeadFinder, looks_like_http
from pktmask_nb.maskreport import (
    MaskedStream,
    PacketMasking,
    PayloadPlan,
    explain_dissection,
    masked_stream,
    payload_plan,
    snapshot,
    stream_snapshots,
)
from pktmask_nb.maskspans import IPPROTO_TCP, ZeroReason, frame_spans, zeroed_payload
from pktmask_nb.packet import Interface, Packet
from pktmask_nb.seqspace import (
    DirectionStream,
    FlowKey,
    PendingBudget,
    SegmentOrderer,
    StreamTable,
    StreamVerdict,
    format_flow,
    pack_flow,
    unpack_flow,
)
from pktmask_nb.stages.base import Stage
from pktmask_nb.tls import (
    ALERT,
    CHANGE_CIPHER_SPEC,
    CONTENT_TYPE_NAMES,
    HANDSHAKE,
    HEARTBEAT,
    TlsRecordFinder,
)
from pktmask_nb.zeroing import Span, zero_spans, zero_tcp_payload

logger = logging.getLogger(__name__)

DNS_PORT = 53

# The counter that a zeroed range adds one to, per packet.
_REASON_COUNTERS = {
    ZeroReason.UDP: "udp_payloads_zeroed",
    ZeroReason.ICMP_ECHO: "icmp_echo_payloads_zeroed",
    ZeroReason.OTHER_IP: "other_ip_payloads_zeroed",
    ZeroReason.IP_FRAGMENT: "other_ip_payloads_zeroed",
    ZeroReason.TRAILER: "trailers_zeroed",
    ZeroReason.NON_IP: "non_ip_frames_zeroed",
}


@dataclass(slots=True)
class _TcpTally:
    """The counters that change for every packet, as plain attributes (a Counter update costs more)."""

    packets: int = 0
    tcp_payload_bytes: int = 0
    bytes_zeroed: int = 0


class MaskPayloads(Stage):
    """Zero payload bytes, keeping TLS record headers and (by default) TLS handshakes.

    TLS is recognized on any port, SSL 3.0 to TLS 1.3. Every record keeps
    its 5-byte header. Records of the content types selected by
    `keep_handshake`, `keep_alert`, `keep_change_cipher_spec` and
    `keep_heartbeat` are kept whole, and application data bodies are zeroed.
    Everything not recognized is zeroed (fail closed): a direction whose
    bytes stop looking like TLS, or where bytes needed to find the next
    record are missing from the capture, is zeroed from that point on.

    `keep_http_headers` keeps HTTP/1.x start lines and header fields in
    directions that start like HTTP, zeroing bodies. UDP payloads are zeroed
    unless `keep_dns` (UDP port 53) or `keep_udp_ports` select them; the
    names and addresses inside kept DNS messages are not anonymized. Non-IP
    frames other than ARP are zeroed after the link header unless
    `keep_non_ip` is set.

    Counters (per run): `bytes_kept` and `bytes_zeroed` count TCP payload
    bytes, `other_bytes_zeroed` all other zeroed bytes. A "flow" is one
    direction of one TCP connection, as in NetFlow: `tls_flows` found TLS
    records, `non_tls_flows` had payload that was not TLS from some point on,
    `gaps` had bytes missing where a record boundary was needed.

    Memory grows with TLS records (about 11 bytes each, plus the kept
    ranges), TCP directions and fragmented datagrams (10 bytes each), not
    with packets. Out-of-order segments wait in a buffer bounded per
    direction and per capture (`pktmask_nb.seqspace`).
    """

    name = "mask"
    needs_first_pass = True
    counter_names = (
        "packets",
        "tcp_payload_bytes",
        "bytes_kept",
        "bytes_zeroed",
        "tls_records",
        *(f"tls_{name}_records" for name in CONTENT_TYPE_NAMES.values()),
        "tls_flows",
        "non_tls_flows",
        "gaps",
        "http_flows",
        "http_heads",
        "truncated_segments",
        "udp_payloads_zeroed",
        "udp_payloads_kept",
        "icmp_quotes_zeroed",
        "icmp_echo_payloads_zeroed",
        "other_ip_payloads_zeroed",
        "trailers_zeroed",
        "non_ip_frames_zeroed",
        "other_bytes_zeroed",
    )

    def __init__(
        self,
        *,
        keep_handshake: bool = True,
        keep_alert: bool = True,
        keep_change_cipher_spec: bool = True,
        keep_heartbeat: bool = True,
        keep_http_headers: bool = False,
        keep_dns: bool = False,
        keep_udp_ports: Collection[int] = (),
        keep_non_ip: bool = False,
    ) -> None:
        self.keep_handshake = keep_handshake
        self.keep_alert = keep_alert
        self.keep_change_cipher_spec = keep_change_cipher_spec
        self.keep_heartbeat = keep_heartbeat
        self.keep_http_headers = keep_http_headers
        self.keep_dns = keep_dns
        self.keep_udp_ports = keep_udp_ports
        self.keep_non_ip = keep_non_ip

    def reset(self, path: str) -> None:
        """Forget the streams of the previous file; raise ValueError for a bad port number."""
        super().reset(path)
        ports = frozenset(self.keep_udp_ports)
        bad = sorted(p for p in ports if not isinstance(p, int) or not 0 <= p <= 0xFFFF)
        if bad:
            raise ValueError(f"MaskPayloads: keep_udp_ports must be port numbers, not {bad!r}")
        self.udp_ports_ = ports | ({DNS_PORT} if self.keep_dns else set())
        self.keep_types_ = frozenset(
            content_type
            for content_type, keep in (
                (HANDSHAKE, self.keep_handshake),
                (ALERT, self.keep_alert),
                (CHANGE_CIPHER_SPEC, self.keep_change_cipher_spec),
                (HEARTBEAT, self.keep_heartbeat),
            )
            if keep
        )
        self.streams_ = StreamTable()
        self.pending_budget_ = PendingBudget()
        self.fragments_ = FragmentLedger()
        self.tally_ = _TcpTally()
        self.scanned_ = False

    def stats(self) -> dict[str, int]:
        """Counters of the last run, in `counter_names` order."""
        stats = super().stats()
        tally = getattr(self, "tally_", None)  # None before the first run
        if tally is not None:
            stats["packets"] = tally.packets
            stats["tcp_payload_bytes"] = tally.tcp_payload_bytes
            stats["bytes_zeroed"] = tally.bytes_zeroed
            stats["bytes_kept"] = tally.tcp_payload_bytes - tally.bytes_zeroed
        return stats

    # -- first pass -----------------------------------------------------------

    def scan(self, packet: Packet) -> None:
        """Follow the TCP payload of `packet` in its stream; raise UnparseablePacketError."""
        data = packet.data
        segment = plain_tcp_segment(data, packet.interface.linktype)
        if segment is None:
            segment = self._scan_dissected(packet)
            if segment is None:
                return
        flow, seq, syn, _, start, end, _ = segment
        if start == end and not syn:
            return  # a bare ACK, FIN or RST: it neither starts a stream nor carries bytes

        stream, offset = self.streams_.locate(flow, seq, syn, end - start, create=True)
        if start == end:
            return
        orderer = stream.orderer
        if orderer is None:
            payload = data[start:end]
            stream.parser = self._choose_parser(payload)
            first = 0 if stream.syn_seen else None
            stream.orderer = SegmentOrderer(stream.parser, start=first, budget=self.pending_budget_)
            stream.orderer.add(offset, payload)
        elif not orderer.parser.done:
            orderer.add(offset, data[start:end])

    def _scan_dissected(self, packet: Packet) -> TcpSegment | None:
        """Scan a frame that needs `dissect`: note a fragment, and return its TCP segment if any."""
        dissection = self._dissect(packet)
        fragment = fragmented_header(dissection)
        if fragment is not None:
            # The final pass zeroes a later fragment's payload; its checksum sits in the first one.
            self.fragments_.add_frame(
                packet.data, fragment, number=packet.number, timestamp_ns=packet.timestamp_ns
            )
        transport = dissection.transport
        if transport is None or transport.protocol != IPPROTO_TCP:
            return None
        return TcpSegment.from_transport(transport)

    def finish_scan(self) -> None:
        """End every stream, count what was found and prepare for the final pass."""
        counters = self.counters_
        self.fragments_.finish()
        for stream in self.streams_.streams():
            if stream.orderer is None:
                continue
            stream.orderer.finish()
            stream.orderer = None
            self._count_stream(stream)
        self.streams_.rewind()
        self.scanned_ = True
        logger.info(
            "%s: %d TLS records in %d flows; %d flows not TLS; %d flows zeroed from a gap on",
            self.path_,
            counters["tls_records"],
            counters["tls_flows"],
            counters["non_tls_flows"],
            counters["gaps"],
        )

    def _choose_parser(self, first_payload: bytes) -> TlsRecordFinder | HttpHeadFinder:
        # NOTE: the choice looks at the first payload seen, which is not the
        # stream's first bytes when the segments came out of order; then the
        # parser meets bytes it does not recognize and zeroes them.
        is_tls_type = CHANGE_CIPHER_SPEC <= first_payload[0] <= HEARTBEAT
        if self.keep_http_headers and not is_tls_type and looks_like_http(first_payload[:16]):
            return HttpHeadFinder()
        return TlsRecordFinder(keep_types=self.keep_types_)

    def _count_stream(self, stream: DirectionStream) -> None:
        counters = self.counters_
        parser = stream.parser
        if parser.verdict is StreamVerdict.GAP:
            counters["gaps"] += 1
            logger.debug(
                "%s: bytes missing at stream offset %s, zeroed from there on",
                format_flow(unpack_flow(stream.key)),
                parser.trusted_until,
            )
        if isinstance(parser, HttpHeadFinder):
            counters["non_tls_flows"] += 1
            counters["http_flows"] += parser.messages > 0
            counters["http_heads"] += parser.messages
            return
        if len(parser):
            counters["tls_flows"] += 1
            counters["tls_records"] += len(parser)
            for type_name, count in parser.type_counts().items():
                counters[f"tls_{type_name}_records"] += count
        if parser.verdict is StreamVerdict.UNRECOGNIZED:
            counters["non_tls_flows"] += 1

    # -- final pass -----------------------------------------------------------

    def process(self, packet: Packet) -> bytes:
        """Return the packet with its payloads zeroed; raise UnparseablePacketError.

        Raises CaptureError when the packet does not match the first pass.
        """
        if not self.scanned_:
            raise RuntimeError("MaskPayloads.process was called before finish_scan")
        data = packet.data
        segment = plain_tcp_segment(data, packet.interface.linktype)
        if segment is None:
            return self._process_dissected(packet)

        # Ethernet, IPv4 or IPv6 without extension headers, TCP: the common
        # case, parsed without a full dissection and zeroed with one checksum.
        self.tally_.packets += 1
        flow, seq, syn, tcp_offset, start, end, ip_end = segment
        spans = self._tcp_spans(packet, flow, seq, syn, start, end) if start < end or syn else []
        if ip_end < len(data):
            self.counters_["trailers_zeroed"] += 1
            self.counters_["other_bytes_zeroed"] += len(data) - ip_end
        elif not spans:
            return data
        return zero_tcp_payload(data, spans, tcp_offset, ip_end)

    def _process_dissected(self, packet: Packet) -> bytes:
        """Mask any frame `dissect` parses: tunnels, IP options, fragments, UDP, ICMP, non-IP."""
        counters = self.counters_
        self.tally_.packets += 1
        data = packet.data
        dissection = self._dissect(packet)

        other, udp_kept = frame_spans(
            dissection, data, udp_ports=self.udp_ports_, keep_non_ip=self.keep_non_ip
        )
        for _, _, reason in other:
            if reason in _REASON_COUNTERS:
                counters[_REASON_COUNTERS[reason]] += 1
        counters["udp_payloads_kept"] += udp_kept
        counters["icmp_quotes_zeroed"] += bool(dissection.icmp_quotes)
        counters["other_bytes_zeroed"] += sum(end - start for start, end, _ in other)

        spans = [(start, end) for start, end, _ in other]
        transport = dissection.transport
        if transport is not None and transport.protocol == IPPROTO_TCP:
            flow, seq, syn, _, start, end, _ = TcpSegment.from_transport(transport)
            spans += self._tcp_spans(packet, flow, seq, syn, start, end)
        extra_deltas = first_fragment_deltas(self.fragments_, packet.number, dissection)
        if not spans and not extra_deltas:
            return data
        return zero_spans(data, spans, dissection.checksums, extra_deltas=extra_deltas)

    def _tcp_spans(
        self, packet: Packet, flow: bytes, seq: int, syn: bool, start: int, end: int
    ) -> list[Span]:
        """Return the bytes to zero of the TCP payload at frame offsets [start, end); count them.

        The packets that go through the stream table are the same as in the
        scan (those with payload or SYN), so that a SYN moves to the next
        connection on its flow in both.
        """
        if start == end and not syn:
            return []
        try:
            stream, offset = self.streams_.locate(flow, seq, syn, end - start)
        except LookupError as error:
            raise CaptureError(
                self.path_,
                f"the final pass met a TCP stream the first pass did not see ({error})",
                packet_number=packet.number,
                hint="The capture changed while it was read; run again on a file nobody writes to",
            ) from error
        if start == end:
            return []
        if packet.wire_len > len(packet.data):
            self.counters_["truncated_segments"] += 1

        tally = self.tally_
        tally.tcp_payload_bytes += end - start
        parser = stream.parser
        if parser is None or not parser.kept.starts:
            tally.bytes_zeroed += end - start
            return [(start, end)]  # nothing kept in the whole stream
        zeroed = zeroed_payload(parser, offset, start, end)
        tally.bytes_zeroed += sum(b - a for a, b in zeroed)
        return zeroed

    def _dissect(self, packet: Packet) -> Dissection:
        try:
            return dissect(packet.data, packet.interface.linktype)
        except (MalformedPacket, UnsupportedLinktype) as error:
            raise UnparseablePacketError(
                self.path_,
                f"cannot mask the payload: {error}",
                packet_number=packet.number,
                hint="Drop such packets with on_unparseable='drop' (--drop-unparseable)",
            ) from error

    # -- queries after the run ------------------------------------------------

    def explain(self, packet: Packet, *, addresses: Mapping[bytes, bytes] | None = None) -> PacketMasking:
        """Return what the last run kept and zeroed in `packet`, and why (see `PacketMasking`).

        `packet` is as this stage saw it: as read from the input and left by
        the stages before this one. When one of those rewrote addresses
        (`AnonymizeIPs`), pass the input packet and `addresses`, which maps
        each address in it (packed bytes) to the one this stage saw.
        Raises UnparseablePacketError for a frame `dissect` rejects, and
        LookupError for TCP payload of a stream the scan did not see.
        """
        dissection = self._dissect(packet)
        other, _ = frame_spans(
            dissection, packet.data, udp_ports=self.udp_ports_, keep_non_ip=self.keep_non_ip
        )
        return explain_dissection(self.streams_, dissection, packet.data, other, addresses=addresses)

    def explain_frame(
        self, data: bytes, linktype: int, *, addresses: Mapping[bytes, bytes] | None = None
    ) -> PacketMasking:
        """Return `explain` for frame bytes of the given pcap linktype."""
        packet = Packet(0, data, len(data), 0, Interface(0, linktype, 0))
        return self.explain(packet, addresses=addresses)

    def streams(self) -> list[MaskedStream]:
        """Return every TCP stream of the last run, grouped by flow, in order of first appearance."""
        return stream_snapshots(self.streams_)

    def stream(self, flow: FlowKey, *, connection: int = 0) -> MaskedStream:
        """Return one TCP stream of the last run; raise LookupError when the scan did not see it.

        `flow` is (source address bytes, destination address bytes, sport,
        dport), and `connection` picks among connections that reused it (0 is the first).
        """
        streams = self.streams_.streams_of(pack_flow(flow))
        if not 0 <= connection < len(streams):
            raise LookupError(f"no connection {connection} of {format_flow(flow)} was scanned")
        return masked_stream(streams[connection], connection)

    def stream_at(self, flow: FlowKey, seq: int, *, syn: bool = False) -> tuple[MaskedStream, int]:
        """Return the TCP stream of `flow` that contains `seq`, and the stream offset of `seq`.

        Set `syn` for the sequence number of a SYN. Raises LookupError when no stream contains it.
        """
        stream, offset = self.streams_.find(pack_flow(flow), seq, syn=syn)
        return snapshot(self.streams_, stream), offset

    def plan(self, flow: FlowKey, seq: int, length: int, *, syn: bool = False) -> PayloadPlan:
        """Return what masking does to `length` payload bytes at `seq` in `flow`.

        `flow` is (source address bytes, destination address bytes, sport,
        dport). Raises LookupError for a flow or seq the scan did not see.
        """
        return payload_plan(self.streams_, flow, seq, length, syn=syn)

    def plan_packet(self, packet: Packet) -> PayloadPlan | None:
        """Return the `PayloadPlan` of a TCP packet of the last run, None for other packets."""
        transport = self._dissect(packet).transport
        if transport is None or transport.protocol != IPPROTO_TCP:
            return None
        segment = TcpSegment.from_transport(transport)
        length = segment.payload_end - segment.payload_offset
        return self.plan(unpack_flow(segment.flow), segment.seq, length, syn=segment.syn)
