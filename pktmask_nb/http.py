"""HTTP/1.x message heads in one direction of a TCP connection, found in sequence space.

`HttpHeadFinder` keeps the start line and header fields of every HTTP/1.0 or
1.1 message, up to and including the blank line, and zeroes message bodies.
It follows the message framing of RFC 9112 section 6: Content-Length,
chunked transfer coding, and "until the connection closes". Bodies are
skipped without being stored; only a message head is buffered while it spans
segments, up to `MAX_HEAD_LEN` bytes.

Trust ends for good (everything after is zeroed) at a message head that is
not strict HTTP/1.x, at framing that cannot be followed (conflicting
Content-Length, a bad chunk size) and at bytes missing from the capture
where a head or chunk-size line would be. A response without
Content-Length or chunked coding, and a 101 Switching Protocols, run until
the connection closes: the rest of the stream is zeroed.
"""

from __future__ import annotations

import logging
import re
from enum import Enum

from pktmask_nb.seqspace import SpanList, StreamVerdict

logger = logging.getLogger(__name__)

MAX_HEAD_LEN = 64 * 1024
MAX_CHUNK_LINE_LEN = 1024

_REQUEST_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ [\x21-\x7e\x80-\xff]+ HTTP/1\.[01]")
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: [\t\x20-\x7e\x80-\xff]*)?")
_FIELD_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[\t\x20-\x7e\x80-\xff]*")
_CONTINUATION_LINE = re.compile(rb"[\t ][\t\x20-\x7e\x80-\xff]*")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[\t ]*(?:;[\t\x20-\x7e\x80-\xff]*)?")


class _State(Enum):
    HEAD = "head"
    BODY = "body"
    CHUNK_SIZE = "chunk_size"
    CHUNK_DATA = "chunk_data"
    TRAILER = "trailer"
    UNTIL_CLOSE = "until_close"


class HttpError(ValueError):
    """Bytes that are not the HTTP/1.x message head or framing expected at that point."""


