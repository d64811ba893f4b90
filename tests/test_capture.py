"""Capture readers and writers: exact round trips, checked with tshark."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from capture_builders import end_of_options, epb, idb, option, pcap_bytes, shb, write
from corpus_tools import corpus_files, tshark_fields

from pktmask_nb import CaptureError, Pipeline
from pktmask_nb.capture import open_reader

FRAME_FIELDS = [
    "frame.time_epoch",
    "frame.len",
    "frame.cap_len",
    "frame.interface_id",
    "frame.encap_type",
    "frame.md5_hash",
]


@pytest.mark.parametrize("source", corpus_files(), ids=lambda p: p.name)
def test_empty_pipeline_reproduces_corpus_capture(source: Path, tmp_path: Path, tshark: str) -> None:
    target = tmp_path / source.name
    before = hashlib.sha256(source.read_bytes()).hexdigest()

    result = Pipeline([], progress=False).run(source, target)
    result.close()

    assert hashlib.sha256(source.read_bytes()).hexdigest() == before, "the input was modified"
    expected = tshark_fields(source, FRAME_FIELDS, "-o", "frame.generate_md5_hash:TRUE")
    actual = tshark_fields(target, FRAME_FIELDS, "-o", "frame.generate_md5_hash:TRUE")
    assert result.packets_in == len(expected)
    assert len(actual) == len(expected)
    assert all(len(row[5]) == 32 for row in expected), "tshark gave no frame digests"
    for number, (want, got) in enumerate(zip(expected, actual, strict=True), start=1):
        assert got == want, f"frame {number} differs"


def _roundtrip(tmp_path: Path, content: bytes, name: str, **options: object) -> Path:
    source = write(tmp_path / name, content)
    target = tmp_path / f"out-{name}"
    Pipeline([], progress=False, **options).run(source, target).close()
    return target


@pytest.mark.parametrize("byte_order", ["<", ">"])
@pytest.mark.parametrize("nanoseconds", [False, True])
def test_pcap_keeps_byte_order_and_resolution(tmp_path: Path, byte_order: str, nanoseconds: bool) -> None:
    frac = 123_456_789 if nanoseconds else 123_456
    packets = [(1_700_000_000, frac, b"\x01" * 60, 60), (1_700_000_001, 7, b"\x02" * 30, 1514)]
    content = pcap_bytes(packets, byte_order=byte_order, nanoseconds=nanoseconds, linktype=101)

    target = _roundtrip(tmp_path, content, "in.pcap")

    assert target.read_bytes() == content


def test_pcapng_two_interfaces_keep_linktype_and_resolution(tmp_path: Path, tshark: str) -> None:
    nano = option(9, b"\x09")
    binary = option(9, b"\x94")  # 2**-20 seconds per tick
    content = (
        shb(option(1, b"capture comment with 10.1.2.3") + end_of_options())
        + idb(1, 262144, nano + option(2, b"eth0") + end_of_options())
        + idb(113, 128, binary + end_of_options())
        + epb(0, 1_700_000_000_123_456_789, b"\xaa" * 64, 64, option(1, b"secret") + end_of_options())
        + epb(1, 1_700_000_000 * 2**20 + 5, b"\xbb" * 128, 300)
    )

    target = _roundtrip(tmp_path, content, "two.pcapng")
    rows = tshark_fields(
        target, ["frame.time_epoch", "frame.encap_type", "frame.len", "frame.cap_len", "frame.comment"]
    )

    assert rows[0][:4] == ["1700000000.123456789", "1", "64", "64"]
    assert rows[1][1:4] == ["25", "300", "128"]
    assert rows[1][0].startswith("1700000000.0000047")
    assert rows[0][4] == "", "the packet comment must be dropped by default"
    output = target.read_bytes()
    assert b"secret" not in output
    assert b"10.1.2.3" not in output
    assert b"eth0" not in output


def test_pcapng_comments_kept_on_request(tmp_path: Path) -> None:
    content = (
        shb(option(1, b"section note") + end_of_options())
        + idb(1, 65535, option(2, b"eth0") + end_of_options())
        + epb(0, 5, b"\xaa" * 64, 64, option(1, b"packet note") + end_of_options())
    )

    output = _roundtrip(tmp_path, content, "c.pcapng", keep_comments=True).read_bytes()

    assert b"section note" in output
    assert b"packet note" in output
    assert b"eth0" in output


def test_pcapng_drops_secrets_and_name_blocks(tmp_path: Path) -> None:
    secrets_block = struct_block(0x0A, b"TLSK" + b"\0\0\0\x08" + b"KEYBYTES")
    names_block = struct_block(0x04, b"\x01\x00\x08\x00" + b"\x0a\x01\x02\x03host" + b"\0\0\0\0")
    content = shb() + idb(1, 65535) + secrets_block + names_block + epb(0, 1, b"\xcc" * 60, 60)
    source = write(tmp_path / "s.pcapng", content)

    result = Pipeline([], progress=False).run(source, tmp_path / "o.pcapng")
    output = (tmp_path / "o.pcapng").read_bytes()

    assert b"KEYBYTES" not in output
    assert b"host" not in output
    assert result.skipped_blocks == {"Decryption Secrets Block": 1, "Name Resolution Block": 1}
    result.close()


def struct_block(block_type: int, body: bytes) -> bytes:
    from capture_builders import block

    return block(block_type, body + b"\0" * (-len(body) % 4))


def test_pcapng_multiple_sections(tmp_path: Path, tshark: str) -> None:
    content = (
        shb()
        + idb(1, 65535)
        + epb(0, 1, b"\x01" * 60, 60)
        + shb()
        + idb(101, 65535)
        + epb(0, 2, b"\x45" + b"\0" * 39, 40)
    )
    target = _roundtrip(tmp_path, content, "sections.pcapng")

    rows = tshark_fields(target, ["frame.encap_type", "frame.cap_len"])

    assert rows == [["1", "60"], ["7", "40"]]


def test_pcapng_interface_without_packets_is_kept(tmp_path: Path) -> None:
    content = shb() + idb(1, 65535) + idb(113, 65535) + epb(0, 1, b"\x01" * 60, 60)
    target = _roundtrip(tmp_path, content, "idle.pcapng")

    reader = open_reader(target)
    list(reader)
    reader.close()

    assert [i.linktype for i in reader.interfaces] == [1, 113]


BAD_INPUTS = {
    "empty": (b"", "empty", None),
    "truncated_header": (pcap_bytes([])[:10], "truncated pcap file header", None),
    "garbage": (b"GARBAGE!" * 20, "not a pcap or pcapng file", None),
    "truncated_last_packet": (
        pcap_bytes([(1, 0, b"\x01" * 60, 60), (2, 0, b"\x02" * 60, 60)])[:-20],
        "the file ends inside the packet data",
        2,
    ),
    "corrupt_length": (
        pcap_bytes([(1, 0, b"\x01" * 60, 60)])[:24] + b"\0" * 8 + b"\xff\xff\xff\x7f" + b"\0" * 4,
        "record header is corrupt",
        1,
    ),
    "pcapng_truncated_block": (
        (shb() + idb(1, 65535) + epb(0, 1, b"\x01" * 60, 60))[:-10],
        "the file ends inside a block",
        1,
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_error_and_no_output(tmp_path: Path, case: str) -> None:
    content, message, packet_number = BAD_INPUTS[case]
    source = write(tmp_path / f"{case}.pcap", content)
    target = tmp_path / "out" / "result.pcap"
    target.parent.mkdir()

    with pytest.raises(CaptureError) as caught:
        Pipeline([], progress=False).run(source, target)

    assert message in str(caught.value)
    assert str(source) in str(caught.value)
    assert caught.value.packet_number == packet_number
    assert list(target.parent.iterdir()) == [], "no output, and no partial file, may remain"
    assert source.read_bytes() == content


def test_output_equal_to_input_is_rejected(tmp_path: Path) -> None:
    content = pcap_bytes([(1, 0, b"\x01" * 60, 60)])
    source = write(tmp_path / "same.pcap", content)

    with pytest.raises(CaptureError, match="output is the input file"):
        Pipeline([], progress=False).run(source, source)

    assert source.read_bytes() == content


def test_output_opens_in_tshark_after_capinfos_check(tmp_path: Path, tshark: str) -> None:
    content = pcap_bytes([(1, 0, b"\x01" * 60, 60)], linktype=1)
    target = _roundtrip(tmp_path, content, "one.pcap")

    info = subprocess.run(["capinfos", "-c", "-M", str(target)], capture_output=True, text=True, check=True)

    assert "Number of packets:   1" in info.stdout


CONVERSIONS = [
    ("ppp_nanosecs_big_endian.pcap", "pcapng"),
    ("pktmask_tls_1_2_double_vlan.pcap", "pcapng"),
    ("zeek_ssh-dups.pcap", "pcapng"),
    ("cs_http_espn.pcapng", "pcap"),
    ("cs_ipv6_fragments.pcapng", "pcap"),
]


@pytest.mark.parametrize(("name", "output_format"), CONVERSIONS)
def test_format_conversion_keeps_packets(
    corpus_dir: Path, tmp_path: Path, tshark: str, name: str, output_format: str
) -> None:
    source = corpus_dir / name
    target = tmp_path / f"converted.{output_format}"

    Pipeline([], progress=False, output_format=output_format).run(source, target).close()

    info = subprocess.run(["capinfos", "-t", str(target)], capture_output=True, text=True, check=True)
    file_type = info.stdout.splitlines()[-1]
    expected = {"pcap": " - nanosecond pcap", "pcapng": "/... - pcapng"}[output_format]
    assert file_type.endswith(expected), file_type
    fields = ["frame.time_epoch", "frame.len", "frame.cap_len", "frame.encap_type", "frame.md5_hash"]
    md5 = ("-o", "frame.generate_md5_hash:TRUE")
    assert tshark_fields(target, fields, *md5) == tshark_fields(source, fields, *md5)


def test_pcap_output_rejects_mixed_linktypes(corpus_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "mixed.pcap"

    with pytest.raises(CaptureError, match="pcap allows one per file") as caught:
        Pipeline([], progress=False, output_format="pcap").run(
            corpus_dir / "ppp_pcapng-example.pcapng", target
        )

    assert caught.value.packet_number is not None
    assert not target.exists()
