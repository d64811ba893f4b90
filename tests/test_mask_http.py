"""HTTP/1.x message heads found in sequence space (keep_http_headers)."""

from __future__ import annotations

import pytest

from pktmask_nb.http import MAX_HEAD_LEN, HttpHeadFinder, looks_like_http
from pktmask_nb.seqspace import SegmentOrderer, StreamVerdict


def find_heads(stream: bytes, segments: list[tuple[int, int]]) -> HttpHeadFinder:
    finder = HttpHeadFinder()
    orderer = SegmentOrderer(finder, start=0)
    for offset, length in segments:
        orderer.add(offset, stream[offset : offset + length])
    orderer.finish()
    return finder


def spans(finder: HttpHeadFinder) -> list[tuple[int, int]]:
    return list(zip(finder.kept.starts, finder.kept.ends, strict=True))


def every(stream: bytes, size: int) -> list[tuple[int, int]]:
    return [(i, size) for i in range(0, len(stream), size)]


REQUEST = b"GET /a HTTP/1.1\r\nHost: example.org\r\n\r\n"
RESPONSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nContent-Type: text/plain\r\n\r\n"


def test_pipelined_requests_split_in_small_segments():
    stream = REQUEST * 3

    finder = find_heads(stream, every(stream, 7))

    assert spans(finder) == [(0, len(stream))]
    assert finder.messages == 3
    assert finder.verdict is StreamVerdict.COMPLETE


def test_content_length_body_is_zeroed_and_next_head_kept():
    stream = RESPONSE_HEAD + b"0123456789" + RESPONSE_HEAD + b"abcdefghij"
    head = len(RESPONSE_HEAD)

    finder = find_heads(stream, every(stream, 13))

    assert spans(finder) == [(0, head), (head + 10, 2 * head + 10)]


def test_chunked_body_and_trailers_are_zeroed():
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = b"5\r\nhello\r\n1a;ext=1\r\n" + b"x" * 26 + b"\r\n0\r\nExpires: never\r\n\r\n"
    stream = chunked + body + RESPONSE_HEAD + b"0123456789"

    finder = find_heads(stream, every(stream, 9))

    start = len(chunked) + len(body)
    assert spans(finder) == [(0, len(chunked)), (start, start + len(RESPONSE_HEAD))]
    assert finder.messages == 2


@pytest.mark.parametrize("status", [b"204 No Content", b"304 Not Modified", b"100 Continue"])
def test_responses_without_body(status):
    stream = b"HTTP/1.1 " + status + b"\r\nContent-Length: 99\r\n\r\n" + RESPONSE_HEAD

    finder = find_heads(stream, [(0, len(stream))])

    assert finder.messages == 2
    assert spans(finder) == [(0, len(stream))]


def test_response_without_length_runs_until_close():
    stream = b"HTTP/1.0 200 OK\r\n\r\n" + REQUEST

    finder = find_heads(stream, [(0, len(stream))])

    assert spans(finder) == [(0, 19)]
    assert finder.done


@pytest.mark.parametrize(
    "bad",
    [
        b"HELLO world\r\n\r\n",
        b"GET /a HTTP/2.0\r\n\r\n",
        b"GET /a HTTP/1.1\r\nno colon here\r\n\r\n",
        b"POST /a HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"POST /a HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    ],
)
def test_malformed_head_stops_trust(bad):
    stream = REQUEST + bad + REQUEST

    finder = find_heads(stream, [(0, len(stream))])

    assert finder.verdict is StreamVerdict.UNRECOGNIZED
    assert finder.trusted_until == len(REQUEST)
    assert spans(finder) == [(0, len(REQUEST))]


def test_bad_chunk_size_stops_trust():
    stream = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n"

    finder = find_heads(stream, [(0, len(stream))])

    assert finder.verdict is StreamVerdict.UNRECOGNIZED


def test_hole_inside_a_body_keeps_trust():
    stream = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + bytes(1000) + RESPONSE_HEAD
    head = len(stream) - 1000 - len(RESPONSE_HEAD)

    finder = find_heads(stream, [(0, head + 100), (head + 600, len(stream))])

    assert finder.verdict is StreamVerdict.COMPLETE
    assert spans(finder) == [(0, head), (head + 1000, len(stream))]


def test_hole_inside_a_head_is_a_gap():
    stream = REQUEST * 2

    finder = find_heads(stream, [(0, len(REQUEST) + 5), (len(REQUEST) + 10, len(REQUEST))])

    assert finder.verdict is StreamVerdict.GAP
    assert finder.trusted_until == len(REQUEST)
    assert spans(finder) == [(0, len(REQUEST))]


def test_endless_head_is_rejected():
    stream = b"GET /a HTTP/1.1\r\nX-Filler: " + b"a" * MAX_HEAD_LEN

    finder = find_heads(stream, every(stream, 1460))

    assert finder.verdict is StreamVerdict.UNRECOGNIZED
    assert spans(finder) == []


@pytest.mark.parametrize(
    ("first", "expected"),
    [
        (b"GET / HTTP/1.1", True),
        (b"HTTP/1.1 200 OK", True),
        (b"\x16\x03\x01\x02\x00", False),
        (b"ssh-2.0", False),
    ],
)
def test_looks_like_http(first, expected):
    assert looks_like_http(first) is expected
