"""Recognize the commonest frame layouts with a few byte comparisons.

Most frames in a capture are plain TCP or UDP over IPv4 or IPv6, behind
Ethernet (with at most one 802.1Q tag), Linux SLL/SLL2 or no link header.
For those, `plain_layout` returns the few offsets a stage needs, and
`plain_tcp_segment` the TCP fields that masking uses, at a fraction of the
cost of `dissect`. Any other frame (IP options, extension headers,
fragments, tunnels, ICMP, truncated headers, invalid fields) returns None,
and the caller falls back to `dissect`, which handles all.
"""

from __future__ import annotations

import logging
import struct
from typing import NamedTuple

from pktmask_nb.dissection import Transport
from pktmask_nb.linklayer import LINKTYPES_RAW
from pktmask_nb.packet import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
)
from pktmask_nb.seqspace import PackedFlow, pack_flow

logger = logging.getLogger(__name__)

_ETHERTYPE_IPV4 = b"\x08\x00"
_ETHERTYPE_IPV6 = b"\x86\xdd"
_ETHERTYPE_VLAN = b"\x81\x00"

# UDP ports whose payload `dissect` follows as a tunnel (VXLAN, Geneve, L2TP).
_TUNNEL_PORTS = frozenset((4789, 6081, 1701))

_LINKTYPES_RAW = LINKTYPES_RAW | {LINKTYPE_IPV4, LINKTYPE_IPV6}
# Raw IP linktypes: 228 and 229 fix the version, the others name it by the first nibble.
_RAW_FIXED = {LINKTYPE_IPV4: _ETHERTYPE_IPV4, LINKTYPE_IPV6: _ETHERTYPE_IPV6}
_RAW_ETHERTYPES = {b"\x45": _ETHERTYPE_IPV4, **{bytes((0x60 | low,)): _ETHERTYPE_IPV6 for low in range(16)}}

# IPv4: version/IHL, total length, flags/fragment offset, protocol.
_IPV4_FIELDS = struct.Struct("!BxHxxHxB")
# IPv6: version/traffic class, payload length, next header.
_IPV6_FIELDS = struct.Struct("!BxxxHB")
_PORTS = struct.Struct("!HH")

# The IPv4 or IPv6 fields a plain frame is checked by, then the TCP seq, data offset and flags.
# The addresses and ports between them are skipped, because they are sliced as one packed flow.
_IPV4_TCP = struct.Struct(">BxHxxHxB14xIxxxxBB")
_IPV6_TCP = struct.Struct(">BxxxHB37xIxxxxBB")
# The same for untagged Ethernet, ethertype first: the commonest layout, in one unpack.
_ETHERNET_IPV4_TCP = struct.Struct(">12xHBxHxxHxB14xIxxxxBB")
_VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))
_TCP_SYN = 0x02


class TcpSegment(NamedTuple):
    """The fields of a TCP segment that masking uses; offsets are into the frame.

    `payload_offset` never passes `payload_end`, which is the end of the IP
    packet clipped to the captured bytes, like `ip_end`.
    """

    flow: PackedFlow  # source and destination address, sport, dport
    seq: int
    syn: bool
    tcp_offset: int
    payload_offset: int
    payload_end: int
    ip_end: int

    @classmethod
    def from_transport(cls, transport: Transport) -> TcpSegment:
        """Return the segment of a TCP `Transport` found by `dissect`."""
        return cls(
            pack_flow((transport.src, transport.dst, transport.sport, transport.dport)),
            transport.seq,
            bool(transport.flags & _TCP_SYN),
            transport.offset,
            transport.payload_offset,
            transport.payload_end,
            transport.ip.total_end,
        )


def plain_tcp_segment(data: bytes, linktype: int) -> tuple | None:
    """Parse a plain Ethernet/IP/TCP frame; return None for any other frame.

    The result is a plain tuple with the fields of `TcpSegment`, in its
    order (a NamedTuple costs more to build, and this runs for every
    packet). Plain means IPv4 without options and not a fragment, or IPv6
    without extension headers, after any VLAN tags. The fields equal what
    `dissect` finds in such a frame, and every frame whose length fields
    would make `dissect` raise returns None.
    """
    size = len(data)
    if linktype != LINKTYPE_ETHERNET or size < _ETHERNET_IPV4_TCP.size:
        return None
    ethertype, version_ihl, ip_len, fragment, protocol, seq, offset_byte, flags = (
        _ETHERNET_IPV4_TCP.unpack_from(data)
    )
    if ethertype != 0x0800:
        return _tagged_or_ipv6_tcp_segment(data, ethertype)
    if version_ihl != 0x45 or protocol != 6 or fragment & 0x3FFF or ip_len < 40 or offset_byte < 0x50:
        # A total length under 40 is invalid (or zero from segmentation offload), and so is a
        # data offset under 5 words: `dissect` decides.
        return None
    # Clipped with `if`, which costs less than calling min() here.
    ip_end = 14 + ip_len
    if ip_end > size:
        ip_end = size
    payload_offset = 34 + (offset_byte >> 4) * 4
    if payload_offset > ip_end:
        payload_offset = ip_end
    return data[26:38], seq, flags & _TCP_SYN != 0, 34, payload_offset, ip_end, ip_end


