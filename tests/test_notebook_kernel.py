"""A real Jupyter kernel runs a generated notebook and displays every notebook object.

The notebook runs a pipeline on a corpus capture; the test reads the
`text/html` and `text/plain` outputs back and checks them against tshark
and against the same run made in this process.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from pktmask_nb import Deduplicate, Pipeline
from pktmask_nb.display import summary_frame
from pktmask_nb.stages.anonymize import AnonymizeIPs
from pktmask_nb.stages.mask import MaskPayloads

PROJECT_ROOT = Path(__file__).absolute().parents[1]
CAPTURE = "arkime_wireshark-retrans.pcap"
ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")
STAGES = "[Deduplicate(), AnonymizeIPs(key=bytes(range(32))), MaskPayloads()]"

CELLS = [
    "from pktmask_nb import Deduplicate, Pipeline\n"
    "from pktmask_nb.stages.anonymize import AnonymizeIPs\n"
    "from pktmask_nb.stages.mask import MaskPayloads\n"
    f"pipeline = Pipeline({STAGES}, progress=False)\n"
    "pipeline",
    "result = pipeline.run({input!r}, {output!r})\nresult",
    "MaskPayloads(keep_dns=True)",
    "result.payloads(limit=20)",
    "result.flows()",
    "result.mapping()",
    "result.explore(limit=100)",
    "%matplotlib inline\nresult.plot_stage_summary();",
    "result.close()",
]


def tshark_fields(path: Path, *fields: str) -> list[list[str]]:
    command = ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "separator=\t"]
    for name in fields:
        command += ["-e", name]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return [line.split("\t") for line in output.splitlines()]


@pytest.fixture(scope="module")
def outputs(corpus_dir, tmp_path_factory) -> list[dict[str, str]]:
    """Execute the notebook in a fresh kernel; return each cell's display data, merged."""
    work = tmp_path_factory.mktemp("kernel")
    notebook = nbformat.v4.new_notebook()
    source = {"input": str(corpus_dir / CAPTURE), "output": str(work / "out.pcap")}
    notebook.cells = [
        nbformat.v4.new_code_cell(cell.format(**source) if "{input" in cell else cell) for cell in CELLS
    ]
    client = NotebookClient(
        notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(PROJECT_ROOT)}}
    )
    client.execute(
        env={**os.environ, "TMPDIR": str(work), "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    )

    merged = []
    for cell in notebook.cells:
        data: dict[str, str] = {}
        for output in cell.outputs:
            assert output.output_type != "error", output
            data.update(output.get("data", {}))
        merged.append(data)
    return merged


@pytest.fixture(scope="module")
def expected(corpus_dir, tmp_path_factory):
    """The same run in this process, for the counts the kernel must show."""
    stages = [Deduplicate(), AnonymizeIPs(key=bytes(range(32))), MaskPayloads()]
    target = tmp_path_factory.mktemp("expected") / "out.pcap"
    with Pipeline(stages, progress=False, monitor_memory=False).run(corpus_dir / CAPTURE, target) as result:
        yield summary_frame(result), result.flows(), result.mapping()


def test_outputs_have_no_addresses(outputs):
    for data in outputs:
        for mime in ("text/html", "text/plain"):
            assert not ADDRESS.search(data.get(mime, "")), data.get(mime)


def test_outputs_have_plain_text(outputs):
    for data in outputs[:-1]:
        assert data.get("text/plain")


def test_pipeline_display_hides_key(outputs):
    page = outputs[0]["text/html"]
    positions = [page.index(name) for name in ("Deduplicate", "AnonymizeIPs", "MaskPayloads")]
    assert positions == sorted(positions)
    assert "***" in page
    assert bytes(range(32)).hex() not in page
    assert outputs[0]["text/plain"] == (
        "Pipeline([Deduplicate(), AnonymizeIPs(key='***'), MaskPayloads()], progress=False)"
    )
    assert "keep_dns" in outputs[2]["text/html"]
    assert outputs[2]["text/plain"] == "MaskPayloads(keep_dns=True)"


def test_result_display_counts(outputs, expected, corpus_dir):
    summary, _, _ = expected
    frames_in = len(tshark_fields(corpus_dir / CAPTURE, "frame.number"))
    page, text = outputs[1]["text/html"], outputs[1]["text/plain"]

    assert f"{frames_in} packets in, {summary.loc['mask', 'packets_out']} out" in page
    for stage, row in summary.iterrows():
        cells = re.findall(
            r">([^<]*)</td>", re.search(rf"<code>{stage}</code></td>(.*?)</tr>", page).group(1)
        )
        counts = [row[c] for c in ("packets_in", "packets_out", "dropped", "unparseable")]
        assert cells[:4] == [str(value) for value in counts]
        assert re.search(
            rf"^{stage}\s+{row['packets_in']}\s+{row['packets_out']}\s+{row['dropped']}\s", text, re.M
        )
    assert str(summary.loc["dedup", "duplicates"]) in re.search(
        r"<code>dedup</code></td>(.*?)</tr>", page
    ).group(1)
    assert f">{summary.loc['mask', 'bytes_zeroed']}<" in page


def test_payloads_display_matches_tshark(outputs, corpus_dir):
    page = outputs[3]["text/html"]
    rows = re.findall(r"<tr>\s*<th>(\d+)</th>(.*?)</tr>", page, re.S)
    assert [int(index) for index, _ in rows] == list(range(20))
    tshark = tshark_fields(corpus_dir / CAPTURE, "frame.number", "tcp.len")[:20]
    for (_, cells), (frame, tcp_len) in zip(rows, tshark, strict=True):
        values = re.findall(r"<td>(.*?)</td>", cells, re.S)
        assert values[0] == frame
        assert tcp_len in values  # the payload_len column


def test_flows_and_mapping_display(outputs, expected):
    _, flows, mapping = expected
    page = outputs[4]["text/html"]
    assert len(re.findall(r"<tr>\s*<th>\d+</th>", page)) == len(flows)
    for label in flows["flow"]:
        assert html.escape(label) in page
    mapping_page = outputs[5]["text/html"]
    for original, anonymized in zip(mapping["original"], mapping["anonymized"], strict=True):
        assert re.search(rf"<td>{re.escape(original)}</td>\s*<td>{re.escape(anonymized)}</td>", mapping_page)


def test_explorer_widget_and_plot_image(outputs):
    assert "application/vnd.jupyter.widget-view+json" in outputs[6]
    assert outputs[6]["text/plain"] == "ExplorerWidget: 100 packets loaded, showing input frame 1"
    assert "image/png" in outputs[7]
