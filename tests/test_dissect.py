"""The byte-level dissector, on the real corpus (tshark as oracle) and on frames built with scapy."""

from __future__ import annotations

import ipaddress
import time
from collections import Counter

import pytest
from anon_helpers import corpus_captures, read_frames, tshark_occurrences
from scapy.contrib.erspan import ERSPAN_II
from scapy.contrib.geneve import GENEVE
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import GRE, ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6ND_NS,
    ICMPv6NDOptSrcLLAddr,
    IPerror6,
    IPv6,
    IPv6ExtHdrFragment,
    IPv6ExtHdrRouting,
    IPv6ExtHdrSegmentRouting,
)
from scapy.layers.l2 import ARP, LLC, SNAP, Dot1AD, Dot1Q, Dot3, Ether
from scapy.layers.l2tp import L2TP
from scapy.layers.ppp import PPP, PPPoE
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from pktmask_nb.dissect import MAX_DEPTH, MalformedPacket, UnsupportedLinktype, dissect

CORPUS = corpus_captures()
INNER = IP(src="192.0.2.10", dst="198.51.100.20") / TCP(sport=40000, dport=443, seq=1000) / Raw(b"x" * 10)


def addresses(data: bytes, dissection) -> list[str]:
    """The IP header addresses of a dissection, outer first, as text."""
    found = []
    for ip in dissection.ip_headers:
        for offset in (ip.src_offset, ip.dst_offset):
            found.append(str(ipaddress.ip_address(data[offset : offset + ip.address_len])))
    return found


def field_values(data: bytes, dissection) -> list[str]:
    return [str(ipaddress.ip_address(data[o : o + n])) for o, n in dissection.address_fields]


@pytest.mark.parametrize("capture", CORPUS, ids=[p.name for p in CORPUS])
def test_corpus_addresses_match_tshark(capture) -> None:
    fields = ["ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "arp.src.proto_ipv4", "arp.dst.proto_ipv4"]
    expected_frames = tshark_occurrences(capture, fields)
    packets = read_frames(capture)
    assert len(packets) == len(expected_frames)

    for packet, expected_fields in zip(packets, expected_frames, strict=True):
        expected = Counter(str(ipaddress.ip_address(v)) for values in expected_fields for v in values)
        dissection = dissect(packet.data, packet.linktype)
        found = Counter(addresses(packet.data, dissection))
        if dissection.arp_offset is not None:
            found.update(field_values(packet.data, dissection))
        assert found == expected, f"frame {packet.number}"


@pytest.mark.parametrize("capture", CORPUS, ids=[p.name for p in CORPUS])
def test_corpus_transport_matches_tshark(capture) -> None:
    fields = [
        "tcp.srcport",
        "tcp.dstport",
        "tcp.seq_raw",
        "tcp.len",
        "udp.srcport",
        "icmp.type",
        "icmpv6.type",
    ]
    frames = tshark_occurrences(capture, fields)
    checked = 0
    for packet, (sports, dports, seqs, lengths, udp_ports, icmp, icmpv6) in zip(
        read_frames(capture), frames, strict=True
    ):
        # Frames with one TCP header and no ICMP; tshark shows TCP in the last fragment of a
        # reassembled packet, while the dissector finds it in the first.
        if len(sports) != 1 or icmp or icmpv6 or udp_ports:
            continue
        transport = dissect(packet.data, packet.linktype).transport
        if transport is None and any(ip.fragment_offset for ip in dissect(packet.data, 1).ip_headers):
            continue
        assert transport is not None, f"frame {packet.number}"
        assert (transport.sport, transport.dport, transport.seq) == (
            int(sports[0]),
            int(dports[0]),
            int(seqs[0]),
        )
        if packet.caplen == packet.wire_len:
            assert transport.payload_end - transport.payload_offset == int(lengths[0]), (
                f"frame {packet.number}"
            )
        checked += 1
    print(f"{capture.name}: {checked} TCP frames compared")


@pytest.mark.parametrize("capture", CORPUS, ids=[p.name for p in CORPUS])
def test_corpus_is_ip_matches_tshark(capture) -> None:
    frames = tshark_occurrences(capture, ["frame.protocols"])
    for packet, (protocols,) in zip(read_frames(capture), frames, strict=True):
        layers = set(protocols[0].split(":"))
        dissection = dissect(packet.data, packet.linktype)
        assert dissection.is_ip == bool(layers & {"ip", "ipv6", "arp"}), f"frame {packet.number}"
        for start, end in dissection.icmp_quotes:
            assert 0 <= start < end <= packet.caplen


def test_plain_tcp_fields() -> None:
    frame = bytes(Ether() / INNER)
    d = dissect(frame, 1)
    assert d.link_payload_offset == 14
    assert d.is_ip
    assert [(ip.offset, ip.version, ip.header_len, ip.protocol) for ip in d.ip_headers] == [(14, 4, 20, 6)]
    t = d.transport
    assert (t.offset, t.payload_offset, t.payload_end) == (34, 54, 64)
    assert (t.sport, t.dport, t.seq, t.flags) == (40000, 443, 1000, 0x02)
    assert (t.src, t.dst) == (bytes([192, 0, 2, 10]), bytes([198, 51, 100, 20]))
    assert [c.offset for c in d.checksums] == [24, 50]


def test_ethernet_trailer_excluded() -> None:
    frame = bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5, dport=6) / b"ab") + b"\x00" * 20
    t = dissect(frame, 1).transport
    assert (t.payload_offset, t.payload_end) == (42, 44)


