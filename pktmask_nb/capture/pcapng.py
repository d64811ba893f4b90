"""pcapng files (RFC draft-ietf-opsawg-pcapng), read and written block by block.

Each block is: block type (4 bytes), total length (4), body, total length
again. A Section Header Block starts each section and fixes its byte order;
Interface Description Blocks number the interfaces of a section from 0;
Enhanced, Simple and (obsolete) Packet Blocks carry packets.

Blocks that can hold private data and that this package cannot sanitize are
never written: Name Resolution (host names with their addresses), Decryption
Secrets (TLS key logs), Interface Statistics and custom blocks. The reader
counts them in `skipped_blocks`.
"""

from __future__ import annotations

import logging
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from pktmask_nb.capture.options import filter_options, interface_resolution
from pktmask_nb.errors import CaptureError
from pktmask_nb.packet import Interface, Packet

logger = logging.getLogger(__name__)

PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
BYTE_ORDER_MAGIC = 0x1A2B3C4D

SHB = 0x0A0D0D0A
IDB = 0x00000001
PB = 0x00000002  # obsolete Packet Block
SPB = 0x00000003
EPB = 0x00000006
BLOCK_NAMES = {
    0x00000004: "Name Resolution Block",
    0x00000005: "Interface Statistics Block",
    0x0000000A: "Decryption Secrets Block",
    0x00000BAD: "custom block",
    0x40000BAD: "custom block",
}
# A block larger than this is almost surely a corrupt length field.
MAX_BLOCK_LEN = 16 * 1024 * 1024


@dataclass(slots=True)
class Section:
    """A pcapng section: its byte order, SHB version and options, and its interfaces."""

    index: int
    byte_order: str
    version_major: int
    version_minor: int
    options: bytes
    interfaces: list[Interface]


class PcapngReader:
    """Read a pcapng file one packet at a time, across sections and interfaces.

    Raises CaptureError naming the file and the packet (1-based, counting
    packets only) for truncated or inconsistent blocks, and for a packet
    that names an interface with no Interface Description Block.
    """

    def __init__(self, fileobj: BinaryIO, *, path: str) -> None:
        self.path = path
        self._file = fileobj
        self.sections: list[Section] = []
        self.skipped_blocks: Counter[str] = Counter()
        self.format = "pcapng"
        self._packets_read = 0

    @property
    def interfaces(self) -> list[Interface]:
        """All interfaces seen so far, over all sections."""
        return [iface for section in self.sections for iface in section.interfaces]

    def __iter__(self) -> Iterator[Packet]:
        section: Section | None = None
        for block_type, body in self._blocks():
            if block_type == SHB:
                section = self.sections[-1]
                continue
            assert section is not None  # _blocks starts with an SHB or raises
            if block_type == IDB:
                self._add_interface(section, body)
            elif block_type in (EPB, PB, SPB):
                self._packets_read += 1
                yield self._packet(section, block_type, body)
            else:
                name = BLOCK_NAMES.get(block_type, f"block type 0x{block_type:08x}")
                self.skipped_blocks[name] += 1
                logger.debug("%s: skipped a %s", self.path, name)

    def _blocks(self) -> Iterator[tuple[int, bytes]]:
        read = self._file.read
        order = "<"
        while True:
            head = read(8)
            if not head:
                return
            if len(head) < 8:
                raise self._error("the file ends inside a block header")

            if head[:4] == PCAPNG_MAGIC:
                # The byte-order magic after the length gives the byte order of the length.
                bom = read(4)
                order = self._byte_order(bom)
                block_type = SHB
                total_len = struct.unpack_from(order + "I", head, 4)[0]
                already_read = bom
            else:
                if not self.sections:
                    raise self._error("the file does not start with a Section Header Block")
                block_type, total_len = struct.unpack(order + "II", head)
                already_read = b""

            if total_len < 12 + len(already_read) or total_len % 4 or total_len > MAX_BLOCK_LEN:
                raise self._error(f"invalid block length {total_len}")
            rest = read(total_len - 8 - len(already_read))
            if len(rest) < total_len - 8 - len(already_read):
                raise self._error("the file ends inside a block")
            body = already_read + rest[:-4]
            if block_type == SHB:
                self._start_section(order, body)
            yield block_type, body

    def _byte_order(self, bom: bytes) -> str:
        if len(bom) < 4:
            raise self._error("the file ends inside a Section Header Block")
        if struct.unpack("<I", bom)[0] == BYTE_ORDER_MAGIC:
            return "<"
        if struct.unpack(">I", bom)[0] == BYTE_ORDER_MAGIC:
            return ">"
        raise self._error(f"invalid byte-order magic {bom.hex()} in a Section Header Block")

    def _start_section(self, order: str, body: bytes) -> None:
        major, minor = struct.unpack_from(order + "HH", body, 4)
        if major != 1:
            raise self._error(f"unsupported pcapng version {major}.{minor}")
        section = Section(len(self.sections), order, major, minor, body[16:], [])
        self.sections.append(section)

    def _add_interface(self, section: Section, body: bytes) -> None:
        order = section.byte_order
        if len(body) < 8:
            raise self._error("truncated Interface Description Block")
        linktype, _, snaplen = struct.unpack_from(order + "HHI", body)
        options = body[8:]
        ticks, offset = interface_resolution(options, order)
        section.interfaces.append(
            Interface(
                index=len(section.interfaces),
                linktype=linktype,
                snaplen=snaplen,
                ticks_per_second=ticks,
                ts_offset=offset,
                section=section.index,
                options=options,
            )
        )

    def _packet(self, section: Section, block_type: int, body: bytes) -> Packet:
        order = section.byte_order
        number = self._packets_read
        if block_type == SPB:
            if not section.interfaces:
                raise self._error("Simple Packet Block before any interface", number)
            interface = section.interfaces[0]
            (wire_len,) = struct.unpack_from(order + "I", body)
            caplen = min(wire_len, len(body) - 4, interface.snaplen or wire_len)
            return Packet(number, body[4 : 4 + caplen], wire_len, 0, interface)

        if block_type == EPB:
            if len(body) < 20:
                raise self._error("truncated Enhanced Packet Block", number)
            if_id, ts_high, ts_low, caplen, wire_len = struct.unpack_from(order + "IIIII", body)
        else:
            if len(body) < 20:
                raise self._error("truncated Packet Block", number)
            if_id, _, ts_high, ts_low, caplen, wire_len = struct.unpack_from(order + "HHIIII", body)
        if if_id >= len(section.interfaces):
            raise self._error(f"packet on interface {if_id}, which has no description block", number)
        end = 20 + caplen
        if end > len(body):
            raise self._error(f"captured length {caplen} runs past the end of its block", number)
        options_start = end + (-caplen % 4)
        options = body[options_start:]
        ts = (ts_high << 32) | ts_low
        return Packet(number, body[20:end], wire_len, ts, section.interfaces[if_id], options)

    def _error(self, message: str, number: int | None = None) -> CaptureError:
        if number is None:
            number = self._packets_read + 1
        return CaptureError(
            self.path,
            message,
            packet_number=number,
            hint="The file is damaged or cut short; `editcap IN OUT` keeps the readable "
            "packets, or recapture",
        )

    def tell(self) -> int:
        """Bytes of the file consumed so far."""
        return self._file.tell()

    def close(self) -> None:
        self._file.close()


