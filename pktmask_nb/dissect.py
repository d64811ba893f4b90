"""Byte-level dissection of the headers that sanitizing stages rewrite.

`dissect(data, linktype)` walks a captured frame from the link header to the
innermost transport header, through VLAN tags, MPLS, PPPoE, GRE, VXLAN,
Geneve, L2TP, IP-in-IP and the headers quoted in ICMP errors. It returns
offsets only and never copies or changes the frame. It parses bytes directly
(no scapy), so a plain Ethernet/IPv4/TCP frame takes a few microseconds.

Besides the fields the masking stage uses, a `Dissection` lists every place
where an IP or MAC address lives and every checksum that covers one, which is
what the anonymization stage needs to rewrite addresses and keep checksums
valid. The result types are defined in `pktmask_nb.dissection` and
re-exported here.
"""

from __future__ import annotations

import logging
import struct

from pktmask_nb import icmpbody, tunnels
from pktmask_nb.dissection import (
    ChecksumField,
    Dissection,
    IPHeader,
    MalformedPacket,
    Transport,
    UnsupportedLinktype,
)
from pktmask_nb.ipextensions import IPV6_EXTENSION_HEADERS, parse_ipv4_options, parse_ipv6_extension_headers
from pktmask_nb.linklayer import (
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    NEXT_ETHERNET,
    NEXT_IP,
    NEXT_NONE,
    NEXT_PPP,
    NEXT_UNSUPPORTED,
    NEXT_WLAN,
    parse_ethernet,
    parse_link_header,
)

__all__ = [
    "ChecksumField",
    "Dissection",
    "IPHeader",
    "MAX_DEPTH",
    "MalformedPacket",
    "Transport",
    "UnsupportedLinktype",
    "dissect",
]

logger = logging.getLogger(__name__)

# Deeper nesting than this is taken as a crafted packet, not a real tunnel stack.
MAX_DEPTH = 16

ETHERTYPE_RARP = 0x8035
ETHERTYPE_MPLS = 0x8847
ETHERTYPE_MPLS_MULTICAST = 0x8848
ETHERTYPE_PPPOE_SESSION = 0x8864
VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))

IPPROTO_ICMP = 1
IPPROTO_IGMP = 2
IPPROTO_IPIP = 4
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_IPV6 = 41
IPPROTO_GRE = 47
IPPROTO_ICMPV6 = 58

UDP_PORT_VXLAN = 4789
UDP_PORT_GENEVE = 6081
UDP_PORT_L2TP = 1701

ICMP_ERROR_TYPES = frozenset((3, 4, 5, 11, 12))
ICMPV6_ERROR_TYPES = frozenset((1, 2, 3, 4))

# version/IHL, total length, identification, flags/fragment offset, protocol
_IPV4_FIELDS = struct.Struct("!BxHHHxB")
_TCP_PORTS_SEQ = struct.Struct("!HHI")
_UDP_PORTS = struct.Struct("!HH")


def dissect(data: bytes, linktype: int) -> Dissection:
    """Dissect one captured frame of the given pcap linktype.

    Bytes missing at the end (a frame cut by the snaplen, an ICMP quote, a
    first fragment) end the walk where they end, without error, when no
    address is cut: the headers found so far are returned.

    Raises MalformedPacket, whose message names the layer and the offset,
    when an Ethernet, IP, ARP or routing header is cut short in its address
    fields or a length field is invalid. It is also raised when headers nest
    deeper than MAX_DEPTH, and for a header form that may carry IP but is not
    parsed (GRE routing, 802.11 A-MSDU, RPL routing headers). Raises
    UnsupportedLinktype for a linktype this module does not parse.
    """
    walker = _Walker(data)
    walker.walk_link(linktype)
    result = walker.result
    result.is_ip = bool(result.ip_headers) or result.arp_offset is not None
    return result


