"""Per-packet before/after views of a run, read from the input and output files on demand.

`iter_packet_views(result)` streams the run's input and output captures side
by side, guided by the run's frame index, and yields one `PacketView` per
input frame: the payload before and after, the flow as in the input and as
in the output, and what masking decided for the payload (kept byte ranges,
TLS records). Only the current packet is held in memory, so a view of the
first thousand packets of a 200 MB capture reads only those packets.

The masking decisions come from the run's `MaskPayloads` stage, which
explains after the run what it kept and zeroed in each packet
(`MaskPayloads.explain`). That stage saw each packet as the stages before it
left it: when `AnonymizeIPs` ran first, its flows are named by anonymized
addresses, translated here through the anonymization mapping.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pktmask_nb.capture import open_reader
from pktmask_nb.dissect import Dissection, MalformedPacket, Transport, UnsupportedLinktype, dissect
from pktmask_nb.errors import CaptureError, UnparseablePacketError
from pktmask_nb.hexdump import RecordMark
from pktmask_nb.maskreport import MaskedStream, PacketMasking
from pktmask_nb.packet import Packet
from pktmask_nb.seqspace import FlowKey, format_flow
from pktmask_nb.stages.mask import MaskPayloads, PayloadPlan

if TYPE_CHECKING:
    from pktmask_nb.result import RunResult

logger = logging.getLogger(__name__)

IPPROTO_TCP = 6
IPPROTO_UDP = 17
TCP_SYN = 0x02
IP_PROTOCOL_NAMES = {
    1: "ICMP",
    2: "IGMP",
    4: "IPIP",
    6: "TCP",
    17: "UDP",
    41: "IPv6",
    47: "GRE",
    50: "ESP",
    58: "ICMPv6",
    132: "SCTP",
}


@dataclass(frozen=True, slots=True)
class FlowLabel:
    """One direction of a TCP or UDP flow, with printable addresses."""

    protocol: str  # "TCP" or "UDP"
    src: str
    sport: int
    dst: str
    dport: int
    key: FlowKey  # (src bytes, dst bytes, sport, dport)

    @property
    def text(self) -> str:
        """'src:sport -> dst:dport', IPv6 addresses in brackets."""
        return format_flow(self.key)

    @property
    def conversation(self) -> str:
        """Both directions: 'client:port <-> server:port', the client chosen as in `direction`."""
        src, dst, sport, dport = self.key
        if self.direction == "to_client":
            src, dst, sport, dport = dst, src, dport, sport
        return format_flow((src, dst, sport, dport)).replace(" -> ", " <-> ")

    @property
    def direction(self) -> str:
        """'to_server' or 'to_client'.

        NOTE: the server is taken to be the end with the lower port (the
        address decides a tie), as Wireshark's heuristics do when the SYN is
        not in view; a client on a low port is shown the wrong way round.
        """
        src, dst, sport, dport = self.key
        return "to_server" if (dport, dst) < (sport, src) else "to_client"


@dataclass(slots=True)
class PacketView:
    """One input frame before and after the run.

    `out_flow` is the flow as the output names it (anonymized addresses,
    through the anonymization mapping); for a dropped frame, the flow the
    output would name.
    `payload` and `payload_after` are the transport payload (TCP or UDP), or
    for other IP packets the bytes after the innermost IP header, or for
    non-IP frames the bytes after the link header; `payload_after` is None
    when the run dropped the frame. `kept` lists the [start, end) payload
    ranges masking kept, empty when it zeroed everything, and None where
    this view does not know (dropped frames, and frames masking cannot
    explain). `records` are the TLS records overlapping the payload.
    """

    frame: int
    out_frame: int  # 0 when dropped
    timestamp_ns: int
    caplen: int
    wire_len: int
    protocol: str
    flow: FlowLabel | None
    out_flow: FlowLabel | None
    payload: bytes
    payload_after: bytes | None
    kept: list[tuple[int, int]] | None
    records: list[RecordMark]
    plan: PayloadPlan | None
    seq: int | None = None  # TCP only
    tcp_flags: int | None = None  # TCP only

    @property
    def kept_bytes(self) -> int | None:
        return None if self.kept is None else sum(end - start for start, end in self.kept)

    @property
    def zeroed_bytes(self) -> int | None:
        kept = self.kept_bytes
        return None if kept is None else len(self.payload) - kept

    @property
    def records_ending(self) -> list[RecordMark]:
        """The records whose last byte is in this payload, as Wireshark attributes reassembled records."""
        return [record for record in self.records if 0 < record.end <= len(self.payload)]


class MaskQuery:
    """What the run's stages decided for a packet, asked with the packet's original addresses.

    `mask` is the run's `MaskPayloads` stage, None when the run had none
    (then every payload is kept). `translation` maps original to anonymized
    address bytes when the run had an `AnonymizeIPs` stage.
    """

    def __init__(self, result: RunResult) -> None:
        names = [stage.name for stage in result.stages]
        masks = [stage for stage in result.stages if isinstance(stage, MaskPayloads)]
        self.mask: MaskPayloads | None = masks[0] if masks else None
        self.translation: dict[bytes, bytes] = address_translation(result) if "anonymize" in names else {}
        self.mask_saw_anonymized = bool(
            self.mask is not None
            and self.translation
            and names.index("anonymize") < names.index(self.mask.name)
        )
        self._streams: dict[FlowKey, list[MaskedStream]] | None = None

    def output_label(self, label: FlowLabel) -> FlowLabel | None:
        """Return the flow as the output names it; None when an address is not in the mapping."""
        if not self.translation:
            return label
        src, dst, sport, dport = label.key
        if src not in self.translation or dst not in self.translation:
            return None
        protocol = IPPROTO_TCP if label.protocol == "TCP" else IPPROTO_UDP
        return _cached_label(protocol, self.translation[src], self.translation[dst], sport, dport)

    def mask_key(self, key: FlowKey) -> FlowKey:
        """Return the flow key under which the masking stage saw the original flow `key`."""
        if not self.mask_saw_anonymized:
            return key
        src, dst, sport, dport = key
        return (self.translation.get(src, src), self.translation.get(dst, dst), sport, dport)

    def tcp_plan(self, transport: Transport, length: int) -> PayloadPlan | None:
        """Return the masking plan of a TCP payload, None without a masking stage or a scanned stream."""
        if self.mask is None:
            return None
        key = self.mask_key(flow_key(transport))
        try:
            return self.mask.plan(key, transport.seq, length, syn=bool(transport.flags & TCP_SYN))
        except LookupError as error:
            logger.debug("no masking plan: %s", error)
            return None

    def locate(self, key: FlowKey, seq: int, *, syn: bool) -> tuple[MaskedStream, int] | None:
        """Return the masking stream of a TCP segment of the original flow `key` and its stream offset."""
        if self.mask is None:
            return None
        try:
            return self.mask.stream_at(self.mask_key(key), seq, syn=syn)
        except LookupError:
            return None

    def explain(self, packet: Packet) -> PacketMasking | None:
        """Return what masking did to an input packet; None without a masking stage or a scanned stream."""
        if self.mask is None:
            return None
        addresses = self.translation if self.mask_saw_anonymized else None
        try:
            return self.mask.explain(packet, addresses=addresses)
        except (LookupError, UnparseablePacketError) as error:
            logger.debug("frame %d: no masking explanation: %s", packet.number, error)
            return None

    def streams(self, key: FlowKey) -> list[MaskedStream]:
        """Return the masking stage's streams of the original flow direction `key`, oldest first."""
        if self.mask is None:
            return []
        if self._streams is None:
            self._streams = {}
            for stream in self.mask.streams():
                self._streams.setdefault(stream.flow, []).append(stream)
        return self._streams.get(self.mask_key(key), [])


