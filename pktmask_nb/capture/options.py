"""pcapng options: the timestamp resolution, and which options a sanitized file keeps.

Options are (code: 2 bytes, length: 2 bytes, value padded to 4 bytes) and
end with opt_endofopt (code 0). Codes from the pcapng specification,
sections 4.2 (SHB), 4.2 (IDB) and 4.3 (EPB).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

OPT_ENDOFOPT = 0
OPT_COMMENT = 1
IF_TSRESOL = 9
IF_TSOFFSET = 14

# Options that are free text a person or a tool wrote, so may name hosts,
# users or addresses: dropped unless the user asks to keep comments.
FREE_TEXT = {
    "shb": {OPT_COMMENT, 2, 3, 4},  # comment, shb_hardware, shb_os, shb_userappl
    # comment, if_name, if_description, if_filter, if_os, if_hardware
    "idb": {OPT_COMMENT, 2, 3, 11, 12, 15},
    "epb": {OPT_COMMENT},
}
# Options always kept: they carry no private data and readers need them.
ALWAYS_KEPT = {
    "shb": set(),
    # if_speed, if_tsresol, if_tzone, if_fcslen, if_tsoffset, if_txspeed, if_rxspeed, if_iana_tzname
    "idb": {8, IF_TSRESOL, 10, 13, IF_TSOFFSET, 16, 17, 18},
    # epb_flags, epb_dropcount, epb_packetid, epb_queue
    "epb": {2, 4, 5, 6},
}
# Everything else is dropped: interface addresses (if_IPv4addr, if_IPv6addr,
# if_MACaddr, if_EUIaddr), epb_hash (wrong once a stage changes the packet),
# epb_verdict and custom options, whose content this package cannot inspect.


def iter_options(raw: bytes, order: str) -> Iterator[tuple[int, bytes, bytes]]:
    """Yield (code, value, encoded option with padding) until opt_endofopt or the end."""
    pos = 0
    while pos + 4 <= len(raw):
        code, length = struct.unpack_from(order + "HH", raw, pos)
        if code == OPT_ENDOFOPT:
            return
        end = pos + 4 + length + (-length % 4)
        if end > len(raw):
            return
        yield code, raw[pos + 4 : pos + 4 + length], raw[pos:end]
        pos = end


def filter_options(raw: bytes, order: str, block: str, *, keep_comments: bool) -> bytes:
    """Return the options of a block of kind "shb", "idb" or "epb" that a sanitized file keeps.

    The result ends with opt_endofopt, or is empty when no option is kept.
    """
    kept_codes = ALWAYS_KEPT[block] | (FREE_TEXT[block] if keep_comments else set())
    kept = [encoded for code, _, encoded in iter_options(raw, order) if code in kept_codes]
    if not kept:
        return b""
    return b"".join(kept) + struct.pack(order + "HH", OPT_ENDOFOPT, 0)


def interface_resolution(raw: bytes, order: str) -> tuple[int, int]:
    """Return (ticks per second, if_tsoffset in seconds) from an IDB's options.

    if_tsresol: the low 7 bits are an exponent, of 10 when the top bit is 0 and
    of 2 when it is 1. Without the option the resolution is microseconds.
    """
    ticks = 1_000_000
    offset = 0
    for code, value, _ in iter_options(raw, order):
        if code == IF_TSRESOL and value:
            exponent = value[0] & 0x7F
            ticks = 2**exponent if value[0] & 0x80 else 10**exponent
        elif code == IF_TSOFFSET and len(value) == 8:
            offset = struct.unpack(order + "q", value)[0]
    return ticks, offset
