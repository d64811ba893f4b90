"""Classic pcap files (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcap-04.html).

A 24-byte file header (magic, version, thiszone, sigfigs, snaplen, linktype)
is followed by records of a 16-byte header (ts_sec, ts_frac, incl_len,
orig_len) and incl_len captured bytes. The magic number gives the byte order
and whether ts_frac counts microseconds (0xA1B2C3D4) or nanoseconds (0xA1B23C4D).
"""

from __future__ import annotations

import logging
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from pktmask_nb.errors import CaptureError
from pktmask_nb.packet import Interface, Packet

logger = logging.getLogger(__name__)

MAGIC_USEC = 0xA1B2C3D4
MAGIC_NSEC = 0xA1B23C4D
PCAP_MAGICS = {
    struct.pack("<I", MAGIC_USEC),
    struct.pack(">I", MAGIC_USEC),
    struct.pack("<I", MAGIC_NSEC),
    struct.pack(">I", MAGIC_NSEC),
}
FILE_HEADER_LEN = 24
RECORD_HEADER_LEN = 16
# Wireshark rejects records above 256 KiB for most linktypes; a larger incl_len
# almost always means a corrupt record header. A snaplen above it is honoured.
MAX_RECORD_LEN = 262_144


@dataclass(frozen=True, slots=True)
class PcapHeader:
    """The file header fields that a writer needs to reproduce the file's format."""

    byte_order: str  # "<" or ">"
    ticks_per_second: int  # 10**6 or 10**9
    version_major: int
    version_minor: int
    thiszone: int
    sigfigs: int
    snaplen: int
    linktype_field: int  # linktype in the low 16 bits, FCS flags above


class PcapReader:
    """Read a pcap file one packet at a time.

    Raises CaptureError naming the file and packet for a truncated header,
    a truncated record or an implausible record length.
    """

    def __init__(self, fileobj: BinaryIO, *, path: str) -> None:
        self.path = path
        self._file = fileobj
        self.header = self._read_file_header()
        self.interface = Interface(
            index=0,
            linktype=self.header.linktype_field & 0xFFFF,
            snaplen=self.header.snaplen,
            ticks_per_second=self.header.ticks_per_second,
        )
        self.interfaces = [self.interface]
        self.format = "pcap"
        # pcap has no blocks to skip; the attribute matches PcapngReader's.
        self.skipped_blocks: Counter[str] = Counter()

    def _read_file_header(self) -> PcapHeader:
        raw = self._file.read(FILE_HEADER_LEN)
        if len(raw) < FILE_HEADER_LEN:
            raise CaptureError(
                self.path,
                f"truncated pcap file header ({len(raw)} of {FILE_HEADER_LEN} bytes)",
                hint="The file was cut short before any packet; recapture or copy it again",
            )

        magic_le = struct.unpack_from("<I", raw)[0]
        if magic_le in (MAGIC_USEC, MAGIC_NSEC):
            byte_order = "<"
            magic = magic_le
        else:
            byte_order = ">"
            magic = struct.unpack_from(">I", raw)[0]
        fields = struct.unpack_from(byte_order + "HHiIII", raw, 4)
        major, minor, thiszone, sigfigs, snaplen, linktype_field = fields
        return PcapHeader(
            byte_order=byte_order,
            ticks_per_second=1_000_000 if magic == MAGIC_USEC else 1_000_000_000,
            version_major=major,
            version_minor=minor,
            thiszone=thiszone,
            sigfigs=sigfigs,
            snaplen=snaplen,
            linktype_field=linktype_field,
        )

    def __iter__(self) -> Iterator[Packet]:
        read = self._file.read
        record = struct.Struct(self.header.byte_order + "IIII")
        ticks = self.header.ticks_per_second
        interface = self.interface
        max_len = max(MAX_RECORD_LEN, self.header.snaplen)
        number = 0

        while True:
            raw = read(RECORD_HEADER_LEN)
            if not raw:
                return
            number += 1
            if len(raw) < RECORD_HEADER_LEN:
                raise self._truncated(number, "record header", len(raw), RECORD_HEADER_LEN)

            ts_sec, ts_frac, incl_len, orig_len = record.unpack(raw)
            if incl_len > max_len:
                raise CaptureError(
                    self.path,
                    f"record length {incl_len} exceeds the snaplen {self.header.snaplen} "
                    f"and the {MAX_RECORD_LEN}-byte limit; the record header is corrupt",
                    packet_number=number,
                    hint=f"Keep the packets before it with `editcap -r IN OUT 1-{number - 1}`",
                )
            data = read(incl_len)
            if len(data) < incl_len:
                raise self._truncated(number, "packet data", len(data), incl_len)
            yield Packet(number, data, orig_len, ts_sec * ticks + ts_frac, interface)

    def _truncated(self, number: int, part: str, got: int, expected: int) -> CaptureError:
        keep = f"1-{number - 1}" if number > 1 else "none"
        return CaptureError(
            self.path,
            f"the file ends inside the {part} ({got} of {expected} bytes)",
            packet_number=number,
            hint=f"The capture was cut short; keep the complete packets with "
            f"`editcap -r IN OUT {keep}` and run again",
        )

    def tell(self) -> int:
        """Bytes of the file consumed so far."""
        return self._file.tell()

    def close(self) -> None:
        self._file.close()


class PcapWriter:
    """Write packets in the same pcap format (byte order, resolution, linktype) as a reader's input."""

    def __init__(self, fileobj: BinaryIO, header: PcapHeader) -> None:
        self._file = fileobj
        self._header = header
        self._record = struct.Struct(header.byte_order + "IIII")
        magic = MAGIC_USEC if header.ticks_per_second == 1_000_000 else MAGIC_NSEC
        fileobj.write(
            struct.pack(
                header.byte_order + "IHHiIII",
                magic,
                header.version_major,
                header.version_minor,
                header.thiszone,
                header.sigfigs,
                header.snaplen,
                header.linktype_field,
            )
        )

    def write(self, packet: Packet, data: bytes) -> None:
        """Write `data` as the captured bytes with `packet`'s timestamp and wire length.

        The wire length grows with the captured length only if a stage made
        the packet longer than it was on the wire (no stage here does).
        """
        ts_sec, ts_frac = divmod(packet.ts, self._header.ticks_per_second)
        wire_len = max(packet.wire_len, len(data))
        self._file.write(self._record.pack(ts_sec, ts_frac, len(data), wire_len))
        self._file.write(data)

    def close(self) -> None:
        """Flush; the caller owns and closes the file object."""
        self._file.flush()
