"""Payload masking: zero every payload byte except TLS record headers and handshakes.

The first pass (`scan`) follows each direction of each TCP connection in
sequence space and finds its TLS record boundaries (`pktmask_nb.tls`), or,
on request, its HTTP/1.x message heads (`pktmask_nb.http`). It stores no
payload: only record positions, and out-of-order segments until the bytes
before them arrive. The final pass (`process`) zeroes every TCP payload byte
outside the kept ranges. It also zeroes UDP payloads, bytes quoted in ICMP
errors, ICMP echo data, the payload of other IP protocols, the bytes after
the IP packet (Ethernet padding, trailers) and non-IP frames. Lengths, sequence
numbers and headers stay as they were. The checksums that cover zeroed
bytes are updated incrementally (RFC 1624), so a correct checksum stays
correct and a wrong one stays wrong by the same amount.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Collection
from dataclasses import dataclass
from typing import NamedTuple

from pktmask_nb.checksum import adjust_checksum, replacement_delta
from pktmask_nb.dissect import (
    ChecksumField,
    Dissection,
    IPHeader,
    MalformedPacket,
    Transport,
    UnsupportedLinktype,
    dissect,
)
from pktmask_nb.errors import CaptureError, UnparseablePacketError
from pktmask_nb.fragments import DatagramKey, FragmentLedger
from pktmask_nb.http import HttpHeadFinder, looks_like_http
from pktmask_nb.packet import LINKTYPE_ETHERNET, Packet
from pktmask_nb.seqspace import (
    DirectionStream,
    FlowKey,
    PendingBudget,
    SegmentOrderer,
    StreamTable,
    StreamVerdict,
    format_flow,
)
from pktmask_nb.stages.base import Stage
from pktmask_nb.tls import (
    ALERT,
    CHANGE_CIPHER_SPEC,
    CONTENT_TYPE_NAMES,
    HANDSHAKE,
    HEARTBEAT,
    TlsRecord,
    TlsRecordFinder,
)

logger = logging.getLogger(__name__)

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58
# Protocols whose payload the dissector walks into (tunnels) or that carry no user data of their own.
_WALKED_PROTOCOLS = frozenset((IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6, 4, 41, 47))
ICMP_ECHO_TYPES = {4: frozenset((0, 8)), 6: frozenset((128, 129))}
ICMP_HEADER_LEN = 8
DNS_PORT = 53
TCP_SYN = 0x02
ARP_IPV4_LEN = 28
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))


@dataclass(frozen=True, slots=True)
class PayloadPlan:
    """The masking decision for the TCP payload of one segment.

    `kept` lists the [start, end) byte ranges of the payload that stay, in
    payload coordinates where 0 is the first payload byte. All other payload
    bytes are zeroed. `records` are the TLS records that overlap the
    segment, in stream offsets like `stream_offset`. `verdict` and
    `trusted_until` (a stream offset, or None) say where the direction's
    record boundaries stopped being trusted.
    """

    flow: FlowKey
    stream_offset: int
    length: int
    records: list[TlsRecord]
    kept: list[tuple[int, int]]
    verdict: StreamVerdict | None
    trusted_until: int | None


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
        self.scanned_ = False

    # -- first pass -----------------------------------------------------------

    def scan(self, packet: Packet) -> None:
        """Follow the TCP payload of `packet` in its stream; raise UnparseablePacketError."""
        segment = plain_tcp_segment(packet.data, packet.linktype)
        if segment is None:
            dissection = self._dissect(packet)
            fragment = fragmented_header(dissection)
            if fragment is not None:
                self._scan_fragment(packet, fragment)
            if dissection.transport is None or dissection.transport.protocol != IPPROTO_TCP:
                return
            segment = TcpSegment.from_transport(dissection.transport)

        payload = packet.data[segment.payload_offset : segment.payload_end]
        if not payload and not segment.syn:
            return  # a bare ACK, FIN or RST: it neither starts a stream nor carries bytes
        stream, offset = self.streams_.locate(
            segment.flow, segment.seq, syn=segment.syn, payload_len=len(payload), create=True
        )
        if not payload:
            return
        if stream.orderer is None:
            stream.parser = self._choose_parser(payload)
            start = 0 if stream.syn_seen else None
            stream.orderer = SegmentOrderer(stream.parser, start=start, budget=self.pending_budget_)
        stream.orderer.add(offset, payload)

    def _scan_fragment(self, packet: Packet, fragment: IPHeader) -> None:
        """Note what the final pass zeroes in a fragment, for the checksum in the first fragment."""
        start, end = fragment_payload_span(fragment)
        self.fragments_.add_fragment(
            datagram_key(packet.data, fragment),
            number=packet.number,
            timestamp_ns=packet.timestamp_ns,
            fragment_offset=fragment.fragment_offset,
            payload=memoryview(packet.data)[start:end],
            more_fragments=fragment.more_fragments,
            zeroed=fragment.fragment_offset != 0,
        )

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
                format_flow(stream.key),
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
        self.counters_["packets"] += 1
        data = packet.data

        segment = plain_tcp_segment(data, packet.linktype)
        if segment is not None:
            # Ethernet, IPv4 or IPv6 without extension headers, TCP: the
            # common case, parsed here without a full dissection.
            spans = self._tcp_spans(packet, segment)
            trailer = self._trailer_span(segment.ip_end, len(data))
            if not spans and not trailer:
                return data
            if trailer:
                self.counters_["other_bytes_zeroed"] += len(data) - segment.ip_end
            checksums = [
                ChecksumField(segment.tcp_offset + 16, segment.tcp_offset, segment.ip_end, None, False)
            ]
            return zero_spans(data, spans + trailer, checksums)

        dissection = self._dissect(packet)
        tcp_spans: list[tuple[int, int]] = []
        if not dissection.is_ip:
            other_spans = self._non_ip_spans(dissection, len(data))
        else:
            if dissection.ip_headers:
                other_spans = self._trailer_span(dissection.ip_headers[0].total_end, len(data))
            else:
                other_spans = self._trailer_span(dissection.arp_offset + ARP_IPV4_LEN, len(data))
            transport = dissection.transport
            if transport is not None and transport.protocol == IPPROTO_TCP:
                tcp_spans = self._tcp_spans(packet, TcpSegment.from_transport(transport))
            elif transport is not None:
                other_spans += self._udp_spans(transport)
            else:
                other_spans += self._other_ip_spans(data, dissection.ip_headers)
            if dissection.icmp_quotes:
                self.counters_["icmp_quotes_zeroed"] += 1
                other_spans += dissection.icmp_quotes
        self.counters_["other_bytes_zeroed"] += sum(end - start for start, end in other_spans)

        spans = tcp_spans + other_spans
        extra_deltas = self._fragment_deltas(packet.number, dissection)
        if not spans and not extra_deltas:
            return data
        return zero_spans(data, spans, dissection.checksums, extra_deltas=extra_deltas)

    def _fragment_deltas(self, number: int, dissection: Dissection) -> dict[int, int]:
        """Return checksum offset -> delta for the bytes zeroed in the other fragments of a first fragment."""
        fragment = fragmented_header(dissection)
        if fragment is None or fragment.fragment_offset != 0:
            return {}
        delta = self.fragments_.delta(number)
        if not delta:
            return {}
        upper = fragment.offset + fragment.header_len
        return {
            checksum.offset: delta * 256 % 0xFFFF if (checksum.start - upper) % 2 else delta
            for checksum in dissection.checksums
            if checksum.start >= upper and checksum.end == fragment.total_end
        }

    def _tcp_spans(self, packet: Packet, segment: TcpSegment) -> list[tuple[int, int]]:
        """Return the TCP payload bytes to zero, in frame offsets; count them.

        The packets that go through the stream table are the same as in the
        scan, so that a SYN moves to the next connection on its flow in both.
        """
        start, end = segment.payload_offset, segment.payload_end
        if end <= start and not segment.syn:
            return []
        try:
            stream, offset = self.streams_.locate(
                segment.flow, segment.seq, syn=segment.syn, payload_len=end - start, create=False
            )
        except LookupError as error:
            raise CaptureError(
                self.path_,
                f"the final pass met a TCP stream the first pass did not see ({error})",
                packet_number=packet.number,
                hint="The capture changed while it was read; run again on a file nobody writes to",
            ) from error
        if end <= start:
            return []
        if packet.wire_len > len(packet.data):
            self.counters_["truncated_segments"] += 1

        # A stream without a parser had no payload in the scan: nothing is kept.
        kept = [] if stream.parser is None else stream.parser.kept.overlapping(offset, offset + end - start)
        zeroed = []
        position = start
        for kept_start, kept_end in kept:
            zeroed.append((position, start + kept_start - offset))
            position = start + kept_end - offset
        zeroed.append((position, end))
        zeroed = [(a, b) for a, b in zeroed if a < b]

        zeroed_bytes = sum(b - a for a, b in zeroed)
        self.counters_["tcp_payload_bytes"] += end - start
        self.counters_["bytes_zeroed"] += zeroed_bytes
        self.counters_["bytes_kept"] += end - start - zeroed_bytes
        return zeroed

    def _udp_spans(self, transport: Transport) -> list[tuple[int, int]]:
        start, end = transport.payload_offset, transport.payload_end
        if end <= start:
            return []
        if transport.sport in self.udp_ports_ or transport.dport in self.udp_ports_:
            # NOTE: kept DNS messages keep the names and addresses in them.
            self.counters_["udp_payloads_kept"] += 1
            return []
        self.counters_["udp_payloads_zeroed"] += 1
        return [(start, end)]

    def _other_ip_spans(self, data: bytes, ip_headers: list[IPHeader]) -> list[tuple[int, int]]:
        """Zero the payload of an IP packet that carries no TCP or UDP header."""
        if not ip_headers:
            return []  # ARP: only its padding is zeroed, as a trailer
        innermost = [ip for ip in ip_headers if not ip.quoted][-1]
        start = innermost.offset + innermost.header_len
        end = innermost.total_end
        if end <= start:
            return []
        if innermost.fragment_offset == 0 and innermost.protocol in (IPPROTO_ICMP, IPPROTO_ICMPV6):
            if data[start] in ICMP_ECHO_TYPES[innermost.version] and start + ICMP_HEADER_LEN < end:
                self.counters_["icmp_echo_payloads_zeroed"] += 1
                return [(start + ICMP_HEADER_LEN, end)]
            return []
        if innermost.fragment_offset == 0 and innermost.protocol in _WALKED_PROTOCOLS:
            # NOTE: a tunnel whose inner frame is not IP (an Ethernet frame
            # with ARP or LLDP inside GRE or VXLAN) is left as it is.
            return []
        # A non-first fragment: the checksum over these bytes, in the first
        # fragment, is updated from what the scan pass found here.
        # NOTE: this zeroes the rest of a UDP datagram that keep_udp_ports keeps in its first fragment.
        self.counters_["other_ip_payloads_zeroed"] += 1
        return [fragment_payload_span(innermost)]

    def _trailer_span(self, end: int, frame_len: int) -> list[tuple[int, int]]:
        """Zero what follows the outermost IP packet or ARP message: padding, trailers, FCS."""
        if end >= frame_len:
            return []
        self.counters_["trailers_zeroed"] += 1
        return [(end, frame_len)]

    def _non_ip_spans(self, dissection: Dissection, frame_len: int) -> list[tuple[int, int]]:
        start = dissection.link_payload_offset
        if self.keep_non_ip or start >= frame_len:
            return []
        self.counters_["non_ip_frames_zeroed"] += 1
        return [(start, frame_len)]

    def _dissect(self, packet: Packet) -> Dissection:
        try:
            return dissect(packet.data, packet.linktype)
        except (MalformedPacket, UnsupportedLinktype) as error:
            raise UnparseablePacketError(
                self.path_,
                f"cannot mask the payload: {error}",
                packet_number=packet.number,
                hint="Drop such packets with on_unparseable='drop' (--drop-unparseable)",
            ) from error

    # -- queries after the run ------------------------------------------------

    def plan(self, flow: FlowKey, seq: int, length: int, *, syn: bool = False) -> PayloadPlan:
        """Return what masking does to `length` payload bytes at `seq` in `flow`.

        `flow` is (source address bytes, destination address bytes, sport,
        dport). Raises LookupError for a flow or seq the scan did not see.
        """
        stream, offset = self.streams_.find(flow, seq, syn=syn)
        parser = stream.parser
        if parser is None:
            return PayloadPlan(flow, offset, length, [], [], None, None)
        kept = [(a - offset, b - offset) for a, b in parser.kept.overlapping(offset, offset + length)]
        records = parser.records(offset, offset + length) if isinstance(parser, TlsRecordFinder) else []
        return PayloadPlan(flow, offset, length, records, kept, parser.verdict, parser.trusted_until)

    def plan_packet(self, packet: Packet) -> PayloadPlan | None:
        """Return the `PayloadPlan` of a TCP packet of the last run, None for other packets."""
        transport = self._dissect(packet).transport
        if transport is None or transport.protocol != IPPROTO_TCP:
            return None
        segment = TcpSegment.from_transport(transport)
        length = segment.payload_end - segment.payload_offset
        return self.plan(segment.flow, segment.seq, length, syn=segment.syn)


class TcpSegment(NamedTuple):
    """The fields of a TCP segment that masking uses; offsets are into the frame."""

    flow: FlowKey
    seq: int
    syn: bool
    tcp_offset: int
    payload_offset: int
    payload_end: int
    ip_end: int

    @classmethod
    def from_transport(cls, transport: Transport) -> TcpSegment:
        flow = (transport.src, transport.dst, transport.sport, transport.dport)
        return cls(
            flow,
            transport.seq,
            bool(transport.flags & TCP_SYN),
            transport.offset,
            transport.payload_offset,
            transport.payload_end,
            transport.ip.total_end,
        )


# From the IP header to the TCP flags: IPv4 version/IHL, total length,
# flags/fragment offset, protocol, addresses; IPv6 version, payload length,
# next header, addresses; then TCP ports, seq, data offset and flags.
_IPV4_TCP = struct.Struct(">BxHxxHxBxx4s4sHHIxxxxBB")
_IPV6_TCP = struct.Struct(">BxxxHBx16s16sHHIxxxxBB")


def plain_tcp_segment(data: bytes, linktype: int) -> TcpSegment | None:
    """Parse a plain Ethernet/IP/TCP frame; return None for any other frame.

    Plain means IPv4 without options and not a fragment, or IPv6 without
    extension headers, after any VLAN tags. The result equals what `dissect`
    finds in such a frame: this is the fast path for the common case, and
    `dissect` handles everything else, including every frame whose length
    fields would make it raise.
    """
    if linktype != LINKTYPE_ETHERNET or len(data) < 14:
        return None
    ethertype = data[12] << 8 | data[13]
    ip_offset = 14
    while ethertype in VLAN_TPIDS and len(data) >= ip_offset + 4:
        ethertype = data[ip_offset + 2] << 8 | data[ip_offset + 3]
        ip_offset += 4

    if ethertype == ETHERTYPE_IPV4 and len(data) >= ip_offset + _IPV4_TCP.size:
        version_ihl, ip_len, fragment, protocol, src, dst, sport, dport, seq, offset_byte, flags = (
            _IPV4_TCP.unpack_from(data, ip_offset)
        )
        if version_ihl != 0x45 or protocol != IPPROTO_TCP or fragment & 0x3FFF:
            return None
        tcp_offset = ip_offset + 20
    elif ethertype == ETHERTYPE_IPV6 and len(data) >= ip_offset + _IPV6_TCP.size:
        version, payload_len, protocol, src, dst, sport, dport, seq, offset_byte, flags = (
            _IPV6_TCP.unpack_from(data, ip_offset)
        )
        if version >> 4 != 6 or protocol != IPPROTO_TCP or payload_len == 0:
            return None
        ip_len = payload_len + 40
        tcp_offset = ip_offset + 40
    else:
        return None

    header_len = (offset_byte >> 4) * 4
    if ip_len < tcp_offset - ip_offset + 20 or header_len < 20:
        # An invalid length, or zero (segmentation offload) in IPv4: `dissect` decides.
        return None
    ip_end = min(ip_offset + ip_len, len(data))
    payload_offset = min(tcp_offset + header_len, ip_end)
    syn = bool(flags & TCP_SYN)
    return TcpSegment((src, dst, sport, dport), seq, syn, tcp_offset, payload_offset, ip_end, ip_end)


def fragmented_header(dissection: Dissection) -> IPHeader | None:
    """Return the innermost IP header (not quoted in ICMP) that is a fragment, or None."""
    for ip in reversed(dissection.ip_headers):
        if not ip.quoted and ip.is_fragment:
            return ip
    return None


def fragment_payload_span(fragment: IPHeader) -> tuple[int, int]:
    """Return the frame offsets of a fragment's captured payload (for a first fragment, from the upper layer)."""
    start = fragment.offset + fragment.header_len
    return min(start, fragment.total_end), fragment.total_end