class HttpHeadFinder:
    """Find the message heads of one direction's HTTP/1.x byte stream, fed in order.

    Implements the `StreamParser` protocol of `pktmask_nb.seqspace`. After
    `finish`, `kept` contains the stream offsets of every complete message head,
    `messages` counts them, and `verdict` and `trusted_until` say where trust
    ended.
    """

    def __init__(self) -> None:
        self.kept = SpanList()
        self.messages = 0
        self.verdict = StreamVerdict.COMPLETE
        self.trusted_until: int | None = None
        self._state = _State.HEAD
        self._start: int | None = None
        self._buffer = bytearray()
        self._remaining = 0

    @property
    def done(self) -> bool:
        return self.trusted_until is not None or self._state is _State.UNTIL_CLOSE

    def feed(self, offset: int, data: bytes) -> None:
        pos = 0
        while pos < len(data) and not self.done:
            if self._state in (_State.BODY, _State.CHUNK_DATA):
                pos = self._skip_body(data, pos)
            elif self._state is _State.HEAD:
                pos = self._collect_head(offset, data, pos)
            else:
                pos = self._collect_line(offset, data, pos)

    def skip(self, start: int, end: int) -> None:
        if self.done:
            return
        in_body = self._state in (_State.BODY, _State.CHUNK_DATA)
        if in_body and end - start <= self._remaining:
            self._remaining -= end - start
            if self._remaining == 0:
                self._state = _State.CHUNK_SIZE if self._state is _State.CHUNK_DATA else _State.HEAD
                self._start = end
            return
        self._stop(self._start if self._buffer else start, StreamVerdict.GAP)

    def finish(self, end: int) -> None:
        # A head cut off by the end of the capture is not kept.
        self._buffer.clear()

    # -- steps of feed ------------------------------------------------------

    def _skip_body(self, data: bytes, pos: int) -> int:
        step = min(self._remaining, len(data) - pos)
        self._remaining -= step
        if self._remaining == 0:
            self._state = _State.CHUNK_SIZE if self._state is _State.CHUNK_DATA else _State.HEAD
            self._start = None
        return pos + step

    def _collect_head(self, offset: int, data: bytes, pos: int) -> int:
        """Buffer head bytes until the blank line, then keep the head and set up the body."""
        if not self._buffer:
            self._start = offset + pos
        buffered = len(self._buffer)
        self._buffer += data[pos : pos + MAX_HEAD_LEN + 4 - buffered]
        blank_line = self._buffer.find(b"\r\n\r\n", max(0, buffered - 3))
        if blank_line < 0:
            if len(self._buffer) > MAX_HEAD_LEN:
                self._stop(self._start, StreamVerdict.UNRECOGNIZED)
            return len(data)

        head_len = blank_line + 4
        used = head_len - buffered
        head = bytes(self._buffer[:head_len])
        self._buffer.clear()
        try:
            self._start_body(head)
        except HttpError as error:
            logger.debug("HTTP head at offset %d rejected: %s", self._start, error)
            self._stop(self._start, StreamVerdict.UNRECOGNIZED)
            return len(data)
        self.kept.add(self._start, self._start + head_len)
        self.messages += 1
        return pos + used

    def _collect_line(self, offset: int, data: bytes, pos: int) -> int:
        """Buffer a chunk-size or trailer line, then act on it."""
        if not self._buffer:
            self._start = offset + pos
        end_of_line = data.find(b"\n", pos)
        stop = len(data) if end_of_line < 0 else end_of_line + 1
        self._buffer += data[pos:stop]
        if len(self._buffer) > MAX_CHUNK_LINE_LEN:
            self._stop(self._start, StreamVerdict.UNRECOGNIZED)
            return len(data)
        if end_of_line < 0:
            return stop

        line = bytes(self._buffer)
        self._buffer.clear()
        try:
            self._end_line(line)
        except HttpError as error:
            logger.debug("HTTP chunk framing at offset %d rejected: %s", self._start, error)
            self._stop(self._start, StreamVerdict.UNRECOGNIZED)
            return len(data)
        return stop

    def _end_line(self, line: bytes) -> None:
        if not line.endswith(b"\r\n"):
            raise HttpError("line not ended by CRLF")
        text = line[:-2]
        if self._state is _State.TRAILER:
            # Trailer fields are zeroed like the body; a blank line ends the message.
            if not text:
                self._state = _State.HEAD
            elif not _FIELD_LINE.fullmatch(text):
                raise HttpError("malformed trailer field")
            return
        match = _CHUNK_SIZE.fullmatch(text)
        if match is None:
            raise HttpError(f"malformed chunk size line {text[:40]!r}")
        size = int(match.group(1), 16)
        if size == 0:
            self._state = _State.TRAILER
        else:
            self._state = _State.CHUNK_DATA
            self._remaining = size + 2

    def _start_body(self, head: bytes) -> None:
        """Check a message head and set the state for its body (RFC 9112 section 6.3)."""
        lines = head[:-4].split(b"\r\n")
        start_line = lines[0]
        status = None
        status_match = _STATUS_LINE.fullmatch(start_line)
        if status_match is not None:
            status = int(status_match.group(1))
        elif not _REQUEST_LINE.fullmatch(start_line):
            raise HttpError(f"not an HTTP/1.x start line: {start_line[:40]!r}")

        fields = _parse_fields(lines[1:])
        transfer_coding = fields.get(b"transfer-encoding")
        content_length = fields.get(b"content-length")

        if status == 101:
            self._state = _State.UNTIL_CLOSE
        elif status is not None and (status < 200 or status in (204, 304)):
            # NOTE: a response to HEAD has no body either, but pairing requests
            # with responses is not done: a Content-Length on it desynchronizes
            # the framing, and the next head then fails the check (fail closed).
            self._state = _State.HEAD
        elif transfer_coding is not None:
            if transfer_coding.rsplit(b",", 1)[-1].strip().lower() == b"chunked":
                self._state = _State.CHUNK_SIZE
            elif status is not None:
                self._state = _State.UNTIL_CLOSE
            else:
                raise HttpError("request with a transfer coding other than chunked")
        elif content_length is not None:
            self._remaining = _parse_content_length(content_length)
            self._state = _State.BODY if self._remaining else _State.HEAD
        else:
            self._state = _State.UNTIL_CLOSE if status is not None else _State.HEAD

    def _stop(self, at: int | None, verdict: StreamVerdict) -> None:
        self.trusted_until = at
        self.verdict = verdict
        self._buffer.clear()


def looks_like_http(first_bytes: bytes) -> bool:
    """Return True when a stream's first bytes can start an HTTP/1.x message."""
    token = first_bytes.split(b" ", 1)[0]
    return first_bytes.startswith(b"HTTP/1.") or (bool(token) and token.isalpha() and token.isupper())


def _parse_fields(lines: list[bytes]) -> dict[bytes, bytes]:
    """Return the framing fields by lower-case name; raise HttpError on a malformed line."""
    fields: dict[bytes, bytes] = {}
    for line in lines:
        if _CONTINUATION_LINE.fullmatch(line):
            continue
        match = _FIELD_LINE.fullmatch(line)
        if match is None:
            raise HttpError(f"malformed header field {line[:40]!r}")
        name = match.group(1).lower()
        if name not in (b"content-length", b"transfer-encoding"):
            continue
        value = line[len(name) + 1 :].strip(b" \t")
        if name in fields:
            fields[name] = fields[name] + b"," + value
        else:
            fields[name] = value
    return fields


def _parse_content_length(value: bytes) -> int:
    lengths = {item.strip() for item in value.split(b",")}
    if len(lengths) != 1:
        raise HttpError(f"conflicting Content-Length values {value[:40]!r}")
    (length,) = lengths
    if not length.isdigit() or len(length) > 15:
        raise HttpError(f"bad Content-Length {length[:40]!r}")
    return int(length)
