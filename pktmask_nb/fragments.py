"""Transport checksums of fragmented IP datagrams, whose covered bytes span several frames.

The TCP, UDP or ICMP checksum of a fragmented datagram sits in its first
fragment, but covers the payload of every fragment. When masking zeroes the
payload of the other fragments, the first fragment's checksum must change
by the RFC 1624 delta of all those bytes, or it is wrong after reassembly.

`FragmentLedger` collects these deltas in the scan pass, per datagram, and
hands each first fragment its delta in the final pass, by frame number (the
first fragment may come before or after the others in the file). A
datagram is named by source, destination, protocol and identification
(IPv4 Identification, or IPv6 Fragment header Identification).

Fragment offsets are multiples of 8 bytes, so the word alignment of a
fragment's payload relative to the transport header is known without the
first fragment: every delta is kept at even alignment.
"""

from __future__ import annotations

import bisect
import logging
from array import array
from dataclasses import dataclass, field

from pktmask_nb.checksum import zeroing_delta
from pktmask_nb.dissection import Dissection, IPHeader

logger = logging.getLogger(__name__)

DatagramKey = tuple[bytes, bytes, int, int]
"""Source address, destination address, protocol, identification."""

# A fragment that arrives this long after the first fragment seen of its datagram starts a new
# datagram that reuses the identification. RFC 8200 section 4.5 abandons reassembly after 60 s.
REASSEMBLY_TIMEOUT_NS = 60 * 1_000_000_000
# At most this many datagrams are remembered, complete or not. Past that, the oldest one is
# forgotten as it is: its later fragments, if any, then start a datagram of their own.
MAX_DATAGRAMS = 16_384


@dataclass(slots=True)
class _Datagram:
    """The fragments seen so far of one datagram."""

    first_ns: int
    # fragment offset -> (captured payload length, delta of zeroing it): a fragment seen
    # again with the same length and delta is a duplicate and adds nothing.
    pieces: dict[int, tuple[int, int]] = field(default_factory=dict)
    # Indexes into the ledger's arrays of every copy of the first fragment.
    slots: list[int] = field(default_factory=list)
    delta: int = 0
    covered: int = 0
    total: int | None = None

    @property
    def complete(self) -> bool:
        return self.total is not None and self.covered >= self.total and 0 in self.pieces


