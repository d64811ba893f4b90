"""HTML and plain-text displays of stages, pipelines and run results."""

from __future__ import annotations

import re
import subprocess

import pytest

from pktmask_nb import Deduplicate, Pipeline
from pktmask_nb.display import element_id, safe_repr, summary_frame
from pktmask_nb.memory import MemoryMonitor
from pktmask_nb.stages.anonymize import AnonymizeIPs
from pktmask_nb.stages.mask import MaskPayloads

KEY = bytes(range(100, 132))
ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")
ELEMENT_ID = re.compile(r'id="(pktmask-[a-z]+-\d+)"')


def tshark_count(path) -> int:
    output = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-T", "fields", "-e", "frame.number"],
        check=True,
        capture_output=True,
        text=True,
    )
    return len(output.stdout.split())


def test_stage_html_hides_key():
    stage = AnonymizeIPs(key=KEY, keep_prefixes=("<script>alert(1)</script>",))
    html = stage._repr_html_()

    assert "AnonymizeIPs" in html
    assert "keep_prefixes" in html
    assert "keep_special" in html
    assert "***" in html
    assert KEY.hex() not in html
    assert repr(KEY)[2:20] not in html
    assert "\\x64" not in html
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "***" in repr(stage)
    assert KEY.hex() not in repr(stage)


def test_pipeline_html_stage_order():
    monitor = MemoryMonitor(interval=0.1, limit_mib=900)
    monitor.add_callback(lambda pressure, rss: None)
    pipeline = Pipeline(
        [Deduplicate(window_packets=500), AnonymizeIPs(key=KEY), MaskPayloads(keep_udp_ports=object())],
        monitor_memory=monitor,
    )
    html = pipeline._repr_html_()

    positions = [html.index(name) for name in ("Deduplicate", "AnonymizeIPs", "MaskPayloads")]
    assert positions == sorted(positions)
    assert "window_packets" in html
    assert "500" in html
    assert "limit_mib=900" in html
    assert not ADDRESS.search(html), ADDRESS.search(html)
    assert "&lt;object object&gt;" in html
    assert KEY.hex() not in html


def test_element_ids_unique():
    pipeline = Pipeline([Deduplicate()])
    first = ELEMENT_ID.findall(pipeline._repr_html_())
    second = ELEMENT_ID.findall(pipeline._repr_html_())
    assert len(first) == len(second) == 1
    assert first != second
    number = int(second[0].rsplit("-", 1)[1])
    assert element_id("x") == f"pktmask-x-{number + 1}"


def test_safe_repr_strips_addresses():
    assert safe_repr(object()) == "<object object>"
    assert safe_repr("a" * 200, max_len=10) == "'aaaaaa..."


@pytest.fixture(scope="module")
def result(corpus_dir, tmp_path_factory):
    """A run over a capture with SPAN duplicates, TCP retransmissions and HTTP."""
    target = tmp_path_factory.mktemp("display") / "out.pcap"
    pipeline = Pipeline([Deduplicate(), AnonymizeIPs(key=KEY), MaskPayloads()], progress=False)
    run = pipeline.run(corpus_dir / "arkime_wireshark-retrans.pcap", target)
    yield run
    run.close()


def test_summary_frame_counts(result, corpus_dir):
    summary = summary_frame(result)
    stats = result.stats

    assert list(summary.index) == ["dedup", "anonymize", "mask"]
    assert summary.loc["dedup", "packets_in"] == tshark_count(corpus_dir / "arkime_wireshark-retrans.pcap")
    assert summary.loc["mask", "packets_out"] == tshark_count(result.output_path)
    assert summary.loc["dedup", "duplicates"] == stats.loc["dedup", "duplicates_dropped"] > 0
    assert summary.loc["dedup", "dropped"] == summary.loc["dedup", "duplicates"]
    assert summary.loc["anonymize", "addresses"] == len(result.mapping())
    assert summary.loc["mask", "bytes_kept"] == stats.loc["mask", "bytes_kept"]
    assert summary.loc["mask", "bytes_zeroed"] == stats.loc["mask", "bytes_zeroed"]
    assert summary.loc["mask", "tls_records"] == 0
    assert summary["peak_mib"].notna().all()


def test_result_html_and_text(result):
    bundle = result._repr_mimebundle_()
    html, text = bundle["text/html"], bundle["text/plain"]
    summary = summary_frame(result)

    for shown in (html, text):
        assert f"{result.packets_in} packets in, {result.packets_out} out" in shown
        assert not ADDRESS.search(shown)
        assert KEY.hex() not in shown
    for stage in ("dedup", "anonymize", "mask"):
        row = re.search(rf"<code>{stage}</code></td>(.*?)</tr>", html).group(1)
        cells = re.findall(r">([^<]*)</td>", row)
        counts = summary.loc[stage, ["packets_in", "packets_out", "dropped", "unparseable"]]
        assert cells[:4] == [str(value) for value in counts]
        assert cells[-1] == f"{summary.loc[stage, 'peak_mib']:.1f} MiB"
        assert cells[-2] == f"{summary.loc[stage, 'seconds']:.3f} s"
    assert re.search(
        r"<code>dedup</code></td>(<td[^>]*>[^<]*</td>){4}<td[^>]*>" + str(summary.loc["dedup", "duplicates"]),
        html,
    )
    assert "All counters" in html
    assert "distinct_digests" in html
    assert "***" in html
    assert len(ELEMENT_ID.findall(html)) == 1
    for stage in ("dedup", "anonymize", "mask"):
        assert re.search(
            rf"^{stage}\s+{summary.loc[stage, 'packets_in']}\s+{summary.loc[stage, 'packets_out']}\s",
            text,
            re.M,
        )
    assert result._repr_html_().count('class="pktmask-result"') == 1


def test_result_without_stages_or_memory(corpus_dir, tmp_path):
    pipeline = Pipeline([], progress=False, monitor_memory=False)
    with pipeline.run(corpus_dir / "pktmask_tls_1_2-2.pcap", tmp_path / "copy.pcap") as copy:
        bundle = copy._repr_mimebundle_()
    assert "14 packets in, 14 out" in bundle["text/plain"]
    assert "peak memory" not in bundle["text/plain"]
    assert "no stages" in bundle["text/html"]