def test_tcp_data_offset_invalid() -> None:
    frame = bytearray(bytes(Ether() / INNER))
    frame[46] = 0x40
    with pytest.raises(MalformedPacket, match="TCP header at offset 34"):
        dissect(bytes(frame), 1)


@pytest.mark.parametrize(
    ("frame", "ip_offset"),
    [
        (Ether() / Dot1Q(vlan=43) / Dot1Q(vlan=1013) / INNER, 22),
        (Ether() / Dot1AD(vlan=10) / Dot1Q(vlan=20) / INNER, 22),
        (Ether() / MPLS(label=16, s=0) / MPLS(label=17, s=1) / INNER, 22),
        (Ether() / PPPoE(sessionid=7) / PPP(proto=0x0021) / INNER, 22),
        (Dot3() / LLC(dsap=0xAA, ssap=0xAA, ctrl=3) / SNAP(OUI=0, code=0x0800) / INNER, 22),
    ],
    ids=["double-vlan", "qinq", "mpls", "pppoe", "llc-snap"],
)
def test_link_layer_stacks(frame, ip_offset: int) -> None:
    data = bytes(frame)
    d = dissect(data, 1)
    assert [ip.offset for ip in d.ip_headers] == [ip_offset]
    assert d.link_payload_offset == ip_offset
    assert d.transport.sport == 40000


def test_mpls_ethernet_pseudowire_control_word() -> None:
    inner_ethernet = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / INNER
    data = bytes(Ether() / MPLS(label=16, s=1) / b"\x00\x00\x00\x00" / inner_ethernet)
    d = dissect(data, 1)
    assert [ip.offset for ip in d.ip_headers] == [14 + 4 + 4 + 14]


