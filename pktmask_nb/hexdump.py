"""Hex dumps of a payload, as HTML with kept bytes and TLS records marked, or as text.

A dump shows 16 bytes per line: the payload offset, the bytes in hex and
their printable ASCII. Kept bytes have a green background and zeroed bytes
are grey. The 5-byte header of each TLS record is bold and coloured by
content type, and the line where a record header starts names the record.
The HTML uses inline styles only (no classes, no scripts), so it renders the
same in JupyterLab, Voilà, VS Code and an ipywidgets `HTML` widget.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pktmask_nb.tls import CONTENT_TYPE_NAMES, HEADER_LEN

logger = logging.getLogger(__name__)

BYTES_PER_LINE = 16

KEPT_STYLE = "background:#d4f4d0"
ZEROED_STYLE = "background:#eeeeee;color:#8a8a8a"
UNKNOWN_STYLE = "background:#ffffff"
TLS_TYPE_COLOURS = {
    20: "#7b3fa0",  # change_cipher_spec
    21: "#c62828",  # alert
    22: "#1f5fbf",  # handshake
    23: "#b35c00",  # application_data
    24: "#6d4c41",  # heartbeat
}
PRE_STYLE = "font-family:monospace;font-size:12px;line-height:1.35;margin:0;white-space:pre"


@dataclass(frozen=True, slots=True)
class RecordMark:
    """A TLS record as seen from one payload: header offset relative to the payload's first byte.

    `offset` is negative when the record started in an earlier segment.
    `length` is the record body length from its header.
    """

    offset: int
    content_type: int
    length: int

    @property
    def end(self) -> int:
        return self.offset + HEADER_LEN + self.length

    @property
    def type_name(self) -> str:
        return CONTENT_TYPE_NAMES.get(self.content_type, str(self.content_type))


def hex_preview(data: bytes, *, max_bytes: int) -> str:
    """Return `data` as contiguous hex, cut after `max_bytes` bytes with '…' and the bytes left out."""
    if len(data) <= max_bytes:
        return data.hex()
    return f"{data[:max_bytes].hex()}…(+{len(data) - max_bytes})"


def hexdump_html(
    data: bytes,
    *,
    kept: Sequence[tuple[int, int]] | None,
    records: Sequence[RecordMark] = (),
    max_bytes: int = 2048,
    title: str = "",
) -> str:
    """Return an HTML `<pre>` hex dump of `data`.

    `kept` lists the [start, end) payload ranges that masking keeps; every
    other byte is shown as zeroed. With `kept` None (not known), bytes are
    not coloured. `records` are the TLS records that overlap
    the payload. Only the first `max_bytes` bytes are dumped, and a last line
    gives the number left out.
    """
    shown = data[:max_bytes]
    styles = _byte_styles(len(shown), kept, records)
    notes = _line_notes(len(shown), records)

    lines = []
    if title:
        lines.append(f"<b>{html.escape(title)}</b>")
    if not data:
        lines.append("<i>no payload</i>")
    for line_start in range(0, len(shown), BYTES_PER_LINE):
        chunk = shown[line_start : line_start + BYTES_PER_LINE]
        hex_part = _styled_runs(chunk, styles[line_start : line_start + len(chunk)])
        padding = "   " * (BYTES_PER_LINE - len(chunk)) + (" " if len(chunk) <= 8 else "")
        ascii_part = html.escape(_printable(chunk).ljust(BYTES_PER_LINE))
        note = notes.get(line_start // BYTES_PER_LINE, "")
        lines.append(f"{line_start:04x}  {hex_part}{padding}  {ascii_part}{note}")
    if len(data) > len(shown):
        lines.append(f"<i>… {len(data) - len(shown)} more bytes not shown</i>")
    return f'<pre style="{PRE_STYLE}">' + "\n".join(lines) + "</pre>"


def hexdump_text(data: bytes, *, max_bytes: int = 256) -> str:
    """Return a plain-text hex dump of the first `max_bytes` bytes of `data`."""
    shown = data[:max_bytes]
    lines = []
    for line_start in range(0, len(shown), BYTES_PER_LINE):
        chunk = shown[line_start : line_start + BYTES_PER_LINE]
        hex_part = chunk[:8].hex(" ") + "  " + chunk[8:].hex(" ")
        lines.append(f"{line_start:04x}  {hex_part:<48}  {_printable(chunk)}")
    if len(data) > len(shown):
        lines.append(f"… {len(data) - len(shown)} more bytes")
    return "\n".join(lines)


def legend_html() -> str:
    """Return one line explaining the colours of `hexdump_html`."""
    swatches = [
        f'<span style="{KEPT_STYLE}">&nbsp;kept&nbsp;</span>',
        f'<span style="{ZEROED_STYLE}">&nbsp;zeroed&nbsp;</span>',
    ]
    for content_type, name in CONTENT_TYPE_NAMES.items():
        colour = TLS_TYPE_COLOURS[content_type]
        swatches.append(f'<span style="color:{colour};font-weight:bold">{name} header</span>')
    return '<div style="font-size:12px">' + " · ".join(swatches) + "</div>"


def _byte_styles(
    size: int, kept: Sequence[tuple[int, int]] | None, records: Sequence[RecordMark]
) -> list[str]:
    """Return the inline style of each byte: kept or zeroed, plus bold colour in a record header."""
    is_kept = [False] * size
    for start, end in kept or ():
        for index in range(max(start, 0), min(end, size)):
            is_kept[index] = True

    header_colour = [""] * size
    for record in records:
        colour = TLS_TYPE_COLOURS.get(record.content_type, "#000000")
        for index in range(max(record.offset, 0), min(record.offset + HEADER_LEN, size)):
            header_colour[index] = colour

    styles = []
    for index in range(size):
        if kept is None:
            style = UNKNOWN_STYLE
        elif is_kept[index]:
            style = KEPT_STYLE
        else:
            style = ZEROED_STYLE
        if header_colour[index]:
            style += f";color:{header_colour[index]};font-weight:bold"
        styles.append(style)
    return styles


def _styled_runs(chunk: bytes, styles: list[str]) -> str:
    """Return the hex of `chunk` with one `<span>` per run of equally styled bytes.

    A run also ends at the middle of the line, so the wider gap after the
    eighth byte always falls between two spans.
    """
    parts = []
    run_start = 0
    for index in range(1, len(chunk) + 1):
        if index < len(chunk) and index != 8 and styles[index] == styles[run_start]:
            continue
        text = " ".join(f"{byte:02x}" for byte in chunk[run_start:index])
        parts.append(f'<span style="{styles[run_start]}">{text}</span>')
        if index < len(chunk):
            parts.append("  " if index == 8 else " ")
        run_start = index
    return "".join(parts)


def _line_notes(size: int, records: Sequence[RecordMark]) -> dict[int, str]:
    """Return, per line number, the HTML naming the records whose header starts on that line."""
    notes: dict[int, list[str]] = {}
    for record in records:
        if record.offset < 0:
            line = 0
            label = f"… {record.type_name} record from an earlier segment, ends at {record.end}"
        elif record.offset < size:
            line = record.offset // BYTES_PER_LINE
            label = f"▸ {record.type_name} ({record.content_type}), {record.length} bytes"
        else:
            continue
        colour = TLS_TYPE_COLOURS.get(record.content_type, "#000000")
        notes.setdefault(line, []).append(f'<span style="color:{colour}">{html.escape(label)}</span>')
    return {line: "  " + "; ".join(labels) for line, labels in notes.items()}


def _printable(chunk: bytes) -> str:
    return "".join(chr(byte) if 0x20 <= byte < 0x7F else "." for byte in chunk)
