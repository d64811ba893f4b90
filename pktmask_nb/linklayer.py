"""Link-layer headers: the first header of each supported linktype, Ethernet and 802.2 LLC.

Like the parsers in `pktmask_nb.tunnels`, each function returns where the
payload starts and what it is, as `(next_layer, offset, ...)`. `next_layer`
is an ethertype or one of the NEXT_* codes defined here. A payload the
dissector does not follow returns NEXT_NONE with the offset where it starts.
"""

from __future__ import annotations

import logging

from pktmask_nb.dissection import MalformedPacket, UnsupportedLinktype
from pktmask_nb.packet import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IEEE802_11_RADIOTAP,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
)

logger = logging.getLogger(__name__)

# Codes for payloads that have no ethertype of their own (all negative, so
# they never collide with an ethertype).
NEXT_NONE = -1  # nothing the dissector follows
NEXT_ETHERNET = -2  # an Ethernet frame
NEXT_PPP = -3  # a PPP frame (address/control and protocol field)
NEXT_WLAN = -4  # an 802.11 frame
NEXT_IP = -5  # IPv4 or IPv6, chosen by the version nibble
NEXT_UNSUPPORTED = -6  # a header form that may carry IP but is not parsed

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_ARP = 0x0806
LLC_SNAP = b"\xaa\xaa\x03"

# LINKTYPE_RAW, and DLT_RAW as 12 (most BSDs) and 14 (OpenBSD) in older files.
LINKTYPES_RAW = frozenset((LINKTYPE_RAW, 12, 14))

# Linux SLL protocol values below 0x0600 are not ethertypes: 0x0004 means 802.2 LLC.
SLL_PROTOCOL_LLC = 0x0004

# Address families in the 4-byte header of LINKTYPE_NULL and LINKTYPE_LOOP:
# AF_INET is 2 everywhere, AF_INET6 is 10 (Linux), 24 (NetBSD, OpenBSD),
# 28 (FreeBSD) or 30 (macOS).
AF_INET = 2
AF_INET6_VALUES = frozenset((10, 24, 28, 30))


def parse_link_header(data: bytes, linktype: int, mac_fields: list[int]) -> tuple[int, int]:
    """Parse the first header of a frame of pcap linktype `linktype`.

    Ethernet frames return NEXT_ETHERNET at offset 0, for `parse_ethernet`.
    Appends the offset of a 6-byte Linux SLL address to `mac_fields`.
    Raises MalformedPacket for a header cut short, UnsupportedLinktype for
    a linktype not listed in this module.
    """
    caplen = len(data)
    if linktype == LINKTYPE_ETHERNET:
        return NEXT_ETHERNET, 0
    if linktype in LINKTYPES_RAW:
        return NEXT_IP, 0
    if linktype == LINKTYPE_IPV4:
        return ETHERTYPE_IPV4, 0
    if linktype == LINKTYPE_IPV6:
        return ETHERTYPE_IPV6, 0

    if linktype == LINKTYPE_LINUX_SLL:
        _check_length(caplen, 16, "Linux SLL")
        if int.from_bytes(data[4:6]) == 6:
            mac_fields.append(6)
        return _sll_protocol(data, int.from_bytes(data[14:16]), 16)
    if linktype == LINKTYPE_LINUX_SLL2:
        _check_length(caplen, 20, "Linux SLL2")
        if data[11] == 6:
            mac_fields.append(12)
        return _sll_protocol(data, int.from_bytes(data[0:2]), 20)

    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        _check_length(caplen, 4, "NULL/LOOP")
        # NULL writes the family in the capturing host's byte order, so accept either.
        families = {int.from_bytes(data[0:4], "little"), int.from_bytes(data[0:4], "big")}
        if AF_INET in families:
            return ETHERTYPE_IPV4, 4
        if families & AF_INET6_VALUES:
            return ETHERTYPE_IPV6, 4
        return NEXT_NONE, 4

    if linktype == LINKTYPE_IEEE802_11_RADIOTAP:
        _check_length(caplen, 4, "radiotap")
        if data[0] != 0:
            raise MalformedPacket(f"radiotap header at offset 0 has version {data[0]}")
        return NEXT_WLAN, int.from_bytes(data[2:4], "little")
    raise UnsupportedLinktype(f"linktype {linktype} is not supported by the dissector")


def _sll_protocol(data: bytes, protocol: int, offset: int) -> tuple[int, int]:
    if protocol >= 0x0600:
        return protocol, offset
    if protocol == SLL_PROTOCOL_LLC:
        return parse_llc(data, offset, len(data))
    return NEXT_NONE, offset


def _check_length(caplen: int, length: int, layer: str) -> None:
    if caplen < length:
        raise MalformedPacket(f"{layer} header cut short at offset 0: {caplen} of {length} bytes")


def parse_ethernet(data: bytes, offset: int, end: int, mac_fields: list[int]) -> tuple[int, int, int]:
    """Parse an Ethernet II or 802.3 header; returns `(next_layer, offset, end)`.

    Appends the offsets of the destination and source MAC to `mac_fields`.
    An 802.3 length field (1500 or less) bounds the frame and means an LLC
    header follows. Raises MalformedPacket when the header is cut short.
    """
    if offset + 14 > end:
        raise MalformedPacket(f"Ethernet header cut short at offset {offset}: {end - offset} of 14 bytes")
    mac_fields += (offset, offset + 6)
    ethertype = int.from_bytes(data[offset + 12 : offset + 14])
    if ethertype > 1500:
        return ethertype, offset + 14, end

    end = min(end, offset + 14 + ethertype)
    next_layer, payload = parse_llc(data, offset + 14, end)
    return next_layer, payload, end


def parse_llc(data: bytes, offset: int, end: int) -> tuple[int, int]:
    """Parse an 802.2 LLC header; only SNAP with an OUI of zero names an ethertype."""
    if offset + 8 > end:
        return NEXT_NONE, end
    if data[offset : offset + 3] != LLC_SNAP or data[offset + 3 : offset + 6] != b"\x00\x00\x00":
        return NEXT_NONE, offset
    return int.from_bytes(data[offset + 6 : offset + 8]), offset + 8