@pytest.mark.parametrize(
    ("outer", "inner_offset"),
    [
        (IP(src="10.0.0.1", dst="10.0.0.2") / GRE(chksum_present=1, key_present=1, key=5), 14 + 20 + 12),
        (IP(src="10.0.0.1", dst="10.0.0.2") / GRE(proto=0x6558) / Ether(), 14 + 20 + 4 + 14),
        (
            IP(src="10.0.0.1", dst="10.0.0.2") / GRE(proto=0x88BE, seqnum_present=1) / ERSPAN_II() / Ether(),
            14 + 20 + 8 + 8 + 14,
        ),
        (
            IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=4789) / VXLAN(vni=5) / Ether(),
            14 + 20 + 8 + 8 + 14,
        ),
        (
            IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=6081) / GENEVE(proto=0x0800),
            14 + 20 + 8 + 8,
        ),
        (
            IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1701, dport=1701) / L2TP() / PPP(),
            14 + 20 + 8 + 6 + 2,
        ),
        (IP(src="10.0.0.1", dst="10.0.0.2", proto=4), 14 + 20),
        (IPv6(src="2001:db8::1", dst="2001:db8::2", nh=4), 14 + 40),
    ],
    ids=["gre-key-checksum", "gre-teb", "erspan-ii", "vxlan", "geneve", "l2tp", "ipip", "4in6"],
)
def test_tunnels_reach_inner_ipv4(outer, inner_offset: int) -> None:
    data = bytes(Ether() / outer / INNER)
    d = dissect(data, 1)
    assert len(d.ip_headers) == 2
    assert d.ip_headers[1].offset == inner_offset
    assert addresses(data, d)[2:] == ["192.0.2.10", "198.51.100.20"]
    assert d.transport.offset == inner_offset + 20
    assert d.transport.ip is d.ip_headers[1]


def test_6in4() -> None:
    inner = IPv6(src="2001:db8::10", dst="2001:db8::20") / UDP(sport=53, dport=5353)
    data = bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2", proto=41) / inner)
    d = dissect(data, 1)
    assert [ip.version for ip in d.ip_headers] == [4, 6]
    assert d.transport.protocol == 17
    assert d.transport.src == ipaddress.ip_address("2001:db8::10").packed


def test_gre_checksum_reported() -> None:
    data = bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / GRE(chksum_present=1) / INNER)
    d = dissect(data, 1)
    gre = [c for c in d.checksums if c.offset == 14 + 20 + 4]
    assert len(gre) == 1
    assert gre[0].start == 34
    assert gre[0].pseudo_header is None


def test_icmp_error_quote() -> None:
    quoted = IPerror(src="198.51.100.20", dst="192.0.2.10") / UDPerror(sport=33434, dport=33435) / (b"q" * 30)
    data = bytes(Ether() / IP(src="203.0.113.1", dst="198.51.100.20") / ICMP(type=11, code=0) / quoted)
    d = dissect(data, 1)
    assert [ip.quoted for ip in d.ip_headers] == [False, True]
    assert d.transport is None
    quote_start = 14 + 20 + 8 + 20 + 8
    assert d.icmp_quotes == [(quote_start, len(data))]


def test_icmp_error_quote_of_tcp_keeps_eight_bytes() -> None:
    quoted = IPerror(src="198.51.100.20", dst="192.0.2.10") / TCPerror(sport=1, dport=2)
    data = bytes(Ether() / IP(src="203.0.113.1", dst="198.51.100.20") / ICMP(type=3, code=3) / quoted)
    d = dissect(data, 1)
    assert d.icmp_quotes == [(14 + 20 + 8 + 20 + 8, len(data))]
    assert 14 + 20 + 8 + 20 + 16 in [c.offset for c in d.checksums]


def test_icmpv6_error_quote() -> None:
    quoted = IPerror6(src="2001:db8::2", dst="2001:db8::1") / UDPerror(sport=1, dport=2) / (b"z" * 16)
    data = bytes(Ether() / IPv6(src="2001:db8::9", dst="2001:db8::2") / ICMPv6DestUnreach() / quoted)
    d = dissect(data, 1)
    assert [(ip.version, ip.quoted) for ip in d.ip_headers] == [(6, False), (6, True)]
    assert d.icmp_quotes == [(14 + 40 + 8 + 40 + 8, len(data))]
    icmpv6 = [c for c in d.checksums if c.offset == 14 + 40 + 2][0]
    assert icmpv6.pseudo_header is d.ip_headers[0]


