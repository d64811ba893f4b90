"""Build benchmark captures of a given size from corpus captures.

The corpus captures are concatenated and repeated; each repetition is
shifted in time past the previous one and has the last byte of every
Ethernet source MAC set to the repetition number, so that copies are not
byte-identical duplicates (the dedup stage would otherwise drop them all).
"""

from __future__ import annotations

import struct
from pathlib import Path

from pktmask_nb.capture import open_reader
from pktmask_nb.capture.pcap import PcapReader

# Ethernet, microsecond pcaps with TLS, TCP, UDP and VLAN traffic.
SOURCES = [
    "zeek_echo-connections.pcap",
    "ppp_tls2.pcap",
    "ppp_example2.pcap",
    "pktmask_tls_1_2_single_vlan.pcap",
]


def build_capture(corpus: Path, target: Path, size_bytes: int) -> int:
    """Write a pcap of at least `size_bytes` to `target`; return its packet count."""
    packets = 0
    copy = 0
    clock_us = 1_700_000_000 * 1_000_000  # where the next source starts
    with open(target, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        written = 24
        while written < size_bytes:
            for name in SOURCES:
                reader = open_reader(corpus / name)
                assert isinstance(reader, PcapReader) and reader.interface.linktype == 1
                first_us = None
                end_us = clock_us
                for packet in reader:
                    data = bytearray(packet.data)
                    data[11] = copy & 0xFF
                    if first_us is None:
                        first_us = packet.ts
                    ts = clock_us + packet.ts - first_us
                    end_us = max(end_us, ts)
                    out.write(
                        struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(data), packet.wire_len)
                    )
                    out.write(data)
                    written += 16 + len(data)
                    packets += 1
                reader.close()
                clock_us = end_us + 1_000_000
                if written >= size_bytes:
                    break
            copy += 1
    return packets
