"""MaskPayloads on the real TLS captures, checked against tshark's TLS dissection.

What the oracle checks, per file:

* Records. tshark (TCP and TLS reassembly on, out-of-order reassembly on)
  lists the TLS records of every frame; in each direction of each TCP
  connection they come in stream order. That list of (content type,
  length) must equal the stage's list for the same direction. Where the
  stage stopped trusting a direction (a gap, or bytes that are not TLS),
  its list must be a prefix of tshark's, and the records tshark found after
  that point are counted apart as `after_stage_stop`: tshark resynchronizes
  at segment starts, the stage fails closed on purpose. Where tshark's list
  is a prefix of the stage's, tshark lost the stream (it does not reassemble
  across a segment missing inside a record body, and does not list a record
  cut off by the end of the capture) while the stage did not: those records
  are counted as `stage_only`, and each one's type, version major and
  length bytes must be found at its offset in the input payloads.
* Bytes. The tshark records are laid end to end from the first payload
  byte of the direction (ISN + 1 when the SYN was captured), giving the
  stream offsets to keep: every header, and whole handshake, alert,
  change_cipher_spec and heartbeat records (and the checked stage-only
  records after them). Each byte of every TCP payload
  of the output (as tshark extracts it, without reassembly) must then be
  the input byte where tshark's records say keep and zero elsewhere. Kept
  bytes that the stage zeroed after it stopped trusting a direction are
  counted apart (`zeroed_after_stage_stop`); every other difference is a
  mismatch and fails the test.
* Leaks. No 8-byte window of the input payload bytes that must be zeroed
  (skipping windows of fewer than four distinct byte values, and windows that
  also occur in bytes that are kept) appears anywhere in the output frames.
"""

from __future__ import annotations

import json
import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from corpus_tools import CHECKSUM_OPTIONS

from pktmask_nb import Pipeline
from pktmask_nb.capture import open_reader
from pktmask_nb.maskreport import MaskedStream
from pktmask_nb.seqspace import SEQ_MODULUS, StreamVerdict
from pktmask_nb.stages.mask import MaskPayloads
from pktmask_nb.tls import HEADER_LEN

TLS_CAPTURES = [
    "pktmask_google-https-cachedlink_plus_sitelink.pcap",
    "pktmask_https-justlaunchpage.pcap",
    "pktmask_ssl_3.pcap",
    "pktmask_tls_1_0_multi_segment_google-https.pcap",
    "pktmask_tls_1_0_sslerr1-70.pcap",
    "pktmask_tls_1_2-2.pcap",
    "pktmask_tls_1_2_double_vlan.pcap",
    "pktmask_tls_1_2_plainip.pcap",
    "pktmask_tls_1_2_single_vlan.pcap",
    "pktmask_tls_1_3_0-RTT-2_22_23_mix.pcap",
    "ppp_tls2.pcap",
    "ppp_example2.pcap",
    "ppp_raw_ip.pcap",
    "zeek_tls13-openjdk-sll2.pcap",
    "ppp_pcapng-example.pcapng",
]
# MySQL connections that switch to TLS after a plaintext greeting: the stage
# sees a stream that does not start with a TLS record and zeroes all of it.
UPGRADED_TO_TLS = {"ppp_pcapng-example.pcapng"}
KEEP_WHOLE = {20, 21, 22, 24}
REASSEMBLY = [
    "-o",
    "tcp.desegment_tcp_streams:TRUE",
    "-o",
    "tls.desegment_ssl_records:TRUE",
    "-o",
    "tcp.reassemble_out_of_order:TRUE",
]
NO_REASSEMBLY = ["-o", "tcp.desegment_tcp_streams:FALSE"]

# tcp.stream, source port, destination port: one direction of one connection.
Direction = tuple[int, int, int]


def run_tshark(path: Path, fields: list[str], options: list[str]) -> list[list[str]]:
    command = ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "separator=\t"]
    command += ["-E", "occurrence=a", "-E", "aggregator=,", *options]
    for name in fields:
        command += ["-e", name]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return [line.split("\t") for line in output.splitlines()]


