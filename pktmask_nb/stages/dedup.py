"""Duplicate packet removal, as `editcap -D` / `-w` do it."""

from __future__ import annotations

import logging
from collections import deque
from hashlib import blake2b

from pktmask_nb.digest_set import DigestSet
from pktmask_nb.packet import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_RAW,
    Packet,
)
from pktmask_nb.stages.base import Stage

logger = logging.getLogger(__name__)

VLAN_TPIDS = (b"\x81\x00", b"\x88\xa8", b"\x91\x00")
ETHERTYPE_IPV4 = b"\x08\x00"
ETHERTYPE_IPV6 = b"\x86\xdd"


class Deduplicate(Stage):
    """Drop a packet whose captured bytes equal an earlier packet's; keep the first.

    Packets are compared by a 64-bit BLAKE2b digest of their captured bytes,
    kept in a compact table that is a quarter to half full: memory is 16 to
    32 bytes per distinct packet.
    Two different packets share a digest with probability about n**2 / 2**65
    for n distinct packets (5e-8 for 1.4 million). In that case the later
    packet is dropped. `window_packets` compares only with the last N packets kept and
    `window_seconds` only with packets up to T seconds older, which bounds
    memory on long captures (like `editcap -D N` and `editcap -w T`).

    With `ignore_span_differences`, packets that differ only in 802.1Q/802.1ad
    tags, the IPv4 TTL and header checksum, the IPv6 hop limit and the
    Ethernet addresses count as duplicates. A SPAN session that mirrors two
    VLANs copies a routed packet twice: before the router and after it, where
    the router has decremented the TTL and rewritten both MAC addresses. Only
    Ethernet and raw IP linktypes are normalized this way.
    """

    name = "dedup"
    counter_names = ("packets", "duplicates_dropped", "distinct_digests")

    def __init__(
        self,
        *,
        window_packets: int | None = None,
        window_seconds: float | None = None,
        ignore_span_differences: bool = False,
    ) -> None:
        self.window_packets = window_packets
        self.window_seconds = window_seconds
        self.ignore_span_differences = ignore_span_differences

    def reset(self, path: str) -> None:
        super().reset(path)
        if self.window_packets is not None and self.window_packets < 1:
            raise ValueError(
                f"Deduplicate: window_packets must be a positive number of packets or None, "
                f"not {self.window_packets!r}"
            )
        if self.window_seconds is not None and self.window_seconds <= 0:
            raise ValueError(
                f"Deduplicate: window_seconds must be a positive number of seconds or None, "
                f"not {self.window_seconds!r}"
            )
        self._unbounded = self.window_packets is None and self.window_seconds is None
        self._digests = DigestSet()
        # With a window: the digests it holds, in arrival order, and their timestamps
        # (only for window_seconds). A digest enters the window only when it is not
        # in it already, so a set suffices. Two deques avoid a tuple per packet.
        self._seen: set[int] = set()
        self._window: deque[int] = deque()
        self._window_times: deque[int] = deque()
        self._window_ns = int(self.window_seconds * 1e9) if self.window_seconds is not None else None

    def process(self, packet: Packet) -> bytes | None:
        self.counters_["packets"] += 1
        data = packet.data
        key_bytes = (
            _span_normalized(data, packet.interface.linktype) if self.ignore_span_differences else data
        )
        digest = int.from_bytes(blake2b(key_bytes, digest_size=8).digest(), "little")

        if self._unbounded:
            if not self._digests.add(digest):
                self.counters_["duplicates_dropped"] += 1
                return None
            self.counters_["distinct_digests"] += 1
            return data

        now_ns = packet.timestamp_ns if self._window_ns is not None else 0
        self._expire(now_ns)
        if digest in self._seen:
            self.counters_["duplicates_dropped"] += 1
            return None
        self._seen.add(digest)
        self._window.append(digest)
        if self._window_ns is not None:
            self._window_times.append(now_ns)
        self.counters_["distinct_digests"] += 1
        return data

    def _expire(self, now_ns: int) -> None:
        window, times, seen = self._window, self._window_times, self._seen
        if self.window_packets is not None:
            while len(window) > self.window_packets:
                seen.discard(window.popleft())
                if times:
                    times.popleft()
        if self._window_ns is not None:
            while times and now_ns - times[0] > self._window_ns:
                times.popleft()
                seen.discard(window.popleft())


def _span_normalized(data: bytes, linktype: int) -> bytes:
    """Return `data` without MAC addresses and VLAN tags, with TTL/hop limit and IPv4 header checksum zeroed."""
    if linktype == LINKTYPE_ETHERNET:
        pos = 12
        while data[pos : pos + 2] in VLAN_TPIDS:
            pos += 4
        ethertype = data[pos : pos + 2]
        head = ethertype
        ip = data[pos + 2 :]
    elif linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        head = b""
        ethertype = b""
        ip = data
    else:
        return data

    version = ip[0] >> 4 if ip else 0
    if version == 4 and len(ip) >= 20 and ethertype in (b"", ETHERTYPE_IPV4):
        ip = ip[:8] + b"\0" + ip[9:10] + b"\0\0" + ip[12:]
    elif version == 6 and len(ip) >= 40 and ethertype in (b"", ETHERTYPE_IPV6):
        ip = ip[:7] + b"\0" + ip[8:]
    return head + ip
