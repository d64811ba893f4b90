"""`RunResult`: what a pipeline run did, per stage and per packet.

The result keeps the input and output paths and, on disk, a frame index
from input to output frame numbers. Per-packet before/after views of a large
capture are then read from the files on demand, not held in memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pktmask_nb.frame_index import FrameIndexWriter
from pktmask_nb.memory import MemoryMonitor
from pktmask_nb.resources import CleanupReport, ResourceOwner
from pktmask_nb.stages.base import Stage

if TYPE_CHECKING:
    from matplotlib.axes import Axes

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StageRun:
    """One stage's part of a run: packets in and out, unparseable packets dropped, seconds spent."""

    stage: Stage
    packets_in: int
    packets_out: int
    unparseable_dropped: int
    seconds: float


class RunResult:
    """The outcome of `Pipeline.run`.

    `stats` is a DataFrame with one row per stage: packets in and out,
    unparseable packets dropped, seconds, and the stage's own counters.
    `close()` removes the temp frame index; it is idempotent and also
    happens when the result is garbage-collected.
    """

    def __init__(
        self,
        *,
        input_path: Path,
        output_path: Path,
        capture_format: str,
        stage_runs: list[StageRun],
        packets_in: int,
        packets_out: int,
        seconds: float,
        skipped_blocks: dict[str, int],
        frame_index: FrameIndexWriter,
        resources: ResourceOwner,
        memory: MemoryMonitor | None = None,
    ) -> None:
        self.input_path = input_path
        self.output_path = output_path
        self.capture_format = capture_format
        self.stage_runs = stage_runs
        self.packets_in = packets_in
        self.packets_out = packets_out
        self.seconds = seconds
        self.skipped_blocks = skipped_blocks
        self._frame_index = frame_index
        self._resources = resources
        self._memory = memory

    @property
    def stages(self) -> list[Stage]:
        return [run.stage for run in self.stage_runs]

    def stage(self, name: str) -> Stage:
        """Return the stage called `name` ("dedup", "anonymize", "mask").

        Raises KeyError listing the stages of the run when there is none.
        """
        for run in self.stage_runs:
            if run.stage.name == name:
                return run.stage
        names = ", ".join(run.stage.name for run in self.stage_runs) or "none"
        raise KeyError(f"this run has no {name!r} stage; its stages: {names}")

    @property
    def stats(self) -> pd.DataFrame:
        rows = []
        for run in self.stage_runs:
            row: dict[str, object] = {
                "stage": run.stage.name,
                "packets_in": run.packets_in,
                "packets_out": run.packets_out,
                "unparseable_dropped": run.unparseable_dropped,
                "seconds": round(run.seconds, 3),
            }
            row.update(run.stage.stats())
            rows.append(row)
        frame = pd.DataFrame(rows)
        if frame.empty:
            return pd.DataFrame(columns=["packets_in", "packets_out"]).rename_axis("stage")
        frame = frame.set_index("stage")
        counters = [c for c in frame.columns if c != "seconds"]
        frame[counters] = frame[counters].astype("Int64")
        return frame

    def frame_map(self) -> np.ndarray:
        """Output frame number of each input frame (index 0 is input frame 1); 0 means dropped.

        Raises RuntimeError after `close()`, which removed the index.
        """
        if self._resources.closed:
            raise RuntimeError(
                f"the result of {self.input_path.name} is closed, so its frame index is gone; "
                "run the pipeline again for per-packet views"
            )
        return self._frame_index.read()

    @property
    def memory(self) -> pd.DataFrame:
        """Memory samples of the run: seconds, mib (above the start), rss_mib, stage, pass.

        Empty when the pipeline ran with `monitor_memory=False`.
        """
        if self._memory is None:
            return pd.DataFrame(columns=["seconds", "mib", "rss_mib", "stage", "pass"])
        return self._memory.frame()

    @property
    def peak_mib(self) -> float | None:
        """Highest memory use above the start of the run, in MiB (None without monitoring)."""
        return None if self._memory is None else self._memory.peak_mib_

    def close(self) -> CleanupReport:
        """Remove the run's temp files and return what could not be removed. Idempotent.

        An unclosed result is cleaned up when garbage-collected (with a
        ResourceWarning) or at exit. In a notebook, the output cache keeps a
        displayed result alive: call `close()` or `%xdel result`.
        """
        return self._resources.close()

    def __enter__(self) -> RunResult:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        stages = ", ".join(run.stage.name for run in self.stage_runs) or "no stages"
        return (
            f"<RunResult {self.input_path.name} -> {self.output_path.name}: "
            f"{self.packets_in} packets in, {self.packets_out} out, {stages}>"
        )

    def _repr_html_(self) -> str:
        from pktmask_nb.display import result_html

        return result_html(self)

    # -- notebook views: read the input and output files on demand ---------------

    def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> dict[str, str]:
        from pktmask_nb.display import result_html, result_text

        return {"text/plain": result_text(self), "text/html": result_html(self)}

    def payloads(
        self,
        *,
        flow: str | None = None,
        frames: tuple[int, int] | range | None = None,
        limit: int | None = 1000,
        max_hex_bytes: int = 64,
    ) -> pd.DataFrame:
        """Return one row per input packet: frame numbers, flow, payload before and after in hex, bytes kept.

        See `pktmask_nb.views.payloads_frame` for the filters and columns.
        The files are read from the start and only until `limit` rows match.
        """
        from pktmask_nb.views import payloads_frame

        return payloads_frame(self, flow=flow, frames=frames, limit=limit, max_hex_bytes=max_hex_bytes)

    def flows(self) -> pd.DataFrame:
        """Return one row per TCP or UDP flow direction: packets, bytes, TLS, bytes kept and zeroed, gaps.

        See `pktmask_nb.views.flows_frame`. Reads the whole input once.
        """
        from pktmask_nb.views import flows_frame

        return flows_frame(self)

    def mapping(self) -> pd.DataFrame:
        """Return the anonymization mapping of this run (original, anonymized, ip_version, packets).

        Raises KeyError when the run had no anonymize stage.
        """
        return self.stage("anonymize").mapping()

    def explore(
        self,
        *,
        flow: str | None = None,
        frames: tuple[int, int] | range | None = None,
        limit: int = 500,
        max_bytes: int = 2048,
        static: bool = False,
    ) -> object:
        """Return a widget to pick a flow and a packet and see its payload before and after, side by side.

        See `pktmask_nb.explorer.explore`; degrades to static HTML without ipywidgets or a kernel.
        """
        from pktmask_nb.explorer import explore

        return explore(self, flow=flow, frames=frames, limit=limit, max_bytes=max_bytes, static=static)

    def plot_masking_map(self, flow: str, *, connection: int = 0, ax: Axes | None = None) -> Axes:
        """Plot one flow direction in sequence space; see `pktmask_nb.plots.plot_masking_map`."""
        from pktmask_nb.plots import plot_masking_map

        return plot_masking_map(self, flow, connection=connection, ax=ax)

    def plot_stage_summary(self, *, ax: Axes | None = None) -> Axes:
        """Plot packets dropped and bytes kept and zeroed per stage; see `pktmask_nb.plots`."""
        from pktmask_nb.plots import plot_stage_summary

        return plot_stage_summary(self, ax=ax)

    def plot_memory(self, *, ax: Axes | None = None) -> Axes:
        """Plot memory over the run with its passes shaded and the monitor's pressure threshold."""
        from pktmask_nb.plots import plot_memory

        monitor = self._memory
        limit = None if monitor is None else monitor.limit_mib
        threshold = 0.8 if monitor is None else monitor.threshold
        return plot_memory(self.memory, limit_mib=limit, threshold=threshold, ax=ax)