def last_int(value: str) -> int:
    """The innermost value of a field tshark repeats for tunnels."""
    return int(value.split(",")[-1])


@dataclass
class TsharkDirection:
    records: list[tuple[int, int]] = field(default_factory=list)
    syn_seq: int | None = None
    first_seq: int | None = None
    # Records the stage found after tshark lost the stream, checked against the raw bytes.
    stage_only: list[tuple[int, int]] = field(default_factory=list)

    @property
    def start(self) -> int:
        return (self.syn_seq + 1) % SEQ_MODULUS if self.syn_seq is not None else self.first_seq

    def headers(self) -> list[tuple[int, int, int]]:
        """(stream offset, content type, length) of every expected record."""
        found, offset = [], 0
        for content_type, length in self.records + self.stage_only:
            found.append((offset, content_type, length))
            offset += HEADER_LEN + length
        return found

    def keep_spans(self) -> list[tuple[int, int]]:
        return [
            (offset, offset + HEADER_LEN + (length if content_type in KEEP_WHOLE else 0))
            for offset, content_type, length in self.headers()
        ]


def tshark_directions(path: Path) -> dict[Direction, TsharkDirection]:
    """Per direction: the TLS records tshark found, in order, and where the stream starts."""
    directions: dict[Direction, TsharkDirection] = defaultdict(TsharkDirection)
    fields = ["tcp.stream", "tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.len", "tcp.flags.syn"]
    for row in run_tshark(path, fields, REASSEMBLY):
        if not all(row[:6]):
            continue
        direction = directions[(last_int(row[0]), last_int(row[1]), last_int(row[2]))]
        seq, length, syn = last_int(row[3]), last_int(row[4]), row[5].split(",")[-1]
        if syn in ("1", "True") and direction.syn_seq is None:
            direction.syn_seq = seq
        if length and direction.first_seq is None:
            direction.first_seq = seq

    # Fields mode cannot tell content_type from TLS 1.3's opaque_type in record order: use JSON.
    command = ["tshark", "-n", "-r", str(path), *REASSEMBLY, "-Y", "tls", "-T", "json"]
    command += ["-J", "tcp tls", "--no-duplicate-keys"]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    for frame in json.loads(output):
        layers = frame["_source"]["layers"]
        if "tcp" not in layers:
            continue
        tcp = as_list(layers["tcp"])[-1]
        key = (int(tcp["tcp.stream"]), int(tcp["tcp.srcport"]), int(tcp["tcp.dstport"]))
        for tls in as_list(layers.get("tls")):
            for record in as_list(tls.get("tls.record") if isinstance(tls, dict) else None):
                content_type = record.get("tls.record.content_type") or record.get("tls.record.opaque_type")
                directions[key].records.append((int(content_type), int(record["tls.record.length"])))
    return directions


def as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def tshark_payloads(path: Path) -> dict[int, tuple[Direction, int, bytes]]:
    """Frame number -> (direction, seq, captured TCP payload)."""
    fields = ["frame.number", "tcp.stream", "tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.payload"]
    payloads = {}
    for row in run_tshark(path, fields, NO_REASSEMBLY):
        if len(row) < 6 or not all(row[:6]):
            continue
        key = (last_int(row[1]), last_int(row[2]), last_int(row[3]))
        payloads[int(row[0])] = (key, last_int(row[4]), bytes.fromhex(row[5].split(",")[-1]))
    return payloads


def signed_offset(seq: int, start: int) -> int:
    return (seq - start + (SEQ_MODULUS >> 1)) % SEQ_MODULUS - (SEQ_MODULUS >> 1)


def keep_mask(spans: list[tuple[int, int]], offset: int, length: int) -> np.ndarray:
    mask = np.zeros(length, dtype=bool)
    for start, end in spans:
        a, b = max(start - offset, 0), min(end - offset, length)
        if a < b:
            mask[a:b] = True
    return mask


def stage_finders(stage: MaskPayloads) -> dict[tuple[int, int, int], MaskedStream]:
    """(sport, dport, raw seq of stream offset 0) -> the stage's TLS stream there."""
    return {
        (stream.flow[2], stream.flow[3], stream.base): stream
        for stream in stage.streams()
        if stream.protocol == "tls"
    }


