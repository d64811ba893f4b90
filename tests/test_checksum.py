"""Internet checksum and its incremental update (RFC 1071, RFC 1624)."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pktmask_nb.checksum import (
    adjust_checksum,
    fold,
    internet_checksum,
    ones_complement_sum,
    replacement_delta,
    swap_bytes,
    zeroing_delta,
)


def reference_checksum(data: bytes) -> int:
    """Straight RFC 1071: add 16-bit words with end-around carry, then complement."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def verifies(data: bytes) -> bool:
    """A buffer that includes its checksum sums to all ones (RFC 1071)."""
    return reference_checksum(data) == 0


def test_ipv4_header_example() -> None:
    header = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert internet_checksum(header) == 0xB861


def test_rfc1624_example() -> None:
    # RFC 1624 section 4: HC = 0xDD2F, m = 0x5555, m' = 0x3285 gives HC' = 0x0000.
    delta = replacement_delta(b"\x55\x55", b"\x32\x85")
    assert adjust_checksum(0xDD2F, delta) == 0x0000


def test_fold_end_around_carry() -> None:
    assert fold(0x1FFFE) == 0xFFFF
    assert fold(0x10000) == 0x0001
    assert fold(0x1234) == 0x1234


def test_swap_bytes() -> None:
    assert swap_bytes(0x1234) == 0x3412


def test_ones_complement_sum_zero_and_negative_zero() -> None:
    assert ones_complement_sum(bytes(8)) == 0
    assert ones_complement_sum(b"\xff\xff\x00\x00") == 0xFFFF
    assert ones_complement_sum(b"\x80\x00\x80\x00") == 0x0001


@settings(max_examples=300)
@given(data=st.binary(max_size=200))
def test_internet_checksum_matches_reference(data: bytes) -> None:
    assert internet_checksum(data) == reference_checksum(data)


@settings(max_examples=300)
@given(data=st.binary(min_size=1, max_size=41), odd=st.booleans())
def test_odd_alignment_matches_shifted_sum(data: bytes, odd: bool) -> None:
    shifted = (b"\x00" if odd else b"") + data
    assert ones_complement_sum(data, odd=odd) % 0xFFFF == (~reference_checksum(shifted) & 0xFFFF) % 0xFFFF


@st.composite
def buffers_with_edit(draw: st.DrawFn) -> tuple[bytearray, int, int, bytes]:
    """A buffer with a valid checksum at an even offset, and a replacement elsewhere in it."""
    size = draw(st.integers(8, 120))
    buffer = bytearray(draw(st.binary(min_size=size, max_size=size)))
    checksum_at = draw(st.integers(0, size // 2 - 1)) * 2
    buffer[checksum_at : checksum_at + 2] = b"\x00\x00"
    buffer[checksum_at : checksum_at + 2] = reference_checksum(bytes(buffer)).to_bytes(2)
    length = draw(st.integers(1, min(16, size)))
    start = draw(st.integers(0, size - length))
    edit_end = start + length
    if start < checksum_at + 2 and checksum_at < edit_end:
        start, edit_end = 0, 0  # the edit would overlap the checksum field: make it empty
    new = draw(st.binary(min_size=edit_end - start, max_size=edit_end - start))

    # Equation 3 yields 0x0000 where only 0xFFFF verifies when every other byte is zero,
    # which no IP, TCP, UDP or ICMP error header allows. Such buffers are left out.
    edited = buffer[:start] + new + buffer[edit_end:]
    assume(any(edited[:checksum_at]) or any(edited[checksum_at + 2 :]))
    return buffer, checksum_at, start, new


@settings(max_examples=400)
@given(case=buffers_with_edit())
def test_incremental_update_keeps_checksum_valid(case) -> None:
    buffer, checksum_at, start, new = case
    assert verifies(bytes(buffer))
    old = bytes(buffer[start : start + len(new)])
    buffer[start : start + len(new)] = new

    checksum = int.from_bytes(buffer[checksum_at : checksum_at + 2])
    updated = adjust_checksum(checksum, replacement_delta(old, new, odd=bool(start % 2)))
    buffer[checksum_at : checksum_at + 2] = updated.to_bytes(2)
    assert verifies(bytes(buffer))


@settings(max_examples=200)
@given(case=buffers_with_edit(), error=st.integers(1, 0xFFFE))
def test_incremental_update_keeps_wrong_checksum_wrong(case, error: int) -> None:
    buffer, checksum_at, start, new = case
    correct = int.from_bytes(buffer[checksum_at : checksum_at + 2])
    wrong = fold(correct + error)
    buffer[checksum_at : checksum_at + 2] = wrong.to_bytes(2)
    old = bytes(buffer[start : start + len(new)])
    buffer[start : start + len(new)] = new

    updated = adjust_checksum(wrong, replacement_delta(old, new, odd=bool(start % 2)))
    buffer[checksum_at : checksum_at + 2] = b"\x00\x00"
    recomputed = reference_checksum(bytes(buffer))
    # The stored value stays off from the right one by the same ones' complement amount.
    assert (updated - recomputed) % 0xFFFF == error % 0xFFFF


def test_odd_delta_is_byte_swapped_even_delta() -> None:
    old, new = b"\x12\x34\x56\x78", b"\x9a\xbc\xde\xf0"
    even = fold(replacement_delta(old, new))
    odd = fold(replacement_delta(old, new, odd=True))
    assert odd % 0xFFFF == swap_bytes(even) % 0xFFFF


@settings(max_examples=300)
@given(case=buffers_with_edit())
def test_zeroing_delta_keeps_checksum_valid(case) -> None:
    buffer, checksum_at, start, new = case
    end = start + len(new)
    old = bytes(buffer[start:end])
    buffer[start:end] = bytes(len(new))
    assume(any(buffer[:checksum_at]) or any(buffer[checksum_at + 2 :]))

    checksum = int.from_bytes(buffer[checksum_at : checksum_at + 2])
    buffer[checksum_at : checksum_at + 2] = adjust_checksum(
        checksum, zeroing_delta(old, odd=bool(start % 2))
    ).to_bytes(2)
    assert verifies(bytes(buffer))


@settings(max_examples=300)
@given(old=st.binary(max_size=64), odd=st.booleans(), checksum=st.integers(0, 0xFFFF))
def test_zeroing_delta_updates_like_replacement_delta(old: bytes, odd: bool, checksum: int) -> None:
    general = replacement_delta(old, bytes(len(old)), odd=odd)
    assert 0 <= zeroing_delta(old, odd=odd) < 0xFFFF
    assert adjust_checksum(checksum, zeroing_delta(old, odd=odd)) == adjust_checksum(checksum, general)
