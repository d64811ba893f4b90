"""The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

A stage that rewrites a few bytes under a checksum adjusts the checksum
instead of recomputing it: with HC the old checksum, m the old and m' the
new 16-bit words, RFC 1624 equation 3 gives HC' = ~(~HC + ~m + m'). The
update only needs the changed bytes, so it works on frames cut short by the
snaplen, and it keeps a wrong checksum wrong by the same amount. It is exact
unless every covered byte besides the checksum becomes zero (equation 3 then
gives 0x0000 where 0xFFFF verifies), which no IP, TCP, UDP or ICMP error
header allows.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def fold(value: int) -> int:
    """Fold a non-negative sum into 16 bits with end-around carry (ones' complement addition)."""
    while value > 0xFFFF:
        value = (value & 0xFFFF) + (value >> 16)
    return value


def ones_complement_sum(data: bytes, *, odd: bool = False) -> int:
    """Return the 16-bit ones' complement sum of `data` taken as big-endian words.

    Set `odd` when `data` starts at an odd offset from the start of the
    checksummed bytes: its first byte is then the low byte of a word. An odd
    length is padded with a zero byte, as RFC 1071 pads the last word.
    """
    if odd:
        data = b"\x00" + data
    if len(data) % 2:
        data = data + b"\x00"

    # 2**16 is 1 modulo 0xFFFF, so the words' sum and the whole number agree modulo 0xFFFF.
    # Ones' complement addition gives 0 only when every word is 0, and 0xFFFF otherwise.
    value = int.from_bytes(data)
    total = value % 0xFFFF
    if total == 0 and value:
        return 0xFFFF
    return total


def internet_checksum(data: bytes) -> int:
    """Return the RFC 1071 checksum of `data` (its checksum field set to zero)."""
    return ~ones_complement_sum(data) & 0xFFFF


def replacement_delta(old: bytes, new: bytes, *, odd: bool = False) -> int:
    """Return ~m + m' of RFC 1624 for replacing `old` by `new` (same length).

    Deltas of several replacements under one checksum add up (any
    non-negative int); `adjust_checksum` folds the total.
    """
    return (~ones_complement_sum(old, odd=odd) & 0xFFFF) + ones_complement_sum(new, odd=odd)


def zeroing_delta(old: bytes | memoryview, *, odd: bool = False) -> int:
    """Return the RFC 1624 delta of replacing `old` by as many zero bytes, in 0..0xFFFE.

    The result is congruent modulo 0xFFFF to `replacement_delta(old, zeros, odd=odd)`,
    which is all that `adjust_checksum` depends on, and costs one big-integer
    remainder. `odd` is as in `ones_complement_sum`.
    """
    residue = int.from_bytes(old) % 0xFFFF
    if (len(old) + odd) % 2:
        residue = residue * 256 % 0xFFFF  # the last byte is the high byte of its word
    return -residue % 0xFFFF


def swap_bytes(value: int) -> int:
    """Swap the bytes of a 16-bit value: moves a sum between even and odd word alignment (RFC 1071)."""
    return ((value & 0xFF) << 8) | (value >> 8)


def adjust_checksum(checksum: int, delta: int) -> int:
    """Return HC' = ~(~HC + delta) for a 16-bit checksum and a sum of replacement deltas.

    A delta of zero modulo 0xFFFF (the covered sum is unchanged) returns the
    checksum as it is, so that 0x0000 and 0xFFFF never swap for no reason.
    """
    if delta % 0xFFFF == 0:
        return checksum
    return ~fold((~checksum & 0xFFFF) + delta) & 0xFFFF
