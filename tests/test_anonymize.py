"""AnonymizeIPs on frames built with scapy: every place an address lives, checksums, options."""

from __future__ import annotations

import ipaddress
import os
import stat

import pytest
from anon_helpers import (
    VECTOR_KEY,
    checksum_statuses,
    cryptopan_image,
    kept_by_default,
    make_packet,
    run_stage,
    tshark_addresses,
    write_capture,
)
from scapy.contrib.erspan import ERSPAN_II
from scapy.contrib.geneve import GENEVE
from scapy.contrib.igmpv3 import IGMPv3, IGMPv3gr, IGMPv3mr
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import (
    GRE,
    ICMP,
    IP,
    TCP,
    UDP,
    IPerror,
    IPOption_LSRR,
    IPOption_Router_Alert,
    UDPerror,
    fragment,
)
from scapy.layers.inet6 import (
    HAO,
    ICMPv6DestUnreach,
    ICMPv6MLDMultAddrRec,
    ICMPv6MLReport2,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6ND_Redirect,
    ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptRDNSS,
    ICMPv6NDOptRedirectedHdr,
    IPerror6,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrRouting,
    IPv6ExtHdrSegmentRouting,
    fragment6,
)
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.layers.l2tp import L2TP
from scapy.layers.ppp import PPP, PPPoE
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from pktmask_nb import Pipeline
from pktmask_nb.errors import UnparseablePacketError
from pktmask_nb.stages.anonymize import AnonymizeIPs

A4, B4, C4, D4 = "192.0.2.10", "198.51.100.20", "203.0.113.30", "100.64.7.40"
A6, B6, C6, D6 = "2001:db8::10", "2001:db8:1::20", "2001:db8:2::30", "2001:db8:3::40"
PAYLOAD = Raw(b"payload bytes " * 4)
ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def tcp4(src: str = C4, dst: str = D4):
    return IP(src=src, dst=dst) / TCP(sport=40000, dport=443, flags="PA") / PAYLOAD


def packed(address: str) -> bytes:
    return ipaddress.ip_address(address).packed


def check_anonymized(tmp_path, frames, *, linktype: int = 1, has_checksums: bool = True) -> list[bytes]:
    """Anonymize `frames` and check what the stage promises, with tshark and yacryptopan as oracles.

    Every address tshark finds in the input is replaced by its Crypto-PAn
    image (kept ranges stay), no input address survives anywhere in the
    output bytes, and every checksum tshark finds good stays good.
    """
    frames = [bytes(f) for f in frames]
    outputs = run_stage(AnonymizeIPs(key=VECTOR_KEY), frames, linktype=linktype)
    before = write_capture(tmp_path / "in.pcap", frames, linktype=linktype)
    after = write_capture(tmp_path / "out.pcap", outputs, linktype=linktype)

    in_addresses = tshark_addresses(before)
    out_addresses = tshark_addresses(after)
    for number, (original, anonymized) in enumerate(zip(in_addresses, out_addresses, strict=True), 1):
        assert original, f"frame {number}: tshark finds no address, the test frame is wrong"
        expected = {a if kept_by_default(a) else cryptopan_image(a) for a in original}
        assert anonymized == expected, f"frame {number}"

    images = {cryptopan_image(a) for frame in in_addresses for a in frame}
    leaked = {a for frame in in_addresses for a in frame if not kept_by_default(a) and a not in images}
    for number, output in enumerate(outputs, 1):
        for address in leaked:
            assert packed(address) not in output, f"frame {number} still contains {address}"

    good = 0
    for number, (status_in, status_out) in enumerate(
        zip(checksum_statuses(before), checksum_statuses(after), strict=True), 1
    ):
        for field, values in status_in.items():
            for index, value in enumerate(values):
                if value == "1":
                    good += 1
                    assert status_out[field][index] == "1", f"frame {number}: {field} #{index} broken"
    assert good or not has_checksums, "tshark verified no checksum: the test frames are wrong"
    return outputs