class PcapngWriter:
    """Write packets as pcapng with the sections and interfaces of a reader's input.

    Each input section becomes an output section in the same byte order, and
    each input interface an Interface Description Block with the same index,
    linktype, snaplen and timestamp resolution, so every packet keeps its
    exact timestamp. Sections and interfaces are written when first needed and
    the rest at `close()`, so the output has every interface the input had,
    even one whose packets were all dropped.
    """

    def __init__(self, fileobj: BinaryIO, reader: PcapngReader, *, keep_comments: bool) -> None:
        self._file = fileobj
        self._reader = reader
        self._keep_comments = keep_comments
        self._section = -1  # index of the section being written
        self._interfaces_written = 0  # in that section

    def write(self, packet: Packet, data: bytes) -> None:
        """Write an Enhanced Packet Block for `packet` with `data` as its captured bytes."""
        interface = packet.interface
        self._catch_up(interface.section, interface.index + 1)
        order = self._reader.sections[interface.section].byte_order

        options = b""
        if packet.options:
            options = filter_options(packet.options, order, "epb", keep_comments=self._keep_comments)
        caplen = len(data)
        padding = b"\0" * (-caplen % 4)
        total_len = 32 + caplen + len(padding) + len(options)
        wire_len = max(packet.wire_len, caplen)
        head = struct.pack(
            order + "IIIIIII",
            EPB,
            total_len,
            interface.index,
            packet.ts >> 32,
            packet.ts & 0xFFFFFFFF,
            caplen,
            wire_len,
        )
        self._file.write(head)
        self._file.write(data)
        self._file.write(padding + options + struct.pack(order + "I", total_len))

    def _catch_up(self, section_index: int, interface_count: int) -> None:
        """Write the section headers and interface blocks up to the given ones."""
        sections = self._reader.sections
        while self._section < section_index:
            if self._section >= 0:
                self._write_interfaces(sections[self._section], len(sections[self._section].interfaces))
            self._section += 1
            self._interfaces_written = 0
            self._write_section_header(sections[self._section])
        self._write_interfaces(sections[section_index], interface_count)

    def _write_section_header(self, section: Section) -> None:
        order = section.byte_order
        options = filter_options(section.options, order, "shb", keep_comments=self._keep_comments)
        total_len = 28 + len(options)
        # Section length -1: unknown, as the output is written in one pass.
        self._file.write(
            struct.pack(
                order + "IIIHHq",
                SHB,
                total_len,
                BYTE_ORDER_MAGIC,
                section.version_major,
                section.version_minor,
                -1,
            )
        )
        self._file.write(options + struct.pack(order + "I", total_len))

    def _write_interfaces(self, section: Section, count: int) -> None:
        order = section.byte_order
        while self._interfaces_written < count:
            interface = section.interfaces[self._interfaces_written]
            options = filter_options(interface.options, order, "idb", keep_comments=self._keep_comments)
            total_len = 20 + len(options)
            self._file.write(
                struct.pack(order + "IIHHI", IDB, total_len, interface.linktype, 0, interface.snaplen)
            )
            self._file.write(options + struct.pack(order + "I", total_len))
            self._interfaces_written += 1

    def close(self) -> None:
        """Write the sections and interfaces not yet written, then flush."""
        sections = self._reader.sections
        if sections:
            last = sections[-1]
            self._catch_up(last.index, len(last.interfaces))
        self._file.flush()
