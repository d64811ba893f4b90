"""The packet explorer: pick a flow and a packet, see its payload before and after, side by side.

`explore(result)` returns an ipywidgets view: a flow Dropdown, a packet
IntSlider, the packet's facts, and two hex dumps (input and output) with the
kept bytes highlighted and the TLS records named. Only standard widgets
(HTML, Dropdown, IntSlider, HBox, VBox) are used, with no custom JavaScript,
so it renders in JupyterLab, Voilà and VS Code.

Without ipywidgets, or outside a Jupyter kernel, `explore` returns a
`StaticExplorer` instead, which displays one packet as static HTML (choose it
with `select(frame)`), after one warning.
"""

from __future__ import annotations

import html
import logging
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from pktmask_nb.hexdump import RecordMark, hexdump_html, hexdump_text, legend_html
from pktmask_nb.packetview import PacketView, iter_packet_views
from pktmask_nb.views import FrameRange, flow_matches, frame_bounds

if TYPE_CHECKING:
    from pktmask_nb.result import RunResult

logger = logging.getLogger(__name__)

ALL_FLOWS = "all flows"
OTHER_PACKETS = "packets without TCP or UDP"
TCP_FLAG_NAMES = "FIN SYN RST PSH ACK URG ECE CWR NS".split()
_warned_static = False


@dataclass(frozen=True, slots=True)
class ExplorerPacket:
    """One packet as the explorer shows it: its facts and the first bytes of its payload."""

    frame: int
    conversation: str | None
    facts: dict[str, Any]
    payload: bytes
    payload_after: bytes | None
    payload_len: int
    kept: list[tuple[int, int]] | None
    records: list[RecordMark]


def collect_packets(
    result: RunResult, *, flow: str | None, frames: FrameRange | None, limit: int, max_bytes: int
) -> list[ExplorerPacket]:
    """Read up to `limit` packets (filters as in `RunResult.payloads`), keeping `max_bytes` of each payload."""
    first, last = frame_bounds(frames)
    packets = []
    for view in iter_packet_views(result, first_frame=first, last_frame=last):
        if flow is not None and not flow_matches(view, flow):
            continue
        packets.append(
            ExplorerPacket(
                frame=view.frame,
                conversation=None if view.flow is None else f"{view.flow.protocol} {view.flow.conversation}",
                facts=packet_facts(view),
                payload=view.payload[:max_bytes],
                payload_after=None if view.payload_after is None else view.payload_after[:max_bytes],
                payload_len=len(view.payload),
                kept=view.kept,
                records=view.records,
            )
        )
        if len(packets) >= limit:
            break
    logger.debug("explorer: %d packets from %s", len(packets), result.input_path)
    return packets


def packet_facts(view: PacketView) -> dict[str, Any]:
    """Return the facts shown above a packet's hex dumps, by name."""
    facts: dict[str, Any] = {
        "input frame": view.frame,
        "output frame": view.out_frame or "dropped",
        "time (UTC)": _time_text(view.timestamp_ns),
        "protocol": view.protocol,
        "caplen / wire length": f"{view.caplen} / {view.wire_len}",
    }
    if view.flow is not None:
        facts["flow (input)"] = view.flow.text
        facts["direction"] = view.flow.direction
    if view.out_flow is not None:
        facts["flow (output)"] = view.out_flow.text
    if view.seq is not None:
        facts["seq / flags"] = f"{view.seq} / {tcp_flags_text(view.tcp_flags)}"
    facts["payload bytes"] = len(view.payload)
    facts["kept / zeroed"] = "unknown" if view.kept is None else f"{view.kept_bytes} / {view.zeroed_bytes}"
    if view.records:
        facts["TLS records"] = ", ".join(f"{r.type_name} ({r.length} bytes)" for r in view.records)
    return facts


def tcp_flags_text(flags: int | None) -> str:
    if not flags:
        return "none"
    return ",".join(name for bit, name in enumerate(TCP_FLAG_NAMES) if flags & (1 << bit))


def facts_html(packet: ExplorerPacket) -> str:
    rows = "".join(
        f'<tr><th style="text-align:left;padding:1px 8px">{html.escape(name)}</th>'
        f'<td style="text-align:left;padding:1px 8px">{html.escape(str(value))}</td></tr>'
        for name, value in packet.facts.items()
    )
    return f'<table style="font-size:12px;border-collapse:collapse">{rows}</table>'


