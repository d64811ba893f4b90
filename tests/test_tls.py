"""TLS record finding in sequence space, on synthetic segment lists."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pktmask_nb.seqspace import (
    SEQ_MODULUS,
    PendingBudget,
    SegmentOrderer,
    StreamTable,
    StreamVerdict,
    pack_flow,
    unpack_flow,
    unwrap_seq,
)
from pktmask_nb.tls import (
    ALERT,
    APPLICATION_DATA,
    CHANGE_CIPHER_SPEC,
    HANDSHAKE,
    HEARTBEAT,
    TlsRecord,
    TlsRecordFinder,
)

KEEP_DEFAULT = frozenset({CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, HEARTBEAT})


def tls_record(content_type: int, length: int, *, version: bytes = b"\x03\x03") -> bytes:
    body = bytes((content_type * 7 + i) % 251 + 1 for i in range(length))
    return bytes([content_type]) + version + length.to_bytes(2, "big") + body


def find_records(
    stream: bytes,
    segments: list[tuple[int, int]],
    *,
    keep_types: frozenset[int] = KEEP_DEFAULT,
    start: int | None = 0,
    **orderer_options: int,
) -> TlsRecordFinder:
    """Feed the segments [offset, offset + length) of `stream`, in list order."""
    finder = TlsRecordFinder(start, keep_types=keep_types)
    orderer = SegmentOrderer(finder, start=start, **orderer_options)
    for offset, length in segments:
        orderer.add(offset, stream[offset : offset + length])
    orderer.finish()
    return finder


def spans(finder: TlsRecordFinder) -> list[tuple[int, int]]:
    return list(zip(finder.kept.starts, finder.kept.ends, strict=True))


def expected_spans(records: list[tuple[int, int]], keep_types: frozenset[int]):
    """Keep spans computed straight from a list of (content type, length)."""
    result: list[tuple[int, int]] = []
    offset = 0
    for content_type, length in records:
        end = offset + 5 + (length if content_type in keep_types else 0)
        if result and result[-1][1] == offset:
            result[-1] = (result[-1][0], end)
        else:
            result.append((offset, end))
        offset += 5 + length
    return result


def test_record_over_three_segments_with_retransmitted_middle():
    stream = tls_record(APPLICATION_DATA, 3000) + tls_record(ALERT, 2)
    segments = [(0, 1000), (1000, 1000), (1000, 1000), (2000, 1012)]

    finder = find_records(stream, segments)

    assert finder.records() == [TlsRecord(0, 23, 3000), TlsRecord(3005, 21, 2)]
    assert spans(finder) == [(0, 5), (3005, 3012)]
    assert finder.verdict is StreamVerdict.COMPLETE


def test_two_records_in_one_segment():
    stream = tls_record(HANDSHAKE, 40) + tls_record(APPLICATION_DATA, 30)

    finder = find_records(stream, [(0, len(stream))])

    assert [(r.content_type, r.start, r.length) for r in finder.records()] == [
        (22, 0, 40),
        (23, 45, 30),
    ]
    assert spans(finder) == [(0, 50)]


@pytest.mark.parametrize("split", [1, 2, 3, 4])
def test_header_split_between_segments(split):
    stream = tls_record(HANDSHAKE, 10) + tls_record(APPLICATION_DATA, 20)
    cut = 15 + split

    finder = find_records(stream, [(0, cut), (cut, len(stream) - cut)])

    assert finder.records() == [TlsRecord(0, 22, 10), TlsRecord(15, 23, 20)]
    assert spans(finder) == [(0, 20)]


def test_out_of_order_segments_give_the_in_order_result():
    stream = b"".join(tls_record(t, n) for t, n in [(22, 300), (23, 900), (21, 2), (23, 50)])
    segments = [(i, 100) for i in range(0, len(stream), 100)]
    in_order = spans(find_records(stream, segments))

    shuffled = segments[:]
    random.Random(7).shuffle(shuffled)

    assert spans(find_records(stream, shuffled)) == in_order


def test_lost_segment_inside_a_record_body_keeps_trust():
    stream = tls_record(APPLICATION_DATA, 3000) + tls_record(HANDSHAKE, 10)
    segments = [(0, 1000), (2000, 1020)]

    finder = find_records(stream, segments)

    assert finder.verdict is StreamVerdict.COMPLETE
    assert spans(finder) == [(0, 5), (3005, 3020)]


def test_lost_segment_holding_a_header_zeroes_the_rest():
    stream = tls_record(HANDSHAKE, 95) + tls_record(HANDSHAKE, 95) + tls_record(ALERT, 2)
    segments = [(0, 100), (150, len(stream) - 150)]

    finder = find_records(stream, segments)

    assert finder.verdict is StreamVerdict.GAP
    assert finder.trusted_until == 100
    assert spans(finder) == [(0, 100)]


def test_header_cut_by_snaplen_zeroes_the_rest():
    stream = tls_record(APPLICATION_DATA, 98) + tls_record(ALERT, 2)
    # The first segment's capture ends 2 bytes into the second header.
    segments = [(0, 105), (107, 0), (110, 0)]
    finder = TlsRecordFinder(0, keep_types=KEEP_DEFAULT)
    orderer = SegmentOrderer(finder, start=0)
    orderer.add(0, stream[:105])
    orderer.add(107, stream[107:])
    orderer.finish()

    assert segments
    assert finder.verdict is StreamVerdict.GAP
    assert finder.trusted_until == 103
    assert spans(finder) == [(0, 5)]


def test_missing_first_segment_after_syn_is_a_gap():
    stream = tls_record(HANDSHAKE, 200)

    finder = find_records(stream, [(100, 105)])

    assert finder.verdict is StreamVerdict.GAP
    assert finder.trusted_until == 0
    assert spans(finder) == []


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x19\x03\x03\x00\x10",  # content type 25
        b"\x17\x02\x00\x00\x10",  # version major 2
        b"\x17\x03\x05\x00\x10",  # version 3.5
        b"\x17\x03\x03\x48\x01",  # length 2**14 + 2049
        b"GET /",
    ],
)
def test_garbage_header_falls_back_to_zeroing(garbage):
    stream = tls_record(HANDSHAKE, 20) + garbage + bytes(100)

    finder = find_records(stream, [(0, len(stream))])

    assert finder.verdict is StreamVerdict.UNRECOGNIZED
    assert finder.trusted_until == 25
    assert spans(finder) == [(0, 25)]


def test_largest_legal_record_is_accepted():
    stream = tls_record(APPLICATION_DATA, 2**14 + 2048) + tls_record(ALERT, 2)

    finder = find_records(stream, [(0, len(stream))])

    assert finder.verdict is StreamVerdict.COMPLETE
    assert len(finder) == 2


def test_keep_types_decide_which_bodies_are_kept():
    records = [(22, 30), (20, 1), (21, 2), (24, 19), (23, 40)]
    stream = b"".join(tls_record(t, n) for t, n in records)

    only_headers = find_records(stream, [(0, len(stream))], keep_types=frozenset())
    no_handshake = find_records(stream, [(0, len(stream))], keep_types=KEEP_DEFAULT - {HANDSHAKE})

    assert spans(only_headers) == expected_spans(records, frozenset())
    assert spans(no_handshake) == expected_spans(records, KEEP_DEFAULT - {HANDSHAKE})
    assert spans(no_handshake)[0] == (0, 5)


def test_full_out_of_order_buffer_turns_the_missing_bytes_into_a_hole():
    stream = tls_record(APPLICATION_DATA, 50) + tls_record(APPLICATION_DATA, 500)
    # Segment [40, 60) arrives last, after the buffer gave up waiting for it.
    segments = [(0, 40), (60, 100), (160, 100), (260, 100), (40, 20)]

    finder = find_records(stream, segments, max_pending_segments=2)

    assert finder.verdict is StreamVerdict.GAP
    assert finder.trusted_until == 55
    assert spans(finder) == [(0, 5)]


def test_stream_start_without_syn_is_the_first_segment():
    stream = bytes(1000) + tls_record(HANDSHAKE, 10)

    finder = find_records(stream, [(1000, 15), (0, 1000)], start=None)

    assert finder.records() == [TlsRecord(1000, 22, 10)]
    assert spans(finder) == [(1000, 1015)]


def test_bytes_fed_out_of_order_raise():
    finder = TlsRecordFinder(0, keep_types=KEEP_DEFAULT)
    finder.feed(0, tls_record(HANDSHAKE, 10))

    with pytest.raises(ValueError, match="expected 15"):
        finder.feed(20, tls_record(HANDSHAKE, 10))


def test_records_query_returns_the_records_overlapping_a_range():
    stream = b"".join(tls_record(t, n) for t, n in [(22, 10), (23, 10), (23, 10)])
    finder = find_records(stream, [(0, len(stream))])

    assert finder.records(16, 31) == [TlsRecord(15, 23, 10), TlsRecord(30, 23, 10)]
    assert finder.records(0, 15) == [TlsRecord(0, 22, 10)]
    assert finder.type_counts() == {"handshake": 1, "application_data": 2}


@pytest.mark.parametrize(
    ("seq", "base", "near", "expected"),
    [
        (1000, 1000, 0, 0),
        (5, SEQ_MODULUS - 10, 0, 15),
        (SEQ_MODULUS - 20, SEQ_MODULUS - 10, 0, -10),
        (100, 200, SEQ_MODULUS, SEQ_MODULUS - 100),
        (300, 200, 3 * SEQ_MODULUS + 50, 3 * SEQ_MODULUS + 100),
    ],
)
def test_unwrap_seq(seq, base, near, expected):
    assert unwrap_seq(seq, base=base, near=near) == expected


def test_stream_across_sequence_wraparound():
    isn = SEQ_MODULUS - 1500
    stream = tls_record(HANDSHAKE, 1000) + tls_record(APPLICATION_DATA, 2000)
    finder = TlsRecordFinder(0, keep_types=KEEP_DEFAULT)
    orderer = SegmentOrderer(finder, start=0)
    near = 0

    for offset in range(0, len(stream), 700):
        seq = (isn + 1 + offset) % SEQ_MODULUS
        unwrapped = unwrap_seq(seq, base=(isn + 1) % SEQ_MODULUS, near=near)
        near = max(near, unwrapped)
        orderer.add(unwrapped, stream[offset : offset + 700])
    orderer.finish()

    assert spans(finder) == [(0, 1010)]
    assert finder.records()[1] == TlsRecord(1005, 23, 2000)


record_lists = st.lists(
    st.tuples(st.sampled_from([20, 21, 22, 23, 24]), st.integers(0, 700)), min_size=1, max_size=12
)


@settings(max_examples=150, deadline=None)
@given(records=record_lists, data=st.data())
def test_any_segmentation_order_and_duplication_finds_the_same_records(records, data):
    stream = b"".join(tls_record(t, n) for t, n in records)
    cuts = sorted(data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=20)))
    bounds = [0, *cuts, len(stream)]
    segments = [(a, b - a) for a, b in zip(bounds, bounds[1:], strict=False)]
    # Retransmissions that overlap their neighbours.
    for _ in range(data.draw(st.integers(0, 5))):
        start = data.draw(st.integers(0, len(stream) - 1))
        segments.append((start, data.draw(st.integers(1, 900))))
    order = data.draw(st.permutations(segments))

    finder = find_records(stream, order)

    assert finder.verdict is StreamVerdict.COMPLETE
    assert [(r.content_type, r.length) for r in finder.records()] == records
    assert spans(finder) == expected_spans(records, KEEP_DEFAULT)


def test_shared_budget_bounds_the_bytes_waiting_in_all_directions():
    stream = tls_record(APPLICATION_DATA, 50) + tls_record(APPLICATION_DATA, 5000)
    budget = PendingBudget(limit=1000)
    finders = [TlsRecordFinder(0, keep_types=KEEP_DEFAULT) for _ in range(2)]
    orderers = [SegmentOrderer(finder, start=0, budget=budget) for finder in finders]

    for orderer in orderers:
        orderer.add(0, stream[:40])
        for offset in range(100, 1000, 100):
            orderer.add(offset, stream[offset : offset + 100])

    assert budget.used <= 1000
    assert finders[0].verdict is StreamVerdict.COMPLETE
    assert finders[1].verdict is StreamVerdict.GAP
    assert finders[1].trusted_until == 55


@settings(max_examples=200, deadline=None)
@given(
    isn=st.integers(0, SEQ_MODULUS - 1),
    steps=st.lists(
        st.one_of(st.integers(-70_000, 1500), st.integers(1 << 28, 1 << 30)), min_size=1, max_size=40
    ),
    lengths=st.lists(st.integers(0, 1500), min_size=40, max_size=40),
)
def test_stream_table_unwraps_like_unwrap_seq(isn, steps, lengths):
    """Offsets from `locate`, across wraparounds and with old retransmissions, follow unwrap_seq."""
    table = StreamTable()
    flow = pack_flow((bytes(4), bytes((1, 2, 3, 4)), 40000, 443))
    table.locate(flow, isn, True, 0, create=True)
    near = 0
    position = 0
    for step, length in zip(steps, lengths, strict=False):
        position = max(0, position + step)
        seq = (isn + 1 + position) % SEQ_MODULUS
        stream, offset = table.locate(flow, seq, False, length, create=True)

        assert offset == unwrap_seq(seq, base=(isn + 1) % SEQ_MODULUS, near=near)
        assert stream.base == (isn + 1) % SEQ_MODULUS
        if length:
            near = max(near, offset)


def test_second_pass_walks_the_same_streams():
    table = StreamTable()
    flow = pack_flow((bytes(4), bytes((1, 2, 3, 4)), 40000, 443))
    segments = [(1000, True, 0), (1001, False, 100), (5000, True, 0), (5001, False, 10), (5011, False, 50)]
    first = [table.locate(flow, seq, syn, length, create=True) for seq, syn, length in segments]
    table.rewind()
    second = [table.locate(flow, seq, syn, length) for seq, syn, length in segments]

    assert second == first
    assert [offset for _, offset in first] == [0, 0, 0, 0, 10]
    assert len(table.streams_of(flow)) == 2
    with pytest.raises(LookupError):
        table.locate(flow, 9000, True, 0)


@pytest.mark.parametrize("size", [4, 16])
def test_packed_flow_round_trip(size):
    flow = (bytes(range(size)), bytes(range(100, 100 + size)), 1, 65535)
    assert unpack_flow(pack_flow(flow)) == flow
    assert len(pack_flow(flow)) == 2 * size + 4
