"""Addresses inside ICMP, ICMPv6 and IGMP message bodies.

ICMP Redirect names a gateway and Router Advertisement lists routers
(RFC 792, 1256). IGMP and MLD name multicast groups and, in version 3 and
2, unicast sources (RFC 3376, 3810). Neighbor Discovery (RFC 4861) names
targets, MAC addresses, on-link prefixes and a redirected packet, and
RDNSS options (RFC 8106) list DNS servers. Each parser appends what it finds
to the `Dissection`; an address that the frame cuts short raises
MalformedPacket. ICMP error quotes are walked by the dissector itself.
"""

from __future__ import annotations

import logging

from pktmask_nb.dissection import ChecksumField, Dissection, MalformedPacket

logger = logging.getLogger(__name__)

ICMP_REDIRECT = 5
ICMP_ROUTER_ADVERTISEMENT = 9

IGMP_QUERY = 0x11
IGMP_GROUP_MESSAGES = frozenset((0x11, 0x12, 0x16, 0x17))
IGMP_V3_REPORT = 0x22

MLD_QUERY = 130
MLD_MESSAGES = frozenset((130, 131, 132))
MLD_V2_REPORT = 143
ND_ROUTER_SOLICITATION = 133
ND_ROUTER_ADVERTISEMENT = 134
ND_NEIGHBOR_SOLICITATION = 135
ND_NEIGHBOR_ADVERTISEMENT = 136
ND_REDIRECT = 137

ND_OPTION_SOURCE_LINK_ADDRESS = 1
ND_OPTION_TARGET_LINK_ADDRESS = 2
ND_OPTION_PREFIX_INFORMATION = 3
ND_OPTION_REDIRECTED_HEADER = 4
ND_OPTION_ROUTE_INFORMATION = 24
ND_OPTION_RDNSS = 25


def parse_icmp_addresses(data: bytes, offset: int, end: int, result: Dissection) -> None:
    """Record the gateway of an ICMP Redirect and the routers of a Router Advertisement."""
    icmp_type = data[offset]
    if icmp_type == ICMP_REDIRECT:
        result.address_fields.append((offset + 4, 4))
    elif icmp_type == ICMP_ROUTER_ADVERTISEMENT:
        count = data[offset + 4]
        entry_size = data[offset + 5] * 4
        if entry_size < 4 and count:
            raise MalformedPacket(f"ICMP router advertisement at offset {offset} has entry size {entry_size}")
        for index in range(count):
            entry = offset + 8 + index * entry_size
            _check_present(entry, 4, end, "ICMP router advertisement")
            result.address_fields.append((entry, 4))


def parse_igmp_addresses(data: bytes, offset: int, end: int, result: Dissection) -> None:
    """Record the checksum, group addresses and sources of an IGMP message."""
    if offset + 4 > end:
        return
    result.checksums.append(ChecksumField(offset + 2, offset, end, None, False))
    igmp_type = data[offset]
    if igmp_type in IGMP_GROUP_MESSAGES:
        _check_present(offset + 4, 4, end, "IGMP group address")
        result.address_fields.append((offset + 4, 4))
        if igmp_type == IGMP_QUERY and offset + 12 <= end:
            source_count = int.from_bytes(data[offset + 10 : offset + 12])
            _append_addresses(offset + 12, source_count, 4, end, result, "IGMPv3 query")
    elif igmp_type == IGMP_V3_REPORT:
        _check_present(offset, 8, end, "IGMPv3 report")
        record_count = int.from_bytes(data[offset + 6 : offset + 8])
        _parse_group_records(data, offset + 8, record_count, 4, end, result)