def before_html(packet: ExplorerPacket) -> str:
    """Return the hex dump of the packet's input payload, kept bytes and TLS records marked."""
    title = f"before: input frame {packet.frame}"
    dump = hexdump_html(packet.payload, kept=packet.kept, records=packet.records, title=title)
    return _scroll_box(dump + _cut_note(packet, packet.payload))


def after_html(packet: ExplorerPacket) -> str:
    """Return the hex dump of the packet's output payload, or a note that the run dropped it."""
    if packet.payload_after is None:
        return f"<b>after</b><br><i>input frame {packet.frame} was dropped by the run</i>"
    title = f"after: output frame {packet.facts['output frame']}"
    dump = hexdump_html(packet.payload_after, kept=packet.kept, records=packet.records, title=title)
    return _scroll_box(dump + _cut_note(packet, packet.payload_after))


def _scroll_box(content: str) -> str:
    return f'<div style="max-height:520px;overflow:auto">{content}</div>'


def _cut_note(packet: ExplorerPacket, shown: bytes) -> str:
    if packet.payload_len <= len(shown):
        return ""
    return f"<i>… {packet.payload_len - len(shown)} more payload bytes not loaded</i>"


def explore(
    result: RunResult,
    *,
    flow: str | None = None,
    frames: FrameRange | None = None,
    limit: int = 500,
    max_bytes: int = 2048,
    static: bool = False,
) -> Any:
    """Return the explorer widget over the first `limit` packets (filters as in `RunResult.payloads`).

    `max_bytes` caps the payload bytes dumped per packet. With `static`, or
    when ipywidgets or a kernel is missing, returns a `StaticExplorer`.
    Raises ValueError when no packet matches.
    """
    packets = collect_packets(result, flow=flow, frames=frames, limit=limit, max_bytes=max_bytes)
    if not packets:
        raise ValueError(f"no packet of {result.input_path.name} matches flow={flow!r}, frames={frames!r}")
    if static or not _widgets_usable():
        return StaticExplorer(packets)
    from pktmask_nb.explorer_widget import ExplorerWidget

    return ExplorerWidget(packets)


def _widgets_usable() -> bool:
    """Return True when ipywidgets imports and a Jupyter kernel runs; warn once otherwise."""
    global _warned_static
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        reason = "ipywidgets is not installed"
    else:
        shell = get_ipython()
        if shell is not None and "IPKernelApp" in shell.config:
            return True
        reason = "no Jupyter kernel is running"
    if not _warned_static:
        _warned_static = True
        warnings.warn(f"{reason}: the explorer shows static HTML instead of widgets", stacklevel=4)
    return False


class StaticExplorer:
    """The explorer as static HTML: one packet at a time, chosen with `select(frame)`.

    `packets` is a DataFrame of the loaded packets' facts.
    """

    def __init__(self, packets: list[ExplorerPacket]) -> None:
        self._packets = packets
        self._current = packets[0]

    @property
    def packets(self) -> pd.DataFrame:
        return pd.DataFrame([packet.facts for packet in self._packets])

    def select(self, frame: int) -> StaticExplorer:
        """Show input frame `frame` from now on; return self. Raises KeyError for a frame not loaded."""
        for packet in self._packets:
            if packet.frame == frame:
                self._current = packet
                return self
        loaded = f"{self._packets[0].frame} to {self._packets[-1].frame}"
        raise KeyError(f"frame {frame} is not among the loaded packets (frames {loaded})")

    def _repr_html_(self) -> str:
        packet = self._current
        return (
            f'<div class="pktmask-explorer"><b>Packet explorer</b> ({len(self._packets)} packets loaded; '
            f"showing input frame {packet.frame})"
            f"{facts_html(packet)}{legend_html()}"
            f'<table><tr><td style="vertical-align:top">{before_html(packet)}</td>'
            f'<td style="vertical-align:top">{after_html(packet)}</td></tr></table></div>'
        )

    def __repr__(self) -> str:
        packet = self._current
        facts = "\n".join(f"  {name}: {value}" for name, value in packet.facts.items())
        after = "dropped" if packet.payload_after is None else hexdump_text(packet.payload_after)
        return (
            f"StaticExplorer: {len(self._packets)} packets loaded, input frame {packet.frame}\n{facts}\n"
            f"before:\n{hexdump_text(packet.payload)}\nafter:\n{after}"
        )


def _time_text(timestamp_ns: int) -> str:
    if timestamp_ns > 2**63 - 1:
        return f"{timestamp_ns / 1e9:.6f} s after the epoch"
    return str(pd.Timestamp(timestamp_ns, unit="ns", tz="UTC"))