def address_translation(result: RunResult) -> dict[bytes, bytes]:
    """Return original address bytes -> anonymized address bytes from the run's anonymize stage."""
    mapping = result.stage("anonymize").mapping()
    return {
        ipaddress.ip_address(original).packed: ipaddress.ip_address(anonymized).packed
        for original, anonymized in zip(mapping["original"], mapping["anonymized"], strict=True)
    }


def flow_key(transport: Transport) -> FlowKey:
    return (transport.src, transport.dst, transport.sport, transport.dport)


def flow_label(transport: Transport) -> FlowLabel:
    return _cached_label(transport.protocol, transport.src, transport.dst, transport.sport, transport.dport)


@functools.lru_cache(maxsize=65_536)
def _cached_label(protocol: int, src: bytes, dst: bytes, sport: int, dport: int) -> FlowLabel:
    name = "TCP" if protocol == IPPROTO_TCP else "UDP"
    return FlowLabel(name, _address_text(src), sport, _address_text(dst), dport, (src, dst, sport, dport))


def iter_packet_views(
    result: RunResult,
    *,
    first_frame: int = 1,
    last_frame: int | None = None,
    query: MaskQuery | None = None,
) -> Iterator[PacketView]:
    """Yield a `PacketView` for each input frame from `first_frame` to `last_frame` (1-based, inclusive).

    Both files are read from the start; frames before `first_frame` are read
    and skipped. Raises CaptureError when a file is missing, or when the
    output no longer matches the run's frame index (it was rewritten), and
    RuntimeError after `result.close()`.
    """
    query = query or MaskQuery(result)
    try:
        frame_map = result.frame_map()
    except FileNotFoundError as error:
        raise RuntimeError(
            "this RunResult was closed and its frame index removed; run the pipeline again for views"
        ) from error
    input_reader = open_reader(result.input_path)
    output_reader = open_reader(result.output_path)
    try:
        outputs = iter(output_reader)
        for packet in input_reader:
            if last_frame is not None and packet.number > last_frame:
                break
            out_number = int(frame_map[packet.number - 1]) if packet.number <= len(frame_map) else 0
            out_packet = next(outputs, None) if out_number else None
            if out_number and (out_packet is None or out_packet.number != out_number):
                raise CaptureError(
                    result.output_path,
                    f"output frame {out_number} of input frame {packet.number} is missing",
                    hint="The output changed after the run; run the pipeline again",
                )
            if packet.number >= first_frame:
                yield build_view(packet, out_packet, query)
    finally:
        input_reader.close()
        output_reader.close()


