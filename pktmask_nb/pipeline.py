"""`Pipeline`: stream a capture through stages, one packet at a time.

The pipeline reads the input once per pass. A stage that sets
`needs_first_pass` gets a scan pass first, in which replicas of the stages
before it transform each packet, so it sees packets exactly as they will
reach it in the final pass. No packet is held in memory between passes.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from pktmask_nb.capture import OUTPUT_FORMATS, open_reader, open_writer
from pktmask_nb.errors import CaptureError, UnparseablePacketError
from pktmask_nb.frame_index import FrameIndexWriter
from pktmask_nb.memory import MemoryMonitor
from pktmask_nb.output import atomic_output
from pktmask_nb.packet import Packet
from pktmask_nb.resources import ResourceOwner
from pktmask_nb.result import RunResult, StageRun
from pktmask_nb.stages.base import Stage, params_equal

logger = logging.getLogger(__name__)

# Update the progress bar every this many packets: a per-packet update costs more than the work.
PROGRESS_EVERY = 2048
UNPARSEABLE_CHOICES = ("error", "drop")


class Pipeline:
    """An ordered list of stages run over a capture file.

    `on_unparseable` decides what happens to a packet a stage cannot parse:
    "error" stops the run (the default, because such a packet could carry
    private bytes past the stage), "drop" leaves it out of the output and
    counts it. `keep_comments` keeps pcapng comments and free-text options,
    which are dropped by default. `progress` shows a tqdm bar per pass.
    `output_format` is "same" (the input's format), "pcap" or "pcapng".
    `monitor_memory` samples the process's memory during the run into
    `result.memory`: True for a default `MemoryMonitor`, a `MemoryMonitor` to
    set its interval, limit and pressure callbacks, or False for none.
    """

    def __init__(
        self,
        stages: Sequence[Stage] = (),
        *,
        on_unparseable: Literal["error", "drop"] = "error",
        keep_comments: bool = False,
        progress: bool = True,
        monitor_memory: bool | MemoryMonitor = True,
        output_format: Literal["same", "pcap", "pcapng"] = "same",
    ) -> None:
        self.stages = stages
        self.on_unparseable = on_unparseable
        self.keep_comments = keep_comments
        self.progress = progress
        self.monitor_memory = monitor_memory
        self.output_format = output_format

    def get_params(self) -> dict[str, Any]:
        """Return the constructor arguments as given, by name."""
        return {
            "stages": self.stages,
            "on_unparseable": self.on_unparseable,
            "keep_comments": self.keep_comments,
            "progress": self.progress,
            "monitor_memory": self.monitor_memory,
            "output_format": self.output_format,
        }

    def __repr__(self) -> str:
        stages = ", ".join(repr(stage) for stage in self.stages)
        signature = inspect.signature(type(self).__init__)
        options = [
            f"{name}={value!r}"
            for name, value in self.get_params().items()
            if name != "stages" and not params_equal(value, signature.parameters[name].default)
        ]
        return f"Pipeline([{stages}]{''.join(', ' + o for o in options)})"

    def _repr_html_(self) -> str:
        from pktmask_nb.display import pipeline_html

        return pipeline_html(self)

    def _validate(self) -> None:
        if self.on_unparseable not in UNPARSEABLE_CHOICES:
            raise ValueError(
                f"Pipeline: on_unparseable must be one of {UNPARSEABLE_CHOICES}, not {self.on_unparseable!r}"
            )
        if self.output_format not in OUTPUT_FORMATS:
            raise ValueError(
                f"Pipeline: output_format must be one of {OUTPUT_FORMATS}, not {self.output_format!r}"
            )
        for stage in self.stages:
            if not isinstance(stage, Stage):
                raise TypeError(f"Pipeline: {stage!r} is not a Stage")
        if len({id(stage) for stage in self.stages}) != len(self.stages):
            raise ValueError("Pipeline: the same stage object appears twice; give each step its own")

    def run(self, input_path: str | os.PathLike[str], output_path: str | os.PathLike[str]) -> RunResult:
        """Sanitize `input_path` into `output_path` and return what each stage did.

        The output appears only when complete; on any error no output file
        is left and the input is never modified. Raises CaptureError (or its
        subclass UnparseablePacketError) naming the file and packet, and
        ValueError for invalid stage options.
        """
        self._validate()
        source = Path(input_path)
        target = Path(output_path)
        _check_paths(source, target)
        logger.info("sanitizing %s into %s with %s", source, target, self)

        owner = ResourceOwner(f"RunResult {source.name}")
        monitor = self._memory_monitor()
        started = time.perf_counter()
        try:
            if monitor is None:
                run = self._run_passes(source, target, owner, None)
            else:
                run = monitor.run(self._run_passes, source, target, owner, monitor)
        except BaseException:
            owner.close()
            raise
        elapsed = time.perf_counter() - started

        logger.info("%s: %d packets in, %d out, in %.2f s", source, run.packets_in, run.packets_out, elapsed)
        return RunResult(
            input_path=source,
            output_path=target,
            capture_format=run.capture_format,
            stage_runs=run.stage_runs,
            packets_in=run.packets_in,
            packets_out=run.packets_out,
            seconds=elapsed,
            skipped_blocks=run.skipped_blocks,
            frame_index=run.frame_index,
            resources=owner,
            memory=monitor,
        )

    def _memory_monitor(self) -> MemoryMonitor | None:
        if isinstance(self.monitor_memory, MemoryMonitor):
            return self.monitor_memory
        return MemoryMonitor() if self.monitor_memory else None

    def _run_passes(
        self, source: Path, target: Path, owner: ResourceOwner, monitor: MemoryMonitor | None
    ) -> _FinalPass:
        for stage in self.stages:
            stage.reset(os.fspath(source))
        for position, stage in enumerate(self.stages):
            if stage.needs_first_pass:
                if monitor is not None:
                    monitor.mark(stage=stage.name, pass_name="scan")
                self._scan_pass(source, position)

        if monitor is not None:
            monitor.mark(stage="+".join(s.name for s in self.stages) or "copy", pass_name="process")
        final = _FinalPass(self, FrameIndexWriter(owner))
        final.run(source, target, owner)
        return final

    def _scan_pass(self, source: Path, position: int) -> None:
        """Let stage `position` scan every packet as replicas of the stages before it leave it."""
        scanner = self.stages[position]
        before = [stage.replica() for stage in self.stages[:position]]
        for stage in before:
            stage.reset(os.fspath(source))
        reader = open_reader(source)
        try:
            with self._progress(source, f"{scanner.name}: scan") as bar:
                for packet in reader:
                    if not before or _transform(before, packet, drop_unparseable=True) is not None:
                        self._scan_one(scanner, packet)
                    if packet.number % PROGRESS_EVERY == 0:
                        bar.update(reader.tell() - bar.n)
                bar.update(reader.tell() - bar.n)
        finally:
            reader.close()
        scanner.finish_scan()

    def _scan_one(self, scanner: Stage, packet: Packet) -> None:
        try:
            scanner.scan(packet)
        except UnparseablePacketError:
            # The final pass meets the same packet and stops or drops it there.
            if self.on_unparseable != "drop":
                raise

    def _progress(self, source: Path, what: str) -> tqdm:
        # In a Jupyter kernel tqdm.auto draws a widget; elsewhere None shows the
        # bar only on a terminal, so scripts and logs get no bar text.
        disable = None if "ipykernel" not in sys.modules else False
        return tqdm(
            total=source.stat().st_size,
            desc=f"{source.name} {what}",
            unit="B",
            unit_scale=True,
            disable=True if not self.progress else disable,
            leave=False,
        )


class _FinalPass:
    """The pass that runs every stage's `process` and writes the output, with its counts."""

    def __init__(self, pipeline: Pipeline, frame_index: FrameIndexWriter) -> None:
        self.pipeline = pipeline
        self.stages = list(pipeline.stages)
        self.frame_index = frame_index
        self.stage_in = [0] * len(self.stages)
        self.unparseable = [0] * len(self.stages)
        self.seconds = [0.0] * len(self.stages)
        self.packets_in = 0
        self.packets_out = 0
        self.capture_format = ""
        self.skipped_blocks: dict[str, int] = {}

    def run(self, source: Path, target: Path, owner: ResourceOwner) -> None:
        pipeline = self.pipeline
        reader = open_reader(source)
        self.capture_format = reader.format
        try:
            with atomic_output(target, owner) as fileobj, pipeline._progress(source, "write") as bar:
                writer = open_writer(
                    fileobj,
                    reader,
                    keep_comments=pipeline.keep_comments,
                    output_format=pipeline.output_format,
                )
                for packet in reader:
                    data = self._process(packet)
                    if data is None:
                        self.frame_index.add(0)
                    else:
                        writer.write(packet, data)
                        self.packets_out += 1
                        self.frame_index.add(self.packets_out)
                    if packet.number % PROGRESS_EVERY == 0:
                        bar.update(reader.tell() - bar.n)
                writer.close()
                bar.update(reader.tell() - bar.n)
        finally:
            reader.close()
        self.frame_index.close()
        self.skipped_blocks = dict(reader.skipped_blocks)

    def _process(self, packet: Packet) -> bytes | None:
        """Run one packet through every stage; None when a stage drops it."""
        self.packets_in += 1
        drop_unparseable = self.pipeline.on_unparseable == "drop"
        clock = time.perf_counter
        for i, stage in enumerate(self.stages):
            self.stage_in[i] += 1
            begin = clock()
            try:
                data = stage.process(packet)
            except UnparseablePacketError:
                if not drop_unparseable:
                    raise
                self.unparseable[i] += 1
                data = None
            self.seconds[i] += clock() - begin
            if data is None:
                return None
            packet.data = data
        return packet.data

    @property
    def stage_runs(self) -> list[StageRun]:
        runs = []
        for i, stage in enumerate(self.stages):
            packets_out = self.stage_in[i + 1] if i + 1 < len(self.stages) else self.packets_out
            runs.append(StageRun(stage, self.stage_in[i], packets_out, self.unparseable[i], self.seconds[i]))
        return runs


def _transform(stages: list[Stage], packet: Packet, *, drop_unparseable: bool) -> bytes | None:
    """Run `packet` through `stages`, updating `packet.data`; None if a stage dropped it."""
    data: bytes | None = packet.data
    for stage in stages:
        try:
            data = stage.process(packet)
        except UnparseablePacketError:
            if not drop_unparseable:
                raise
            return None
        if data is None:
            return None
        packet.data = data
    return data


def _check_paths(source: Path, target: Path) -> None:
    if not source.is_file():
        problem = "the input is a folder, not a file" if source.is_dir() else "input file not found"
        raise CaptureError(source, problem, hint="Give the path of a pcap or pcapng file")
    if target.exists() and target.is_dir():
        raise CaptureError(target, "output is a folder", hint="Give a file name for the output")
    if target.exists() and os.path.samefile(source, target):
        raise CaptureError(
            target,
            "output is the input file",
            hint="Write the sanitized capture to a new file; the input is never modified",
        )
    if not target.parent.is_dir():
        raise CaptureError(target, "the output folder does not exist", hint=f"Create {target.parent} first")
