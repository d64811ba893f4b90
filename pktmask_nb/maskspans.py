"""The bytes of a frame that masking zeroes and the reasons, apart from the record logic of TCP streams.

`frame_spans` decides for everything but TCP payloads: UDP payloads, ICMP
echo data and quoted bytes, other IP protocols, non-first fragments,
trailers and non-IP frames. `zeroed_payload` turns the kept stream offsets
of a TCP stream into the frame offsets to zero in one segment. Every zeroed
range carries a `ZeroReason`, which `MaskPayloads` counts and `explain`
reports.
"""

from __future__ import annotations

import logging
from collections.abc import Set
from enum import StrEnum

from pktmask_nb.dissection import Dissection, IPHeader
from pktmask_nb.fragments import fragment_payload_span
from pktmask_nb.seqspace import StreamParser

logger = logging.getLogger(__name__)

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58
# Protocols whose payload the dissector walks into (tunnels) or that carry no user data of their own.
_WALKED_PROTOCOLS = frozenset((IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6, 4, 41, 47))
ICMP_ECHO_TYPES = {4: frozenset((0, 8)), 6: frozenset((128, 129))}
ICMP_HEADER_LEN = 8
ARP_IPV4_LEN = 28

Span = tuple[int, int]


class ZeroReason(StrEnum):
    """The reason masking zeroed a byte range."""

    # The body of a TLS record of a content type that is not kept.
    TLS_APPLICATION_DATA = "tls_application_data"
    TLS_HANDSHAKE = "tls_handshake"
    TLS_ALERT = "tls_alert"
    TLS_CHANGE_CIPHER_SPEC = "tls_change_cipher_spec"
    TLS_HEARTBEAT = "tls_heartbeat"
    # TCP bytes from the point where a direction stopped looking like TLS (or HTTP).
    NOT_TLS = "not_tls"
    NOT_HTTP = "not_http"
    # TCP bytes from the point where bytes missing from the capture hid the next record boundary.
    GAP = "gap"
    # An HTTP message body, chunk framing or trailer, or a body that runs until the connection closes.
    HTTP_BODY = "http_body"
    # TCP bytes outside every record found: before the stream's first byte, or a header cut
    # off by the end of the capture.
    UNPARSED = "unparsed"
    UDP = "udp"
    ICMP_ECHO = "icmp_echo"
    # Bytes quoted in an ICMP error beyond the quoted headers.
    ICMP_QUOTE = "icmp_quote"
    # The payload of an IP protocol other than TCP, UDP, ICMP and the tunnels.
    OTHER_IP = "other_ip"
    # The payload of a fragment other than the first.
    IP_FRAGMENT = "ip_fragment"
    # What follows the outermost IP packet or ARP message: padding, trailers, a frame check sequence.
    TRAILER = "trailer"
    NON_IP = "non_ip"


ReasonSpan = tuple[int, int, ZeroReason]


def frame_spans(
    dissection: Dissection, data: bytes, *, udp_ports: Set[int], keep_non_ip: bool
) -> tuple[list[ReasonSpan], bool]:
    """Return the bytes outside TCP payloads to zero, with reasons, and whether a UDP payload is kept.

    `udp_ports` are the ports whose UDP payloads stay, and `keep_non_ip`
    keeps frames that carry neither IP nor ARP.
    """
    frame_len = len(data)
    if not dissection.is_ip:
        start = dissection.link_payload_offset
        if keep_non_ip or start >= frame_len:
            return [], False
        return [(start, frame_len, ZeroReason.NON_IP)], False

    spans: list[ReasonSpan] = []
    if dissection.ip_headers:
        outer_end = dissection.ip_headers[0].total_end
    else:
        outer_end = dissection.arp_offset + ARP_IPV4_LEN
    if outer_end < frame_len:
        spans.append((outer_end, frame_len, ZeroReason.TRAILER))

    udp_kept = False
    transport = dissection.transport
    if transport is None:
        spans += _other_ip_spans(data, dissection.ip_headers)
    elif transport.protocol == IPPROTO_UDP and transport.payload_offset < transport.payload_end:
        if transport.sport in udp_ports or transport.dport in udp_ports:
            # NOTE: kept DNS messages keep the names and addresses in them.
            udp_kept = True
        else:
            spans.append((transport.payload_offset, transport.payload_end, ZeroReason.UDP))
    spans += [(start, end, ZeroReason.ICMP_QUOTE) for start, end in dissection.icmp_quotes]
    return spans, udp_kept


def _other_ip_spans(data: bytes, ip_headers: list[IPHeader]) -> list[ReasonSpan]:
    """Return the payload to zero of an IP packet that carries no TCP or UDP header."""
    if not ip_headers:
        return []  # ARP: only its padding is zeroed, as a trailer
    innermost = [ip for ip in ip_headers if not ip.quoted][-1]
    start, end = fragment_payload_span(innermost)
    if end <= start:
        return []
    if innermost.fragment_offset:
        # The checksum over these bytes, in the first fragment, is updated from the scan pass.
        # NOTE: this zeroes the rest of a UDP datagram that keep_udp_ports keeps in its first fragment.
        return [(start, end, ZeroReason.IP_FRAGMENT)]
    if innermost.protocol in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        if data[start] in ICMP_ECHO_TYPES[innermost.version] and start + ICMP_HEADER_LEN < end:
            return [(start + ICMP_HEADER_LEN, end, ZeroReason.ICMP_ECHO)]
        return []
    if innermost.protocol in _WALKED_PROTOCOLS:
        # NOTE: a tunnel whose inner frame is not IP (an Ethernet frame
        # with ARP or LLDP inside GRE or VXLAN) is left as it is.
        return []
    return [(start, end, ZeroReason.OTHER_IP)]


def zeroed_payload(parser: StreamParser | None, offset: int, start: int, end: int) -> list[Span]:
    """Return the frame offsets to zero in the TCP payload at frame [start, end), stream offset `offset`.

    Everything outside the parser's kept stream offsets is zeroed, and all
    of it when the stream has no parser (the scan saw no payload in it).
    """
    if start >= end:
        return []
    if parser is None:
        return [(start, end)]
    kept = parser.kept.overlapping(offset, offset + end - start)
    if not kept:
        return [(start, end)]
    shift = start - offset
    zeroed = []
    position = start
    for kept_start, kept_end in kept:
        if kept_start + shift > position:
            zeroed.append((position, kept_start + shift))
        position = kept_end + shift
    if position < end:
        zeroed.append((position, end))
    return zeroed


def masked_payload(dissection: Dissection, frame_len: int) -> Span:
    """Return the [start, end) frame offsets of the bytes masking decides on (see `PacketMasking`)."""
    transport = dissection.transport
    if transport is not None:
        return transport.payload_offset, transport.payload_end
    carriers = [ip for ip in dissection.ip_headers if not ip.quoted]
    if carriers:
        return fragment_payload_span(carriers[-1])
    if dissection.arp_offset is not None:
        return dissection.arp_offset, min(dissection.arp_offset + ARP_IPV4_LEN, frame_len)
    start = min(dissection.link_payload_offset, frame_len)
    return start, frame_len
