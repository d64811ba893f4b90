"""MaskPayloads.explain and streams(): what masking did to each packet, checked against its output."""

from __future__ import annotations

import ipaddress
from collections import Counter

import pytest
from scapy.layers.inet import ICMP, IP, IPerror, TCPerror
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from pktmask_nb import Pipeline
from pktmask_nb.capture import open_reader
from pktmask_nb.dissect import dissect
from pktmask_nb.maskreport import RecordInPacket, ZeroedRange, ZeroReason
from pktmask_nb.packet import Packet
from pktmask_nb.seqspace import StreamVerdict
from pktmask_nb.stages.anonymize import AnonymizeIPs
from pktmask_nb.stages.mask import MaskPayloads
from tests.test_mask import (
    CLIENT,
    CLIENT_ISN,
    ETHERNET,
    SERVER,
    client_segment,
    handshake_frames,
    mask,
    record,
    udp_frame,
)

PAYLOAD = 14 + 20 + 20  # Ethernet, IPv4, TCP without options
CLIENT_FLOW = (ipaddress.ip_address(CLIENT).packed, ipaddress.ip_address(SERVER).packed, 40000, 443)
KEY = bytes(range(32))


def ether() -> Ether:
    """An Ethernet header with fixed addresses, so that scapy never resolves a neighbor to fill them in."""
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def explain(stage: MaskPayloads, frame: bytes, number: int = 1):
    return stage.explain(Packet(number, frame, len(frame), 0, ETHERNET))


def reasons(masking) -> list[tuple[int, int, str]]:
    return [(piece.start, piece.end, str(piece.reason)) for piece in masking.zeroed]


def test_tls_segment_explained():
    stream = record(22, 30) + record(23, 60)
    frames = handshake_frames() + [client_segment(stream, 0, len(stream))]
    stage, out = mask(frames)

    masking = explain(stage, frames[2], 3)

    assert masking.payload == (PAYLOAD, PAYLOAD + 100)
    assert masking.kept == [(PAYLOAD, PAYLOAD + 40)]
    assert masking.zeroed == [ZeroedRange(PAYLOAD + 40, PAYLOAD + 100, ZeroReason.TLS_APPLICATION_DATA)]
    assert masking.records == [
        RecordInPacket(22, CLIENT_ISN + 1, 0, PAYLOAD, 30),
        RecordInPacket(23, CLIENT_ISN + 36, 35, PAYLOAD + 35, 60),
    ]
    assert masking.records[1].type_name == "application_data"
    assert masking.stream_offset == 0
    assert out[2][PAYLOAD + 40 :] == bytes(60)


def test_record_started_in_earlier_segment():
    stream = record(23, 100) + record(21, 2)
    frames = handshake_frames() + [client_segment(stream, 0, 60), client_segment(stream, 60, len(stream))]
    stage, _ = mask(frames)

    masking = explain(stage, frames[3], 4)

    assert masking.records[0] == RecordInPacket(23, CLIENT_ISN + 1, 0, PAYLOAD - 60, 100)
    assert masking.records[0].frame_end == PAYLOAD + 45
    assert reasons(masking) == [(PAYLOAD, PAYLOAD + 45, "tls_application_data")]
    assert masking.kept == [(PAYLOAD + 45, PAYLOAD + 52)]


def test_gap_reason():
    stream = record(22, 100) + record(22, 100) + record(21, 2) + record(22, 50)
    frames = handshake_frames() + [client_segment(stream, 0, 100), client_segment(stream, 120, len(stream))]
    stage, _ = mask(frames)

    first = explain(stage, frames[2], 3)
    after_gap = explain(stage, frames[3], 4)

    assert first.zeroed == []
    assert first.kept == [(PAYLOAD, PAYLOAD + 100)]
    assert reasons(after_gap) == [(PAYLOAD, PAYLOAD + len(stream) - 120, "gap")]
    assert after_gap.stream.verdict is StreamVerdict.GAP
    assert after_gap.stream.trusted_until == 105


def test_plaintext_and_cut_header_reasons():
    plain = b"USER secret\r\nPASS hunter2\r\n"
    frames = handshake_frames() + [client_segment(plain, 0, len(plain))]
    stage, _ = mask(frames)
    assert reasons(explain(stage, frames[2], 3)) == [(PAYLOAD, PAYLOAD + len(plain), "not_tls")]

    cut = record(23, 10) + b"\x17\x03"
    frames = handshake_frames() + [client_segment(cut, 0, len(cut))]
    stage, _ = mask(frames)
    assert reasons(explain(stage, frames[2], 3)) == [
        (PAYLOAD + 5, PAYLOAD + 15, "tls_application_data"),
        (PAYLOAD + 15, PAYLOAD + 17, "unparsed"),
    ]