PLACES = {
    "vlan": [ETH / Dot1Q(vlan=43) / tcp4()],
    "qinq": [
        ETH / Dot1AD(vlan=10) / Dot1Q(vlan=20) / IP(src=A4, dst=B4) / UDP(sport=5000, dport=53) / PAYLOAD
    ],
    "mpls": [ETH / MPLS(label=16, s=0) / MPLS(label=17, s=1) / tcp4()],
    "pppoe": [ETH / PPPoE(sessionid=7) / PPP(proto=0x0021) / tcp4()],
    "gre": [ETH / IP(src=A4, dst=B4) / GRE(chksum_present=1, key_present=1, key=9) / tcp4()],
    "erspan": [ETH / IP(src=A4, dst=B4) / GRE(proto=0x88BE, seqnum_present=1) / ERSPAN_II() / ETH / tcp4()],
    "vxlan": [ETH / IP(src=A4, dst=B4) / UDP(sport=49152, dport=4789) / VXLAN(vni=5) / ETH / tcp4()],
    "geneve": [ETH / IP(src=A4, dst=B4) / UDP(sport=49152, dport=6081) / GENEVE(proto=0x0800) / tcp4()],
    "l2tp": [ETH / IP(src=A4, dst=B4) / UDP(sport=1701, dport=1701) / L2TP() / PPP() / tcp4()],
    "ipip": [ETH / IP(src=A4, dst=B4) / tcp4()],
    "6in4": [ETH / IP(src=A4, dst=B4) / IPv6(src=C6, dst=D6) / TCP(sport=1, dport=2) / PAYLOAD],
    "4in6": [ETH / IPv6(src=A6, dst=B6) / IP(src=C4, dst=D4) / UDP(sport=1, dport=2) / PAYLOAD],
    "icmp-error": [
        ETH
        / IP(src=A4, dst=B4)
        / ICMP(type=3, code=3)
        / IPerror(src=B4, dst=C4)
        / UDPerror(sport=33434, dport=33435)
        / Raw(b"q" * 20)
    ],
    "icmp-redirect": [
        ETH / IP(src=A4, dst=B4) / ICMP(type=5, code=1, gw=C4) / IPerror(src=B4, dst=D4) / UDPerror()
    ],
    "icmpv6-error": [
        ETH
        / IPv6(src=A6, dst=B6)
        / ICMPv6DestUnreach(code=4)
        / IPerror6(src=B6, dst=C6)
        / UDPerror(sport=1, dport=2)
        / Raw(b"z" * 16)
    ],
    "arp": [ETH / ARP(op=1, psrc=A4, pdst=B4, hwsrc="02:00:00:00:00:01")],
    "routing-type0": [
        ETH / IPv6(src=A6, dst=B6) / IPv6ExtHdrRouting(addresses=[C6, D6], segleft=2) / TCP(sport=1) / PAYLOAD
    ],
    "segment-routing": [
        ETH / IPv6(src=A6, dst=C6) / IPv6ExtHdrSegmentRouting(addresses=[D6, C6], segleft=1) / UDP() / PAYLOAD
    ],
    "neighbor-solicitation": [ETH / IPv6(src=A6, dst="ff02::1:ff00:40") / ICMPv6ND_NS(tgt=D6)],
    "ipv4-fragments": [
        ETH / f for f in fragment(IP(src=A4, dst=B4) / UDP(sport=7, dport=9) / (b"f" * 120), 48)
    ],
    "ipv6-fragments": [
        ETH / f
        for f in fragment6(
            IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment() / UDP(sport=7, dport=9) / (b"g" * 200), 120
        )
    ],
    "home-address-option": [
        ETH
        / IPv6(src=A6, dst=B6)
        / IPv6ExtHdrDestOpt(options=[HAO(hoa=C6)])
        / UDP(sport=1, dport=2)
        / PAYLOAD
    ],
    "igmpv3-report": [
        ETH
        / IP(src=A4, dst="224.0.0.22", options=[IPOption_Router_Alert()])
        / IGMPv3(type=0x22)
        / IGMPv3mr(records=[IGMPv3gr(maddr="239.1.2.3", srcaddrs=[C4, D4])])
    ],
    "mldv2-report": [
        ETH
        / IPv6(src=A6, dst="ff02::16")
        / ICMPv6MLReport2(records=[ICMPv6MLDMultAddrRec(dst="ff05::3", sources=[C6])])
    ],
    "router-advertisement-rdnss": [
        ETH / IPv6(src="fe80::1", dst="ff02::1") / ICMPv6ND_RA() / ICMPv6NDOptRDNSS(dns=[D6])
    ],
    "nd-redirect": [
        ETH
        / IPv6(src="fe80::1", dst=A6)
        / ICMPv6ND_Redirect(tgt=C6, dst=D6)
        / ICMPv6NDOptRedirectedHdr(pkt=IPv6(src=A6, dst=D6) / UDP() / b"abcd")
    ],
    "ipv4-source-route": [
        ETH / IP(src=A4, dst=B4, options=[IPOption_LSRR(routers=[C4, D4], pointer=4)]) / TCP() / PAYLOAD
    ],
}


