"""Every supported linktype goes through the parsing stages: payload zeroed, addresses rewritten."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from capture_builders import pcap_bytes, write
from corpus_tools import tshark_fields
from scapy.layers.dot11 import Dot11, RadioTap
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import LLC, SNAP, CookedLinux, CookedLinuxV2, Ether
from scapy.packet import Raw

from pktmask_nb import CaptureError, MaskPayloads, Pipeline

SECRET = b"SECRET-PAYLOAD-0123456789"


def _ipv4() -> bytes:
    return bytes(
        IP(src="192.0.2.10", dst="198.51.100.20") / TCP(sport=40000, dport=8080, flags="PA") / Raw(SECRET)
    )


def _ipv6() -> bytes:
    return bytes(
        IPv6(src="2001:db8::10", dst="2001:db8:1::20")
        / TCP(sport=40000, dport=8080, flags="PA")
        / Raw(SECRET)
    )


FRAMES = {
    "ethernet": (1, lambda: bytes(Ether() / IP(_ipv4()))),
    "raw": (101, _ipv4),
    "ipv4": (228, _ipv4),
    "ipv6": (229, _ipv6),
    "null": (0, lambda: struct.pack("<I", 2) + _ipv4()),
    "loop": (108, lambda: struct.pack(">I", 2) + _ipv4()),
    "linux_sll": (113, lambda: bytes(CookedLinux(pkttype=0, proto=0x0800) / IP(_ipv4()))),
    "linux_sll2": (276, lambda: bytes(CookedLinuxV2(proto=0x0800) / IP(_ipv4()))),
    "radiotap": (
        127,
        lambda: bytes(
            RadioTap() / Dot11(type=2, subtype=0, FCfield=0x01) / LLC() / SNAP(code=0x0800) / IP(_ipv4())
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_linktype_payload_masked(tmp_path: Path, tshark: str, name: str) -> None:
    linktype, build = FRAMES[name]
    frame = build()
    source = write(tmp_path / f"{name}.pcap", pcap_bytes([(1, 0, frame, len(frame))], linktype=linktype))
    target = tmp_path / f"{name}-out.pcap"

    result = Pipeline([MaskPayloads()], progress=False).run(source, target)
    output = target.read_bytes()

    assert SECRET not in output
    assert result.packets_out == 1
    rows = tshark_fields(target, ["frame.encap_type", "tcp.srcport", "tcp.len"])
    source_rows = tshark_fields(source, ["frame.encap_type", "tcp.srcport", "tcp.len"])
    assert rows == source_rows, "the frame must dissect as before, with the same lengths"
    assert rows[0][1] == "40000"
    result.close()


def test_unknown_linktype_is_a_clear_error(tmp_path: Path) -> None:
    frame = b"\x00" * 40
    source = write(tmp_path / "user0.pcap", pcap_bytes([(1, 0, frame, len(frame))], linktype=147))

    with pytest.raises(CaptureError) as caught:
        Pipeline([MaskPayloads()], progress=False).run(source, tmp_path / "out.pcap")

    message = str(caught.value)
    assert "user0.pcap, packet 1" in message
    assert "147" in message
    assert not (tmp_path / "out.pcap").exists()
