"""Recognize the commonest frame layout with a few byte comparisons.

Most frames in a capture are plain TCP or UDP over IPv4 or IPv6, behind
Ethernet (with at most one 802.1Q tag), Linux SLL/SLL2 or no link header.
For those, `plain_layout` returns the few offsets a stage needs, at a
fraction of the cost of `dissect`. Any other frame (IP options, extension
headers, fragments, tunnels, ICMP, truncated headers, invalid fields)
returns None, and the caller falls back to `dissect`, which handles all.
"""

from __future__ import annotations

import logging
import struct
from typing import NamedTuple

logger = logging.getLogger(__name__)

_ETHERTYPE_IPV4 = b"\x08\x00"
_ETHERTYPE_IPV6 = b"\x86\xdd"
_ETHERTYPE_VLAN = b"\x81\x00"

# UDP ports whose payload `dissect` follows as a tunnel (VXLAN, Geneve, L2TP).
_TUNNEL_PORTS = frozenset((4789, 6081, 1701))

_LINKTYPE_ETHERNET = 1
_LINKTYPE_LINUX_SLL = 113
_LINKTYPE_LINUX_SLL2 = 276
_LINKTYPES_RAW = frozenset((101, 12, 14, 228, 229))
# Raw IP linktypes: 228 and 229 fix the version, the others name it by the first nibble.
_RAW_FIXED = {228: _ETHERTYPE_IPV4, 229: _ETHERTYPE_IPV6}
_RAW_ETHERTYPES = {b"\x45": _ETHERTYPE_IPV4, **{bytes((0x60 | low,)): _ETHERTYPE_IPV6 for low in range(16)}}

# IPv4: version/IHL, total length, flags/fragment offset, protocol.
_IPV4_FIELDS = struct.Struct("!BxHxxHxB")
# IPv6: version/traffic class, payload length, next header.
_IPV6_FIELDS = struct.Struct("!BxxxHB")
_PORTS = struct.Struct("!HH")


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
    if linktype == _LINKTYPE_ETHERNET:
        ethertype = data[12:14]
        ip_offset = 14
        if ethertype == _ETHERTYPE_VLAN:
            ethertype = data[16:18]
            ip_offset = 18
    elif linktype == _LINKTYPE_LINUX_SLL:
        ethertype = data[14:16]
        ip_offset = 16
    elif linktype == _LINKTYPE_LINUX_SLL2:
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
