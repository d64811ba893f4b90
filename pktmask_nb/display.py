"""Rich displays for Jupyter: stages, pipelines and run results, as HTML and plain text.

Every display is escaped text and tables with inline styles, no scripts and
no object addresses, so notebook outputs stay stable for nbval and safe to
share. Secret parameters (`Stage.secret_params`, such as the anonymization
key) show as '***'. Element ids come from a counter, so they are unique in a
kernel session and the same each time a notebook runs from the top.
"""

from __future__ import annotations

import html
import inspect
import itertools
import logging
import re
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from pktmask_nb.pipeline import Pipeline
    from pktmask_nb.result import RunResult
    from pktmask_nb.stages.base import Stage

logger = logging.getLogger(__name__)

# Summary column -> the stage counter it shows, for the stages that have one.
COUNTER_COLUMNS = {
    "duplicates": "duplicates_dropped",
    "addresses": "unique_addresses",
    "bytes_kept": "bytes_kept",
    "bytes_zeroed": "bytes_zeroed",
    "tls_records": "tls_records",
}
SUMMARY_HEADERS = {
    "packets_in": "packets in",
    "packets_out": "packets out",
    "dropped": "dropped",
    "unparseable": "unparseable",
    "duplicates": "duplicates dropped",
    "addresses": "addresses mapped",
    "bytes_kept": "bytes kept",
    "bytes_zeroed": "bytes zeroed",
    "tls_records": "TLS records",
    "seconds": "seconds",
    "peak_mib": "peak MiB",
}
TABLE_STYLE = "border-collapse:collapse;font-size:12px;margin:4px 0"
CELL_STYLE = "padding:2px 8px;border-bottom:1px solid #ddd;text-align:right"
NAME_CELL_STYLE = "padding:2px 8px;border-bottom:1px solid #ddd;text-align:left"
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_element_ids = itertools.count(1)


def element_id(kind: str) -> str:
    """Return a new element id 'pktmask-<kind>-<n>', n counting up from 1 in this process."""
    return f"pktmask-{kind}-{next(_element_ids)}"


def safe_repr(value: Any, *, max_len: int = 80) -> str:
    """Return repr(value) without object addresses, cut to `max_len` characters."""
    text = _ADDRESS.sub("", repr(value))
    return text if len(text) <= max_len else text[: max_len - 3] + "..."


# -- stages and pipelines --------------------------------------------------------


def stage_options(stage: Stage) -> list[tuple[str, str, bool]]:
    """Return (name, shown value, changed from default) for every option; secrets show as '***'."""
    signature = inspect.signature(type(stage).__init__)
    changed = stage._changed_params()
    options = []
    for name, value in stage.get_params().items():
        shown = "***" if name in stage.secret_params and value is not None else safe_repr(value)
        default = signature.parameters[name].default
        options.append((name, shown, name in changed or default is inspect.Parameter.empty))
    return options


def stage_html(stage: Stage) -> str:
    """Return the HTML of a stage: its class, its name and a table of its options."""
    rows = []
    for name, shown, changed in stage_options(stage):
        value = f"<code>{html.escape(shown)}</code>"
        if changed:
            value = f"<b>{value}</b>"
        rows.append(
            f'<tr><td style="{NAME_CELL_STYLE}">{html.escape(name)}</td><td style="{NAME_CELL_STYLE}">{value}</td></tr>'
        )
    table = f'<table style="{TABLE_STYLE}">{"".join(rows)}</table>' if rows else "<i>no options</i>"
    return (
        f'<div class="pktmask-stage"><b>{html.escape(type(stage).__name__)}</b> '
        f"(<code>{html.escape(stage.name)}</code>; options that differ from the default in bold){table}</div>"
    )


def pipeline_html(pipeline: Pipeline) -> str:
    """Return the HTML of a pipeline: its stages in order with their options, then its own options."""
    steps = (
        "".join(f"<li>{stage_html(stage)}</li>" for stage in pipeline.stages)
        or "<li><i>no stages: the capture is copied</i></li>"
    )
    own = ", ".join(
        f"{html.escape(name)}=<code>{html.escape(safe_repr(value))}</code>"
        for name, value in pipeline.get_params().items()
        if name != "stages"
    )
    return (
        f'<div class="pktmask-pipeline" id="{element_id("pipeline")}"><b>Pipeline</b> of '
        f"{len(pipeline.stages)} stage(s) <span style='font-size:12px'>({own})</span><ol>{steps}</ol></div>"
    )


# -- run results -----------------------------------------------------------------


