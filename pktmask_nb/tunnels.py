"""Parsers for the encapsulation headers that sit between link layer and IP.

Covered: MPLS label stacks, PPPoE sessions, PPP frames, GRE (with ERSPAN
types I, II and III, transparent Ethernet bridging and Aruba's raw 802.11),
VXLAN, Geneve, L2TPv2 and 802.11 data frames behind radiotap.

Each parser reads one header at `offset` in `data`, where `end` is the end of
the bytes that belong to the enclosing packet, and returns `(next_layer,
offset)`: where the payload starts and what it is. `next_layer` is an
ethertype (IPv4, IPv6, ARP, 802.1Q ...) or one of the NEXT_* codes of
`pktmask_nb.linklayer`. A
header cut short by `end` returns `(NEXT_NONE, end)`, because no byte after
it exists, and a payload the dissector does not follow returns NEXT_NONE
with the offset where that payload starts. These parsers raise nothing. The dissector turns NEXT_UNSUPPORTED into
`MalformedPacket`, so that a header form that may hide an IP packet stops
the walk instead of passing unread.
"""

from __future__ import annotations

import logging

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
    parse_llc,
)

logger = logging.getLogger(__name__)

ETHERTYPE_TEB = 0x6558  # transparent Ethernet bridging
ETHERTYPE_ERSPAN_II = 0x88BE  # type I when the GRE sequence bit is clear
ETHERTYPE_ERSPAN_III = 0x22EB
ETHERTYPE_ARUBA_WLAN = 0x8200
ETHERTYPE_PPP = 0x880B

PPP_IPV4 = 0x0021
PPP_IPV6 = 0x0057

GRE_CHECKSUM = 0x8000
GRE_ROUTING = 0x4000
GRE_KEY = 0x2000
GRE_SEQUENCE = 0x1000
GRE_ACK = 0x0080  # PPTP's enhanced GRE (version 1)

L2TP_CONTROL = 0x8000
L2TP_LENGTH = 0x4000
L2TP_SEQUENCE = 0x0800
L2TP_OFFSET = 0x0200

VXLAN_VNI_VALID = 0x08

WLAN_TYPE_DATA = 2
WLAN_PROTECTED = 0x40
WLAN_ORDER = 0x80
WLAN_QOS_AMSDU = 0x80


def ppp_protocol_next(protocol: int) -> int:
    """Map a PPP protocol number to the next layer (IPv4 and IPv6 only)."""
    if protocol == PPP_IPV4:
        return ETHERTYPE_IPV4
    if protocol == PPP_IPV6:
        return ETHERTYPE_IPV6
    return NEXT_NONE


def parse_ppp(data: bytes, offset: int, end: int) -> tuple[int, int]:
    """Parse a PPP frame header: optional FF 03 address/control, 1- or 2-byte protocol."""
    if data[offset : offset + 2] == b"\xff\x03":
        offset += 2
    if offset >= end:
        return NEXT_NONE, end

    # Protocol field compression (RFC 1661): an odd first byte is the whole field.
    if data[offset] & 1:
        return ppp_protocol_next(data[offset]), offset + 1
    if offset + 2 > end:
        return NEXT_NONE, end
    return ppp_protocol_next(int.from_bytes(data[offset : offset + 2])), offset + 2


def parse_pppoe_session(data: bytes, offset: int, end: int) -> tuple[int, int, int]:
    """Parse a PPPoE session header (RFC 2516) and its PPP protocol field.

    Returns `(next_layer, offset, end)`, where `end` is cut to the PPPoE length.
    """
    if offset + 8 > end:
        return NEXT_NONE, end, end
    if data[offset] != 0x11 or data[offset + 1] != 0:
        return NEXT_NONE, offset, end

    length = int.from_bytes(data[offset + 4 : offset + 6])
    end = min(end, offset + 6 + length)
    protocol = int.from_bytes(data[offset + 6 : offset + 8])
    return ppp_protocol_next(protocol), offset + 8, end


