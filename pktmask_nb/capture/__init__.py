"""Streaming readers and writers for pcap and pcapng files.

`open_reader(path)` detects the format from the magic number and returns a
reader that yields one `Packet` at a time. `open_writer` returns a writer
that keeps the input's format by default. pcap stays pcap with the same
resolution, byte order and linktype, and pcapng keeps one interface block per
input interface.
"""

from __future__ import annotations

import os
from typing import BinaryIO

from pktmask_nb.capture.convert import PcapFromPcapngWriter, PcapngFromPcapWriter
from pktmask_nb.capture.pcap import PCAP_MAGICS, PcapReader, PcapWriter
from pktmask_nb.capture.pcapng import PCAPNG_MAGIC, PcapngReader, PcapngWriter
from pktmask_nb.errors import CaptureError

Reader = PcapReader | PcapngReader
Writer = PcapWriter | PcapngWriter | PcapFromPcapngWriter | PcapngFromPcapWriter

# Read in large chunks: per-packet reads then come from the buffer.
READ_BUFFER = 1 << 20

__all__ = ["OUTPUT_FORMATS", "Reader", "Writer", "capture_format", "open_reader", "open_writer"]


def capture_format(path: str | os.PathLike[str]) -> str:
    """Return "pcap" or "pcapng" from the file's magic number.

    Raises CaptureError for a file that is empty, too short or neither format.
    """
    with open(path, "rb") as f:
        magic = f.read(4)
    if not magic:
        raise CaptureError(path, "the file is empty", hint="Check that the capture finished writing")
    if magic == PCAPNG_MAGIC:
        return "pcapng"
    if magic in PCAP_MAGICS:
        return "pcap"
    if len(magic) < 4:
        raise CaptureError(path, f"the file is only {len(magic)} bytes long, too short for a capture")
    raise CaptureError(
        path,
        f"not a pcap or pcapng file (magic number {magic.hex()})",
        hint="Give a capture written by tcpdump, dumpcap or Wireshark; convert other formats "
        "with `editcap -F pcapng IN OUT`",
    )


def open_reader(path: str | os.PathLike[str]) -> Reader:
    """Open a capture for reading one packet at a time. The caller closes it."""
    kind = capture_format(path)
    fileobj = open(path, "rb", buffering=READ_BUFFER)
    try:
        if kind == "pcap":
            return PcapReader(fileobj, path=os.fspath(path))
        return PcapngReader(fileobj, path=os.fspath(path))
    except BaseException:
        fileobj.close()
        raise


OUTPUT_FORMATS = ("same", "pcap", "pcapng")


def open_writer(
    fileobj: BinaryIO, reader: Reader, *, keep_comments: bool = False, output_format: str = "same"
) -> Writer:
    """Return a writer for `fileobj`, in the format of `reader`'s input unless `output_format` names another.

    With `keep_comments` false, pcapng comments and free-text options
    (hardware, OS, application, interface names and filters) are dropped.
    Classic pcap has no comments, so the option changes nothing there.
    Raises ValueError for an `output_format` not in OUTPUT_FORMATS.
    """
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output_format must be one of {OUTPUT_FORMATS}, not {output_format!r}")
    wanted = reader.format if output_format == "same" else output_format
    if isinstance(reader, PcapReader):
        if wanted == "pcapng":
            return PcapngFromPcapWriter(fileobj, reader.interface)
        return PcapWriter(fileobj, reader.header)
    if wanted == "pcap":
        return PcapFromPcapngWriter(fileobj, path=reader.path)
    return PcapngWriter(fileobj, reader, keep_comments=keep_comments)
