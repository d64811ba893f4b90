"""The packet explorer: the ipywidgets view and its static fallback outside a kernel."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from pktmask_nb import Deduplicate, Pipeline, explorer
from pktmask_nb.explorer import ALL_FLOWS, StaticExplorer, collect_packets
from pktmask_nb.explorer_widget import ExplorerWidget
from pktmask_nb.stages.anonymize import AnonymizeIPs
from pktmask_nb.stages.mask import MaskPayloads

KEY = bytes(range(32))
CAPTURE = "arkime_wireshark-retrans.pcap"  # duplicates (dropped frames) and HTTP
TLS_CAPTURE = "pktmask_tls_1_2_plainip.pcap"


def hex_bytes(html: str) -> bytes:
    """The bytes of a hex dump, read back from its spans."""
    pairs = re.findall(r'<span style="[^"]*">([0-9a-f ]+)</span>', html)
    return bytes.fromhex("".join(pairs).replace(" ", ""))


@pytest.fixture(scope="module")
def result(corpus_dir, tmp_path_factory):
    target = tmp_path_factory.mktemp("explorer") / "out.pcap"
    pipeline = Pipeline(
        [Deduplicate(), AnonymizeIPs(key=KEY), MaskPayloads()], progress=False, monitor_memory=False
    )
    run = pipeline.run(corpus_dir / CAPTURE, target)
    yield run
    run.close()


@pytest.fixture(scope="module")
def tls_result(corpus_dir, tmp_path_factory):
    target = tmp_path_factory.mktemp("explorer-tls") / "out.pcap"
    pipeline = Pipeline([AnonymizeIPs(key=KEY), MaskPayloads()], progress=False, monitor_memory=False)
    run = pipeline.run(corpus_dir / TLS_CAPTURE, target)
    yield run
    run.close()


def test_explore_outside_kernel_warns_once(result, monkeypatch):
    monkeypatch.setattr(explorer, "_warned_static", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = result.explore(limit=50)
        second = result.explore(frames=(10, 20))
    assert [str(w.message) for w in caught] == [
        "no Jupyter kernel is running: the explorer shows static HTML instead of widgets"
    ]
    assert isinstance(first, StaticExplorer)
    assert isinstance(second, StaticExplorer)
    assert len(first.packets) == 50
    assert list(second.packets["input frame"]) == list(range(10, 21))


def test_static_explorer_select(result):
    payloads = result.payloads(limit=None, max_hex_bytes=1 << 20).set_index("frame")
    view = result.explore(static=True)
    dropped = int(payloads.index[payloads["out_frame"].isna()][0])
    written = int(payloads.index[(payloads["payload_len"] > 0) & payloads["out_frame"].notna()][0])

    html = view.select(written)._repr_html_()
    before, after = html.split("after: output frame")
    assert f"showing input frame {written}" in html
    assert hex_bytes(before) == bytes.fromhex(payloads.loc[written, "before"])[:2048]
    assert hex_bytes(after) == bytes.fromhex(payloads.loc[written, "after"])[:2048]
    assert f"input frame {dropped} was dropped by the run" in view.select(dropped)._repr_html_()
    assert f"input frame {dropped}" in repr(view)
    assert "after:\ndropped" in repr(view)
    with pytest.raises(KeyError, match="not among the loaded packets"):
        view.select(10_000)


def test_widget_follows_controls(tls_result):
    packets = collect_packets(tls_result, flow=None, frames=None, limit=500, max_bytes=2048)
    widget = ExplorerWidget(packets)

    assert widget.flow_dropdown.value == ALL_FLOWS
    assert widget.packet_slider.max == len(packets) - 1
    flows = [value for _, value in widget.flow_dropdown.options if value != ALL_FLOWS]
    assert len(flows) == 1
    assert flows[0].startswith("TCP ")

    shown = []
    for index in range(len(packets)):
        widget.packet_slider.value = index
        assert f"input frame <b>{packets[index].frame}</b>" in widget.frame_label.value
        assert f"before: input frame {packets[index].frame}" in widget.before.value
        shown.append(widget.before.value)
    assert len(set(shown)) == len(packets)

    widget.select(4)
    assert widget.current.frame == 4
    widget.flow_dropdown.value = flows[0]
    assert widget.packet_slider.value == 0
    assert widget.current is packets[0]


def test_widget_marks_records(tls_result):
    payloads = tls_result.payloads(limit=None, max_hex_bytes=1 << 20)
    application_data = payloads[payloads["tls_records"].str.contains("application_data")].iloc[0]
    widget = ExplorerWidget(collect_packets(tls_result, flow=None, frames=None, limit=500, max_bytes=2048))
    widget.select(int(application_data["frame"]))

    assert "application_data (23)" in widget.before.value
    assert "application_data" in widget.facts.value
    after = hex_bytes(widget.after.value)
    assert after == bytes.fromhex(application_data["after"])
    kept = sum(end - start for start, end in application_data["kept_ranges"])
    assert widget.after.value.count("background:#d4f4d0") >= 1
    assert f"{kept} / {application_data['payload_len'] - kept}" in widget.facts.value


def test_explore_no_matching_packet(result):
    with pytest.raises(ValueError, match="no packet"):
        result.explore(flow="192.0.2.1:1 -> 192.0.2.2:2", static=True)


WITHOUT_IPYWIDGETS = """
import sys, warnings
sys.modules["ipywidgets"] = None  # makes `import ipywidgets` raise ImportError
from pktmask_nb import Pipeline
from pktmask_nb.stages.mask import MaskPayloads
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with Pipeline([MaskPayloads()], progress=False).run(sys.argv[1], sys.argv[2]) as result:
        views = [result.explore(), result.explore(frames=(2, 3))]
        html = result._repr_html_()
print(type(views[0]).__name__, type(views[1]).__name__, len(html) > 0)
print([str(w.message) for w in caught])
"""


def test_explore_without_ipywidgets_is_static(corpus_dir, tmp_path):
    command = [
        sys.executable,
        "-c",
        WITHOUT_IPYWIDGETS,
        str(corpus_dir / TLS_CAPTURE),
        str(tmp_path / "out.pcap"),
    ]
    env = {**_env(), "TMPDIR": str(tmp_path)}
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert completed.returncode == 0, completed.stderr
    kinds, messages = completed.stdout.splitlines()
    assert kinds == "StaticExplorer StaticExplorer True"
    assert messages == "['ipywidgets is not installed: the explorer shows static HTML instead of widgets']"


def _env() -> dict[str, str]:
    project_root = str(Path(__file__).absolute().parents[1])
    return {**os.environ, "PYTHONPATH": project_root}
