"""AnonymizeIPs on every capture of the real corpus: leaks, checksums, consistency across runs."""

from __future__ import annotations

import ipaddress
from itertools import combinations
from pathlib import Path

import pytest
from anon_helpers import (
    VECTOR_KEY,
    checksum_statuses,
    corpus_captures,
    cryptopan_image,
    kept_by_default,
    read_frames,
    tshark_addresses,
)

from pktmask_nb import Pipeline
from pktmask_nb.dissect import dissect
from pktmask_nb.stages import anonymize
from pktmask_nb.stages.anonymize import AnonymizeIPs

CORPUS = corpus_captures()
IDS = [p.name for p in CORPUS]


def anonymize_file(source: Path, target: Path, **options) -> AnonymizeIPs:
    stage = AnonymizeIPs(key=VECTOR_KEY, **options)
    result = Pipeline([stage], progress=False).run(source, target)
    result.close()
    return stage


def header_end(data: bytes, linktype: int) -> int:
    """End of the header bytes of a frame: later bytes are payload, the masking stage's part."""
    dissection = dissect(data, linktype)
    ends = [ip.offset + ip.header_len for ip in dissection.ip_headers]
    if dissection.transport is not None:
        ends.append(dissection.transport.payload_offset)
    if dissection.arp_offset is not None:
        ends.append(dissection.arp_offset + 28)
    return max(ends, default=0)


def _occurrences(data: bytes, pattern: bytes) -> list[int]:
    positions = []
    position = data.find(pattern)
    while position >= 0:
        positions.append(position)
        position = data.find(pattern, position + 1)
    return positions


@pytest.mark.parametrize("capture", CORPUS, ids=IDS)
def test_no_address_survives(tmp_path, capture: Path) -> None:
    output = tmp_path / capture.name
    stage = anonymize_file(capture, output)

    # 1. tshark finds exactly the images of the input addresses, frame by frame.
    before = tshark_addresses(capture)
    after = tshark_addresses(output)
    assert len(before) == len(after)
    for number, (original, anonymized) in enumerate(zip(before, after, strict=True), 1):
        expected = {a if kept_by_default(a) else cryptopan_image(a) for a in original}
        assert anonymized == expected, f"frame {number}"

    # 2. No input address remains as raw bytes in any header; payload copies are counted only.
    addresses = {a for frame in before for a in frame}
    images = {cryptopan_image(a) for a in addresses if not kept_by_default(a)}
    secret = [ipaddress.ip_address(a).packed for a in addresses if not kept_by_default(a) and a not in images]
    header_hits = []
    payload_hits = 0
    for packet, original in zip(read_frames(output), read_frames(capture), strict=True):
        found = [p for p in secret if p in packet.data]
        if not found:
            continue
        end = header_end(packet.data, packet.linktype)
        for pattern in found:
            for position in _occurrences(packet.data, pattern):
                # Bytes the stage changed (a new checksum next to zeros) can match by chance:
                # only bytes left as they were in the input count as a surviving address.
                if original.data[position : position + len(pattern)] != pattern:
                    continue
                if position + len(pattern) <= end:
                    header_hits.append((packet.number, str(ipaddress.ip_address(pattern))))
                else:
                    payload_hits += 1
    assert header_hits == []

    # 3. The mapping lists every address tshark finds.
    assert set(stage.mapping().original) >= addresses
    kept = len(addresses) - len([a for a in addresses if not kept_by_default(a)])
    print(
        f"{capture.name}: {len(addresses)} addresses ({kept} kept), 0 left in headers, "
        f"{payload_hits} copies in payloads"
    )


@pytest.mark.parametrize("capture", CORPUS, ids=IDS)
def test_good_checksums_stay_good(tmp_path, capture: Path) -> None:
    output = tmp_path / capture.name
    anonymize_file(capture, output)
    before = checksum_statuses(capture)
    after = checksum_statuses(output)

    good = 0
    for number, (status_in, status_out) in enumerate(zip(before, after, strict=True), 1):
        for field, values in status_in.items():
            for index, value in enumerate(values):
                if value == "1":
                    good += 1
                    assert status_out[field][index] == "1", f"frame {number}: {field} #{index}"
    print(f"{capture.name}: {good} good checksums stay good")


def _shared_address_pairs() -> list[tuple[Path, Path, set[str]]]:
    addresses = {}
    for capture in CORPUS:
        seen = {a for frame in tshark_addresses(capture) for a in frame}
        addresses[capture] = {a for a in seen if not kept_by_default(a)}
    pairs = []
    for first, second in combinations(CORPUS, 2):
        shared = addresses[first] & addresses[second]
        if shared:
            pairs.append((first, second, shared))
    return pairs


def test_separate_runs_agree_on_shared_addresses(tmp_path) -> None:
    pairs = _shared_address_pairs()
    assert pairs, "no two corpus captures share an address"
    for first, second, shared in pairs:
        mappings = []
        for capture in (first, second):
            stage = anonymize_file(capture, tmp_path / capture.name)
            mappings.append(dict(zip(stage.mapping().original, stage.mapping().anonymized, strict=True)))
        for address in shared:
            assert mappings[0][address] == mappings[1][address], f"{first.name} / {second.name}: {address}"
        print(f"{first.name} + {second.name}: {len(shared)} shared addresses agree")


@pytest.mark.parametrize("capture", CORPUS, ids=IDS)
def test_plain_path_equals_general_path(monkeypatch, capture: Path) -> None:
    packets = read_frames(capture)
    plain = AnonymizeIPs(key=VECTOR_KEY)
    plain.reset(str(capture))
    plain_out = [plain.process(p) for p in packets]

    monkeypatch.setattr(anonymize, "plain_layout", lambda data, linktype: None)
    general = AnonymizeIPs(key=VECTOR_KEY)
    general.reset(str(capture))
    general_out = [general.process(p) for p in packets]

    assert plain_out == general_out
    assert plain.stats() == general.stats()
    assert plain.mapping().equals(general.mapping())
