"""Pipeline mechanics: passes, per-file state, unparseable packets, parameters and repr."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from capture_builders import pcap_bytes, write

from pktmask_nb import Deduplicate, Packet, Pipeline, Stage, UnparseablePacketError


class RecordingStage(Stage):
    """A real stage that scans first and tags each packet with what it saw in the scan."""

    name = "recording"
    needs_first_pass = True
    counter_names = ("scanned", "processed")

    def __init__(self, *, reject: int | None = None) -> None:
        self.reject = reject

    def reset(self, path: str) -> None:
        super().reset(path)
        self.scanned_data: list[bytes] = []

    def scan(self, packet: Packet) -> None:
        self.counters_["scanned"] += 1
        self.scanned_data.append(packet.data)

    def process(self, packet: Packet) -> bytes | None:
        if packet.number == self.reject:
            raise UnparseablePacketError(self.path_, "test rejects it", packet_number=packet.number)
        self.counters_["processed"] += 1
        return packet.data.upper()


class AppendStage(Stage):
    name = "append"

    def process(self, packet: Packet) -> bytes | None:
        return packet.data + b"!"


def _capture(tmp_path: Path, payloads: list[bytes]) -> Path:
    return write(tmp_path / "in.pcap", pcap_bytes([(1, i, p, len(p)) for i, p in enumerate(payloads)]))


def test_scan_sees_packets_as_earlier_stages_left_them(tmp_path: Path) -> None:
    source = _capture(tmp_path, [b"aa", b"bb", b"aa"])
    recorder = RecordingStage()

    result = Pipeline([Deduplicate(), AppendStage(), recorder], progress=False).run(
        source, tmp_path / "o.pcap"
    )

    assert recorder.scanned_data == [b"aa!", b"bb!"]
    assert result.stats.loc["dedup", "duplicates_dropped"] == 1, "replicas must not count twice"
    assert result.stats.loc["recording", "processed"] == 2
    assert (tmp_path / "o.pcap").read_bytes().endswith(b"BB!")
    result.close()


def test_unparseable_stops_run_by_default(tmp_path: Path) -> None:
    source = _capture(tmp_path, [b"aa", b"bb", b"cc"])

    with pytest.raises(UnparseablePacketError, match=r"in\.pcap, packet 2: test rejects it"):
        Pipeline([RecordingStage(reject=2)], progress=False).run(source, tmp_path / "o.pcap")

    assert not (tmp_path / "o.pcap").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["in.pcap"]


def test_unparseable_dropped_and_counted_on_request(tmp_path: Path) -> None:
    source = _capture(tmp_path, [b"aa", b"bb", b"cc"])

    pipeline = Pipeline([RecordingStage(reject=2)], on_unparseable="drop", progress=False)
    result = pipeline.run(source, tmp_path / "o.pcap")

    assert result.packets_out == 2
    assert result.stats.loc["recording", "unparseable_dropped"] == 1
    assert list(result.frame_map()) == [1, 0, 2]
    result.close()


def test_invalid_on_unparseable_names_choices(tmp_path: Path) -> None:
    source = _capture(tmp_path, [b"aa"])

    with pytest.raises(ValueError, match=r"on_unparseable must be one of \('error', 'drop'\)"):
        Pipeline([], on_unparseable="skip", progress=False).run(source, tmp_path / "o.pcap")


def test_repr_and_params_have_no_addresses() -> None:
    pipeline = Pipeline([Deduplicate(window_packets=10)], on_unparseable="drop")

    text = repr(pipeline)
    html = pipeline._repr_html_()

    assert text == "Pipeline([Deduplicate(window_packets=10)], on_unparseable='drop')"
    assert pipeline.get_params()["on_unparseable"] == "drop"
    assert Deduplicate(window_packets=10).get_params() == {
        "window_packets": 10,
        "window_seconds": None,
        "ignore_span_differences": False,
    }
    assert not re.search(r"0x[0-9a-f]{6,}", text + html)


def test_set_params_rejects_unknown_name() -> None:
    with pytest.raises(ValueError, match="Deduplicate has no parameter 'window'; valid parameters"):
        Deduplicate().set_params(window=3)


def test_same_stage_twice_rejected(tmp_path: Path) -> None:
    stage = Deduplicate()
    source = _capture(tmp_path, [b"aa"])

    with pytest.raises(ValueError, match="appears twice"):
        Pipeline([stage, stage], progress=False).run(source, tmp_path / "o.pcap")


def test_memory_samples_marked_by_pass(corpus_dir: Path, tmp_path: Path) -> None:
    recorder = RecordingStage()
    pipeline = Pipeline([Deduplicate(), recorder], progress=False)

    result = pipeline.run(corpus_dir / "zeek_echo-connections.pcap", tmp_path / "o.pcap")
    memory = result.memory

    assert len(memory) > 3
    assert list(memory.columns[:2]) == ["seconds", "mib"]
    assert {("recording", "scan"), ("dedup+recording", "process")} <= set(
        zip(memory["stage"], memory["pass"], strict=True)
    )
    assert memory["seconds"].is_monotonic_increasing
    assert result.peak_mib is not None
    result.close()


def test_close_removes_run_temp_files(corpus_dir: Path, tmp_path: Path) -> None:
    from pktmask_nb import held_resources

    result = Pipeline([], progress=False, monitor_memory=False).run(
        corpus_dir / "zeek_ssh-dups.pcap", tmp_path / "o.pcap"
    )
    held = held_resources()
    index_files = [Path(p) for p in held["path"] if p is not None and str(p).endswith(".u32")]
    assert index_files and all(p.exists() for p in index_files)

    report = result.close()

    assert report.ok
    assert not any(p.exists() for p in index_files)
    assert result.close().ok, "close is idempotent"


def test_frame_map_after_close_is_clear_error(corpus_dir: Path, tmp_path: Path) -> None:
    result = Pipeline([], progress=False, monitor_memory=False).run(
        corpus_dir / "zeek_ssh-dups.pcap", tmp_path / "o.pcap"
    )
    result.close()

    with pytest.raises(RuntimeError, match="zeek_ssh-dups.pcap is closed"):
        result.frame_map()