@pytest.mark.parametrize("place", list(PLACES))
def test_every_place_rewritten(tmp_path, place: str) -> None:
    check_anonymized(tmp_path, PLACES[place], has_checksums=place != "arp")


def test_router_advertisement_prefix(tmp_path) -> None:
    prefix = "2001:db8:5::"
    frame = (
        ETH
        / IPv6(src="fe80::1", dst="ff02::1")
        / ICMPv6ND_RA()
        / ICMPv6NDOptPrefixInfo(prefix=prefix, prefixlen=48)
    )
    (output,) = check_anonymized(tmp_path, [frame])
    option = bytes(frame).find(packed(prefix))
    assert output[option : option + 6] == packed(cryptopan_image(prefix))[:6]
    assert output[option + 6 : option + 16] == bytes(10)


def test_truncated_frame_checksum_stays_correct(tmp_path) -> None:
    full = bytes(ETH / IP(src=A4, dst=B4) / TCP(sport=1, dport=2) / (b"t" * 200))
    stage = AnonymizeIPs(key=VECTOR_KEY)
    full_out, truncated_out = run_stage(stage, [full, full[:60]])

    # The truncated frame gets exactly the bytes of the full one, whose checksums tshark verifies.
    assert truncated_out == full_out[:60]
    check_anonymized(tmp_path, [full])


def test_udp_zero_checksum_stays_zero() -> None:
    frame = bytes(ETH / IP(src=A4, dst=B4) / UDP(sport=1, dport=2, chksum=0) / PAYLOAD)
    (output,) = run_stage(AnonymizeIPs(key=VECTOR_KEY), [frame])
    assert output[14 + 20 + 6 : 14 + 20 + 8] == b"\x00\x00"
    assert output[14 + 12 : 14 + 20] != frame[14 + 12 : 14 + 20]


def test_wrong_checksum_stays_wrong_by_same_amount() -> None:
    frame = ETH / IP(src=A4, dst=B4) / TCP(sport=1, dport=2, chksum=0x1234) / PAYLOAD
    (output,) = run_stage(AnonymizeIPs(key=VECTOR_KEY), [bytes(frame)])

    def error(data: bytes) -> int:
        parsed = Ether(data)
        stored = parsed[TCP].chksum
        del parsed[TCP].chksum
        correct = Ether(bytes(parsed))[TCP].chksum
        return (stored - correct) % 0xFFFF

    assert error(bytes(frame)) != 0
    assert error(output) == error(bytes(frame))


