"""Writers that change the file format: pcapng to pcap, and pcap to pcapng.

The pipeline writes the input's format by default; these serve users who ask
for the other one. pcap has one linktype and one timestamp resolution for the
whole file, so a pcapng input converts only when all its interfaces share a
linktype. Timestamps are written in nanoseconds, which is exact for every
decimal resolution up to 1 ns.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

from pktmask_nb.capture.pcap import MAGIC_NSEC, MAX_RECORD_LEN
from pktmask_nb.capture.pcapng import BYTE_ORDER_MAGIC, EPB, IDB, SHB
from pktmask_nb.errors import CaptureError
from pktmask_nb.packet import Interface, Packet

NANOSECONDS = 1_000_000_000
IF_TSRESOL_NANOSECONDS = struct.pack("<HHB3x", 9, 1, 9) + struct.pack("<HH", 0, 0)


class PcapFromPcapngWriter:
    """Write a pcapng input as a little-endian nanosecond pcap file.

    The file header is written with the first packet (or at `close()` for a
    capture without packets), from that packet's interface. Raises
    CaptureError naming the packet when a later interface has another linktype.
    """

    def __init__(self, fileobj: BinaryIO, *, path: str) -> None:
        self._file = fileobj
        self._path = path
        self._interface: Interface | None = None
        self._record = struct.Struct("<IIII")

    def write(self, packet: Packet, data: bytes) -> None:
        interface = packet.interface
        if self._interface is None:
            self._write_header(interface.linktype, interface.snaplen or MAX_RECORD_LEN)
            self._interface = interface
        elif interface.linktype != self._interface.linktype:
            raise CaptureError(
                self._path,
                f"cannot write pcap: this packet's interface has linktype {interface.linktype}, "
                f"the first packet's has {self._interface.linktype}, and pcap allows one per file",
                packet_number=packet.number,
                hint="Keep the pcapng format for this capture",
            )
        ts_ns = packet.timestamp_ns
        ts_sec, ts_frac = divmod(ts_ns, NANOSECONDS)
        wire_len = max(packet.wire_len, len(data))
        self._file.write(self._record.pack(ts_sec, ts_frac, len(data), wire_len))
        self._file.write(data)

    def _write_header(self, linktype: int, snaplen: int) -> None:
        self._file.write(struct.pack("<IHHiIII", MAGIC_NSEC, 2, 4, 0, 0, snaplen, linktype))

    def close(self) -> None:
        if self._interface is None:
            # NOTE: a pcapng input without packets gives no linktype to copy; Ethernet is assumed.
            self._write_header(1, MAX_RECORD_LEN)
        self._file.flush()


class PcapngFromPcapWriter:
    """Write a pcap input as pcapng: one section, one interface, the pcap's resolution kept."""

    def __init__(self, fileobj: BinaryIO, interface: Interface) -> None:
        self._file = fileobj
        self._ticks = interface.ticks_per_second
        shb_len = 28
        fileobj.write(struct.pack("<IIIHHqI", SHB, shb_len, BYTE_ORDER_MAGIC, 1, 0, -1, shb_len))
        options = IF_TSRESOL_NANOSECONDS if self._ticks == NANOSECONDS else b""
        idb_len = 20 + len(options)
        fileobj.write(struct.pack("<IIHHI", IDB, idb_len, interface.linktype, 0, interface.snaplen))
        fileobj.write(options + struct.pack("<I", idb_len))

    def write(self, packet: Packet, data: bytes) -> None:
        caplen = len(data)
        padding = b"\0" * (-caplen % 4)
        total_len = 32 + caplen + len(padding)
        wire_len = max(packet.wire_len, caplen)
        ts = packet.ts
        head = struct.pack("<IIIIIII", EPB, total_len, 0, ts >> 32, ts & 0xFFFFFFFF, caplen, wire_len)
        self._file.write(head)
        self._file.write(data)
        self._file.write(padding + struct.pack("<I", total_len))

    def close(self) -> None:
        self._file.flush()