def parse_mpls(data: bytes, offset: int, end: int) -> tuple[int, int]:
    """Skip an MPLS label stack and guess the payload, which MPLS does not name.

    After the bottom-of-stack label, a first nibble of 4 or 6 is taken as
    IPv4 or IPv6. A first nibble of 0 is an Ethernet pseudowire control word
    (RFC 4448) only when an Ethernet header that carries IP or ARP follows
    it, and no such header starts without the control word. When both
    readings fit, the result is NEXT_UNSUPPORTED. Any other first nibble is
    tried as Ethernet without a control word.
    """
    while True:
        if offset + 4 > end:
            return NEXT_NONE, end
        bottom = data[offset + 2] & 0x01
        offset += 4
        if bottom:
            break
    if offset >= end:
        return NEXT_NONE, end

    nibble = data[offset] >> 4
    if nibble in (4, 6):
        return NEXT_IP, offset

    bare = _looks_like_ethernet(data, offset, end)
    if nibble != 0:
        return (NEXT_ETHERNET, offset) if bare else (NEXT_NONE, offset)
    after_control_word = _looks_like_ethernet(data, offset + 4, end)
    if after_control_word and not bare:
        return NEXT_ETHERNET, offset + 4
    if bare and not after_control_word:
        return NEXT_ETHERNET, offset
    if bare and after_control_word:
        return NEXT_UNSUPPORTED, offset
    return NEXT_NONE, offset


def _looks_like_ethernet(data: bytes, offset: int, end: int) -> bool:
    if offset + 14 > end:
        return False
    ethertype = int.from_bytes(data[offset + 12 : offset + 14])
    return ethertype in (ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_ARP, 0x8100, 0x88A8, 0x9100)


def parse_gre(data: bytes, offset: int, end: int) -> tuple[int, int, bool]:
    """Parse a GRE header (RFC 2784/2890, PPTP's version 1) and what it carries.

    Returns `(next_layer, payload_offset, has_checksum)`. The checksum, when
    present, is the 16-bit word at `offset + 4` and covers the GRE header and
    payload. The RFC 1701 routing field is not parsed (NEXT_UNSUPPORTED).
    """
    if offset + 4 > end:
        return NEXT_NONE, end, False
    flags = int.from_bytes(data[offset : offset + 2])
    protocol = int.from_bytes(data[offset + 2 : offset + 4])
    version = flags & 0x07
    if flags & GRE_ROUTING or version > 1:
        return NEXT_UNSUPPORTED, offset, False

    has_checksum = bool(flags & GRE_CHECKSUM)
    payload = offset + 4
    payload += 4 if has_checksum else 0
    payload += 4 if flags & GRE_KEY else 0
    payload += 4 if flags & GRE_SEQUENCE else 0
    payload += 4 if version == 1 and flags & GRE_ACK else 0
    if payload > end:
        return NEXT_NONE, end, has_checksum

    if protocol == ETHERTYPE_TEB:
        return NEXT_ETHERNET, payload, has_checksum
    if protocol == ETHERTYPE_ARUBA_WLAN:
        return NEXT_WLAN, payload, has_checksum
    if protocol == ETHERTYPE_PPP:
        return NEXT_PPP, payload, has_checksum
    if protocol == ETHERTYPE_ERSPAN_II:
        if not flags & GRE_SEQUENCE:
            return NEXT_ETHERNET, payload, has_checksum  # type I: no ERSPAN header
        return NEXT_ETHERNET, payload + 8, has_checksum
    if protocol == ETHERTYPE_ERSPAN_III:
        next_layer, payload = _parse_erspan_iii(data, payload, end)
        return next_layer, payload, has_checksum
    return protocol, payload, has_checksum


def _parse_erspan_iii(data: bytes, offset: int, end: int) -> tuple[int, int]:
    if offset + 12 > end:
        return NEXT_NONE, end
    frame_type = (data[offset + 10] >> 1) & 0x1F
    has_platform_subheader = data[offset + 11] & 0x01
    payload = offset + 12 + (8 if has_platform_subheader else 0)
    if frame_type == 0:
        return NEXT_ETHERNET, payload
    if frame_type == 2:
        return NEXT_IP, payload
    return NEXT_UNSUPPORTED, offset