def test_kept_addresses_unchanged() -> None:
    frame = bytes(ETH / IP(src="127.0.0.1", dst="224.0.0.251") / UDP(sport=5353, dport=5353) / PAYLOAD)
    stage = AnonymizeIPs(key=VECTOR_KEY)
    (output,) = run_stage(stage, [frame])
    assert output == frame
    assert stage.stats()["addresses_kept"] == 2


def test_keep_special_off_rewrites_loopback() -> None:
    frame = bytes(ETH / IP(src="127.0.0.1", dst="127.0.0.2") / TCP() / PAYLOAD)
    (output,) = run_stage(AnonymizeIPs(key=VECTOR_KEY, keep_special=False), [frame])
    assert output[26:30] == packed(cryptopan_image("127.0.0.1"))


def test_keep_prefixes() -> None:
    frame = bytes(ETH / IP(src="203.0.113.5", dst=B4) / TCP() / PAYLOAD)
    (output,) = run_stage(AnonymizeIPs(key=VECTOR_KEY, keep_prefixes=("203.0.113.0/24",)), [frame])
    assert output[26:30] == packed("203.0.113.5")
    assert output[30:34] == packed(cryptopan_image(B4))


def test_invalid_keep_prefix_raises_at_reset() -> None:
    stage = AnonymizeIPs(key=VECTOR_KEY, keep_prefixes=("10.0.0.0/40",))
    with pytest.raises(ValueError, match="10.0.0.0/40"):
        stage.reset("x.pcap")


def test_non_ip_frame_passes_and_is_counted() -> None:
    lldp = bytes(Ether(dst="01:80:c2:00:00:0e", type=0x88CC) / (b"\x02\x07" + bytes(20)))
    stage = AnonymizeIPs(key=VECTOR_KEY)
    (output,) = run_stage(stage, [lldp])
    assert output is lldp or output == lldp
    assert stage.stats()["non_ip_packets"] == 1


def test_unparseable_frame_raises() -> None:
    frame = bytes(ETH / IP(src=A4, dst=B4) / TCP())[:25]
    stage = AnonymizeIPs(key=VECTOR_KEY)
    stage.reset("capture.pcap")
    with pytest.raises(UnparseablePacketError) as caught:
        stage.process(make_packet(frame, number=7))
    assert caught.value.path == "capture.pcap"
    assert caught.value.packet_number == 7
    assert "IPv4 header cut short" in str(caught.value)


def test_mac_anonymization(tmp_path) -> None:
    frames = [
        bytes(
            Ether(src="3c:97:0e:11:22:33", dst="01:00:5e:00:00:fb") / IP(src=A4, dst="224.0.0.251") / UDP()
        ),
        bytes(
            Ether(src="3c:97:0e:11:22:33", dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc="3c:97:0e:11:22:33", psrc=A4)
        ),
    ]
    outputs = run_stage(AnonymizeIPs(key=VECTOR_KEY, anonymize_macs=True), frames)
    source = outputs[0][6:12]
    assert source != frames[0][6:12]
    assert source[0] & 0x01 == 0
    assert outputs[0][0] & 0x01 == 1
    assert outputs[0][0:6] != frames[0][0:6]
    assert outputs[1][0:6] == b"\xff" * 6
    assert outputs[1][6:12] == source
    assert outputs[1][22:28] == source  # ARP sender hardware address

    write_capture(tmp_path / "macs.pcap", outputs)
    statuses = checksum_statuses(tmp_path / "macs.pcap")
    assert statuses[0]["ip.checksum.status"] == ["1"]


def test_mac_anonymization_keep_oui() -> None:
    frame = bytes(Ether(src="3c:97:0e:11:22:33", dst="02:00:00:00:00:02") / tcp4())
    (output,) = run_stage(AnonymizeIPs(key=VECTOR_KEY, anonymize_macs=True, keep_oui=True), [frame])
    assert output[6:9] == bytes.fromhex("3c970e")
    assert output[9:12] != bytes.fromhex("112233")


