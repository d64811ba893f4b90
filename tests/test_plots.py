"""Plots: the masking map of one flow direction, the per-stage bars, memory over time."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from test_views_gap import GAP, SERVER_FLOW, SERVER_SEGMENTS, build_gap_capture  # noqa: E402

from pktmask_nb import Deduplicate, Pipeline  # noqa: E402
from pktmask_nb.memory import MemoryMonitor  # noqa: E402
from pktmask_nb.plots import KEPT_COLOUR, masking_map, plot_memory  # noqa: E402
from pktmask_nb.stages.anonymize import AnonymizeIPs  # noqa: E402
from pktmask_nb.stages.mask import MaskPayloads  # noqa: E402

KEY = bytes(range(32))


@pytest.fixture
def gap_result(tmp_path):
    capture = build_gap_capture(tmp_path / "gap.pcap")
    pipeline = Pipeline([AnonymizeIPs(key=KEY), MaskPayloads()], progress=False, monitor_memory=False)
    result = pipeline.run(capture, tmp_path / "out.pcap")
    yield result
    result.close()
    plt.close("all")


def test_masking_map_segments_and_gaps(gap_result):
    chart = masking_map(gap_result, SERVER_FLOW)

    captured = [(offset, length) for offset, length, taken in SERVER_SEGMENTS if taken]
    assert [(offset, length) for offset, length, _ in chart.segments] == captured
    assert [(offset, length) for offset, length, _ in chart.retransmissions] == [(105, 205)]
    assert chart.gaps == [GAP]
    assert chart.stream.trusted_until == GAP[0]

    anonymized = gap_result.payloads(flow=SERVER_FLOW, limit=1)["out_flow"].iloc[0]
    assert masking_map(gap_result, anonymized).segments == chart.segments


def test_plot_masking_map_given_axes(gap_result):
    figure, ax = plt.subplots()
    returned = gap_result.plot_masking_map(SERVER_FLOW, ax=ax)

    assert returned is ax
    assert [label.get_text() for label in ax.get_yticklabels()] == ["masking", "TLS records", "segments"]
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert {
        "retransmission",
        "not captured",
        "zeroed from here",
        "handshake",
        "application_data",
        "kept",
    } <= set(legend)
    kept_bars = [
        c for c in ax.collections if tuple(c.get_facecolor()[0][:3]) == matplotlib.colors.to_rgb(KEPT_COLOUR)
    ]
    kept_width = sum(path.get_extents().width for c in kept_bars for path in c.get_paths())
    assert kept_width == pytest.approx(105 + 5)
    assert any(line.get_xdata()[0] == GAP[0] for line in ax.get_lines())


def test_masking_map_errors(gap_result, tmp_path):
    with pytest.raises(ValueError, match="no TCP payload"):
        masking_map(gap_result, "192.0.2.1:1 -> 192.0.2.2:2")
    pipeline = Pipeline([Deduplicate()], progress=False, monitor_memory=False)
    with pipeline.run(gap_result.input_path, tmp_path / "dedup.pcap") as dedup_only:
        with pytest.raises(ValueError, match="MaskPayloads"):
            masking_map(dedup_only, SERVER_FLOW)


def test_stage_summary_bars(corpus_dir, tmp_path):
    pipeline = Pipeline([Deduplicate(), MaskPayloads()], progress=False, monitor_memory=False)
    with pipeline.run(corpus_dir / "arkime_wireshark-retrans.pcap", tmp_path / "out.pcap") as result:
        figure, ax = plt.subplots()
        assert result.plot_stage_summary(ax=ax) is ax
        stats = result.stats
    labels = [label.get_text() for label in ax.get_yticklabels()]
    assert [label.split("\n")[0] for label in labels] == [
        "mask: TCP payload bytes",
        "mask: packets",
        "dedup: packets",
    ]
    texts = {text.get_text() for text in ax.texts}
    duplicates = stats.loc["dedup", "duplicates_dropped"]
    assert f"dropped {duplicates}" in texts
    assert f"passed {stats.loc['dedup', 'packets_out']}" in texts
    assert (
        f"zeroed {stats.loc['mask', 'bytes_zeroed']}" in texts
        or f"zeroed {stats.loc['mask', 'bytes_zeroed']}" in labels[0]
    )
    widths = [patch.get_width() for patch in ax.patches]
    assert sum(widths) == pytest.approx(300)
    plt.close("all")


def test_memory_plot_phases_and_threshold(corpus_dir, tmp_path):
    monitor = MemoryMonitor(interval=0.005, limit_mib=4096, threshold=0.5)
    pipeline = Pipeline([AnonymizeIPs(key=KEY), MaskPayloads()], progress=False, monitor_memory=monitor)
    with pipeline.run(corpus_dir / "ppp_tls2.pcap", tmp_path / "out.pcap") as result:
        memory = result.memory
        ax = result.plot_memory()
    labels = {text.get_text() for text in ax.texts}
    assert set(memory["stage"].dropna() + " " + memory["pass"].dropna()) == labels
    assert "mask scan" in labels
    levels = {line.get_ydata()[0] for line in ax.get_lines() if len(line.get_ydata()) == 2}
    assert {2048, 4096} <= levels
    rss_line = ax.get_lines()[0]
    assert list(rss_line.get_ydata()) == list(memory["rss_mib"])

    empty = plot_memory(memory.iloc[0:0])
    assert "no memory samples" in empty.texts[0].get_text()
    plt.close("all")