def parse_icmpv6_addresses(data: bytes, offset: int, end: int, result: Dissection) -> tuple[int, int] | None:
    """Record the addresses of an MLD or Neighbor Discovery message and its options.

    Returns the (start, end) of the packet in a Redirected Header option,
    for the dissector to walk as a quote, or None.
    """
    icmp_type = data[offset]
    if icmp_type in MLD_MESSAGES:
        _append_addresses(offset + 8, 1, 16, end, result, "MLD multicast address")
        if icmp_type == MLD_QUERY and offset + 28 <= end:
            source_count = int.from_bytes(data[offset + 26 : offset + 28])
            _append_addresses(offset + 28, source_count, 16, end, result, "MLDv2 query")
        return None
    if icmp_type == MLD_V2_REPORT:
        record_count = int.from_bytes(data[offset + 6 : offset + 8])
        _parse_group_records(data, offset + 8, record_count, 16, end, result)
        return None

    if icmp_type == ND_ROUTER_SOLICITATION:
        options = offset + 8
    elif icmp_type == ND_ROUTER_ADVERTISEMENT:
        options = offset + 16
    elif icmp_type in (ND_NEIGHBOR_SOLICITATION, ND_NEIGHBOR_ADVERTISEMENT):
        _append_addresses(offset + 8, 1, 16, end, result, "ND target address")
        options = offset + 24
    elif icmp_type == ND_REDIRECT:
        _append_addresses(offset + 8, 2, 16, end, result, "ND redirect addresses")
        options = offset + 40
    else:
        # NOTE: other informational messages (node information, inverse ND, Mobile IPv6) may
        # carry addresses that are not parsed.
        return None
    return _parse_nd_options(data, options, end, result)


def _parse_nd_options(data: bytes, pos: int, end: int, result: Dissection) -> tuple[int, int] | None:
    redirected = None
    while pos + 2 <= end:
        kind = data[pos]
        length = data[pos + 1] * 8
        if length == 0:
            raise MalformedPacket(f"ND option {kind} at offset {pos} has length 0")
        option_end = pos + length

        if kind in (ND_OPTION_SOURCE_LINK_ADDRESS, ND_OPTION_TARGET_LINK_ADDRESS) and length == 8:
            _check_present(pos + 2, 6, end, "ND link-layer address option")
            result.mac_fields.append(pos + 2)
        elif kind == ND_OPTION_PREFIX_INFORMATION and length == 32:
            _check_present(pos + 16, 16, end, "ND prefix information option")
            result.prefix_fields.append((pos + 16, 16, data[pos + 2]))
        elif kind == ND_OPTION_ROUTE_INFORMATION and length > 8:
            _check_present(pos + 8, length - 8, end, "ND route information option")
            result.prefix_fields.append((pos + 8, length - 8, data[pos + 2]))
        elif kind == ND_OPTION_RDNSS:
            _append_addresses(pos + 8, (length - 8) // 16, 16, end, result, "ND RDNSS option")
        elif kind == ND_OPTION_REDIRECTED_HEADER:
            redirected = (pos + 8, min(option_end, end))
        pos = option_end
    return redirected


def _parse_group_records(
    data: bytes, pos: int, count: int, address_len: int, end: int, result: Dissection
) -> None:
    # IGMPv3 and MLDv2 group records: type, aux data length (32-bit words), source count,
    # multicast address, sources, aux data.
    layer = "IGMPv3 group record" if address_len == 4 else "MLDv2 group record"
    for _ in range(count):
        _check_present(pos, 4 + address_len, end, layer)
        aux_len = data[pos + 1] * 4
        source_count = int.from_bytes(data[pos + 2 : pos + 4])
        _append_addresses(pos + 4, 1 + source_count, address_len, end, result, layer)
        pos += 4 + address_len * (1 + source_count) + aux_len


def _append_addresses(
    pos: int, count: int, address_len: int, end: int, result: Dissection, layer: str
) -> None:
    _check_present(pos, count * address_len, end, layer)
    result.address_fields.extend((pos + address_len * i, address_len) for i in range(count))


def _check_present(pos: int, length: int, end: int, layer: str) -> None:
    if pos + length > end:
        raise MalformedPacket(f"{layer} at offset {pos} cut short: {max(end - pos, 0)} of {length} bytes")