def windows(data: np.ndarray) -> np.ndarray:
    """All 8-byte windows of a uint8 array, as uint64."""
    if len(data) < 8:
        return np.zeros(0, dtype=np.uint64)
    view = np.lib.stride_tricks.sliding_window_view(data, 8)
    packed = np.zeros(len(view), dtype=np.uint64)
    for k in range(8):
        packed |= view[:, k].astype(np.uint64) << np.uint64(8 * (7 - k))
    return packed


def distinctive(data: np.ndarray) -> np.ndarray:
    """The 8-byte windows of `data` that hold at least four distinct byte values."""
    if len(data) < 8:
        return np.zeros(0, dtype=np.uint64)
    view = np.sort(np.lib.stride_tricks.sliding_window_view(data, 8), axis=1)
    distinct = 1 + (np.diff(view, axis=1) != 0).sum(axis=1)
    return windows(data)[distinct >= 4]


@dataclass
class Report:
    tshark_records: int = 0
    stage_records: int = 0
    after_stage_stop: int = 0
    record_mismatches: list = field(default_factory=list)
    stage_only: int = 0
    unverified_headers: int = 0
    bytes_kept: int = 0
    bytes_zeroed: int = 0
    zeroed_after_stage_stop: int = 0
    byte_mismatches: list = field(default_factory=list)
    leaks: int = 0
    secret_windows: int = 0


def compare_records(report: Report, tshark: dict, finders: dict) -> None:
    """Compare record lists per direction; adopt the stage's records past tshark's last one."""
    for key, direction in tshark.items():
        if direction.start is None:
            continue
        finder = finders.get((key[1], key[2], direction.start))
        found = [] if finder is None else [(r.content_type, r.length) for r in finder.records()]
        expected = direction.records
        report.tshark_records += len(expected)
        report.stage_records += len(found)
        stopped = finder is not None and finder.verdict is not StreamVerdict.COMPLETE
        if found == expected:
            continue
        if stopped and expected[: len(found)] == found:
            report.after_stage_stop += len(expected) - len(found)
        elif found[: len(expected)] == expected:
            direction.stage_only = found[len(expected) :]
            report.stage_only += len(direction.stage_only)
        else:
            report.record_mismatches.append((key, expected[:8], found[:8]))


def verify_stage_only_headers(report: Report, tshark: dict, before: dict) -> None:
    """Check that each record only the stage found has its header bytes at its offset in the input.

    The content type, version major (3) and length bytes must be there; the
    version minor is not compared.
    """
    pending = {}
    for key, direction in tshark.items():
        skip = len(direction.records)
        for offset, content_type, length in direction.headers()[skip:]:
            expected = bytes([content_type, 3, 0]) + length.to_bytes(2, "big")
            pending[(key, offset)] = [expected, {0, 1, 3, 4}]
    by_direction = defaultdict(list)
    for key, offset in pending:
        by_direction[key].append(offset)
    for key, seq, payload in before.values():
        if key not in by_direction:
            continue
        base = signed_offset(seq, tshark[key].start)
        for offset in by_direction[key]:
            expected, unchecked = pending[(key, offset)]
            for index in list(unchecked):
                position = offset + index - base
                if 0 <= position < len(payload):
                    if payload[position] != expected[index]:
                        report.record_mismatches.append((key, "stage-only header", offset))
                    unchecked.discard(index)
    report.unverified_headers = sum(1 for _, unchecked in pending.values() if unchecked)


