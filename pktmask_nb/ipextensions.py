"""IPv4 options and IPv6 extension headers: where addresses hide after the fixed header.

IPv4 source routes, record route and timestamps with addresses (RFC 791)
list addresses, and so do IPv6 routing headers of type 0, 2 and 4 (RFC 8200,
6275, 8754) and the Home Address destination option (RFC 6275). A source
route or routing header with segments left also names the final
destination. The upper-layer pseudo-header uses it in place of the
destination field, so these parsers record its offset in the `IPHeader`.
"""

from __future__ import annotations

import logging

from pktmask_nb.dissection import IPHeader, MalformedPacket

logger = logging.getLogger(__name__)

IPV4_OPTION_END = 0
IPV4_OPTION_NOP = 1
IPV4_OPTION_RECORD_ROUTE = 7
IPV4_OPTION_TIMESTAMP = 68
IPV4_OPTION_LSRR = 131
IPV4_OPTION_SSRR = 137
TIMESTAMP_WITH_ADDRESSES = (1, 3)  # flag values: (address, timestamp) pairs

IPPROTO_HOPOPTS = 0
IPPROTO_ROUTING = 43
IPPROTO_FRAGMENT = 44
IPPROTO_AH = 51
IPPROTO_DSTOPTS = 60
IPV6_EXTENSION_HEADERS = frozenset(
    (IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_FRAGMENT, IPPROTO_AH, IPPROTO_DSTOPTS)
)

ROUTING_TYPE_0 = 0  # deprecated source route: a list of addresses
ROUTING_TYPE_MOBILE = 2  # Mobile IPv6: one home address
ROUTING_TYPE_RPL = 3  # compressed addresses (RFC 6554), not parsed
ROUTING_TYPE_SEGMENT = 4  # segment routing header: a segment list
HOME_ADDRESS_OPTION = 0xC9


def parse_ipv4_options(data: bytes, ip: IPHeader, available_end: int, address_fields: list) -> None:
    """Append the addresses in IPv4 options to `address_fields`.

    `available_end` is where the option bytes present in the frame end. An
    option longer than the header is MalformedPacket, and so is an option with
    addresses that the frame cuts short.
    """
    header_end = ip.offset + ip.header_len
    pos = ip.offset + 20
    while pos < available_end:
        kind = data[pos]
        if kind == IPV4_OPTION_END:
            return
        if kind == IPV4_OPTION_NOP:
            pos += 1
            continue
        if pos + 2 > available_end:
            return
        length = data[pos + 1]
        if length < 2 or pos + length > header_end:
            raise MalformedPacket(f"IPv4 option {kind} at offset {pos} has invalid length {length}")

        if kind in (IPV4_OPTION_RECORD_ROUTE, IPV4_OPTION_LSRR, IPV4_OPTION_SSRR):
            _check_present(pos, length, available_end, "IPv4 route option")
            addresses = [pos + 3 + 4 * i for i in range((length - 3) // 4)]
            address_fields.extend((offset, 4) for offset in addresses)
            pointer = data[pos + 2]
            if kind != IPV4_OPTION_RECORD_ROUTE and addresses and pointer <= length:
                ip.pseudo_dst_offset = addresses[-1]
        elif (
            kind == IPV4_OPTION_TIMESTAMP and length >= 4 and data[pos + 3] & 0x0F in TIMESTAMP_WITH_ADDRESSES
        ):
            _check_present(pos, length, available_end, "IPv4 timestamp option")
            address_fields.extend((pos + 4 + 8 * i, 4) for i in range((length - 4) // 8))
        pos += length


def parse_ipv6_extension_headers(data: bytes, ip: IPHeader, address_fields: list) -> bool:
    """Walk the extension headers after the fixed IPv6 header.

    Sets `ip.protocol`, `ip.header_len` and the fragment fields, and appends
    the addresses of routing headers and Home Address options to
    `address_fields`. A non-first fragment ends the walk at its fragment
    header. Returns False when the chain is cut short, so that no
    upper-layer header is present. Raises MalformedPacket for a routing
    header whose addresses are cut short, and for an RPL routing header.
    """
    end = ip.total_end
    pos = ip.offset + 40
    next_header = ip.protocol
    complete = True
    while next_header in IPV6_EXTENSION_HEADERS:
        if pos + 8 > end:
            complete = False
            break
        if next_header == IPPROTO_FRAGMENT:
            length = 8
            fragment = int.from_bytes(data[pos + 2 : pos + 4])
            ip.fragment_offset = fragment & 0xFFF8
            ip.more_fragments = bool(fragment & 0x0001)
            ip.identification = int.from_bytes(data[pos + 4 : pos + 8])
        elif next_header == IPPROTO_AH:
            length = (data[pos + 1] + 2) * 4
        else:
            length = (data[pos + 1] + 1) * 8

        if next_header == IPPROTO_ROUTING:
            _parse_routing_header(data, ip, pos, length, address_fields)
        elif next_header == IPPROTO_DSTOPTS:
            _parse_home_address_option(data, ip, pos, min(pos + length, end), address_fields)
        next_header = data[pos]
        pos += length
        if ip.fragment_offset:
            break

    ip.protocol = next_header
    ip.header_len = pos - ip.offset
    return complete and pos <= end


def _parse_routing_header(data: bytes, ip: IPHeader, pos: int, length: int, address_fields: list) -> None:
    routing_type = data[pos + 2]
    segments_left = data[pos + 3]
    if routing_type == ROUTING_TYPE_RPL:
        raise MalformedPacket(f"IPv6 RPL routing header (type 3) at offset {pos} is not supported")

    if routing_type == ROUTING_TYPE_0 or routing_type == ROUTING_TYPE_MOBILE:
        count = (length - 8) // 16
        final_index = count - 1
    elif routing_type == ROUTING_TYPE_SEGMENT:
        count = data[pos + 4] + 1  # last entry + 1
        final_index = 0  # the segment list runs in reverse: entry 0 is the final segment
        if 8 + 16 * count > length:
            raise MalformedPacket(f"IPv6 segment routing header at offset {pos} lists more segments than fit")
    else:
        # NOTE: other routing types (compact routing headers, experimental values) are taken to
        # carry no IPv6 addresses.
        return

    _check_present(pos, 8 + 16 * count, ip.total_end, "IPv6 routing header")
    addresses = [pos + 8 + 16 * i for i in range(count)]
    address_fields.extend((offset, 16) for offset in addresses)
    if segments_left and addresses:
        ip.pseudo_dst_offset = addresses[final_index]


def _parse_home_address_option(data: bytes, ip: IPHeader, pos: int, end: int, address_fields: list) -> None:
    option = pos + 2
    while option < end:
        kind = data[option]
        if kind == 0:  # Pad1
            option += 1
            continue
        if option + 2 > end:
            return
        length = data[option + 1]
        if kind == HOME_ADDRESS_OPTION and length == 16:
            _check_present(option, 18, end, "IPv6 Home Address option")
            address_fields.append((option + 2, 16))
            ip.pseudo_src_offset = option + 2
        option += 2 + length


def _check_present(pos: int, length: int, available_end: int, layer: str) -> None:
    if pos + length > available_end:
        raise MalformedPacket(f"{layer} at offset {pos} cut short: {available_end - pos} of {length} bytes")
