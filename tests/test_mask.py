"""MaskPayloads on small captures built with scapy, packet by packet and through the pipeline."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from pktmask_nb import Pipeline
from pktmask_nb.capture import open_reader
from pktmask_nb.packet import LINKTYPE_ETHERNET, Interface, Packet
from pktmask_nb.seqspace import StreamVerdict
from pktmask_nb.stages.mask import MaskPayloads
from pktmask_nb.tls import TlsRecord
from tests.capture_builders import pcap_bytes

ETHERNET = Interface(index=0, linktype=LINKTYPE_ETHERNET, snaplen=65535)
CLIENT, SERVER = "192.0.2.1", "198.51.100.7"
CLIENT_ISN, SERVER_ISN = 1000, 500_000


def ether() -> Ether:
    """An Ethernet header with fixed addresses, so that scapy never resolves a neighbor to fill them in."""
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def record(content_type: int, length: int) -> bytes:
    body = bytes((content_type * 31 + i * 7) % 253 + 1 for i in range(length))
    return bytes([content_type, 3, 3]) + length.to_bytes(2, "big") + body


def client_segment(stream: bytes, start: int, end: int, *, isn: int = CLIENT_ISN) -> bytes:
    """A client-to-server frame with stream bytes [start, end), seq counted from ISN + 1."""
    seq = (isn + 1 + start) % 2**32
    tcp = TCP(sport=40000, dport=443, seq=seq, ack=SERVER_ISN + 1, flags="PA")
    return bytes(ether() / IP(src=CLIENT, dst=SERVER) / tcp / Raw(stream[start:end]))


def handshake_frames(*, isn: int = CLIENT_ISN) -> list[bytes]:
    syn = ether() / IP(src=CLIENT, dst=SERVER) / TCP(sport=40000, dport=443, seq=isn, flags="S")
    syn_ack = (
        ether()
        / IP(src=SERVER, dst=CLIENT)
        / TCP(sport=443, dport=40000, seq=SERVER_ISN, ack=isn + 1, flags="SA")
    )
    return [bytes(syn), bytes(syn_ack)]


def mask(frames: list[bytes], stage: MaskPayloads | None = None) -> tuple[MaskPayloads, list[bytes]]:
    """Run both passes of a stage over the frames and return the stage and its output."""
    stage = stage or MaskPayloads()
    packets = [Packet(i, data, len(data), 0, ETHERNET) for i, data in enumerate(frames, 1)]
    stage.reset("test.pcap")
    for packet in packets:
        stage.scan(packet)
    stage.finish_scan()
    return stage, [stage.process(packet) for packet in packets]


def payload_of(frame: bytes) -> bytes:
    return bytes(Ether(frame)[TCP].payload)


def expected_payload(stream: bytes, start: int, end: int, kept: list[tuple[int, int]]) -> bytes:
    out = bytearray(end - start)
    for a, b in kept:
        a, b = max(a, start), min(b, end)
        if a < b:
            out[a - start : b - start] = stream[a:b]
    return bytes(out)


def assert_tcp_checksum_valid(frame: bytes) -> None:
    parsed = Ether(frame)
    stored = parsed[TCP].chksum
    del parsed[TCP].chksum
    assert Ether(bytes(parsed))[TCP].chksum == stored


def test_record_over_three_segments_with_retransmitted_middle():
    stream = record(22, 40) + record(23, 3000) + record(21, 2)
    cuts = [(0, 1000), (1000, 2000), (1000, 2000), (2000, len(stream))]
    frames = handshake_frames() + [client_segment(stream, a, b) for a, b in cuts]

    stage, out = mask(frames)

    kept = [(0, 50), (3050, 3057)]
    for frame, (a, b) in zip(out[2:], cuts, strict=True):
        assert payload_of(frame) == expected_payload(stream, a, b, kept)
        assert_tcp_checksum_valid(frame)
    assert out[3] == out[4]
    stats = stage.stats()
    assert stats["tls_records"] == 3
    assert stats["tls_application_data_records"] == 1
    assert stats["tls_flows"] == 1
    assert stats["bytes_kept"] == 50 + 7
    assert stats["bytes_zeroed"] == stats["tcp_payload_bytes"] - stats["bytes_kept"]


def test_two_records_in_one_segment():
    stream = record(22, 30) + record(23, 60)
    frames = handshake_frames() + [client_segment(stream, 0, len(stream))]

    stage, out = mask(frames)

    assert payload_of(out[2]) == stream[:40] + bytes(60)
    assert stage.stats()["tls_records"] == 2


@pytest.mark.parametrize("split", [1, 3, 4])
def test_record_header_split_between_segments(split):
    stream = record(23, 20) + record(22, 25)
    cut = 25 + split
    frames = handshake_frames() + [
        client_segment(stream, 0, cut),
        client_segment(stream, cut, len(stream)),
    ]

    stage, out = mask(frames)

    kept = [(0, 5), (25, 55)]
    assert payload_of(out[2]) == expected_payload(stream, 0, cut, kept)
    assert payload_of(out[3]) == expected_payload(stream, cut, len(stream), kept)


def test_out_of_order_segments():
    stream = record(22, 700) + record(23, 900) + record(21, 2)
    cuts = [(i, min(i + 400, len(stream))) for i in range(0, len(stream), 400)]
    order = [0, 2, 1, 4, 3]
    frames = handshake_frames() + [client_segment(stream, *cuts[i]) for i in order]

    stage, out = mask(frames)

    kept = [(0, 705), (705, 710), (1610, 1617)]
    for frame, i in zip(out[2:], order, strict=True):
        assert payload_of(frame) == expected_payload(stream, *cuts[i], kept)
    assert stage.stats()["gaps"] == 0


def test_lost_segment_zeroes_the_direction_from_the_gap_on():
    stream = record(22, 100) + record(22, 100) + record(21, 2) + record(22, 50)
    frames = handshake_frames() + [
        client_segment(stream, 0, 100),
        client_segment(stream, 120, len(stream)),  # [100, 120) holds the second header
    ]

    stage, out = mask(frames)

    assert payload_of(out[2]) == stream[:100]
    assert payload_of(out[3]) == bytes(len(stream) - 120)
    assert stage.stats()["gaps"] == 1
    plan = stage.plan_packet(Packet(4, frames[3], len(frames[3]), 0, ETHERNET))
    assert plan.verdict is StreamVerdict.GAP
    assert plan.trusted_until == 105


def test_sequence_numbers_wrap_around():
    isn = 2**32 - 700
    stream = record(22, 1200) + record(23, 500) + record(21, 2)
    cuts = [(0, 600), (600, 1300), (1300, len(stream))]
    frames = handshake_frames(isn=isn) + [client_segment(stream, a, b, isn=isn) for a, b in cuts]

    stage, out = mask(frames)

    kept = [(0, 1210), (1710, 1717)]
    for frame, (a, b) in zip(out[2:], cuts, strict=True):
        assert payload_of(frame) == expected_payload(stream, a, b, kept)
    assert stage.stats()["tls_records"] == 3


def test_garbage_record_header_falls_back_to_zeroing():
    stream = record(22, 30) + b"\x47\x45\x54\x20/secret HTTP/1.1\r\n\r\n" + record(22, 10)
    frames = handshake_frames() + [client_segment(stream, 0, len(stream))]

    stage, out = mask(frames)

    assert payload_of(out[2]) == stream[:35] + bytes(len(stream) - 35)
    assert stage.stats()["non_tls_flows"] == 1
    assert stage.stats()["tls_flows"] == 1


def test_keep_options_zero_handshake_bodies():
    stream = record(22, 30) + record(20, 1) + record(21, 2)
    frames = handshake_frames() + [client_segment(stream, 0, len(stream))]

    _, out = mask(frames, MaskPayloads(keep_handshake=False, keep_alert=False))

    assert payload_of(out[2]) == stream[:5] + bytes(30) + stream[35:41] + stream[41:46] + bytes(2)


def test_http_heads_kept_across_segments_and_bodies_zeroed():
    request = b"GET /index.html HTTP/1.1\r\nHost: example.org\r\nAccept: */*\r\n\r\n"
    post = b"POST /form HTTP/1.1\r\nHost: example.org\r\nContent-Length: 11\r\n\r\n"
    stream = request + post + b"secret=1234" + b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    cuts = [(0, 30), (30, 100), (100, len(stream))]
    frames = handshake_frames() + [client_segment(stream, a, b) for a, b in cuts]

    stage, out = mask(frames, MaskPayloads(keep_http_headers=True))

    body = len(request) + len(post)
    kept = [(0, body), (body + 11, len(stream))]
    for frame, (a, b) in zip(out[2:], cuts, strict=True):
        assert payload_of(frame) == expected_payload(stream, a, b, kept)
    assert stage.stats()["http_heads"] == 3
    assert stage.stats()["http_flows"] == 1

    _, default_out = mask(frames)
    assert all(set(payload_of(frame)) == {0} for frame in default_out[2:])


def test_icmp_error_quoting_tls_bytes_is_zeroed():
    quoted = IPerror(src=CLIENT, dst=SERVER) / TCPerror(sport=40000, dport=443, seq=1) / Raw(record(23, 40))
    error = ether() / IP(src="203.0.113.9", dst=CLIENT) / ICMP(type=3, code=4) / quoted
    frame = bytes(error)

    stage, out = mask([frame])

    # Ethernet 14, IPv4 20, ICMP 8, quoted IPv4 20, then 8 bytes of the quoted TCP header.
    quote_start = 14 + 20 + 8 + 20 + 8
    assert out[0][:quote_start] != frame[:quote_start]  # the ICMP checksum changed
    assert out[0][quote_start:] == bytes(len(frame) - quote_start)
    parsed = Ether(out[0])
    stored = parsed[ICMP].chksum
    del parsed[ICMP].chksum
    assert Ether(bytes(parsed))[ICMP].chksum == stored
    assert stage.stats()["icmp_quotes_zeroed"] == 1


def udp_frame(payload: bytes, *, dport: int = 5000, chksum: int | None = None) -> bytes:
    udp = UDP(sport=33000, dport=dport) if chksum is None else UDP(sport=33000, dport=dport, chksum=chksum)
    return bytes(ether() / IP(src=CLIENT, dst=SERVER) / udp / Raw(payload))


def test_udp_payloads_zeroed_unless_kept():
    query = b"\x12\x34\x01\x00\x00\x01" + bytes(6) + b"\x03www\x00\x00\x01\x00\x01"
    dns = udp_frame(query, dport=53)
    other = udp_frame(b"private text!", dport=5000)

    stage, out = mask([dns, other])
    assert Ether(out[0])[UDP].load == bytes(len(query))
    assert Ether(out[1])[UDP].load == bytes(13)
    assert stage.stats()["udp_payloads_zeroed"] == 2

    stage, out = mask([dns, other], MaskPayloads(keep_dns=True, keep_udp_ports=[5000]))
    assert out == [dns, other]
    assert stage.stats()["udp_payloads_kept"] == 2


def test_udp_checksums_stay_valid_or_absent():
    odd = udp_frame(b"odd-length payload!")
    absent = udp_frame(b"no checksum here", chksum=0)

    _, out = mask([odd, absent])

    parsed = Ether(out[0])
    stored = parsed[UDP].chksum
    del parsed[UDP].chksum
    assert Ether(bytes(parsed))[UDP].chksum == stored
    assert Ether(out[1])[UDP].chksum == 0


def test_wrong_tcp_checksum_stays_wrong_by_the_same_amount():
    stream = record(23, 33)
    frames = handshake_frames() + [client_segment(stream, 0, len(stream))]
    good = Ether(frames[2])
    bad = Ether(frames[2])
    bad[TCP].chksum = (good[TCP].chksum + 0x1234) % 0xFFFF
    frames.append(bytes(bad))

    _, out = mask(frames)

    assert_tcp_checksum_valid(out[2])
    difference = (Ether(out[3])[TCP].chksum - Ether(out[2])[TCP].chksum) % 0xFFFF
    assert difference == 0x1234


def test_non_ip_frames_and_trailers_are_zeroed():
    lldp = bytes(Ether(dst="01:80:c2:00:00:0e", type=0x88CC) / Raw(b"\x02\x07\x04secret-chassis"))
    arp = bytes(ether() / ARP(psrc=CLIENT, pdst=SERVER) / Raw(b"leaked memory!!!!!"))

    stage, out = mask([lldp, arp])

    assert out[0] == lldp[:14] + bytes(len(lldp) - 14)
    assert out[1] == arp[:42] + bytes(len(arp) - 42)
    assert stage.stats()["non_ip_frames_zeroed"] == 1
    assert stage.stats()["trailers_zeroed"] == 1

    _, kept = mask([lldp], MaskPayloads(keep_non_ip=True))
    assert kept == [lldp]


def test_plan_reports_records_and_kept_ranges():
    stream = record(22, 30) + record(23, 60)
    frames = handshake_frames() + [client_segment(stream, 0, len(stream))]
    stage, _ = mask(frames)

    plan = stage.plan_packet(Packet(3, frames[2], len(frames[2]), 0, ETHERNET))

    assert plan.records == [TlsRecord(0, 22, 30), TlsRecord(35, 23, 60)]
    assert plan.kept == [(0, 40)]
    assert plan.verdict is StreamVerdict.COMPLETE


def test_unknown_udp_port_option_is_rejected():
    with pytest.raises(ValueError, match="keep_udp_ports"):
        MaskPayloads(keep_udp_ports=[70000]).reset("x.pcap")


def write_pcap(path, frames: list[bytes]):
    path.write_bytes(pcap_bytes([(0, i, frame, len(frame)) for i, frame in enumerate(frames)]))
    return path


def read_frames(path) -> list[bytes]:
    reader = open_reader(path)
    try:
        return [packet.data for packet in reader]
    finally:
        reader.close()


def test_pipeline_run_matches_direct_calls(tmp_path):
    stream = record(22, 1500) + record(23, 2000) + record(21, 2)
    cuts = [(0, 1400), (2800, len(stream)), (1400, 2800)]
    frames = handshake_frames() + [client_segment(stream, a, b) for a, b in cuts]
    source = write_pcap(tmp_path / "in.pcap", frames)

    result = Pipeline([MaskPayloads()], progress=False).run(source, tmp_path / "out.pcap")
    result.close()

    assert read_frames(tmp_path / "out.pcap") == mask(frames)[1]


def test_error_while_masking_leaves_no_output(tmp_path):
    class FailingMask(MaskPayloads):
        def process(self, packet):
            if packet.number == 3:
                raise RuntimeError("masking failed")
            return super().process(packet)

    stream = record(23, 2000)
    frames = handshake_frames() + [client_segment(stream, 0, 1000), client_segment(stream, 1000, 2005)]
    source = write_pcap(tmp_path / "in.pcap", frames)

    with pytest.raises(RuntimeError, match="masking failed"):
        Pipeline([FailingMask()], progress=False).run(source, tmp_path / "out.pcap")

    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.pcap"]


SMALL_TLS = ["pktmask_tls_1_2-2.pcap", "pktmask_tls_1_3_0-RTT-2_22_23_mix.pcap", "ppp_raw_ip.pcap"]


def test_one_stage_object_on_several_files_matches_fresh_objects(corpus_dir, tmp_path):
    reused = MaskPayloads()
    for name in SMALL_TLS + SMALL_TLS[::-1]:
        Pipeline([reused], progress=False).run(corpus_dir / name, tmp_path / "reused.pcap").close()
        fresh = MaskPayloads()
        Pipeline([fresh], progress=False).run(corpus_dir / name, tmp_path / "fresh.pcap").close()

        assert (tmp_path / "reused.pcap").read_bytes() == (tmp_path / "fresh.pcap").read_bytes()
        assert reused.stats() == fresh.stats()


def test_reused_port_pair_starts_a_new_stream_at_its_syn():
    tls = record(22, 30) + record(23, 20)
    plain = b"USER secret\r\nPASS hunter2\r\n" + bytes(23)
    second_isn = 7_000_000
    frames = handshake_frames() + [client_segment(tls, 0, len(tls))]
    frames += handshake_frames(isn=second_isn) + [client_segment(plain, 0, len(plain), isn=second_isn)]

    stage, out = mask(frames)

    assert payload_of(out[2]) == tls[:40] + bytes(20)
    assert payload_of(out[5]) == bytes(len(plain))
    assert stage.stats()["non_tls_flows"] == 1


def test_fast_path_equals_dissect_on_the_corpus(corpus_dir):
    from pktmask_nb.dissect import dissect
    from pktmask_nb.fastpath import TcpSegment, plain_tcp_segment

    checked = 0
    for path in sorted(corpus_dir.glob("*.pcap*")):
        reader = open_reader(path)
        try:
            for packet in reader:
                segment = plain_tcp_segment(packet.data, packet.linktype)
                if segment is None:
                    continue
                transport = dissect(packet.data, packet.linktype).transport
                assert segment == TcpSegment.from_transport(transport), (path.name, packet.number)
                checked += 1
        finally:
            reader.close()
    assert checked > 100_000


def test_scan_memory_grows_with_records_not_payload():
    import tracemalloc

    stream = b"".join(record(23, 1395) for _ in range(400))
    frames = handshake_frames() + [client_segment(stream, i, i + 1400) for i in range(0, len(stream), 1400)]
    packets = [Packet(i, data, len(data), 0, ETHERNET) for i, data in enumerate(frames, 1)]
    stage = MaskPayloads()
    stage.reset("test.pcap")

    tracemalloc.start()
    for packet in packets:
        stage.scan(packet)
    stage.finish_scan()
    retained, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert stage.stats()["tls_records"] == 400
    assert retained < 64 * 1024 < len(stream) // 8