def compare_bytes(report: Report, tshark: dict, finders: dict, before: dict, after: dict) -> None:
    for number, (key, seq, payload) in before.items():
        direction = tshark[key]
        out = np.frombuffer(after[number][2], dtype=np.uint8)
        original = np.frombuffer(payload, dtype=np.uint8)
        offset = signed_offset(seq, direction.start)
        expected_kept = keep_mask(direction.keep_spans(), offset, len(payload))
        expected = np.where(expected_kept, original, 0)

        report.bytes_kept += int(np.count_nonzero(out == original) - np.count_nonzero(original == 0))
        report.bytes_zeroed += int(np.count_nonzero((out == 0) & (original != 0)))
        wrong = out != expected
        if not wrong.any():
            continue
        finder = finders.get((key[1], key[2], direction.start))
        if finder is not None and finder.trusted_until is not None:
            stop = finder.trusted_until - offset
            positions = np.arange(len(payload))
            excused = wrong & (out == 0) & (positions >= stop)
            report.zeroed_after_stage_stop += int(np.count_nonzero(excused))
            wrong &= ~excused
        if wrong.any():
            report.byte_mismatches.append((number, int(np.count_nonzero(wrong))))


def read_frames(path: Path) -> list[bytes]:
    reader = open_reader(path)
    try:
        return [packet.data for packet in reader]
    finally:
        reader.close()


def scan_leaks(report: Report, tshark: dict, before: dict, input_path: Path, output_path: Path) -> None:
    """Count output windows equal to a window of input bytes that must be zeroed."""
    zeroed_parts, kept_parts = [], []
    frames = read_frames(input_path)
    for number, frame in enumerate(frames, start=1):
        if number not in before:
            kept_parts.append(np.frombuffer(frame[:64], dtype=np.uint8))
            continue
        key, seq, payload = before[number]
        direction = tshark[key]
        original = np.frombuffer(payload, dtype=np.uint8)
        kept = keep_mask(direction.keep_spans(), signed_offset(seq, direction.start), len(payload))
        zeroed_parts.append(np.where(kept, 0, original).astype(np.uint8))
        kept_parts.append(np.where(kept, original, 0).astype(np.uint8))
        # The headers before the payload are kept too (a trailer may follow the payload).
        position = frame.find(payload, max(0, len(frame) - len(payload) - 64))
        kept_parts.append(np.frombuffer(frame[: max(position, 0)], dtype=np.uint8))

    zeroed = np.unique(np.concatenate([distinctive(p) for p in zeroed_parts]))
    secret = np.setdiff1d(zeroed, np.concatenate([windows(p) for p in kept_parts]))
    out_frames = [np.frombuffer(frame, dtype=np.uint8) for frame in read_frames(output_path)]
    out_windows = np.unique(np.concatenate([windows(f) for f in out_frames]))
    report.leaks = int(np.isin(out_windows, secret).sum())
    report.secret_windows = len(secret)


@pytest.mark.parametrize("name", TLS_CAPTURES)
def test_masking_matches_tshark_records(name, corpus_dir, tshark, tmp_path):
    source = corpus_dir / name
    stage = MaskPayloads()
    target = tmp_path / ("masked" + source.suffix)
    Pipeline([stage], progress=False).run(source, target).close()

    directions = tshark_directions(source)
    before, after = tshark_payloads(source), tshark_payloads(target)
    finders = stage_finders(stage)
    report = Report()
    compare_records(report, directions, finders)
    verify_stage_only_headers(report, directions, before)
    compare_bytes(report, directions, finders, before, after)
    scan_leaks(report, directions, before, source, target)

    print(
        f"\n{name}: records tshark {report.tshark_records}, stage {report.stage_records}; "
        f"tshark found {report.after_stage_stop} after the stage stopped, the stage found "
        f"{report.stage_only} after tshark lost the stream; "
        f"bytes kept {report.bytes_kept}, zeroed {report.bytes_zeroed} "
        f"({report.zeroed_after_stage_stop} kept by tshark after a stage stop); "
        f"mismatches: records {len(report.record_mismatches)}, "
        f"frames {len(report.byte_mismatches)}; "
        f"leaked windows {report.leaks} of {report.secret_windows} checked"
    )
    assert report.record_mismatches == []
    assert report.unverified_headers == 0
    assert report.byte_mismatches == []
    assert report.leaks == 0
    if name in UPGRADED_TO_TLS:
        assert report.stage_records == 0
        assert report.after_stage_stop == report.tshark_records > 0
    else:
        assert report.stage_records > 0


