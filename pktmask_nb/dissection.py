"""The result types of `pktmask_nb.dissect` and its errors.

They live apart from the dissector so that the header parsers it uses
(tunnels, IP options, ICMP bodies) can build them without a circular import.
Import them from `pktmask_nb.dissect`, which re-exports all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class MalformedPacket(ValueError):
    """A header that is invalid, or cut short where an address or a needed length field lives."""


class UnsupportedLinktype(ValueError):
    """A capture linktype the dissector does not parse."""


@dataclass(slots=True)
class IPHeader:
    """An IPv4 or IPv6 header; all positions are offsets into the frame."""

    offset: int
    version: int  # 4 or 6
    header_len: int  # IPv4: IHL*4; IPv6: 40 plus the extension headers before the upper layer
    protocol: int  # upper-layer protocol, after the IPv6 extension headers
    total_end: int  # just past the packet per its length field, clipped to the enclosing bytes
    quoted: bool  # inside an ICMP or ICMPv6 error message
    fragment_offset: int  # in bytes; a non-first fragment carries no upper-layer header
    more_fragments: bool
    # Offsets of the addresses that the upper-layer pseudo-header uses: the
    # header's own, or the final destination named by an IPv4 source route or
    # an IPv6 routing header, or the source in an IPv6 Home Address option.
    pseudo_src_offset: int = -1
    pseudo_dst_offset: int = -1
    # IPv4 Identification, or the IPv6 Fragment header's Identification (0 without one): with the
    # addresses and the protocol it names the datagram that a fragment belongs to.
    identification: int = 0

    @property
    def is_fragment(self) -> bool:
        """True for any fragment of a fragmented datagram, first or not (not for an atomic fragment)."""
        return self.more_fragments or self.fragment_offset != 0

    @property
    def address_len(self) -> int:
        return 4 if self.version == 4 else 16

    @property
    def src_offset(self) -> int:
        return self.offset + (12 if self.version == 4 else 8)

    @property
    def dst_offset(self) -> int:
        return self.offset + (16 if self.version == 4 else 24)


@dataclass(slots=True)
class Transport:
    """The innermost TCP or UDP header that is neither quoted in ICMP nor a tunnel the dissector followed."""

    ip: IPHeader  # the IP header that carries it
    protocol: int  # 6 or 17
    offset: int
    payload_offset: int  # first payload byte (TCP: offset + data offset*4), never past payload_end
    payload_end: int  # min(IP total_end, caplen)
    sport: int
    dport: int
    seq: int | None  # TCP only
    flags: int | None  # TCP only, 9 bits (NS..FIN)
    src: bytes  # the carrying IP header's source address, as it is in the frame
    dst: bytes


class ChecksumField(NamedTuple):
    """A 16-bit Internet checksum and the bytes it covers."""

    offset: int  # of the checksum field
    start: int  # first covered byte
    end: int  # end of the covered bytes present in the frame
    pseudo_header: IPHeader | None  # whose addresses enter the sum (TCP, UDP, ICMPv6)
    zero_means_none: bool  # UDP: a zero field means "no checksum" and must stay zero


@dataclass(slots=True)
class Dissection:
    """The header offsets of one frame; every list runs outer first."""

    # Every IPv4/IPv6 header at any depth, quoted ones included.
    ip_headers: list[IPHeader] = field(default_factory=list)
    # An ARP or RARP header for IPv4 over 6-byte hardware addresses.
    arp_offset: int | None = None
    transport: Transport | None = None
    # (start, end) of bytes quoted in ICMP errors beyond the quoted headers.
    icmp_quotes: list[tuple[int, int]] = field(default_factory=list)
    # Where the network layer starts after the outermost link header(s).
    link_payload_offset: int = 0
    # False for frames that carry neither IP nor ARP.
    is_ip: bool = False
    # (offset, 4 or 16) of every IP address in the frame: IP headers, routing
    # headers, ARP, ICMP and neighbor discovery bodies.
    address_fields: list[tuple[int, int]] = field(default_factory=list)
    # (offset, field bytes, prefix length in bits) of IPv6 prefixes in router advertisements.
    prefix_fields: list[tuple[int, int, int]] = field(default_factory=list)
    # Offsets of 6-byte MAC addresses: Ethernet, 802.11, Linux SLL, ARP, NDP options.
    mac_fields: list[int] = field(default_factory=list)
    # Checksums that cover a rewritable field, in walk order (outer before inner).
    checksums: list[ChecksumField] = field(default_factory=list)