def test_arp() -> None:
    data = bytes(Ether() / ARP(psrc="192.0.2.1", pdst="192.0.2.2", hwsrc="02:00:00:00:00:01"))
    d = dissect(data, 1)
    assert d.arp_offset == 14
    assert d.is_ip
    assert field_values(data, d) == ["192.0.2.1", "192.0.2.2"]
    assert d.mac_fields == [0, 6, 22, 32]


def test_ipv6_routing_type0_final_destination() -> None:
    routing = IPv6ExtHdrRouting(addresses=["2001:db8::a", "2001:db8::b"], segleft=2)
    data = bytes(Ether() / IPv6(src="2001:db8::1", dst="2001:db8::2") / routing / TCP(sport=1, dport=2))
    d = dissect(data, 1)
    ip = d.ip_headers[0]
    assert ip.protocol == 6
    assert ip.header_len == 40 + 8 + 32
    assert field_values(data, d) == ["2001:db8::1", "2001:db8::2", "2001:db8::a", "2001:db8::b"]
    assert ip.pseudo_dst_offset == 14 + 40 + 8 + 16


def test_ipv6_segment_routing_header() -> None:
    srh = IPv6ExtHdrSegmentRouting(addresses=["2001:db8::c", "2001:db8::d"], segleft=1)
    data = bytes(Ether() / IPv6(src="2001:db8::1", dst="2001:db8::d") / srh / UDP(sport=1, dport=2))
    d = dissect(data, 1)
    assert field_values(data, d)[2:] == ["2001:db8::c", "2001:db8::d"]
    assert d.ip_headers[0].pseudo_dst_offset == 14 + 40 + 8
    assert d.transport.protocol == 17


def test_ipv4_fragments() -> None:
    first = IP(src="10.0.0.1", dst="10.0.0.2", id=0xBEEF, flags="MF", frag=0, proto=6) / bytes(
        TCP(sport=1, dport=2)
    )
    later = IP(src="10.0.0.1", dst="10.0.0.2", id=0xBEEF, frag=3, proto=6) / (b"y" * 24)
    d_first = dissect(bytes(Ether() / first), 1)
    d_later = dissect(bytes(Ether() / later), 1)
    assert d_first.ip_headers[0].more_fragments
    assert d_first.transport is not None
    assert d_later.ip_headers[0].fragment_offset == 24
    assert d_later.transport is None
    assert d_first.ip_headers[0].identification == d_later.ip_headers[0].identification == 0xBEEF
    assert d_first.ip_headers[0].is_fragment
    assert d_later.ip_headers[0].is_fragment


def test_ipv6_fragments() -> None:
    frag = IPv6ExtHdrFragment(offset=10, m=1, nh=17, id=0x89ABCDEF)
    data = bytes(Ether() / IPv6(src="2001:db8::1", dst="2001:db8::2") / frag / (b"u" * 32))
    ip = dissect(data, 1).ip_headers[0]
    assert (ip.fragment_offset, ip.more_fragments, ip.protocol, ip.header_len) == (80, True, 17, 48)
    assert ip.identification == 0x89ABCDEF


def test_atomic_fragment_is_no_fragment() -> None:
    atomic = IPv6ExtHdrFragment(offset=0, m=0, nh=17, id=5)
    data = bytes(Ether() / IPv6(src="2001:db8::1", dst="2001:db8::2") / atomic / UDP(sport=1, dport=2))
    ip = dissect(data, 1).ip_headers[0]
    assert not ip.is_fragment
    assert ip.identification == 5


def test_neighbor_solicitation_target_and_mac() -> None:
    ns = ICMPv6ND_NS(tgt="2001:db8::77") / ICMPv6NDOptSrcLLAddr(lladdr="02:11:22:33:44:55")
    data = bytes(Ether() / IPv6(src="2001:db8::1", dst="ff02::1:ff00:77") / ns)
    d = dissect(data, 1)
    assert "2001:db8::77" in field_values(data, d)
    assert 14 + 40 + 24 + 2 in d.mac_fields


