"""`RunResult.payloads()` and `flows()` on corpus captures, checked against tshark on the input and the output."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from pktmask_nb import Deduplicate, Pipeline
from pktmask_nb.errors import CaptureError
from pktmask_nb.stages.anonymize import AnonymizeIPs
from pktmask_nb.stages.mask import MaskPayloads

KEY = bytes(range(32))
# Ethernet, VLAN and Linux SLL captures with TLS, retransmissions, reordering, duplicates and DNS.
CAPTURES = [
    "pktmask_tls_1_0_multi_segment_google-https.pcap",
    "pktmask_tls_1_2_double_vlan.pcap",
    "ppp_sll.pcap",
    "arkime_wireshark-retrans.pcap",
]
FIELDS = [
    "frame.number",
    "frame.cap_len",
    "frame.len",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "tcp.srcport",
    "tcp.dstport",
    "udp.srcport",
    "udp.dstport",
    "tcp.len",
    "udp.length",
    "tls.record.content_type",
    "tcp.analysis.flags",
    "tcp.payload",
    "udp.payload",
]
REASSEMBLY = ["-o", "tcp.desegment_tcp_streams:TRUE", "-o", "tls.desegment_ssl_records:TRUE"]
ALL_BYTES = 1 << 20


def tshark_frames(path: Path, *options: str) -> list[dict[str, str]]:
    """One dict per frame, field -> value; a field tshark repeats (tunnels) keeps its last value."""
    command = ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "separator=\t"]
    command += ["-E", "occurrence=a", "-E", "aggregator=;", *options]
    for name in FIELDS:
        command += ["-e", name]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    frames = []
    for line in output.splitlines():
        values = line.split("\t")
        frames.append(
            {
                name: value.split(";")[-1] if name != "tls.record.content_type" else value
                for name, value in zip(FIELDS, values, strict=True)
            }
        )
    return frames


def endpoints(frame: dict[str, str]) -> tuple[str, int, str, int] | None:
    """(src, sport, dst, dport) of a TCP or UDP frame, as tshark dissects it."""
    src = frame["ip.src"] or frame["ipv6.src"]
    dst = frame["ip.dst"] or frame["ipv6.dst"]
    for proto in ("tcp", "udp"):
        if frame[f"{proto}.srcport"]:
            return src, int(frame[f"{proto}.srcport"]), dst, int(frame[f"{proto}.dstport"])
    return None


@pytest.fixture(scope="module", params=CAPTURES)
def run(request, corpus_dir, tmp_path_factory):
    """(input path, result, tshark frames of the input, tshark frames of the output)."""
    source = corpus_dir / request.param
    target = tmp_path_factory.mktemp("views") / f"out-{request.param}"
    pipeline = Pipeline(
        [Deduplicate(), AnonymizeIPs(key=KEY), MaskPayloads()], progress=False, monitor_memory=False
    )
    result = pipeline.run(source, target)
    yield source, result, tshark_frames(source, *REASSEMBLY), tshark_frames(target)
    result.close()


def test_payloads_rows_match_tshark(run):
    source, result, frames, _ = run
    rows = result.payloads(limit=None, max_hex_bytes=ALL_BYTES)

    assert list(rows["frame"]) == [int(f["frame.number"]) for f in frames]
    checked = 0
    for row, frame in zip(rows.itertuples(), frames, strict=True):
        ends = endpoints(frame)
        if ends is None:
            assert pd.isna(row.flow)
            continue
        assert (row.src, row.sport, row.dst, row.dport) == ends
        assert row.transport == ("TCP" if frame["tcp.srcport"] else "UDP")
        if frame["tcp.len"] and frame["frame.cap_len"] == frame["frame.len"]:
            assert row.payload_len == int(frame["tcp.len"])
            assert row.before == frame["tcp.payload"]
            checked += 1
        elif frame["udp.length"] and frame["frame.cap_len"] == frame["frame.len"]:
            assert row.payload_len == int(frame["udp.length"]) - 8
            assert row.before == frame["udp.payload"]
            checked += 1
    assert checked > 0.9 * len(frames) - sum(endpoints(f) is None for f in frames)


def test_tls_record_types_match_tshark_reassembly(run):
    _, result, frames, _ = run
    rows = result.payloads(limit=None).set_index("frame")
    compared = Counter()
    for frame in frames:
        if not frame["tcp.len"] or frame["tcp.analysis.flags"]:
            # tshark does not dissect a retransmission's TLS again, and names a record
            # completed by an out-of-order segment in the frame that fills the hole.
            continue
        expected = tuple(int(t) for t in frame["tls.record.content_type"].replace(";", ",").split(",") if t)
        got = rows.loc[int(frame["frame.number"]), "tls_types"]
        compared[expected == got] += 1
        if expected and got:
            assert got == expected, f"frame {frame['frame.number']}"
    # Where one side found records and the other none, the stage stopped trusting a direction
    # or tshark lost one; those frames must stay rare.
    assert compared[True] >= 0.97 * sum(compared.values())


def test_after_columns_match_output(run):
    _, result, _, out_frames = run
    rows = result.payloads(limit=None, max_hex_bytes=ALL_BYTES)
    written = rows[rows["out_frame"].notna()]

    assert list(written["out_frame"]) == [int(f["frame.number"]) for f in out_frames]
    assert rows["out_frame"].isna().sum() == result.packets_in - result.packets_out
    for row, frame in zip(written.itertuples(), out_frames, strict=True):
        ends = endpoints(frame)
        if ends is not None:
            assert row.out_flow == f"{_host(ends[0])}:{ends[1]} -> {_host(ends[2])}:{ends[3]}"
        if frame["tcp.payload"] and frame["frame.cap_len"] == frame["frame.len"]:
            assert row.after == frame["tcp.payload"]


def test_kept_ranges_match_output(run):
    _, result, _, _ = run
    rows = result.payloads(limit=None, max_hex_bytes=ALL_BYTES)
    tcp = rows[rows["protocol"].isin(["TCP", "TLS"]) & rows["out_frame"].notna()]

    mask = result.stats.loc["mask"]
    assert tcp["kept"].sum() == mask["bytes_kept"]
    assert tcp["zeroed"].sum() == mask["bytes_zeroed"]
    for row in tcp.itertuples():
        before, after = bytes.fromhex(row.before), bytes.fromhex(row.after)
        kept = bytearray(len(after))
        for start, end in row.kept_ranges:
            assert after[start:end] == before[start:end]
            kept[start:end] = b"\1" * (end - start)
        assert all(byte == 0 for byte, keep in zip(after, kept, strict=True) if not keep)


def test_flows_match_tshark_counts(run):
    _, result, frames, _ = run
    flows = result.flows()
    expected_packets: Counter = Counter()
    expected_bytes: Counter = Counter()
    for frame in frames:
        ends = endpoints(frame)
        if ends is not None:
            expected_packets[ends] += 1
            expected_bytes[ends] += int(frame["frame.cap_len"])

    got = {(r.src, r.sport, r.dst, r.dport): r for r in flows.itertuples()}
    assert set(got) == set(expected_packets)
    for ends, row in got.items():
        assert row.packets == expected_packets[ends]
        assert row.bytes == expected_bytes[ends]
    tcp = flows[flows["protocol"] == "TCP"]
    assert tcp["kept"].sum() == result.stats.loc["mask", "bytes_kept"]
    assert tcp["tls_records"].sum() == result.stats.loc["mask", "tls_records"]
    assert flows["packets_out"].sum() <= result.packets_out


def test_flow_filter_matches_tshark(run):
    source, result, _, _ = run
    flows = result.flows()
    busiest = flows[flows["protocol"] == "TCP"].sort_values("packets", kind="stable").iloc[-1]
    address = "ipv6" if ":" in busiest["src"] else "ip"
    one_way = (
        f"{address}.src=={busiest['src']} && tcp.srcport=={busiest['sport']} && "
        f"{address}.dst=={busiest['dst']} && tcp.dstport=={busiest['dport']}"
    )
    both_ways = f"{address}.addr=={busiest['src']} && {address}.addr=={busiest['dst']} && tcp.port=={busiest['sport']} && tcp.port=={busiest['dport']}"

    for label, display_filter in ((busiest["flow"], one_way), (busiest["out_flow"], one_way)):
        rows = result.payloads(flow=label, limit=None)
        assert list(rows["frame"]) == _tshark_frame_numbers(source, display_filter)
    conversation = result.payloads(flow=busiest["flow"], limit=1)
    label = _conversation_label(result, int(conversation["frame"].iloc[0]))
    assert list(result.payloads(flow=label, limit=None)["frame"]) == _tshark_frame_numbers(source, both_ways)


def _conversation_label(result, frame: int) -> str:
    from pktmask_nb.packetview import iter_packet_views

    view = next(iter_packet_views(result, first_frame=frame, last_frame=frame))
    return view.flow.conversation


def _tshark_frame_numbers(path: Path, display_filter: str) -> list[int]:
    command = ["tshark", "-n", "-r", str(path), "-Y", display_filter, "-T", "fields", "-e", "frame.number"]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return [int(line) for line in output.split()]


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


# -- filters, limits and reading on demand -------------------------------------------------


@pytest.fixture(scope="module")
def small(corpus_dir, tmp_path_factory):
    target = tmp_path_factory.mktemp("small") / "out.pcap"
    pipeline = Pipeline([MaskPayloads()], progress=False, monitor_memory=False)
    result = pipeline.run(corpus_dir / "pktmask_tls_1_2_plainip.pcap", target)
    yield result
    result.close()


def test_frames_and_limit_select_rows(small):
    assert list(small.payloads(frames=(5, 9))["frame"]) == [5, 6, 7, 8, 9]
    assert list(small.payloads(frames=range(5, 10))["frame"]) == [5, 6, 7, 8, 9]
    assert list(small.payloads(limit=3)["frame"]) == [1, 2, 3]
    assert list(small.payloads(frames=(20, 1000))["frame"]) == [20, 21, 22]
    empty = small.payloads(limit=0)
    assert empty.empty
    assert "before" in empty.columns
    for bad in ((0, 5), (9, 5), range(1, 10, 2)):
        with pytest.raises(ValueError):
            small.payloads(frames=bad)


def test_hex_cut_at_max_bytes(small):
    rows = small.payloads(max_hex_bytes=4).set_index("frame")
    long_row = rows[rows["payload_len"] > 4].iloc[0]
    assert (
        long_row["before"].startswith(long_row["before"][:8])
        and long_row["before"][8:] == f"…(+{long_row['payload_len'] - 4})"
    )


def test_payloads_without_anonymization(small):
    rows = small.payloads(limit=None)
    flows = rows[rows["flow"].notna()]
    assert (flows["flow"] == flows["out_flow"]).all()
    with pytest.raises(KeyError, match="anonymize"):
        small.mapping()


def test_mapping_from_anonymize_stage(run):
    _, result, _, _ = run
    mapping = result.mapping()
    assert mapping.equals(result.stage("anonymize").mapping())
    assert len(mapping) == result.stats.loc["anonymize", "unique_addresses"]


def test_payloads_without_masking(corpus_dir, tmp_path):
    pipeline = Pipeline([AnonymizeIPs(key=KEY)], progress=False, monitor_memory=False)
    with pipeline.run(corpus_dir / "pktmask_tls_1_2-2.pcap", tmp_path / "out.pcap") as result:
        rows = result.payloads()
    assert (rows["kept"] == rows["payload_len"]).all()
    assert (rows["zeroed"] == 0).all()
    assert (rows["before"] == rows["after"]).all()


def test_payloads_stop_after_limit(corpus_dir, tmp_path):
    """A broken record after the first packets stops a full read but not a read of the first rows."""
    source = tmp_path / "in.pcap"
    shutil.copy(corpus_dir / "pktmask_tls_1_2_plainip.pcap", source)
    pipeline = Pipeline([MaskPayloads()], progress=False, monitor_memory=False)
    with pipeline.run(source, tmp_path / "out.pcap") as result:
        for path in (source, result.output_path):
            with open(path, "ab") as capture:
                capture.write(b"\x01\x02\x03")  # a cut record header
        assert len(result.payloads(limit=10)) == 10
        with pytest.raises(CaptureError):
            result.payloads(limit=None)


def test_payloads_after_close_raise(corpus_dir, tmp_path):
    pipeline = Pipeline([MaskPayloads()], progress=False, monitor_memory=False)
    result = pipeline.run(corpus_dir / "pktmask_tls_1_2-2.pcap", tmp_path / "out.pcap")
    result.close()
    with pytest.raises(RuntimeError, match="closed"):
        result.payloads()
