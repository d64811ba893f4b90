"""Build small pcap and pcapng files byte by byte, for tests of the readers and writers."""

from __future__ import annotations

import struct
from pathlib import Path


def pcap_bytes(
    packets: list[tuple[int, int, bytes, int]],
    *,
    byte_order: str = "<",
    nanoseconds: bool = False,
    linktype: int = 1,
    snaplen: int = 65535,
) -> bytes:
    """A classic pcap file; packets are (ts_sec, ts_frac, data, wire_len)."""
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    out = struct.pack(byte_order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)
    for ts_sec, ts_frac, data, wire_len in packets:
        out += struct.pack(byte_order + "IIII", ts_sec, ts_frac, len(data), wire_len) + data
    return out


def option(code: int, value: bytes, order: str = "<") -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def end_of_options(order: str = "<") -> bytes:
    return struct.pack(order + "HH", 0, 0)


def block(block_type: int, body: bytes, order: str = "<") -> bytes:
    total = 12 + len(body)
    return struct.pack(order + "II", block_type, total) + body + struct.pack(order + "I", total)


def shb(options: bytes = b"", order: str = "<") -> bytes:
    body = struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1) + options
    return block(0x0A0D0D0A, body, order)


def idb(linktype: int, snaplen: int, options: bytes = b"", order: str = "<") -> bytes:
    return block(1, struct.pack(order + "HHI", linktype, 0, snaplen) + options, order)


def epb(interface: int, ts: int, data: bytes, wire_len: int, options: bytes = b"", order: str = "<") -> bytes:
    body = struct.pack(order + "IIIII", interface, ts >> 32, ts & 0xFFFFFFFF, len(data), wire_len)
    body += data + b"\0" * (-len(data) % 4) + options
    return block(6, body, order)


def write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path
