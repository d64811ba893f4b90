"""Helpers for the dissector and anonymization tests.

The oracles here are independent of the code under test: tshark reads the
captures, `yacryptopan` and `ipaddress` give the expected addresses, and
scapy builds the test frames.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

import yacryptopan
from corpus_tools import corpus_files
from scapy.utils import PcapWriter

from pktmask_nb.capture import open_reader
from pktmask_nb.packet import Interface, Packet

# The key of the published Crypto-PAn test vectors (Xu et al., ICNP 2002 reference code).
VECTOR_KEY = bytes(
    [21, 34, 23, 141, 51, 164, 207, 128, 19, 10, 91, 22, 73, 144, 125, 16]
    + [216, 152, 143, 131, 121, 121, 101, 39, 98, 87, 76, 45, 42, 132, 34, 2]
)

CORPUS_DIR = (Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus").resolve()

# The tshark fields (tshark 4.0) that contain an IP address the stage rewrites.
ADDRESS_FIELDS = [
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "arp.src.proto_ipv4",
    "arp.dst.proto_ipv4",
    "icmp.redir_gw",
    "icmp.router_address",
    "ip.rec_rt",
    "ip.src_rt",
    "ip.opt.time_stamp_addr",
    "ipv6.routing.src.addr",
    "ipv6.routing.srh.addr",
    "ipv6.routing.mipv6.home_address",
    "ipv6.opt.mipv6.home_address",
    "icmpv6.nd.ns.target_address",
    "icmpv6.nd.na.target_address",
    "icmpv6.nd.rd.target_address",
    "icmpv6.rd.na.destination_address",
    "icmpv6.opt.rdnss",
    "icmpv6.mld.multicast_address",
    "icmpv6.mld.source_address",
    "icmpv6.mldr.mar.multicast_address",
    "icmpv6.mldr.mar.source_address",
    "igmp.maddr",
    "igmp.saddr",
]

CHECKSUM_STATUS_FIELDS = [
    "ip.checksum.status",
    "tcp.checksum.status",
    "udp.checksum.status",
    "icmp.checksum.status",
    "icmpv6.checksum.status",
    "igmp.checksum.status",
    "gre.checksum.status",
]
CHECKSUM_GOOD = "1"  # Wireshark's PROTO_CHECKSUM_E_GOOD
CHECKSUM_OPTIONS = [
    "-o",
    "ip.check_checksum:TRUE",
    "-o",
    "tcp.check_checksum:TRUE",
    "-o",
    "udp.check_checksum:TRUE",
]


def corpus_captures() -> list[Path]:
    """Every capture of the shared corpus, sorted by name (raises FileNotFoundError without it)."""
    return corpus_files()


def tshark_occurrences(path: Path, fields: Sequence[str], *options: str) -> list[list[list[str]]]:
    """Return, per frame and per field, every occurrence tshark shows (all protocol layers)."""
    command = ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "occurrence=a"]
    command += ["-E", "separator=\t", "-E", "aggregator=;", *options]
    for field in fields:
        command += ["-e", field]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    frames = []
    for line in output.splitlines():
        values = line.split("\t")
        frames.append([[v for v in value.split(";") if v] for value in values])
    return frames


def tshark_addresses(path: Path) -> list[set[str]]:
    """Return the addresses tshark finds in each frame, in compressed text form."""
    frames = []
    for fields in tshark_occurrences(path, ADDRESS_FIELDS):
        frames.append({str(ipaddress.ip_address(v)) for values in fields for v in values})
    return frames


def checksum_statuses(path: Path) -> list[dict[str, list[str]]]:
    """Return tshark's checksum statuses per frame: field name -> one status per occurrence."""
    frames = tshark_occurrences(path, CHECKSUM_STATUS_FIELDS, *CHECKSUM_OPTIONS)
    return [dict(zip(CHECKSUM_STATUS_FIELDS, fields, strict=True)) for fields in frames]


def cryptopan_image(address: str, key: bytes = VECTOR_KEY) -> str:
    """Return the Crypto-PAn image of `address` computed by yacryptopan alone."""
    return yacryptopan.CryptoPAn(key).anonymize(address)


def kept_by_default(address: str) -> bool:
    """Return whether an address is in the ranges AnonymizeIPs keeps by default."""
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        special = ("0.0.0.0/32", "127.0.0.0/8", "224.0.0.0/4", "255.255.255.255/32", "169.254.0.0/16")
    else:
        special = ("::/128", "::1/128", "ff00::/8", "fe80::/10")
    return any(ip in ipaddress.ip_network(network) for network in special)


def write_capture(path: Path, frames: Iterable[bytes], *, linktype: int = 1) -> Path:
    """Write raw frames to a pcap file with the given linktype."""
    writer = PcapWriter(str(path), linktype=linktype, sync=True)
    for frame in frames:
        writer.write(bytes(frame))
    writer.close()
    return path


def read_frames(path: Path) -> list[Packet]:
    """Read every packet of a capture with the project's reader."""
    reader = open_reader(path)
    try:
        return list(reader)
    finally:
        reader.close()


def make_packet(data: bytes, *, linktype: int = 1, number: int = 1) -> Packet:
    """Wrap raw frame bytes in a Packet of an interface with the given linktype."""
    interface = Interface(index=0, linktype=linktype, snaplen=262144)
    return Packet(number=number, data=bytes(data), wire_len=len(data), ts=0, interface=interface)


def run_stage(stage, frames: Sequence[bytes], *, linktype: int = 1, path: str = "built.pcap") -> list[bytes]:
    """Reset `stage` and return what its `process` makes of each frame."""
    stage.reset(path)
    return [stage.process(make_packet(f, linktype=linktype, number=i)) for i, f in enumerate(frames, 1)]
