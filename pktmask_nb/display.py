"""HTML displays for Jupyter: stages, pipelines and run results.

Every display is escaped text and tables only, with no object addresses, so
notebook outputs stay stable for nbval and safe to share.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pktmask_nb.pipeline import Pipeline
    from pktmask_nb.result import RunResult
    from pktmask_nb.stages.base import Stage


def stage_html(stage: Stage) -> str:
    params = stage._changed_params()
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td><code>{html.escape(repr(v))}</code></td></tr>"
        for k, v in params.items()
    )
    table = f"<table>{rows}</table>" if rows else "<i>default options</i>"
    return (
        f"<div class='pktmask-stage'><b>{html.escape(type(stage).__name__)}</b> "
        f"(<code>{html.escape(stage.name)}</code>){table}</div>"
    )


def pipeline_html(pipeline: Pipeline) -> str:
    steps = "".join(f"<li>{stage_html(stage)}</li>" for stage in pipeline.stages)
    return f"<div class='pktmask-pipeline'><b>Pipeline</b><ol>{steps}</ol></div>"


def result_html(result: RunResult) -> str:
    title = html.escape(f"{result.input_path.name} → {result.output_path.name}")
    summary = f"{result.packets_in} packets in, {result.packets_out} out, {result.seconds:.2f} s"
    return (
        f"<div class='pktmask-result'><b>{title}</b>: {html.escape(summary)}"
        f"{result.stats.to_html()}</div>"
    )