def test_http_body_reason():
    message = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
    frames = handshake_frames() + [client_segment(message, 0, len(message))]
    stage, _ = mask(frames, MaskPayloads(keep_http_headers=True))

    masking = explain(stage, frames[2], 3)

    head = len(message) - 5
    assert masking.kept == [(PAYLOAD, PAYLOAD + head)]
    assert reasons(masking) == [(PAYLOAD + head, PAYLOAD + len(message), "http_body")]
    assert masking.stream.protocol == "http"
    assert masking.stream.http_heads == 1


def test_reasons_outside_tcp():
    echo = bytes(ether() / IP(src=CLIENT, dst=SERVER) / ICMP(type=8) / Raw(b"ping data here"))
    quoted = IPerror(src=CLIENT, dst=SERVER) / TCPerror(sport=40000, dport=443) / Raw(record(23, 40))
    error = bytes(ether() / IP(src="203.0.113.9", dst=CLIENT) / ICMP(type=3, code=4) / quoted)
    arp = bytes(ether() / ARP(psrc=CLIENT, pdst=SERVER) / Raw(b"leaked memory!!!!!"))
    lldp = bytes(Ether(dst="01:80:c2:00:00:0e", type=0x88CC) / Raw(b"\x02\x07\x04secret-chassis"))
    esp = bytes(ether() / IP(src=CLIENT, dst=SERVER, proto=50) / Raw(b"\x00\x00\x01\x00encrypted"))
    later = bytes(ether() / IP(src=CLIENT, dst=SERVER, proto=17, frag=3) / Raw(b"second fragment!"))
    frames = [udp_frame(b"private text!"), echo, error, arp, lldp, esp, later]
    stage, _ = mask(frames)

    found = [reasons(explain(stage, frame, number)) for number, frame in enumerate(frames, 1)]

    assert found[0] == [(42, 55, "udp")]
    assert found[1] == [(42, 56, "icmp_echo")]
    assert found[2] == [(70, len(error), "icmp_quote")]
    assert found[3] == [(42, len(arp), "trailer")]
    assert found[4] == [(14, len(lldp), "non_ip")]
    assert found[5] == [(34, len(esp), "other_ip")]
    assert found[6] == [(34, len(later), "ip_fragment")]
    arp_masking = explain(stage, arp, 4)
    assert arp_masking.payload == (14, 42)
    assert arp_masking.kept == [(14, 42)]


def test_kept_udp_payload():
    frame = udp_frame(b"\x12\x34\x01\x00\x00\x01" + bytes(6), dport=53)
    stage, out = mask([frame], MaskPayloads(keep_dns=True))

    masking = stage.explain_frame(frame, 1)

    assert masking.zeroed == []
    assert masking.kept == [masking.payload]
    assert out == [frame]


def test_streams_accessors():
    tls = record(22, 30) + record(23, 20)
    frames = handshake_frames() + [client_segment(tls, 0, len(tls))]
    frames += handshake_frames(isn=7_000_000) + [client_segment(tls, 0, len(tls), isn=7_000_000)]
    stage, _ = mask(frames)

    streams = stage.streams()
    client = [s for s in streams if s.flow == CLIENT_FLOW]

    assert [s.connection for s in client] == [0, 1]
    assert [s.base for s in client] == [CLIENT_ISN + 1, 7_000_001]
    assert [s.protocol for s in client] == ["tls", "tls"]
    assert [s.tls_records for s in client] == [2, 2]
    assert all(s.syn_seen for s in client)
    assert client[0].records()[1].content_type == 23
    assert client[0].kept() == [(0, 40)]
    assert stage.stream(CLIENT_FLOW, connection=1) == client[1]
    assert stage.stream_at(CLIENT_FLOW, 7_000_001 + 10) == (client[1], 10)
    server = [s for s in streams if s.flow[2] == 443]
    assert server
    assert all(s.protocol is None for s in server)
    assert all(s.verdict is None for s in server)
    with pytest.raises(LookupError):
        stage.stream(CLIENT_FLOW, connection=2)


