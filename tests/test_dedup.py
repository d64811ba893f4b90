"""Deduplicate: counts against tshark's frame digests, windows, SPAN copies, per-file state."""

from __future__ import annotations

from pathlib import Path

import pytest
from capture_builders import pcap_bytes, write
from corpus_tools import tshark_fields
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Dot1Q, Ether

from pktmask_nb import Deduplicate, Pipeline

MD5 = ("-o", "frame.generate_md5_hash:TRUE")


@pytest.mark.parametrize("name", ["zeek_ssh-dups.pcap", "arkime_wireshark-retrans.pcap", "ppp_sll.pcap"])
def test_dedup_matches_tshark_digests(corpus_dir: Path, tmp_path: Path, tshark: str, name: str) -> None:
    source = corpus_dir / name
    digests = [row[0] for row in tshark_fields(source, ["frame.md5_hash"], *MD5)]
    first_numbers = []
    seen = set()
    for number, digest in enumerate(digests, start=1):
        if digest not in seen:
            seen.add(digest)
            first_numbers.append(number)

    result = Pipeline([Deduplicate()], progress=False).run(source, tmp_path / name)
    output_digests = [row[0] for row in tshark_fields(tmp_path / name, ["frame.md5_hash"], *MD5)]

    print(f"{name}: {len(digests)} packets, {len(digests) - len(seen)} duplicates")
    assert result.stats.loc["dedup", "duplicates_dropped"] == len(digests) - len(seen)
    assert output_digests == [digests[n - 1] for n in first_numbers], "first copies kept, in order"
    frame_map = result.frame_map()
    assert [n + 1 for n in range(len(digests)) if frame_map[n]] == first_numbers
    result.close()


def _tcp_frames() -> list[bytes]:
    frames = []
    for seq in range(5):
        frames.append(bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(seq=seq) / b"x"))
    return frames


def _run(tmp_path: Path, frames: list[bytes], stage: Deduplicate, spacing_us: int = 1) -> list[int]:
    packets = [(100, i * spacing_us, data, len(data)) for i, data in enumerate(frames)]
    source = write(tmp_path / "in.pcap", pcap_bytes(packets))
    result = Pipeline([stage], progress=False).run(source, tmp_path / "out.pcap")
    kept = [i + 1 for i, n in enumerate(result.frame_map()) if n]
    result.close()
    return kept


def test_window_packets_forgets_older_packets(tmp_path: Path) -> None:
    a, b, c, d, _ = _tcp_frames()
    frames = [a, b, a, c, d, a]

    assert _run(tmp_path, frames, Deduplicate()) == [1, 2, 4, 5]
    assert _run(tmp_path, frames, Deduplicate(window_packets=2)) == [1, 2, 4, 5, 6]


def test_window_seconds_forgets_older_packets(tmp_path: Path) -> None:
    a, b, *_ = _tcp_frames()
    frames = [a, b, a, b]
    # 0.4 s apart: the copy 0.8 s later is outside a 0.5 s window.
    kept = _run(tmp_path, frames, Deduplicate(window_seconds=0.5), spacing_us=400_000)

    assert kept == [1, 2, 3, 4]
    assert _run(tmp_path, frames, Deduplicate(window_seconds=2.0), spacing_us=400_000) == [1, 2]


def test_span_copies_dropped_only_on_request(tmp_path: Path) -> None:
    inner = IP(src="10.0.0.1", dst="10.0.0.2", ttl=64) / TCP(seq=7) / b"payload"
    original = bytes(Ether() / Dot1Q(vlan=10) / inner)
    # Routed between the two VLANs: new MAC addresses and a lower TTL.
    copy = Ether(src="02:00:00:00:00:fe", dst="02:00:00:00:00:01") / Dot1Q(vlan=20) / IP(bytes(inner))
    copy[IP].ttl = 63
    del copy[IP].chksum
    copy_bytes = bytes(copy)
    untagged = bytes(Ether() / IP(bytes(inner)))
    assert copy_bytes != original

    assert _run(tmp_path, [original, copy_bytes, untagged], Deduplicate()) == [1, 2, 3]
    assert _run(tmp_path, [original, copy_bytes, untagged], Deduplicate(ignore_span_differences=True)) == [1]


def test_same_stage_on_second_file_starts_clean(tmp_path: Path) -> None:
    frames = _tcp_frames()
    first = write(tmp_path / "a.pcap", pcap_bytes([(1, 0, f, len(f)) for f in frames]))
    second = write(tmp_path / "b.pcap", pcap_bytes([(2, 0, f, len(f)) for f in frames[:3]]))
    stage = Deduplicate()
    pipeline = Pipeline([stage], progress=False)

    pipeline.run(first, tmp_path / "a-out.pcap").close()
    result = pipeline.run(second, tmp_path / "b-out.pcap")

    assert result.packets_out == 3
    assert stage.stats()["duplicates_dropped"] == 0
    result.close()


@pytest.mark.parametrize("option", [{"window_packets": 0}, {"window_seconds": -1.0}])
def test_invalid_window_rejected_at_run(tmp_path: Path, option: dict) -> None:
    source = write(tmp_path / "in.pcap", pcap_bytes([]))
    stage = Deduplicate(**option)

    with pytest.raises(ValueError, match="Deduplicate: window_"):
        Pipeline([stage], progress=False).run(source, tmp_path / "out.pcap")

    assert not (tmp_path / "out.pcap").exists()


def test_both_windows_apply_together(tmp_path: Path) -> None:
    a, b, c, d, _ = _tcp_frames()
    frames = [a, b, a, c, d, a]

    kept = _run(tmp_path, frames, Deduplicate(window_packets=2, window_seconds=100.0))

    assert kept == [1, 2, 4, 5, 6]
    assert _run(tmp_path, frames, Deduplicate(window_packets=10, window_seconds=100.0)) == [1, 2, 4, 5]
