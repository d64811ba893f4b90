"""A TLS connection built with scapy: a retransmitted segment and a lost one that contains a record header.

The capture is shared with the plot tests. The server's direction carries
four records laid end to end; the segment with the third record's header is
missing, so masking trusts the direction up to that header only.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from pktmask_nb import Pipeline
from pktmask_nb.stages.anonymize import AnonymizeIPs
from pktmask_nb.stages.mask import MaskPayloads

CLIENT, SERVER = "10.0.0.1", "10.0.0.2"
CLIENT_PORT, SERVER_PORT = 40000, 443
CLIENT_ISN, SERVER_ISN = 1000, 4_294_967_000  # the server's seq wraps past 2**32 mid-stream
SERVER_FLOW = f"{SERVER}:{SERVER_PORT} -> {CLIENT}:{CLIENT_PORT}"
CLIENT_FLOW = f"{CLIENT}:{CLIENT_PORT} -> {SERVER}:{SERVER_PORT}"


def record(content_type: int, length: int) -> bytes:
    body = bytes((content_type * 31 + i * 7 + 1) % 251 + 1 for i in range(length))
    return bytes((content_type, 3, 3)) + length.to_bytes(2, "big") + body


SERVER_STREAM = record(22, 100) + record(23, 200) + record(23, 300) + record(23, 50)
CLIENT_STREAM = record(22, 50)
# (stream offset, length, captured) of the server's data segments, in capture order.
SERVER_SEGMENTS = [
    (0, 105, True),
    (105, 205, True),
    (105, 205, True),
    (310, 100, False),
    (410, 205, True),
    (615, 55, True),
]
GAP = (310, 410)
EXPECTED_KEPT = 105 + 5 + 5  # record 1 whole, the header of record 2 twice (sent twice)


def build_gap_capture(path: Path) -> Path:
    """Write the capture to `path` and return it; frame 6 is the retransmission, and 9 follows the gap."""
    packets = [
        _segment(CLIENT, SERVER, "S", CLIENT_ISN, 0, b""),
        _segment(SERVER, CLIENT, "SA", SERVER_ISN, CLIENT_ISN + 1, b""),
        _segment(CLIENT, SERVER, "A", CLIENT_ISN + 1, SERVER_ISN + 1, b""),
        _segment(CLIENT, SERVER, "PA", CLIENT_ISN + 1, SERVER_ISN + 1, CLIENT_STREAM),
    ]
    for offset, length, captured in SERVER_SEGMENTS:
        if captured:
            seq = (SERVER_ISN + 1 + offset) % 2**32
            ack = CLIENT_ISN + 1 + len(CLIENT_STREAM)
            packets.append(_segment(SERVER, CLIENT, "PA", seq, ack, SERVER_STREAM[offset : offset + length]))
    for number, packet in enumerate(packets):
        packet.time = 1_700_000_000 + number / 1000
    wrpcap(str(path), packets)
    return path


def _segment(src: str, dst: str, flags: str, seq: int, ack: int, payload: bytes):
    sport, dport = (CLIENT_PORT, SERVER_PORT) if src == CLIENT else (SERVER_PORT, CLIENT_PORT)
    packet = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=src, dst=dst)
    packet = packet / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack)
    return packet / Raw(payload) if payload else packet


@pytest.fixture
def gap_result(tmp_path):
    capture = build_gap_capture(tmp_path / "gap.pcap")
    pipeline = Pipeline(
        [AnonymizeIPs(key=bytes(range(32))), MaskPayloads()], progress=False, monitor_memory=False
    )
    result = pipeline.run(capture, tmp_path / "gap-out.pcap")
    yield result
    result.close()


def test_flows_report_gap(gap_result):
    flows = gap_result.flows().set_index("flow")

    server = flows.loc[SERVER_FLOW]
    assert server["verdict"] == "gap"
    assert server["zeroed_from"] == GAP[0]
    assert server["tls"]
    assert server["tls_records"] == 2
    assert server["payload_bytes"] == sum(length for _, length, captured in SERVER_SEGMENTS if captured)
    assert server["kept"] == EXPECTED_KEPT
    assert server["kept"] + server["zeroed"] == server["payload_bytes"]
    assert server["direction"] == "to_client"

    client = flows.loc[CLIENT_FLOW]
    assert client["verdict"] == "complete"
    assert client["kept"] == len(CLIENT_STREAM)
    assert client["zeroed"] == 0
    assert client["packets"] == 3
    assert client["direction"] == "to_server"


def test_payloads_retransmission_and_gap(gap_result):
    rows = gap_result.payloads(flow=SERVER_FLOW, max_hex_bytes=4096).set_index("frame")

    assert list(rows.index) == [2, 5, 6, 7, 8, 9]
    # The retransmission keeps exactly what the first copy kept.
    assert rows.loc[6, "kept_ranges"] == rows.loc[7, "kept_ranges"] == [(0, 5)]
    assert rows.loc[6, "tls_records"] == "application_data"
    # After the gap nothing is trusted: no records, every byte zeroed in the output.
    for frame in (8, 9):
        assert rows.loc[frame, "kept"] == 0
        assert rows.loc[frame, "tls_records"] == ""
        assert set(bytes.fromhex(rows.loc[frame, "after"])) == {0}
    assert rows.loc[5, "after"] == rows.loc[5, "before"] == SERVER_STREAM[:105].hex()