def parse_vxlan(data: bytes, offset: int, end: int) -> tuple[int, int]:
    """Parse a VXLAN header (RFC 7348): 8 bytes, then an Ethernet frame."""
    if offset + 8 > end:
        return NEXT_NONE, end
    if not data[offset] & VXLAN_VNI_VALID:
        return NEXT_NONE, offset
    return NEXT_ETHERNET, offset + 8


def parse_geneve(data: bytes, offset: int, end: int) -> tuple[int, int]:
    """Parse a Geneve header (RFC 8926) and its options; the payload is named by ethertype."""
    if offset + 8 > end:
        return NEXT_NONE, end
    version = data[offset] >> 6
    if version != 0:
        return NEXT_UNSUPPORTED, offset
    options_len = (data[offset] & 0x3F) * 4
    protocol = int.from_bytes(data[offset + 2 : offset + 4])
    payload = offset + 8 + options_len
    if protocol == ETHERTYPE_TEB:
        return NEXT_ETHERNET, payload
    return protocol, payload


def parse_l2tp(data: bytes, offset: int, end: int) -> tuple[int, int]:
    """Parse an L2TPv2 header (RFC 2661); data messages carry a PPP frame.

    Control messages and other versions return NEXT_NONE (control messages
    carry AVPs, not IP packets).
    """
    if offset + 6 > end:
        return NEXT_NONE, end
    flags = int.from_bytes(data[offset : offset + 2])
    if flags & 0x0F != 2 or flags & L2TP_CONTROL:
        return NEXT_NONE, offset

    pos = offset + 2
    pos += 2 if flags & L2TP_LENGTH else 0
    pos += 4  # tunnel id, session id
    pos += 4 if flags & L2TP_SEQUENCE else 0
    if flags & L2TP_OFFSET:
        if pos + 2 > end:
            return NEXT_NONE, end
        pos += 2 + int.from_bytes(data[pos : pos + 2])
    if pos > end:
        return NEXT_NONE, end
    return NEXT_PPP, pos


def parse_wlan(data: bytes, offset: int, end: int, mac_fields: list[int]) -> tuple[int, int]:
    """Parse an 802.11 frame header and, for data frames, the LLC/SNAP header.

    Appends the offsets of the MAC addresses in the header to `mac_fields`.
    Management and control frames, null data frames and protected (encrypted)
    frames return NEXT_NONE. An A-MSDU, which packs several subframes, returns
    NEXT_UNSUPPORTED.
    """
    if offset + 10 > end:
        return NEXT_NONE, end
    frame_control = data[offset]
    flags = data[offset + 1]
    frame_type = (frame_control >> 2) & 0x03
    subtype = frame_control >> 4

    address_count = _wlan_address_count(frame_type, subtype, flags)
    for index in range(address_count):
        position = offset + (4, 10, 16, 24)[index]
        if position + 6 <= end:
            mac_fields.append(position)
    if frame_type != WLAN_TYPE_DATA or flags & WLAN_PROTECTED or subtype & 0x04:
        return NEXT_NONE, offset

    header_len = 30 if address_count == 4 else 24
    has_qos = bool(subtype & 0x08)
    if has_qos:
        if offset + header_len + 2 > end:
            return NEXT_NONE, end
        if data[offset + header_len] & WLAN_QOS_AMSDU:
            return NEXT_UNSUPPORTED, offset
        header_len += 2
        header_len += 4 if flags & WLAN_ORDER else 0
    return parse_llc(data, offset + header_len, end)


def _wlan_address_count(frame_type: int, subtype: int, flags: int) -> int:
    if frame_type == 1:
        # Control frames: CTS and ACK name only the receiver.
        return 1 if subtype in (12, 13) else 2
    if frame_type == WLAN_TYPE_DATA and flags & 0x03 == 0x03:
        return 4  # to-DS and from-DS: wireless distribution system
    return 3