def test_macs_untouched_by_default() -> None:
    frame = bytes(Ether(src="3c:97:0e:11:22:33", dst="02:00:00:00:00:02") / tcp4())
    (output,) = run_stage(AnonymizeIPs(key=VECTOR_KEY), [frame])
    assert output[:12] == frame[:12]


def test_repr_hides_key() -> None:
    text = repr(AnonymizeIPs(key=VECTOR_KEY))
    assert "***" in text
    assert VECTOR_KEY.hex() not in text
    assert repr(VECTOR_KEY) not in text


@pytest.mark.parametrize("key", [b"too short", "a string of thirty-two characters", 12345])
def test_invalid_key_raises_at_reset(key) -> None:
    stage = AnonymizeIPs(key=key)
    with pytest.raises(ValueError, match="32 bytes"):
        stage.reset("x.pcap")


def test_key_and_key_file_together_rejected(tmp_path) -> None:
    stage = AnonymizeIPs(key=VECTOR_KEY, key_file=tmp_path / "k")
    with pytest.raises(ValueError, match="either key or key_file"):
        stage.reset("x.pcap")


def test_generated_key_kept_and_saved(tmp_path) -> None:
    frame = bytes(ETH / tcp4())
    stage = AnonymizeIPs()
    (first,) = run_stage(stage, [frame])
    key = stage.key_
    (second,) = run_stage(stage, [frame])
    assert len(key) == 32
    assert stage.key_ == key
    assert first == second
    assert AnonymizeIPs().replica().key_ != key

    path = tmp_path / "run.key"
    stage.save_key(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    (reloaded,) = run_stage(AnonymizeIPs(key_file=path), [frame])
    assert reloaded == first


def test_replica_carries_resolved_key() -> None:
    frame = bytes(ETH / tcp4())
    stage = AnonymizeIPs()
    (original,) = run_stage(stage, [frame])
    twin = stage.replica()
    assert twin.key_ == stage.key_
    assert "***" in repr(twin)
    assert run_stage(twin, [frame]) == [original]


def test_mapping_frame() -> None:
    frames = [
        bytes(ETH / tcp4(A4, B4)),
        bytes(ETH / tcp4(A4, C4)),
        bytes(ETH / IP(src=A4, dst="127.0.0.1") / UDP()),
    ]
    stage = AnonymizeIPs(key=VECTOR_KEY)
    run_stage(stage, frames)
    mapping = stage.mapping()
    assert list(mapping.columns) == ["original", "anonymized", "ip_version", "packets"]
    rows = {row.original: row for row in mapping.itertuples()}
    assert rows[A4].packets == 3
    assert rows[A4].anonymized == cryptopan_image(A4)
    assert rows[B4].packets == 1
    assert rows["127.0.0.1"].anonymized == "127.0.0.1"
    assert set(mapping.ip_version) == {4}
    assert stage.stats()["unique_addresses"] == 4


def test_counters() -> None:
    frames = [bytes(ETH / tcp4()), bytes(ETH / IP(src=A4, dst=B4) / tcp4())]
    stage = AnonymizeIPs(key=VECTOR_KEY)
    run_stage(stage, frames)
    stats = stage.stats()
    assert stats["packets"] == 2
    assert stats["addresses_rewritten"] == 6
    assert stats["addresses_kept"] == 0
    assert stats["checksums_updated"] == 2 + 3


def test_pipeline_run(tmp_path) -> None:
    source = write_capture(tmp_path / "in.pcap", [bytes(ETH / tcp4(A4, B4)), bytes(ETH / tcp4(B4, A4))])
    result = Pipeline([AnonymizeIPs(key=VECTOR_KEY)], progress=False).run(source, tmp_path / "out.pcap")
    result.close()
    assert result.packets_out == 2
    assert tshark_addresses(tmp_path / "out.pcap") == [{cryptopan_image(A4), cryptopan_image(B4)}] * 2
