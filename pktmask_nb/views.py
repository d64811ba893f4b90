"""Before/after DataFrames of a run: one row per packet (`payloads_frame`) or per flow (`flows_frame`).

Both read the run's input and output files on demand through
`pktmask_nb.packetview`; `payloads_frame` stops reading once it has its rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from pktmask_nb.hexdump import RecordMark, hex_preview
from pktmask_nb.packetview import FlowLabel, MaskQuery, PacketView, iter_packet_views
from pktmask_nb.seqspace import StreamVerdict

if TYPE_CHECKING:
    from pktmask_nb.result import RunResult

logger = logging.getLogger(__name__)

FrameRange = tuple[int, int] | range

PAYLOAD_COLUMNS = [
    "frame",
    "out_frame",
    "timestamp",
    "protocol",
    "flow",
    "transport",
    "direction",
    "src",
    "sport",
    "dst",
    "dport",
    "out_flow",
    "payload_len",
    "kept",
    "zeroed",
    "tls_records",
    "tls_types",
    "before",
    "after",
    "kept_ranges",
]
FLOW_COLUMNS = [
    "flow",
    "protocol",
    "direction",
    "src",
    "sport",
    "dst",
    "dport",
    "out_flow",
    "packets",
    "packets_out",
    "bytes",
    "payload_bytes",
    "kept",
    "zeroed",
    "tls",
    "tls_records",
    "verdict",
    "zeroed_from",
    "first_frame",
    "last_frame",
]
# Worst first: the verdict shown for a flow direction that carried several connections.
_VERDICT_ORDER = [StreamVerdict.GAP, StreamVerdict.UNRECOGNIZED, StreamVerdict.COMPLETE]


def frame_bounds(frames: FrameRange | None) -> tuple[int, int | None]:
    """Return the inclusive first and last frame of `frames` (a (first, last) pair or a range).

    Raises ValueError for a range with a step or bounds below 1.
    """
    if frames is None:
        return 1, None
    if isinstance(frames, range):
        if frames.step != 1:
            raise ValueError(f"frames: a range with step {frames.step} is not supported; use step 1")
        first, last = frames.start, frames.stop - 1
    else:
        first, last = frames
    if first < 1 or last < first:
        raise ValueError(f"frames must run from 1 upwards, first <= last; got {frames!r}")
    return first, last


def flow_matches(view: PacketView, flow: str) -> bool:
    """Return True when `flow` names the view's flow, in one or both directions, original or output."""
    labels = [label for label in (view.flow, view.out_flow) if label is not None]
    return any(flow in (label.text, label.conversation) for label in labels)


def payloads_frame(
    result: RunResult,
    *,
    flow: str | None = None,
    frames: FrameRange | None = None,
    limit: int | None = 1000,
    max_hex_bytes: int = 64,
) -> pd.DataFrame:
    """Return one row per input packet: where it went, its flow and its payload before and after.

    `protocol` names what the payload carries ("TLS", "TCP", "UDP", "ICMP",
    "ARP", "non-IP", ...), and `transport` with the addresses and ports
    gives the flow's 5-tuple. `tls_records` lists the records overlapping
    the payload ('…' marks one that started before or ends after it), and
    `tls_types` the content types of those that end in it, as Wireshark
    assigns reassembled records to frames. `kept` and `zeroed` count payload
    bytes. They are <NA> for dropped frames and for frames masking cannot
    explain (a TCP segment of a stream its scan did not see).

    `flow` keeps the packets of one flow, named as in the `flow` column
    ('src:sport -> dst:dport', one direction) or as a conversation
    ('client:port <-> server:port', both directions), with original or
    output addresses. `frames` is a (first, last) pair of 1-based input frame
    numbers, both included, or a `range`. At most `limit` rows are returned
    (None for all). `before` and `after` show the first `max_hex_bytes`
    payload bytes in hex. Raises ValueError for a bad `frames` or `limit`.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be a row count or None, got {limit!r}")
    first, last = frame_bounds(frames)
    rows = []
    if limit != 0:
        for view in iter_packet_views(result, first_frame=first, last_frame=last):
            if flow is not None and not flow_matches(view, flow):
                continue
            rows.append(_payload_row(view, max_hex_bytes))
            if limit is not None and len(rows) >= limit:
                break
    logger.debug("payloads: %d rows from %s", len(rows), result.input_path)
    return _payload_frame(rows)


def _flow_fields(label: FlowLabel) -> tuple:
    """The flow columns of a row: text, protocol, direction, src, sport, dst, dport."""
    return (label.text, label.protocol, label.direction, label.src, label.sport, label.dst, label.dport)


def _payload_row(view: PacketView, max_hex_bytes: int) -> tuple:
    flow_fields = (None,) * 7 if view.flow is None else _flow_fields(view.flow)
    after = None
    if view.payload_after is not None:
        after = hex_preview(view.payload_after, max_bytes=max_hex_bytes)
    return (
        view.frame,
        view.out_frame or None,
        view.timestamp_ns,
        view.protocol,
        *flow_fields,
        None if view.out_flow is None else view.out_flow.text,
        len(view.payload),
        view.kept_bytes,
        view.zeroed_bytes,
        ", ".join(_record_text(record, len(view.payload)) for record in view.records),
        tuple(record.content_type for record in view.records_ending),
        hex_preview(view.payload, max_bytes=max_hex_bytes),
        after,
        None if view.kept is None else list(view.kept),
    )


def _record_text(record: RecordMark, payload_len: int) -> str:
    """Return a record's type name, with '…' before when it started earlier and after when it ends later."""
    text = record.type_name
    if record.offset < 0:
        text = "…" + text
    if record.end > payload_len:
        text += "…"
    return text