class _Walker:
    """The state of one dissection: the frame, the result so far, the depth and the quote."""

    __slots__ = ("data", "result", "depth", "quoted", "parsed_to", "link_done")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.result = Dissection()
        self.depth = 0
        self.quoted = False  # inside an ICMP error's quote
        self.parsed_to = 0  # end of the headers walked so far, for the quote's unparsed rest
        self.link_done = False

    def walk_link(self, linktype: int) -> None:
        data = self.data
        next_layer, offset = parse_link_header(data, linktype, self.result.mac_fields)
        self.dispatch(next_layer, offset, len(data))

    def mark_link_end(self, offset: int) -> None:
        if not self.link_done:
            self.result.link_payload_offset = offset
            self.link_done = True

    # -- dispatch ---------------------------------------------------------------

    def dispatch(self, next_layer: int, offset: int, end: int) -> None:
        """Walk the header `next_layer` (an ethertype or a NEXT_* code) at `offset`."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise MalformedPacket(f"more than {MAX_DEPTH} nested headers at offset {offset}")
        self.parsed_to = offset
        data = self.data

        if next_layer == ETHERTYPE_IPV4:
            self.mark_link_end(offset)
            self.ipv4(offset, end)
        elif next_layer == ETHERTYPE_IPV6:
            self.mark_link_end(offset)
            self.ipv6(offset, end)
        elif next_layer in VLAN_TPIDS:
            if offset + 4 <= end:
                self.dispatch(int.from_bytes(data[offset + 2 : offset + 4]), offset + 4, end)
        elif next_layer == NEXT_IP:
            self.ip_by_version(offset, end)
        elif next_layer in (ETHERTYPE_ARP, ETHERTYPE_RARP):
            self.mark_link_end(offset)
            self.arp(offset, end)
        elif next_layer == NEXT_ETHERNET:
            self.dispatch(*parse_ethernet(data, offset, end, self.result.mac_fields))
        elif next_layer in (ETHERTYPE_MPLS, ETHERTYPE_MPLS_MULTICAST):
            self.dispatch(*tunnels.parse_mpls(data, offset, end), end)
        elif next_layer == ETHERTYPE_PPPOE_SESSION:
            self.dispatch(*tunnels.parse_pppoe_session(data, offset, end))
        elif next_layer == NEXT_PPP:
            self.dispatch(*tunnels.parse_ppp(data, offset, end), end)
        elif next_layer == NEXT_WLAN:
            if offset < end:
                self.dispatch(*tunnels.parse_wlan(data, offset, end, self.result.mac_fields), end)
        elif next_layer == NEXT_UNSUPPORTED:
            raise MalformedPacket(f"unsupported encapsulation at offset {offset} may carry IP")
        else:
            # NEXT_NONE, or an ethertype that carries no IP (LLDP, 802.1X, ...).
            self.mark_link_end(offset)

    def ip_by_version(self, offset: int, end: int) -> None:
        self.mark_link_end(offset)
        if offset >= end:
            raise MalformedPacket(f"IP header missing at offset {offset}")
        version = self.data[offset] >> 4
        if version == 4:
            self.ipv4(offset, end)
        elif version == 6:
            self.ipv6(offset, end)
        else:
            raise MalformedPacket(f"IP header at offset {offset} has version {version}")

    # -- network layer ------------------------------------------------------------

    def arp(self, offset: int, end: int) -> None:
        data = self.data
        if offset + 8 > end:
            raise MalformedPacket(f"ARP header cut short at offset {offset}")
        protocol_type = int.from_bytes(data[offset + 2 : offset + 4])
        if protocol_type != ETHERTYPE_IPV4 or data[offset + 4] != 6 or data[offset + 5] != 4:
            return  # not IPv4 over 6-byte hardware addresses: carries no IP address
        if offset + 28 > end:
            raise MalformedPacket(f"ARP addresses cut short at offset {offset}: {end - offset} of 28 bytes")

        result = self.result
        result.arp_offset = offset
        result.mac_fields += (offset + 8, offset + 18)
        result.address_fields += ((offset + 14, 4), (offset + 24, 4))

    def ipv4(self, offset: int, end: int) -> None:
        data = self.data
        if offset + 20 > end:
            raise MalformedPacket(
                f"IPv4 header cut short at offset {offset}: {max(end - offset, 0)} of 20 bytes"
            )
        version_ihl, total_len, identification, flags_fragment, protocol = _IPV4_FIELDS.unpack_from(
            data, offset
        )
        if version_ihl >> 4 != 4:
            raise MalformedPacket(f"IPv4 header at offset {offset} has version {version_ihl >> 4}")
        header_len = (version_ihl & 0x0F) * 4
        if header_len < 20:
            raise MalformedPacket(f"IPv4 header at offset {offset} has invalid IHL {header_len // 4}")
        if total_len == 0 and not self.quoted:
            # NOTE: TCP segmentation offload leaves a zero total length in frames captured on the
            # sending host. The frame then ends the packet, as Wireshark assumes.
            total_len = end - offset
        if total_len < header_len:
            raise MalformedPacket(f"IPv4 header at offset {offset} has total length {total_len} < IHL*4")

        ip = IPHeader(
            offset,
            4,
            header_len,
            protocol,
            min(offset + total_len, end),
            self.quoted,
            (flags_fragment & 0x1FFF) * 8,
            bool(flags_fragment & 0x2000),
            offset + 12,
            offset + 16,
            identification,
        )
        result = self.result
        result.ip_headers.append(ip)
        result.address_fields += ((offset + 12, 4), (offset + 16, 4))
        result.checksums.append(
            ChecksumField(offset + 10, offset, min(offset + header_len, end), None, False)
        )
        if header_len > 20:
            parse_ipv4_options(data, ip, min(offset + header_len, ip.total_end), result.address_fields)

        payload = offset + header_len
        self.parsed_to = min(payload, ip.total_end)
        if ip.fragment_offset == 0 and payload < ip.total_end:
            self.upper_layer(ip, payload)

    def ipv6(self, offset: int, end: int) -> None:
        data = self.data
        if offset + 40 > end:
            raise MalformedPacket(
                f"IPv6 header cut short at offset {offset}: {max(end - offset, 0)} of 40 bytes"
            )
        if data[offset] >> 4 != 6:
            raise MalformedPacket(f"IPv6 header at offset {offset} has version {data[offset] >> 4}")
        payload_len = int.from_bytes(data[offset + 4 : offset + 6])
        if payload_len == 0 and not self.quoted:
            # NOTE: a zero payload length means a jumbogram (RFC 2675) or offloaded segmentation.
            # The frame then ends the packet.
            payload_len = end - offset - 40

        ip = IPHeader(
            offset,
            6,
            40,
            data[offset + 6],
            min(offset + 40 + payload_len, end),
            self.quoted,
            0,
            False,
            offset + 8,
            offset + 24,
        )
        result = self.result
        result.ip_headers.append(ip)
        result.address_fields += ((offset + 8, 16), (offset + 24, 16))
        complete = True
        if ip.protocol in IPV6_EXTENSION_HEADERS:
            complete = parse_ipv6_extension_headers(data, ip, result.address_fields)

        payload = offset + ip.header_len
        self.parsed_to = min(payload, ip.total_end)
        if complete and ip.fragment_offset == 0 and payload < ip.total_end:
            self.upper_layer(ip, payload)

    # -- upper layers -------------------------------------------------------------

    def upper_layer(self, ip: IPHeader, offset: int) -> None:
        protocol = ip.protocol
        end = ip.total_end
        if protocol == IPPROTO_TCP:
            self.tcp(ip, offset, end)
        elif protocol == IPPROTO_UDP:
            self.udp(ip, offset, end)
        elif protocol == IPPROTO_ICMP and ip.version == 4:
            self.icmp(offset, end)
        elif protocol == IPPROTO_ICMPV6 and ip.version == 6:
            self.icmpv6(ip, offset, end)
        elif protocol == IPPROTO_IPIP:
            self.dispatch(ETHERTYPE_IPV4, offset, end)
        elif protocol == IPPROTO_IPV6:
            self.dispatch(ETHERTYPE_IPV6, offset, end)
        elif protocol == IPPROTO_GRE:
            next_layer, payload, has_checksum = tunnels.parse_gre(self.data, offset, end)
            if has_checksum and offset + 6 <= end:
                self.result.checksums.append(ChecksumField(offset + 4, offset, end, None, False))
            self.dispatch(next_layer, payload, end)
        elif protocol == IPPROTO_IGMP and ip.version == 4:
            icmpbody.parse_igmp_addresses(self.data, offset, end, self.result)
            self.end_quoted_header(offset, end)
        else:
            self.end_quoted_header(offset, end)

    def end_quoted_header(self, offset: int, end: int) -> None:
        # Only the first 8 bytes of a quoted upper-layer header are sure to be header bytes.
        if self.quoted:
            self.parsed_to = min(offset + 8, end)

    def tcp(self, ip: IPHeader, offset: int, end: int) -> None:
        data = self.data
        if self.quoted:
            # A quote may hold the whole segment, whose checksum then still verifies.
            if offset + 18 <= end:
                self.result.checksums.append(ChecksumField(offset + 16, offset, end, ip, False))
            self.end_quoted_header(offset, end)
            return
        if offset + 14 > end:
            return  # ports, seq and flags cut off: no TCP payload exists in the frame
        data_offset = (data[offset + 12] >> 4) * 4
        if data_offset < 20:
            raise MalformedPacket(f"TCP header at offset {offset} has invalid data offset {data_offset // 4}")
        if offset + 18 <= end:
            self.result.checksums.append(ChecksumField(offset + 16, offset, end, ip, False))

        sport, dport, seq = _TCP_PORTS_SEQ.unpack_from(data, offset)
        flags = ((data[offset + 12] & 0x01) << 8) | data[offset + 13]
        payload = min(offset + data_offset, end)
        src, dst = _addresses(data, ip)
        transport = Transport(ip, IPPROTO_TCP, offset, payload, end, sport, dport, seq, flags, src, dst)
        self.result.transport = transport

    def udp(self, ip: IPHeader, offset: int, end: int) -> None:
        data = self.data
        if offset + 8 > end:
            self.end_quoted_header(offset, end)
            return  # ports cut off: no UDP payload exists in the frame
        self.result.checksums.append(ChecksumField(offset + 6, offset, end, ip, True))
        if self.quoted:
            self.end_quoted_header(offset, end)
            return

        sport, dport = _UDP_PORTS.unpack_from(data, offset)
        payload = offset + 8
        next_layer = NEXT_NONE
        if dport == UDP_PORT_VXLAN:
            next_layer, inner = tunnels.parse_vxlan(data, payload, end)
        elif dport == UDP_PORT_GENEVE:
            next_layer, inner = tunnels.parse_geneve(data, payload, end)
        elif dport == UDP_PORT_L2TP or sport == UDP_PORT_L2TP:
            next_layer, inner = tunnels.parse_l2tp(data, payload, end)
        if next_layer != NEXT_NONE:
            self.dispatch(next_layer, inner, end)
            return

        src, dst = _addresses(data, ip)
        transport = Transport(ip, IPPROTO_UDP, offset, payload, end, sport, dport, None, None, src, dst)
        self.result.transport = transport

    def icmp(self, offset: int, end: int) -> None:
        if offset + 4 <= end:
            self.result.checksums.append(ChecksumField(offset + 2, offset, end, None, False))
        if self.quoted:
            self.end_quoted_header(offset, end)
            return
        if offset + 8 > end:
            return

        icmp_type = self.data[offset]
        icmpbody.parse_icmp_addresses(self.data, offset, end, self.result)
        if icmp_type in ICMP_ERROR_TYPES:
            self.quote(offset + 8, end)

    def icmpv6(self, ip: IPHeader, offset: int, end: int) -> None:
        if offset + 4 <= end:
            self.result.checksums.append(ChecksumField(offset + 2, offset, end, ip, False))
        if self.quoted:
            self.end_quoted_header(offset, end)
            return
        if offset + 8 > end:
            return

        icmp_type = self.data[offset]
        if icmp_type in ICMPV6_ERROR_TYPES:
            self.quote(offset + 8, end)
            return
        redirected = icmpbody.parse_icmpv6_addresses(self.data, offset, end, self.result)
        if redirected is not None:
            self.quote(*redirected)

    def quote(self, offset: int, end: int) -> None:
        """Walk the packet quoted in an ICMP error (or an NDP Redirected Header) at `offset`."""
        if offset >= end:
            return
        self.quoted = True
        self.dispatch(NEXT_IP, offset, end)
        if self.parsed_to < end:
            self.result.icmp_quotes.append((max(self.parsed_to, offset), end))


def _addresses(data: bytes, ip: IPHeader) -> tuple[bytes, bytes]:
    src = ip.src_offset
    dst = ip.dst_offset
    size = ip.address_len
    return data[src : src + size], data[dst : dst + size]
