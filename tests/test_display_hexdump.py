"""Hex dumps: kept bytes highlighted, TLS record headers marked, text escaped."""

from __future__ import annotations

import re

from pktmask_nb.hexdump import (
    KEPT_STYLE,
    TLS_TYPE_COLOURS,
    ZEROED_STYLE,
    RecordMark,
    hex_preview,
    hexdump_html,
    hexdump_text,
)

SPAN = re.compile(r'<span style="([^"]*)">([0-9a-f ]+)</span>')


def byte_styles(html: str) -> list[str]:
    """The style of each dumped byte, in order."""
    styles = []
    for style, text in SPAN.findall(html):
        styles += [style] * len(text.split())
    return styles


def test_hexdump_styles_kept_zeroed_headers():
    data = bytes([23, 3, 3, 0, 30]) + bytes(range(1, 31)) + bytes([21, 3, 3, 0, 2, 1, 0])
    records = [RecordMark(0, 23, 30), RecordMark(35, 21, 2)]
    html = hexdump_html(data, kept=[(0, 5), (35, 42)], records=records)

    styles = byte_styles(html)
    assert len(styles) == len(data)
    for index, style in enumerate(styles):
        kept = index < 5 or index >= 35
        assert style.startswith(KEPT_STYLE if kept else ZEROED_STYLE), index
        in_header = index < 5 or 35 <= index < 40
        assert ("font-weight:bold" in style) == in_header
    assert TLS_TYPE_COLOURS[23] in styles[0]
    assert TLS_TYPE_COLOURS[21] in styles[35]
    assert "application_data (23), 30 bytes" in html
    assert "alert (21), 2 bytes" in html


def test_hexdump_lines_and_escaping():
    data = b"<script>&amp;" + bytes(range(20))
    html = hexdump_html(data, kept=[(0, len(data))])
    assert "<script>" not in html
    assert "&lt;script&gt;&amp;amp;" in html
    lines = html.split("\n")
    assert lines[0].split(">", 1)[1].startswith("0000  ")
    assert lines[1].startswith("0010  ")
    assert lines[2].startswith("0020  ")


def test_hexdump_record_from_earlier_segment():
    html = hexdump_html(bytes(40), kept=[], records=[RecordMark(-3, 22, 20)])
    assert "handshake record from an earlier segment, ends at 22" in html
    styles = byte_styles(html)
    assert all("font-weight:bold" in style for style in styles[:2])
    assert "font-weight:bold" not in styles[2]


def test_hexdump_cut_at_max_bytes():
    html = hexdump_html(bytes(100), kept=[], max_bytes=32)
    assert len(byte_styles(html)) == 32
    assert "68 more bytes not shown" in html
    assert hexdump_html(b"", kept=[]).count("no payload") == 1

    text = hexdump_text(bytes(range(40)), max_bytes=32)
    assert text.splitlines()[0] == "0000  00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f  ................"
    assert text.splitlines()[-1] == "… 8 more bytes"


def test_hex_preview():
    assert hex_preview(b"\x16\x03\x01", max_bytes=8) == "160301"
    assert hex_preview(bytes(10), max_bytes=2) == "0000…(+8)"
