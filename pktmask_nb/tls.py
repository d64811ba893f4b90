"""TLS record boundaries in one direction of a TCP connection, found in sequence space.

`TlsRecordFinder` reads only the 5-byte record headers (content type,
version, length) of an in-order byte stream and jumps from one header to the
next, so it stores no payload beyond a carry of at most 4 bytes when a header
is split between segments. It records every record as (start offset, content
type, length) and, for each record, the stream offsets to keep: the header
always, the body too when the content type is one the caller keeps.

Trust in the record boundaries ends for good at the first header that

* fails the plausibility check (content type 20 to 24, version 3.0 to 3.4,
  length at most 2**14 + 2048): the stream is not TLS, or not TLS any more;
* falls into bytes missing from the capture: the records after it cannot be
  located.

Everything from that offset on stays zeroed (fail closed).
"""

from __future__ import annotations

import bisect
import logging
import struct
from array import array
from collections import Counter
from dataclasses import dataclass

from pktmask_nb.seqspace import SpanList, StreamVerdict

logger = logging.getLogger(__name__)

HEADER_LEN = 5
MAX_RECORD_LEN = 2**14 + 2048

CHANGE_CIPHER_SPEC = 20
ALERT = 21
HANDSHAKE = 22
APPLICATION_DATA = 23
HEARTBEAT = 24
CONTENT_TYPE_NAMES = {
    CHANGE_CIPHER_SPEC: "change_cipher_spec",
    ALERT: "alert",
    HANDSHAKE: "handshake",
    APPLICATION_DATA: "application_data",
    HEARTBEAT: "heartbeat",
}

_RECORD_HEADER = struct.Struct(">BBBH")


@dataclass(frozen=True, slots=True)
class TlsRecord:
    """One TLS record: where its header starts in the stream, its content type and body length."""

    start: int
    content_type: int
    length: int

    @property
    def end(self) -> int:
        """Stream offset right after the record body."""
        return self.start + HEADER_LEN + self.length

    @property
    def type_name(self) -> str:
        return CONTENT_TYPE_NAMES[self.content_type]


def is_plausible_header(content_type: int, major: int, minor: int, length: int) -> bool:
    """Return True for a header that SSL 3.0 to TLS 1.3 could have sent."""
    return (
        CHANGE_CIPHER_SPEC <= content_type <= HEARTBEAT
        and major == 3
        and minor <= 4
        and length <= MAX_RECORD_LEN
    )


class TlsRecordFinder:
    """Find the TLS records of one direction's byte stream, fed in order.

    `start` is the stream offset of the first record header, by default the
    offset of the first bytes fed. `keep_types` are
    the content types whose records are kept whole; other records keep their
    header only. Implements the `StreamParser` protocol of
    `pktmask_nb.seqspace`. After `finish`, `kept` contains the stream offsets to
    keep, `verdict` and `trusted_until` say where trust ended, and
    `records()` lists what was found.
    """

    def __init__(self, start: int | None = None, *, keep_types: frozenset[int]) -> None:
        self.keep_types = keep_types
        self.kept = SpanList()
        self.verdict = StreamVerdict.COMPLETE
        # First stream offset that is zeroed because trust ended; None while trusted.
        self.trusted_until: int | None = None
        # True once trust ended: a plain attribute, as `SegmentOrderer` reads it for every segment.
        self.done = False
        self.stream_end = start
        self._next_header = start
        self._carry = b""
        self._starts = array("q")
        self._types = array("B")
        self._lengths = array("H")

    def feed(self, offset: int, data: bytes) -> None:
        if self.done:
            return
        if self._next_header is None:
            self._next_header = offset
        elif offset != self.stream_end:
            raise ValueError(f"bytes fed at offset {offset}, expected {self.stream_end}")
        self.stream_end = offset + len(data)
        pos = self._next_header - offset

        if self._carry:
            head = self._carry + data[: HEADER_LEN - len(self._carry)]
            if len(head) < HEADER_LEN:
                self._carry = head
                return
            self._carry = b""
            if not self._add_record(self._next_header, head, 0):
                return
            pos = self._next_header - offset

        size = len(data)
        while pos + HEADER_LEN <= size:
            if not self._add_record(offset + pos, data, pos):
                return
            pos = self._next_header - offset

        if pos < size:
            self._carry = data[pos:]

    def skip(self, start: int, end: int) -> None:
        if self.done:
            return
        if self._next_header is None:
            self._next_header = start
        self.stream_end = end
        if self._next_header < end:
            # The next header, or the rest of a split one, was never captured.
            self._stop(self._next_header, StreamVerdict.GAP)

    def finish(self, end: int) -> None:
        # NOTE: a header cut off by the end of the capture is no record; its
        # bytes stay zeroed and the verdict stays COMPLETE.
        self.stream_end = end
        self._carry = b""

    def _add_record(self, at: int, data: bytes, pos: int) -> bool:
        content_type, major, minor, length = _RECORD_HEADER.unpack_from(data, pos)
        if not is_plausible_header(content_type, major, minor, length):
            logger.debug(
                "implausible TLS header at offset %d: type %d version %d.%d length %d",
                at,
                content_type,
                major,
                minor,
                length,
            )
            self._stop(at, StreamVerdict.UNRECOGNIZED)
            return False

        self._starts.append(at)
        self._types.append(content_type)
        self._lengths.append(length)
        end = at + HEADER_LEN + length
        if content_type in self.keep_types:
            self.kept.add(at, end)
        else:
            self.kept.add(at, at + HEADER_LEN)
        self._next_header = end
        return True

    def _stop(self, at: int, verdict: StreamVerdict) -> None:
        self.trusted_until = at
        self.verdict = verdict
        self.done = True
        self._carry = b""

    # -- queries after the scan --------------------------------------------

    def __len__(self) -> int:
        return len(self._starts)

    def records(self, start: int | None = None, end: int | None = None) -> list[TlsRecord]:
        """Return the records that overlap stream offsets [start, end), all by default."""
        # Records are contiguous, so the one holding `start` is the last that starts at or before it.
        first = 0 if start is None else max(0, bisect.bisect_right(self._starts, start) - 1)
        found = []
        for index in range(first, len(self._starts)):
            record = TlsRecord(self._starts[index], self._types[index], self._lengths[index])
            if end is not None and record.start >= end:
                break
            if start is None or record.end > start:
                found.append(record)
        return found

    def type_counts(self) -> Counter[str]:
        """Return the number of records of each content type, by type name."""
        return Counter(CONTENT_TYPE_NAMES[t] for t in self._types)