HTTP_CAPTURES = ["cs_http_espn.pcapng", "dpkt_nb6-http.pcap", "ppp_nanosecs_big_endian.pcap"]


@pytest.mark.parametrize("name", HTTP_CAPTURES)
def test_http_requests_survive_keep_http_headers(name, corpus_dir, tshark, tmp_path):
    """tshark finds every HTTP request of the input in the output; no byte is changed, only zeroed.

    The requests of these captures have no body, so their heads are all
    that tshark needs. Responses are not compared: with bodies and chunk
    sizes zeroed, tshark's reassembly of them differs on purpose.
    """
    source = corpus_dir / name
    stage = MaskPayloads(keep_http_headers=True)
    target = tmp_path / ("masked" + source.suffix)
    Pipeline([stage], progress=False).run(source, target).close()

    def requests(path: Path) -> list[list[str]]:
        return run_tshark(
            path, ["frame.number", "http.request.method", "http.request.uri"], ["-Y", "http.request"]
        )

    before, after = tshark_payloads(source), tshark_payloads(target)
    changed = [
        number
        for number, (_, _, payload) in before.items()
        if any(out not in (0, original) for out, original in zip(after[number][2], payload, strict=True))
    ]
    print(f"\n{name}: {len(requests(source))} requests, {stage.stats()['http_heads']} heads kept")
    assert requests(target) == requests(source) != []
    assert changed == []


def corpus_captures() -> list[str]:
    from corpus_tools import corpus_files

    return [path.name for path in corpus_files()]


CHECKSUM_STATUS_FIELDS = [
    "tcp.checksum.status",
    "udp.checksum.status",
    "icmp.checksum.status",
    "icmpv6.checksum.status",
]
# Stored and computed checksum, whose difference is how wrong a checksum is.
CHECKSUM_PAIRS = [("tcp.checksum", "tcp.checksum_calculated"), ("udp.checksum", "udp.checksum_calculated")]


def checksum_report(path: Path) -> dict[str, tuple[bool, list[tuple[int, ...]]]]:
    """frame number -> (some checksum is bad, how far each TCP/UDP checksum is from the computed one).

    UDP checksums of zero ("none") are left out of the differences.
    """
    fields = ["frame.number", *CHECKSUM_STATUS_FIELDS, *(name for pair in CHECKSUM_PAIRS for name in pair)]
    report = {}
    for row in run_tshark(path, fields, CHECKSUM_OPTIONS):
        statuses = ",".join(row[1 : 1 + len(CHECKSUM_STATUS_FIELDS)]).split(",")
        values = row[1 + len(CHECKSUM_STATUS_FIELDS) :]
        errors = []
        for stored, computed in zip(values[::2], values[1::2], strict=True):
            pairs = zip(stored.split(","), computed.split(","), strict=False) if stored and computed else []
            errors.append(tuple((int(a, 16) - int(b, 16)) % 0xFFFF for a, b in pairs if int(a, 16)))
        report[row[0]] = ("0" in statuses, errors)
    return report


@pytest.mark.parametrize("name", corpus_captures())
def test_checksums_stay_as_correct_as_they_were(name, corpus_dir, tshark, tmp_path):
    """A checksum correct in the input is correct in the output, also after IP reassembly.

    A wrong one stays wrong by the same amount: the difference between the
    stored and the computed TCP or UDP checksum is unchanged. (A TCP header
    quoted in an ICMP error loses its checksum field to the zeroing, so its
    difference is compared only where the output still has it.)
    """
    source = corpus_dir / name
    target = tmp_path / ("masked" + source.suffix)
    Pipeline([MaskPayloads()], progress=False).run(source, target).close()

    before, after = checksum_report(source), checksum_report(target)

    assert len(before) == len(after) == len(read_frames(source))
    assert {n for n, (bad, _) in after.items() if bad} == {n for n, (bad, _) in before.items() if bad}
    for number, (_, errors) in before.items():
        for error, error_after in zip(errors, after[number][1], strict=True):
            if len(error) == len(error_after):
                assert error_after == error, f"frame {number}"