def datagram_key(data: bytes, fragment: IPHeader) -> DatagramKey:
    """Return (src, dst, protocol, identification) of a fragment; protocol 0 for IPv6 (RFC 8200 section 4.5)."""
    size = fragment.address_len
    src = data[fragment.src_offset : fragment.src_offset + size]
    dst = data[fragment.dst_offset : fragment.dst_offset + size]
    return src, dst, fragment.protocol if fragment.version == 4 else 0, fragment.identification


def zero_spans(
    data: bytes,
    spans: list[tuple[int, int]],
    checksums: list[ChecksumField],
    *,
    extra_deltas: dict[int, int] | None = None,
) -> bytes:
    """Return `data` with the byte ranges `spans` zeroed and the checksums over them updated.

    `checksums` are listed outer first. They are updated inner first, so an
    outer checksum (a tunnel's UDP header) also accounts for the inner
    checksum fields that changed. `extra_deltas` maps a checksum field's
    offset to an RFC 1624 delta to add for changes outside the frame (the
    other fragments of a datagram). A UDP checksum of zero ("none") stays zero.
    """
    extra_deltas = extra_deltas or {}
    zeroed = _merge(spans)
    frame = bytearray(data)
    for start, end in zeroed:
        frame[start:end] = bytes(end - start)

    changed = list(zeroed)
    for checksum in reversed(checksums):
        if checksum.offset + 2 > len(frame):
            continue
        if any(start < checksum.offset + 2 and checksum.offset < end for start, end in zeroed):
            continue  # the field itself was zeroed, as in a TCP header quoted by ICMP
        current = int.from_bytes(frame[checksum.offset : checksum.offset + 2], "big")
        if current == 0 and checksum.zero_means_none:
            continue
        delta = extra_deltas.get(checksum.offset, 0)
        for start, end in changed:
            start, end = max(start, checksum.start), min(end, checksum.end)
            if start < end:
                odd = (start - checksum.start) % 2 == 1
                delta += replacement_delta(data[start:end], bytes(frame[start:end]), odd=odd)
        updated = adjust_checksum(current, delta)
        if updated == current:
            continue
        if updated == 0 and checksum.zero_means_none:
            updated = 0xFFFF
        frame[checksum.offset : checksum.offset + 2] = updated.to_bytes(2, "big")
        changed.append((checksum.offset, checksum.offset + 2))
    return bytes(frame)


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Return the spans sorted, with overlapping and touching ones merged."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        elif start < end:
            merged.append((start, end))
    return merged