class FragmentLedger:
    """The checksum deltas that zeroing the non-first fragments makes, per first fragment.

    Scan pass: call `add_fragment` for every fragment in capture order. Final
    pass: `delta(number)` is the delta to add to the transport checksum in
    the first fragment with that frame number, at even alignment relative to
    the transport header, or 0.

    A fragment seen again (same offset, length and bytes) is a duplicate,
    even after its datagram is complete. Any other fragment for the offset
    of a fragment already seen, or for a complete datagram, starts a new
    datagram that reuses the identification.

    Memory: 10 bytes per first fragment, kept until the end of the run, plus
    the datagrams remembered (at most `MAX_DATAGRAMS`, each a few
    hundred bytes).
    """

    def __init__(self) -> None:
        self._numbers = array("Q")
        self._deltas = array("H")
        self._datagrams: dict[DatagramKey, _Datagram] = {}
        self.datagrams = 0
        self.closed_incomplete = 0

    def add_fragment(
        self,
        key: DatagramKey,
        *,
        number: int,
        timestamp_ns: int,
        fragment_offset: int,
        payload: bytes | memoryview,
        more_fragments: bool,
        zeroed: bool,
    ) -> None:
        """Note one fragment: its frame number, time, offset in bytes and captured payload.

        Set `zeroed` when the final pass zeroes the whole payload of this
        (non-first) fragment. Fragments must come in capture order, so in
        increasing frame numbers.
        """
        delta = zeroing_delta(payload)
        piece = (len(payload), delta)
        datagram = self._datagram(key, timestamp_ns, fragment_offset, piece)

        if fragment_offset == 0:
            datagram.slots.append(len(self._numbers))
            self._numbers.append(number)
            self._deltas.append(datagram.delta)
        if datagram.pieces.get(fragment_offset) == piece:
            return  # a duplicate
        datagram.pieces[fragment_offset] = piece
        datagram.covered += len(payload)
        if zeroed and fragment_offset:
            self._add_delta(datagram, delta)
        if not more_fragments:
            datagram.total = fragment_offset + len(payload)

    def add_frame(self, data: bytes, fragment: IPHeader, *, number: int, timestamp_ns: int) -> None:
        """Note the fragment whose IP header `dissect` found in frame `data`; see `add_fragment`.

        The final pass zeroes the payload of every fragment but the first.
        """
        start, end = fragment_payload_span(fragment)
        self.add_fragment(
            datagram_key(data, fragment),
            number=number,
            timestamp_ns=timestamp_ns,
            fragment_offset=fragment.fragment_offset,
            payload=memoryview(data)[start:end],
            more_fragments=fragment.more_fragments,
            zeroed=fragment.fragment_offset != 0,
        )

    def delta(self, number: int) -> int:
        """Return the checksum delta for the first fragment with frame number `number`, or 0."""
        index = bisect.bisect_left(self._numbers, number)
        if index < len(self._numbers) and self._numbers[index] == number:
            return self._deltas[index]
        return 0

    def finish(self) -> None:
        """End the scan: forget the datagrams and log what was seen."""
        self.closed_incomplete += sum(not datagram.complete for datagram in self._datagrams.values())
        self._datagrams.clear()
        logger.debug(
            "%d fragmented datagrams, %d with fragments missing or past the timeout",
            self.datagrams,
            self.closed_incomplete,
        )

    def _datagram(
        self, key: DatagramKey, timestamp_ns: int, offset: int, piece: tuple[int, int]
    ) -> _Datagram:
        """Return the datagram this fragment belongs to, starting a new one when needed."""
        datagram = self._datagrams.get(key)
        if datagram is not None:
            seen = datagram.pieces.get(offset)
            duplicate = seen == piece
            reused = (seen is not None or datagram.complete) and not duplicate
            if reused or abs(timestamp_ns - datagram.first_ns) > REASSEMBLY_TIMEOUT_NS:
                self._forget(key)
                datagram = None
        if datagram is None:
            if len(self._datagrams) >= MAX_DATAGRAMS:
                self._forget(next(iter(self._datagrams)))
            datagram = self._datagrams[key] = _Datagram(timestamp_ns)
            self.datagrams += 1
        return datagram

    def _forget(self, key: DatagramKey) -> None:
        self.closed_incomplete += not self._datagrams.pop(key).complete

    def _add_delta(self, datagram: _Datagram, delta: int) -> None:
        datagram.delta = (datagram.delta + delta) % 0xFFFF
        for slot in datagram.slots:
            self._deltas[slot] = (self._deltas[slot] + delta) % 0xFFFF


def fragmented_header(dissection: Dissection) -> IPHeader | None:
    """Return the innermost IP header (not quoted in ICMP) that is a fragment, or None."""
    for ip in reversed(dissection.ip_headers):
        if not ip.quoted and ip.is_fragment:
            return ip
    return None


def fragment_payload_span(fragment: IPHeader) -> tuple[int, int]:
    """Return the frame offsets of a fragment's captured payload (for a first fragment, from the upper layer)."""
    start = fragment.offset + fragment.header_len
    return min(start, fragment.total_end), fragment.total_end


def datagram_key(data: bytes, fragment: IPHeader) -> DatagramKey:
    """Return (src, dst, protocol, identification) of a fragment; protocol 0 for IPv6.

    RFC 8200 section 4.5 names an IPv6 datagram by addresses and
    identification only, and the next header of a later fragment is not the
    upper-layer protocol when extension headers follow the Fragment header.
    """
    size = fragment.address_len
    src = data[fragment.src_offset : fragment.src_offset + size]
    dst = data[fragment.dst_offset : fragment.dst_offset + size]
    return src, dst, fragment.protocol if fragment.version == 4 else 0, fragment.identification


def first_fragment_deltas(ledger: FragmentLedger, number: int, dissection: Dissection) -> dict[int, int]:
    """Return checksum field offset -> delta for a first fragment, from the ledger's scan of the others.

    The delta goes to every checksum whose covered bytes start in the
    fragment's upper layer and run to the fragment's end, because those
    bytes continue in the later fragments. That is the transport checksum,
    and also an inner one when the datagram carries a tunnel. Other frames
    get an empty dict.
    """
    fragment = fragmented_header(dissection)
    if fragment is None or fragment.fragment_offset != 0:
        return {}
    delta = ledger.delta(number)
    if not delta:
        return {}
    upper = fragment.offset + fragment.header_len
    return {
        checksum.offset: delta * 256 % 0xFFFF if (checksum.start - upper) % 2 else delta
        for checksum in dissection.checksums
        if checksum.start >= upper and checksum.end == fragment.total_end
    }
