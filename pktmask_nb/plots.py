"""Matplotlib plots of a run: the masking map of one flow direction, per-stage bars, memory over time.

Each function draws on the Axes given as `ax` (a new figure otherwise) and
returns that Axes. The same plots are methods of `RunResult`
(`plot_masking_map`, `plot_stage_summary`, `plot_memory`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.patches import Patch

from pktmask_nb.display import summary_frame
from pktmask_nb.hexdump import TLS_TYPE_COLOURS
from pktmask_nb.maskreport import MaskedStream
from pktmask_nb.packetview import MaskQuery, iter_packet_views
from pktmask_nb.tls import CONTENT_TYPE_NAMES, TlsRecord

if TYPE_CHECKING:
    from pktmask_nb.result import RunResult

logger = logging.getLogger(__name__)

TCP_SYN = 0x02
KEPT_COLOUR = "#4caf50"
ZEROED_COLOUR = "#bdbdbd"
SEGMENT_COLOUR = "#5b7fa6"
RETRANSMISSION_COLOUR = "#e53935"
GAP_COLOUR = "#ffcdd2"
PHASE_COLOURS = ["#e3f2fd", "#fff3e0", "#e8f5e9", "#f3e5f5", "#fffde7"]


@dataclass(slots=True)
class MaskingMap:
    """What the masking map of one TCP flow direction shows, in stream offsets.

    `segments` are (offset, length, frame) of every captured segment with
    payload, in capture order; `retransmissions` are the segments that
    carried bytes an earlier segment had already carried; `gaps` are the
    [start, end) offsets no segment carried.
    """

    flow: str
    stream: MaskedStream
    segments: list[tuple[int, int, int]] = field(default_factory=list)
    retransmissions: list[tuple[int, int, int]] = field(default_factory=list)
    gaps: list[tuple[int, int]] = field(default_factory=list)


def masking_map(result: RunResult, flow: str, *, connection: int = 0) -> MaskingMap:
    """Collect the masking map of `flow`, one direction ('src:sport -> dst:dport', original or output addresses).

    `connection` picks among connections that reused the same addresses and
    ports (0 is the first). Reads the whole input once. Raises ValueError
    when the run had no masking stage or the flow has no TCP payload.
    """
    query = MaskQuery(result)
    if query.mask is None:
        raise ValueError("the masking map needs a run with a MaskPayloads stage")
    streams = None
    segments = []
    for view in iter_packet_views(result, query=query):
        label = view.flow
        if label is None or label.protocol != "TCP" or not view.payload:
            continue
        if flow not in (label.text, view.out_flow.text if view.out_flow else None):
            continue
        streams = streams or query.streams(label.key)
        located = query.locate(label.key, view.seq, syn=bool(view.tcp_flags & TCP_SYN))
        if located is not None and 0 <= connection < len(streams) and located[0] == streams[connection]:
            segments.append((located[1], len(view.payload), view.frame))
    if not streams or not 0 <= connection < len(streams):
        raise ValueError(f"no TCP payload of connection {connection} in flow {flow!r}; see result.flows()")

    chart = MaskingMap(flow, streams[connection], segments)
    _find_retransmissions_and_gaps(chart)
    logger.debug("masking map of %s: %d segments, %d gaps", flow, len(segments), len(chart.gaps))
    return chart


def _find_retransmissions_and_gaps(chart: MaskingMap) -> None:
    covered: list[tuple[int, int]] = []  # merged, sorted [start, end) spans carried so far
    for segment in chart.segments:
        offset, length, _frame = segment
        end = offset + length
        if any(start < end and offset < stop for start, stop in covered):
            chart.retransmissions.append(segment)
        covered = _merge([*covered, (offset, end)])
    position = 0
    for start, stop in covered:
        if start > position:
            chart.gaps.append((position, start))
        position = max(position, stop)


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, stop in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        else:
            merged.append((start, stop))
    return merged


def plot_masking_map(result: RunResult, flow: str, *, connection: int = 0, ax: Axes | None = None) -> Axes:
    """Draw one flow direction in sequence space: segments, TLS records by type, kept and zeroed bytes.

    Retransmitted segments are red, bytes missing from the capture are
    shaded, and a dashed line marks where masking stopped trusting the
    record boundaries. See `masking_map` for the arguments and errors.
    """
    chart = masking_map(result, flow, connection=connection)
    ax = ax if ax is not None else plt.subplots(figsize=(10, 3))[1]
    stream = chart.stream
    end = max([stream.end, *(offset + length for offset, length, _ in chart.segments)])

    ax.broken_barh(
        [(o, n) for o, n, _ in chart.segments],
        (2.6, 0.8),
        facecolors=SEGMENT_COLOUR,
        edgecolors="white",
        linewidth=0.5,
    )
    ax.broken_barh(
        [(o, n) for o, n, _ in chart.retransmissions],
        (2.6, 0.8),
        facecolors=RETRANSMISSION_COLOUR,
        edgecolors="white",
        linewidth=0.5,
    )

    records = stream.records()
    for content_type, colour in TLS_TYPE_COLOURS.items():
        spans = [(r.start, r.end - r.start) for r in records if r.content_type == content_type]
        ax.broken_barh(spans, (1.6, 0.8), facecolors=colour, edgecolors="white", linewidth=0.5)

    kept = stream.kept(0, end)
    ax.broken_barh([(0, end)], (0.6, 0.8), facecolors=ZEROED_COLOUR)
    ax.broken_barh([(a, b - a) for a, b in kept], (0.6, 0.8), facecolors=KEPT_COLOUR)
    for start, stop in chart.gaps:
        ax.axvspan(start, stop, color=GAP_COLOUR, zorder=0)
    trusted_until = stream.trusted_until
    if trusted_until is not None:
        ax.axvline(trusted_until, color="black", linestyle="--", linewidth=1)

    ax.set_yticks([1, 2, 3], ["masking", "TLS records", "segments"])
    ax.set_ylim(0.3, 3.7)
    ax.set_xlim(0, max(end, 1))
    ax.set_xlabel("stream offset (bytes after the ISN, or after the first byte seen)")
    ax.set_title(f"{chart.flow}: {len(chart.segments)} segments, {len(records)} TLS records")
    ax.legend(
        handles=_map_legend(records, chart, trusted_until),
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
        fontsize=8,
    )
    return ax


def _map_legend(records: list[TlsRecord], chart: MaskingMap, trusted_until: int | None) -> list:
    handles = [Patch(color=SEGMENT_COLOUR, label="segment")]
    if chart.retransmissions:
        handles.append(Patch(color=RETRANSMISSION_COLOUR, label="retransmission"))
    present = {r.content_type for r in records}
    handles += [Patch(color=TLS_TYPE_COLOURS[t], label=CONTENT_TYPE_NAMES[t]) for t in sorted(present)]
    handles += [Patch(color=KEPT_COLOUR, label="kept"), Patch(color=ZEROED_COLOUR, label="zeroed")]
    if chart.gaps:
        handles.append(Patch(color=GAP_COLOUR, label="not captured"))
    if trusted_until is not None:
        handles.append(plt.Line2D([], [], color="black", linestyle="--", label="zeroed from here"))
    return handles


def plot_stage_summary(result: RunResult, *, ax: Axes | None = None) -> Axes:
    """Draw one 100 % bar per stage (packets passed, dropped, unparseable) and one for masked TCP bytes (kept, zeroed).

    Each part is labelled with its count.
    """
    summary = summary_frame(result)
    bars: list[tuple[str, list[tuple[str, int, str]]]] = []
    for stage, row in summary.iterrows():
        other_drops = int(row["dropped"]) - int(row["unparseable"])
        bars.append(
            (
                f"{stage}: packets",
                [
                    ("passed", int(row["packets_out"]), SEGMENT_COLOUR),
                    ("dropped", other_drops, RETRANSMISSION_COLOUR),
                    ("unparseable", int(row["unparseable"]), "#8e24aa"),
                ],
            )
        )
        if not pd.isna(row["bytes_kept"]):
            parts = [
                ("kept", int(row["bytes_kept"]), KEPT_COLOUR),
                ("zeroed", int(row["bytes_zeroed"]), ZEROED_COLOUR),
            ]
            bars.append((f"{stage}: TCP payload bytes", parts))

    ax = ax if ax is not None else plt.subplots(figsize=(8, 0.6 * len(bars) + 1.2))[1]
    labels = []
    for position, (label, parts) in enumerate(reversed(bars)):
        total = sum(count for _, count, _ in parts) or 1
        left = 0.0
        unlabelled = []
        for name, count, colour in parts:
            width = 100 * count / total
            ax.barh(position, width, left=left, color=colour, label=name)
            if width >= 8:
                ax.text(left + width / 2, position, f"{name} {count}", ha="center", va="center", fontsize=8)
            elif count:
                unlabelled.append(f"{name} {count}")
            left += width
        labels.append(label + (f"\n({', '.join(unlabelled)})" if unlabelled else ""))
    ax.set_yticks(range(len(bars)), labels)
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of the stage's packets, or of the TCP payload bytes")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.set_title(f"{result.input_path.name}: {result.packets_in} packets in, {result.packets_out} out")
    return ax


def plot_memory(
    memory: pd.DataFrame, *, limit_mib: float | None = None, threshold: float = 0.8, ax: Axes | None = None
) -> Axes:
    """Draw the RSS of a run over time, its passes shaded and labelled, and the pressure threshold.

    `memory` is `RunResult.memory` (columns seconds, mib, rss_mib, stage,
    pass). With `limit_mib`, the threshold line is drawn at `threshold *
    limit_mib` and the limit itself above it.
    """
    ax = ax if ax is not None else plt.subplots(figsize=(8, 3))[1]
    if memory.empty:
        ax.text(
            0.5,
            0.5,
            "no memory samples (monitor_memory=False?)",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        return ax

    for index, (start, stop, label) in enumerate(_phases(memory)):
        ax.axvspan(start, stop, color=PHASE_COLOURS[index % len(PHASE_COLOURS)], zorder=0)
        ax.text(
            (start + stop) / 2,
            0.98,
            label,
            ha="center",
            va="top",
            fontsize=8,
            transform=ax.get_xaxis_transform(),
        )
    ax.plot(memory["seconds"], memory["rss_mib"], color=SEGMENT_COLOUR, label="RSS")
    baseline = float(memory["rss_mib"].iloc[0] - memory["mib"].iloc[0])
    ax.axhline(baseline, color="grey", linestyle=":", linewidth=1, label=f"start {baseline:.0f} MiB")
    if limit_mib is not None:
        ax.axhline(
            threshold * limit_mib,
            color=RETRANSMISSION_COLOUR,
            linestyle="--",
            label=f"pressure threshold ({threshold:.0%})",
        )
        ax.axhline(limit_mib, color="black", linewidth=1, label=f"limit {limit_mib:.0f} MiB")
    ax.set_xlabel("seconds since the run started")
    ax.set_ylabel("RSS (MiB)")
    ax.legend(loc="lower right", fontsize=8)
    return ax


def _phases(memory: pd.DataFrame) -> list[tuple[float, float, str]]:
    """Return (start, end, 'stage pass') of each run of samples with the same stage and pass.

    A pass began at its mark, somewhere after the last sample before it, so
    its span starts at that earlier sample.
    """
    phases: list[tuple[float, float, str]] = []
    previous = 0.0
    for seconds, stage, pass_name in zip(memory["seconds"], memory["stage"], memory["pass"], strict=True):
        label = "" if stage is None else f"{stage} {pass_name}"
        if not phases or phases[-1][2] != label:
            phases.append((previous, float(seconds), label))
        phases[-1] = (phases[-1][0], float(seconds), label)
        previous = float(seconds)
    return [phase for phase in phases if phase[2]]