EXPLAINED_CAPTURES = [
    "pktmask_tls_1_2_single_vlan.pcap",
    "pktmask_google-https-cachedlink_plus_sitelink.pcap",
    "dpkt_nb6-http.pcap",
    "cs_icmp_traceroute.pcapng",
    "cs_ip_frag_source.pcapng",
    "cs_ipv6_fragments.pcapng",
    "zeek_mixed-vlan-mpls.pcap",
    "suricata_vxlan-aws-mirror.pcap",
    "ppp_sll.pcap",
]
COUNTED_REASONS = {
    ZeroReason.UDP: "udp_payloads_zeroed",
    ZeroReason.ICMP_ECHO: "icmp_echo_payloads_zeroed",
    ZeroReason.TRAILER: "trailers_zeroed",
    ZeroReason.NON_IP: "non_ip_frames_zeroed",
}


def read_packets(path) -> list[Packet]:
    reader = open_reader(path)
    try:
        return list(reader)
    finally:
        reader.close()


@pytest.mark.parametrize("name", EXPLAINED_CAPTURES)
def test_explanations_match_the_output(name, corpus_dir, tmp_path):
    """Zeroed ranges are zero in the output; every other byte but checksum fields is the input's."""
    stage = MaskPayloads(keep_http_headers=True)
    source = corpus_dir / name
    target = tmp_path / ("out" + source.suffix)
    Pipeline([stage], progress=False, monitor_memory=False).run(source, target).close()

    packets_with = Counter()
    tcp_zeroed = 0
    for before, after in zip(read_packets(source), read_packets(target), strict=True):
        masking = stage.explain(before)
        zeroed = bytearray(len(before.data))
        for piece in masking.zeroed:
            zeroed[piece.start : piece.end] = b"\1" * len(piece)
            assert not any(after.data[piece.start : piece.end]), (name, before.number, piece)
        for checksum in dissect(before.data, before.linktype).checksums:
            zeroed[checksum.offset : checksum.offset + 2] = b"\1\1"
        kept_bytes = [a for a, z in zip(after.data, zeroed, strict=True) if not z]
        assert kept_bytes == [b for b, z in zip(before.data, zeroed, strict=True) if not z], before.number

        packets_with.update({piece.reason for piece in masking.zeroed})
        if masking.stream is not None:
            tcp_zeroed += sum(len(piece) for piece in masking.zeroed if piece.reason not in COUNTED_REASONS)

    stats = stage.stats()
    assert tcp_zeroed == stats["bytes_zeroed"]
    for reason, counter in COUNTED_REASONS.items():
        assert packets_with[reason] == stats[counter], reason


def test_explain_with_anonymized_addresses(corpus_dir, tmp_path):
    anonymize, stage = AnonymizeIPs(key=KEY), MaskPayloads()
    source = corpus_dir / "pktmask_tls_1_2_single_vlan.pcap"
    target = tmp_path / "out.pcap"
    Pipeline([anonymize, stage], progress=False, monitor_memory=False).run(source, target).close()
    mapping = anonymize.mapping()
    addresses = {
        ipaddress.ip_address(a).packed: ipaddress.ip_address(b).packed
        for a, b in zip(mapping["original"], mapping["anonymized"], strict=True)
    }

    explained = 0
    for before, after in zip(read_packets(source), read_packets(target), strict=True):
        masking = stage.explain(before, addresses=addresses)
        if masking.records:
            seen_by_stage = stage.explain(after)
            assert (masking.kept, masking.zeroed, masking.records) == (
                seen_by_stage.kept,
                seen_by_stage.zeroed,
                seen_by_stage.records,
            )
            explained += 1
    assert explained > 100


def test_views_count_non_transport_payloads(corpus_dir, tmp_path):
    source = corpus_dir / "pktmask_google-https-cachedlink_plus_sitelink.pcap"
    pipeline = Pipeline([MaskPayloads()], progress=False, monitor_memory=False)
    with pipeline.run(source, tmp_path / "out.pcap") as result:
        rows = result.payloads(limit=None)

    others = rows[~rows["protocol"].isin(["TCP", "TLS", "UDP"])]
    echo = rows[rows["protocol"] == "ICMP"]
    assert len(others) > 0
    assert others["kept"].notna().all()
    assert (others["kept"] + others["zeroed"] == others["payload_len"]).all()
    assert (echo["zeroed"] == echo["payload_len"] - 8).all()
    assert len(echo) == result.stats.loc["mask", "icmp_echo_payloads_zeroed"]
