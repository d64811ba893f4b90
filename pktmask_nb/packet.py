"""One captured packet and the interface it was captured on."""

from __future__ import annotations

from dataclasses import dataclass, field

# Linktype numbers from https://www.tcpdump.org/linktypes.html.
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IEEE802_11_RADIOTAP = 127
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276


@dataclass(frozen=True, slots=True)
class Interface:
    """A capture interface: a pcap file header, or a pcapng Interface Description Block.

    Timestamps of packets on this interface count `ticks_per_second` ticks
    (10**6 for microsecond pcap, 10**9 for nanosecond pcap, `if_tsresol` for
    pcapng), plus `ts_offset` whole seconds (pcapng `if_tsoffset`).
    """

    index: int
    linktype: int
    snaplen: int
    ticks_per_second: int = 1_000_000
    ts_offset: int = 0
    # pcapng only: the section (Section Header Block) the interface belongs to,
    # and the raw option bytes of its IDB, for writing it back.
    section: int = 0
    options: bytes = field(default=b"", repr=False)


@dataclass(slots=True)
class Packet:
    """A captured packet as read from the file.

    `number` is the 1-based frame number in the input, as Wireshark counts.
    `data` holds the captured bytes (caplen is `len(data)`) and `wire_len` the
    packet's original length on the wire. `ts` is the timestamp in ticks of the
    interface's resolution, kept as an integer so that writing it back is exact.
    `options` holds the raw pcapng Enhanced Packet Block options, which the
    writer filters (comments are dropped unless asked for).
    """

    number: int
    data: bytes
    wire_len: int
    ts: int
    interface: Interface
    options: bytes = b""

    @property
    def linktype(self) -> int:
        return self.interface.linktype

    @property
    def caplen(self) -> int:
        return len(self.data)

    @property
    def timestamp_ns(self) -> int:
        """Timestamp in nanoseconds since the Unix epoch (exact for resolutions up to 1 ns)."""
        iface = self.interface
        return self.ts * 1_000_000_000 // iface.ticks_per_second + iface.ts_offset * 1_000_000_000