def _tagged_or_ipv6_tcp_segment(data: bytes, ethertype: int) -> tuple | None:
    """Return `plain_tcp_segment` of an Ethernet frame that is not untagged IPv4."""
    ip_offset = 14
    while ethertype in _VLAN_TPIDS and len(data) >= ip_offset + 4:
        ethertype = data[ip_offset + 2] << 8 | data[ip_offset + 3]
        ip_offset += 4

    if ethertype == 0x0800 and len(data) >= ip_offset + _IPV4_TCP.size:
        version_ihl, ip_len, fragment, protocol, seq, offset_byte, flags = _IPV4_TCP.unpack_from(
            data, ip_offset
        )
        if version_ihl != 0x45 or protocol != 6 or fragment & 0x3FFF or ip_len < 40:
            return None
        tcp_offset = ip_offset + 20
        flow = data[ip_offset + 12 : tcp_offset + 4]
    elif ethertype == 0x86DD and len(data) >= ip_offset + _IPV6_TCP.size:
        version, payload_len, protocol, seq, offset_byte, flags = _IPV6_TCP.unpack_from(data, ip_offset)
        if version >> 4 != 6 or protocol != 6 or payload_len < 20:
            return None
        ip_len = payload_len + 40
        tcp_offset = ip_offset + 40
        flow = data[ip_offset + 8 : tcp_offset + 4]
    else:
        return None

    if offset_byte < 0x50:
        return None
    ip_end = min(ip_offset + ip_len, len(data))
    payload_offset = min(tcp_offset + (offset_byte >> 4) * 4, ip_end)
    return flow, seq, flags & _TCP_SYN != 0, tcp_offset, payload_offset, ip_end, ip_end


class PlainLayout(NamedTuple):
    """Offsets in a plain TCP/UDP frame; `checksum_offset` is the TCP or UDP checksum field."""

    ip_offset: int
    version: int  # 4 or 6
    protocol: int  # 6 (TCP) or 17 (UDP)
    checksum_offset: int


def plain_layout(data: bytes, linktype: int) -> PlainLayout | None:
    """Return the layout of a plain TCP or UDP frame, or None for any other frame.

    A frame qualifies when `dissect` would find exactly one IP header, with
    no options, extension headers or fragmentation, that carries TCP or UDP
    (UDP not on a tunnel port). The transport checksum field must lie inside
    both the captured bytes and the IP packet.
    """
    if linktype == LINKTYPE_ETHERNET:
        ethertype = data[12:14]
        ip_offset = 14
        if ethertype == _ETHERTYPE_VLAN:
            ethertype = data[16:18]
            ip_offset = 18
    elif linktype == LINKTYPE_LINUX_SLL:
        ethertype = data[14:16]
        ip_offset = 16
    elif linktype == LINKTYPE_LINUX_SLL2:
        ethertype = data[0:2]
        ip_offset = 20
    elif linktype in _LINKTYPES_RAW:
        ethertype = (
            _RAW_ETHERTYPES.get(data[0:1], b"") if linktype not in _RAW_FIXED else _RAW_FIXED[linktype]
        )
        ip_offset = 0
    else:
        return None

    caplen = len(data)
    if ethertype == _ETHERTYPE_IPV4:
        if caplen < ip_offset + 20:
            return None
        version_ihl, total_len, fragment, protocol = _IPV4_FIELDS.unpack_from(data, ip_offset)
        if version_ihl != 0x45 or fragment & 0x3FFF or total_len < 20:
            return None
        version = 4
        ip_end = min(ip_offset + total_len, caplen)
        l4_offset = ip_offset + 20
    elif ethertype == _ETHERTYPE_IPV6:
        if caplen < ip_offset + 40:
            return None
        version_class, payload_len, protocol = _IPV6_FIELDS.unpack_from(data, ip_offset)
        if version_class >> 4 != 6 or not payload_len:
            return None
        version = 6
        ip_end = min(ip_offset + 40 + payload_len, caplen)
        l4_offset = ip_offset + 40
    else:
        return None

    if protocol == 6:
        # The checksum must be present, and a valid data offset keeps `dissect` from raising.
        if l4_offset + 18 > ip_end or data[l4_offset + 12] < 0x50:
            return None
        return PlainLayout(ip_offset, version, 6, l4_offset + 16)
    if protocol == 17:
        if l4_offset + 8 > ip_end:
            return None
        sport, dport = _PORTS.unpack_from(data, l4_offset)
        if sport in _TUNNEL_PORTS or dport in _TUNNEL_PORTS:
            return None
        return PlainLayout(ip_offset, version, 17, l4_offset + 6)
    return None