def test_truncated_payload_still_dissects() -> None:
    data = bytes(Ether() / INNER)[: 54 + 4]
    t = dissect(data, 1).transport
    assert (t.payload_offset, t.payload_end) == (54, 58)


def test_truncated_tcp_header_has_no_transport() -> None:
    d = dissect(bytes(Ether() / INNER)[:40], 1)
    assert d.transport is None
    assert len(d.ip_headers) == 1


def test_truncated_in_addresses_raises() -> None:
    with pytest.raises(MalformedPacket, match="IPv4 header cut short at offset 14"):
        dissect(bytes(Ether() / INNER)[:30], 1)


def test_non_ip_frames() -> None:
    lldp = bytes(Ether(dst="01:80:c2:00:00:0e", type=0x88CC) / (b"\x02\x07" + b"\x00" * 20))
    stp = bytes(Dot3(dst="01:80:c2:00:00:00") / LLC(dsap=0x42, ssap=0x42, ctrl=3) / (b"\x00" * 35))
    for frame in (lldp, stp):
        d = dissect(frame, 1)
        assert not d.is_ip
        assert d.ip_headers == []
        assert d.link_payload_offset == 14


def test_raw_and_cooked_linktypes() -> None:
    raw = bytes(INNER)
    assert dissect(raw, 101).ip_headers[0].offset == 0
    assert dissect(raw, 228).ip_headers[0].offset == 0
    sll = bytes.fromhex("0000000100060200000000010000") + b"\x08\x00" + raw
    assert dissect(sll, 113).ip_headers[0].offset == 16
    sll2 = b"\x08\x00" + bytes(18) + raw
    assert dissect(sll2, 276).ip_headers[0].offset == 20


@pytest.mark.parametrize("family", [b"\x02\x00\x00\x00", b"\x00\x00\x00\x02"])
def test_null_family_either_byte_order(family: bytes) -> None:
    assert dissect(family + bytes(INNER), 0).ip_headers[0].offset == 4


def test_radiotap_wlan_data_frame() -> None:
    radiotap = b"\x00\x00\x08\x00\x00\x00\x00\x00"
    wlan = b"\x08\x02" + b"\x00\x00" + bytes(18) + b"\x00\x00"  # data frame, from-DS
    snap = b"\xaa\xaa\x03\x00\x00\x00\x08\x00"
    d = dissect(radiotap + wlan + snap + bytes(INNER), 127)
    assert d.ip_headers[0].offset == 8 + 24 + 8
    assert d.mac_fields == [12, 18, 24]


def test_radiotap_protected_frame_not_ip() -> None:
    radiotap = b"\x00\x00\x08\x00\x00\x00\x00\x00"
    wlan = b"\x08\x42" + bytes(22)
    assert not dissect(radiotap + wlan + bytes(40), 127).is_ip


def test_unsupported_linktype() -> None:
    with pytest.raises(UnsupportedLinktype, match="linktype 147"):
        dissect(b"\x00" * 40, 147)


def test_nesting_depth_capped() -> None:
    frame = Ether()
    for _ in range(MAX_DEPTH + 1):
        frame = frame / Dot1Q(vlan=1)
    with pytest.raises(MalformedPacket, match="nested headers"):
        dissect(bytes(frame / INNER), 1)


def test_gre_routing_rejected() -> None:
    data = bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / GRE(routing_present=1) / INNER)
    with pytest.raises(MalformedPacket, match="unsupported encapsulation"):
        dissect(data, 1)


def test_plain_frame_dissects_in_microseconds() -> None:
    data = bytes(Ether() / INNER)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(2000):
            dissect(data, 1)
        best = min(best, (time.perf_counter() - started) / 2000)
    print(f"dissect: {best * 1e6:.2f} us per Ethernet/IPv4/TCP frame")
    # A loose bound: the machine is shared, so only an order-of-magnitude regression fails.
    assert best < 30e-6