def _payload_frame(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=PAYLOAD_COLUMNS)
    for column in ("out_frame", "sport", "dport", "kept", "zeroed"):
        frame[column] = frame[column].astype("Int64")
    frame["timestamp"] = _timestamps(frame["timestamp"])
    return frame


def _timestamps(nanoseconds: pd.Series) -> pd.Series:
    """Return UTC timestamps, NaT for a time past the range of datetime64[ns] (the year 2262)."""
    limit = 2**63 - 1
    values = [value if value <= limit else None for value in nanoseconds]
    return pd.Series(pd.to_datetime(values, unit="ns", utc=True), index=nanoseconds.index, name="timestamp")


@dataclass(slots=True)
class _FlowTotals:
    label: FlowLabel
    out_label: FlowLabel | None = None
    first_frame: int = 0
    last_frame: int = 0
    packets: int = 0
    packets_out: int = 0
    bytes: int = 0
    payload_bytes: int = 0
    kept: int = 0
    zeroed: int = 0
    unknown: bool = False

    def add(self, view: PacketView) -> None:
        if not self.packets:
            self.first_frame = view.frame
        self.last_frame = view.frame
        self.packets += 1
        self.bytes += view.caplen
        self.payload_bytes += len(view.payload)
        if view.out_frame:
            self.packets_out += 1
            self.out_label = self.out_label or view.out_flow
            if view.kept is None:
                self.unknown = True
            else:
                self.kept += view.kept_bytes
                self.zeroed += view.zeroed_bytes


def flows_frame(result: RunResult) -> pd.DataFrame:
    """Return one row per flow direction (TCP or UDP, as in the input), in order of first packet.

    `bytes` counts captured frame bytes and `payload_bytes` transport payload
    bytes of all input packets; `kept` and `zeroed` count the payload bytes
    of the packets written (`packets_out`). For TCP, `tls` and `tls_records`
    say what masking found, `verdict` how far it trusted the record
    boundaries ("complete", "unrecognized", or "gap" when bytes missing from
    the capture forced zeroing) and `zeroed_from` the stream offset (bytes
    after the ISN) from which it zeroed everything. The whole input is read.
    NOTE: connections that reuse the same addresses and ports are one row.
    """
    query = MaskQuery(result)
    totals: dict[tuple[str, tuple], _FlowTotals] = {}
    for view in iter_packet_views(result, query=query):
        if view.flow is None:
            continue
        key = (view.flow.protocol, view.flow.key)
        entry = totals.get(key)
        if entry is None:
            entry = totals[key] = _FlowTotals(view.flow)
        entry.add(view)

    rows = [_flow_row(entry, query) for entry in totals.values()]
    frame = pd.DataFrame(rows, columns=FLOW_COLUMNS)
    for column in ("kept", "zeroed", "tls_records", "zeroed_from"):
        frame[column] = frame[column].astype("Int64")
    logger.debug("flows: %d flow directions in %s", len(frame), result.input_path)
    return frame


def _flow_row(entry: _FlowTotals, query: MaskQuery) -> tuple:
    label = entry.label
    tls_records, verdict, zeroed_from = None, None, None
    if label.protocol == "TCP" and query.mask is not None:
        tls_records, verdict, zeroed_from = _stream_summary(query, label)
    return (
        *_flow_fields(label),
        None if entry.out_label is None else entry.out_label.text,
        entry.packets,
        entry.packets_out,
        entry.bytes,
        entry.payload_bytes,
        None if entry.unknown else entry.kept,
        None if entry.unknown else entry.zeroed,
        bool(tls_records),
        tls_records,
        verdict,
        zeroed_from,
        entry.first_frame,
        entry.last_frame,
    )


def _stream_summary(query: MaskQuery, label: FlowLabel) -> tuple[int, str | None, int | None]:
    """Return TLS record count, worst verdict and first forced-zeroing offset over the flow's streams."""
    records = 0
    verdicts = []
    zeroed_from = None
    for stream in query.streams(label.key):
        if stream.verdict is None:
            continue  # no payload in this connection
        records += stream.tls_records
        verdicts.append(stream.verdict)
        if zeroed_from is None and stream.trusted_until is not None:
            zeroed_from = stream.trusted_until
    verdict = next((v.value for v in _VERDICT_ORDER if v in verdicts), None)
    return records, verdict, zeroed_from