def summary_frame(result: RunResult) -> pd.DataFrame:
    """Return one row per stage: packets in, out, dropped and unparseable, the stage's main counters, time and peak memory.

    A counter a stage does not have is <NA>. `peak_mib` is the highest
    memory use above the start of the run while the stage ran; the final
    pass runs every stage at once, so its samples count for each of them.
    """
    memory = result.memory
    rows = []
    for run in result.stage_runs:
        counters = run.stage.stats()
        row: dict[str, Any] = {
            "stage": run.stage.name,
            "packets_in": run.packets_in,
            "packets_out": run.packets_out,
            "dropped": run.packets_in - run.packets_out,
            "unparseable": run.unparseable_dropped,
        }
        for column, counter in COUNTER_COLUMNS.items():
            row[column] = counters.get(counter)
        row["seconds"] = round(run.seconds, 3)
        row["peak_mib"] = _stage_peak(memory, run.stage.name)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["stage", *SUMMARY_HEADERS])
    counts = [c for c in SUMMARY_HEADERS if c not in ("seconds", "peak_mib")]
    frame[counts] = frame[counts].astype("Int64")
    frame["peak_mib"] = frame["peak_mib"].astype("Float64")
    return frame.set_index("stage")


def _stage_peak(memory: pd.DataFrame, stage_name: str) -> float | None:
    if memory.empty:
        return None
    running = memory["stage"].map(lambda label: label is not None and stage_name in label.split("+"))
    if not running.any():
        return None
    return round(float(memory.loc[running, "mib"].max()), 1)


def result_headline(result: RunResult) -> str:
    """Return the one-line summary of a run: files, packet counts, seconds and peak memory."""
    peak = result.peak_mib
    memory = "" if peak is None else f", peak memory {peak:+.1f} MiB"
    return (
        f"{result.input_path.name} -> {result.output_path.name} ({result.capture_format}): "
        f"{result.packets_in} packets in, {result.packets_out} out, {result.seconds:.2f} s{memory}"
    )


def result_text(result: RunResult) -> str:
    """Return the plain-text display of a run: the headline and the per-stage summary table."""
    summary = summary_frame(result)
    table = _summary_cells(summary).to_string() if len(summary) else "(no stages)"
    lines = [f"RunResult: {result_headline(result)}", table]
    if result.skipped_blocks:
        lines.append(f"skipped pcapng blocks: {_skipped_text(result)}")
    return "\n".join(lines)


def result_html(result: RunResult) -> str:
    """Return the HTML display of a run: headline, per-stage summary, all counters and the stages' options."""
    summary = summary_frame(result)
    parts = [
        f'<div class="pktmask-result" id="{element_id("result")}">',
        f"<b>{html.escape(result_headline(result))}</b>",
        _summary_table_html(summary),
    ]
    if result.skipped_blocks:
        parts.append(f"<div>Skipped pcapng blocks: {html.escape(_skipped_text(result))}</div>")
    if len(summary):
        counters = result.stats.T.to_html(na_rep="-", border=0)
        parts.append(f"<details><summary>All counters</summary>{counters}</details>")
        stages = "".join(f"<li>{stage_html(stage)}</li>" for stage in result.stages)
        parts.append(f"<details><summary>Stages and options</summary><ol>{stages}</ol></details>")
    parts.append("</div>")
    return "".join(parts)


def _summary_table_html(summary: pd.DataFrame) -> str:
    if summary.empty:
        return "<div><i>no stages: the capture was copied</i></div>"
    header = "".join(
        f'<th style="{CELL_STYLE}">{html.escape(SUMMARY_HEADERS[c])}</th>' for c in summary.columns
    )
    rows = [f'<tr><th style="{NAME_CELL_STYLE}">stage</th>{header}</tr>']
    for stage, values in _summary_cells(summary).iterrows():
        cells = "".join(f'<td style="{CELL_STYLE}">{html.escape(value)}</td>' for value in values)
        rows.append(
            f'<tr><td style="{NAME_CELL_STYLE}"><code>{html.escape(str(stage))}</code></td>{cells}</tr>'
        )
    return f'<table class="pktmask-summary" style="{TABLE_STYLE}">{"".join(rows)}</table>'


def _summary_cells(summary: pd.DataFrame) -> pd.DataFrame:
    """Return the summary as display strings: '-' for <NA>, seconds and MiB with their units.

    The units let a notebook test mask the figures that change from run to
    run with one pattern each (`\\d+\\.\\d+ s`, `\\d+\\.\\d MiB`).
    """
    cells = summary.astype("object").map(lambda value: "-" if pd.isna(value) else str(value))
    cells["seconds"] = [f"{seconds:.3f} s" for seconds in summary["seconds"]]
    cells["peak_mib"] = ["-" if pd.isna(peak) else f"{peak:.1f} MiB" for peak in summary["peak_mib"]]
    return cells


def _skipped_text(result: RunResult) -> str:
    return ", ".join(f"{count} {kind}" for kind, count in sorted(result.skipped_blocks.items()))