def build_view(packet: Packet, out_packet: Packet | None, query: MaskQuery) -> PacketView:
    """Return the view of one input packet and its output packet (None when dropped)."""
    view = PacketView(
        frame=packet.number,
        out_frame=0 if out_packet is None else out_packet.number,
        timestamp_ns=packet.timestamp_ns,
        caplen=packet.caplen,
        wire_len=packet.wire_len,
        protocol="unparseable",
        flow=None,
        out_flow=None,
        payload=packet.data,
        payload_after=None if out_packet is None else out_packet.data,
        kept=None,
        records=[],
        plan=None,
    )
    try:
        dissection = dissect(packet.data, packet.linktype)
    except (MalformedPacket, UnsupportedLinktype) as error:
        logger.debug("frame %d: %s", packet.number, error)
        return view

    start, end = payload_span(dissection, len(packet.data))
    view.payload = packet.data[start:end]
    if out_packet is not None:
        view.payload_after = _output_payload(out_packet, (start, end), len(packet.data))
    transport = dissection.transport
    if transport is None:
        view.protocol = _non_transport_protocol(dissection)
    else:
        view.flow = flow_label(transport)
        view.protocol = view.flow.protocol
        view.out_flow = query.output_label(view.flow)
        if transport.protocol == IPPROTO_TCP:
            view.seq = transport.seq
            view.tcp_flags = transport.flags
    _add_masking(view, packet, (start, end), transport, query)
    if out_packet is None:
        view.kept = None
    return view


def _add_masking(
    view: PacketView, packet: Packet, span: tuple[int, int], transport: Transport | None, query: MaskQuery
) -> None:
    """Fill in what masking kept of the payload at frame offsets `span`, and the TLS records."""
    start, end = span
    if query.mask is None:
        view.kept = [(0, end - start)]
        return
    masking = query.explain(packet)
    if masking is None:
        return
    view.kept = [(a - start, b - start) for a, b in masking.kept]
    view.records = [RecordMark(r.frame_offset - start, r.content_type, r.length) for r in masking.records]
    if view.records:
        view.protocol = "TLS"
    if transport is not None and transport.protocol == IPPROTO_TCP and end > start:
        view.plan = query.tcp_plan(transport, end - start)


def payload_span(dissection: Dissection, frame_len: int) -> tuple[int, int]:
    """Return the [start, end) frame offsets of what a view calls the payload."""
    transport = dissection.transport
    if transport is not None:
        return transport.payload_offset, transport.payload_end
    carriers = [ip for ip in dissection.ip_headers if not ip.quoted]
    if carriers:
        innermost = carriers[-1]
        start = min(innermost.offset + innermost.header_len, innermost.total_end)
        return start, innermost.total_end
    if dissection.arp_offset is not None:
        return dissection.arp_offset, min(dissection.arp_offset + 28, frame_len)
    start = min(dissection.link_payload_offset, frame_len)
    return start, frame_len


def _output_payload(out_packet: Packet, span: tuple[int, int], input_len: int) -> bytes:
    """Return the output packet's payload: at the input's offsets while no stage changed the length."""
    data = out_packet.data
    if len(data) == input_len:
        return data[span[0] : span[1]]
    try:
        start, end = payload_span(dissect(data, out_packet.linktype), len(data))
    except (MalformedPacket, UnsupportedLinktype):
        return data
    return data[start:end]


def _non_transport_protocol(dissection: Dissection) -> str:
    carriers = [ip for ip in dissection.ip_headers if not ip.quoted]
    if carriers:
        innermost = carriers[-1]
        if innermost.fragment_offset:
            return f"IPv{innermost.version} fragment"
        return IP_PROTOCOL_NAMES.get(innermost.protocol, f"IP proto {innermost.protocol}")
    if dissection.arp_offset is not None:
        return "ARP"
    return "non-IP"


@functools.lru_cache(maxsize=65_536)
def _address_text(address: bytes) -> str:
    return str(ipaddress.ip_address(address))
