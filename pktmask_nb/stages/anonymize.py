"""`AnonymizeIPs`: keyed, prefix-preserving IP address anonymization of every packet."""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Sequence
from typing import NamedTuple

import pandas as pd

from pktmask_nb.checksum import adjust_checksum, fold, replacement_delta, swap_bytes
from pktmask_nb.cryptopan import (
    SPECIAL_NETWORKS,
    PrefixPreservingMap,
    check_key,
    generate_key,
    parse_networks,
    read_key_file,
    write_key_file,
)
from pktmask_nb.dissect import Dissection, MalformedPacket, UnsupportedLinktype, dissect
from pktmask_nb.errors import UnparseablePacketError
from pktmask_nb.fastpath import PlainLayout, plain_layout
from pktmask_nb.macaddr import MacMap
from pktmask_nb.packet import Packet
from pktmask_nb.stages.base import Stage

logger = logging.getLogger(__name__)

MAPPING_COLUMNS = ["original", "anonymized", "ip_version", "packets"]


class _Rewrite(NamedTuple):
    """The replacement of one field: new bytes and RFC 1624's ~m + m' at even word alignment."""

    new: bytes
    delta: int


class _Pair:
    """A source/destination pair seen by the plain path: its rewrite and packet count."""

    __slots__ = ("packets", "new", "delta", "rewritten")

    def __init__(self, *, new: bytes | None, delta: int, rewritten: int) -> None:
        self.packets = 0
        self.new = new  # the rewritten pair, None when both addresses are kept
        self.delta = delta  # RFC 1624 delta of the whole pair, folded to 16 bits
        self.rewritten = rewritten  # 0, 1 or 2 addresses changed


class _Maps(NamedTuple):
    """The address mappings for one key and set of options, shared with replicas."""

    signature: tuple
    addresses: PrefixPreservingMap
    macs: MacMap | None
    rewrites: dict[bytes, _Rewrite]  # address or MAC -> its rewrite, for every value seen


class AnonymizeIPs(Stage):
    """Replace every IP address with its Crypto-PAn image under a 32-byte key.

    The mapping is prefix-preserving (two addresses that share n leading bits
    map to two that share exactly n leading bits) and depends only on the key,
    so captures sanitized in separate runs with one key agree on every shared
    address. Addresses are rewritten wherever the dissector finds them, in
    every fragment. That covers IPv4 and IPv6 headers at any tunnel depth,
    headers quoted in ICMP errors, ARP, IPv4 source routes, IPv6 routing
    headers and Home Address options, ICMP redirects, IGMP, MLD and neighbor
    discovery. IPv4, TCP, UDP, ICMP, ICMPv6, IGMP and GRE checksums are
    updated incrementally (RFC 1624), in frames cut by the snaplen too. A
    correct checksum stays correct, a wrong one stays wrong, and a zero UDP
    checksum stays zero.

    The key comes from `key` (32 bytes) or `key_file` (64 hex digits or 32
    raw bytes). With neither, a random key is generated at the first
    `reset()` and kept as `key_` for later runs of this object; save it with
    `save_key(path)` to reproduce the mapping later.

    With `keep_special` (the default), unspecified, loopback, multicast,
    limited broadcast and link-local addresses stay unchanged;
    `keep_prefixes` adds networks to keep, such as ("203.0.113.0/24",). Kept
    addresses map to themselves, so prefix preservation holds between
    addresses that are not kept. NOTE: link-local IPv6 addresses kept this
    way may embed the interface's MAC address (EUI-64).

    `anonymize_macs` also replaces Ethernet, 802.11, Linux SLL, ARP and
    neighbor discovery MAC addresses with a keyed hash that keeps the
    unicast/multicast bit, and `keep_oui` keeps their vendor part.

    Frames without IP or ARP pass unchanged and are counted. NOTE: layer-2
    protocols such as CDP and LLDP may carry IP addresses that are not
    rewritten. A frame whose headers cannot be dissected raises
    UnparseablePacketError.
    """

    name = "anonymize"
    counter_names = (
        "packets",
        "non_ip_packets",
        "addresses_rewritten",
        "addresses_kept",
        "unique_addresses",
        "prefixes_rewritten",
        "macs_rewritten",
        "checksums_updated",
    )
    secret_params = frozenset({"key"})

    def __init__(
        self,
        *,
        key: bytes | None = None,
        key_file: str | os.PathLike[str] | None = None,
        keep_prefixes: Sequence[str] = (),
        keep_special: bool = True,
        anonymize_macs: bool = False,
        keep_oui: bool = False,
    ) -> None:
        self.key = key
        self.key_file = key_file
        self.keep_prefixes = keep_prefixes
        self.keep_special = keep_special
        self.anonymize_macs = anonymize_macs
        self.keep_oui = keep_oui

    # -- key and options ------------------------------------------------------

    def _resolve_key(self) -> bytes:
        """Return the key from `key` or `key_file`, or the generated `key_`; set `key_`.

        Raises ValueError when both are given or the key is not 32 bytes, and
        OSError when the key file cannot be read.
        """
        if self.key is not None and self.key_file is not None:
            raise ValueError("AnonymizeIPs: give either key or key_file, not both")
        if self.key is not None:
            key = check_key(self.key)
        elif self.key_file is not None:
            key = read_key_file(self.key_file)
        elif getattr(self, "key_", None) is not None:
            key = self.key_
        else:
            key = generate_key()
            logger.info("generated a random anonymization key; call save_key(path) to keep it")
        self.key_ = key
        return key

    def _build_maps(self, key: bytes) -> _Maps:
        prefixes = (self.keep_prefixes,) if isinstance(self.keep_prefixes, str) else self.keep_prefixes
        kept = parse_networks(prefixes)
        if self.keep_special:
            kept += parse_networks(SPECIAL_NETWORKS)
        signature = (key, tuple(kept), self.keep_special, self.anonymize_macs, self.keep_oui)

        maps = getattr(self, "_maps", None)
        if maps is not None and maps.signature == signature:
            return maps
        logger.debug("building address maps for %d kept networks", len(kept))
        addresses = PrefixPreservingMap(key, kept_networks=kept)
        macs = (
            MacMap(key, keep_oui=self.keep_oui, keep_special=self.keep_special)
            if self.anonymize_macs
            else None
        )
        return _Maps(signature, addresses, macs, {})

    def save_key(self, path: str | os.PathLike[str]) -> None:
        """Write the key in use (generating one if needed) to `path` as hex, with mode 0600."""
        write_key_file(path, self._resolve_key())
        logger.info("saved the anonymization key to %s", os.fspath(path))

    def replica(self) -> AnonymizeIPs:
        """Return a fresh stage with the same resolved key, sharing the address cache."""
        key = self._resolve_key()
        twin = type(self)(**{**self.get_params(), "key": key, "key_file": None})
        twin.key_ = key
        twin._maps = self._build_maps(key)
        return twin

    def reset(self, path: str) -> None:
        super().reset(path)
        self._maps = self._build_maps(self._resolve_key())
        # Packets per address seen by the general path, and per address pair by the plain path.
        self._packets_per_address: dict[bytes, int] = {}
        self._pairs: dict[bytes, _Pair] = {}

    # -- per packet ------------------------------------------------------------

    def process(self, packet: Packet) -> bytes:
        counters = self.counters_
        counters["packets"] += 1
        data = packet.data
        if self._maps.macs is None:
            layout = plain_layout(data, packet.interface.linktype)
            if layout is not None:
                return self._process_plain(data, layout)

        try:
            dissection = dissect(data, packet.interface.linktype)
        except (MalformedPacket, UnsupportedLinktype) as error:
            raise UnparseablePacketError(
                self.path_,
                f"cannot find the addresses to anonymize: {error}",
                packet_number=packet.number,
                hint="Pass on_unparseable='drop' to leave such packets out of the output",
            ) from error

        if not dissection.is_ip:
            counters["non_ip_packets"] += 1
        edits = self._address_edits(data, dissection)
        if self._maps.macs is not None:
            self._mac_edits(data, dissection, edits)
        if not edits:
            return data

        buffer = bytearray(data)
        for offset, rewrite in edits.items():
            buffer[offset : offset + len(rewrite.new)] = rewrite.new
        self._update_checksums(buffer, dissection, edits)
        return bytes(buffer)

    def _process_plain(self, data: bytes, layout: PlainLayout) -> bytes:
        """Rewrite a plain TCP/UDP frame: the same bytes as the general path, in fewer steps.

        IPv4 and IPv6 headers hold the source and destination next to each
        other, so the pair is one slice and one cache entry per conversation.
        """
        ip_offset = layout.ip_offset
        if layout.version == 4:
            start = ip_offset + 12
            end = ip_offset + 20
        else:
            start = ip_offset + 8
            end = ip_offset + 40
        key = data[start:end]
        pair = self._pairs.get(key)
        if pair is None:
            pair = self._new_pair(key)
        pair.packets += 1
        if pair.new is None:
            return data

        buffer = bytearray(data)
        buffer[start:end] = pair.new
        updated = _adjust_field(
            buffer, layout.checksum_offset, pair.delta, zero_means_none=layout.protocol == 17
        )
        if layout.version == 4:
            updated += _adjust_field(buffer, ip_offset + 10, pair.delta, zero_means_none=False)
        if updated:
            self.counters_["checksums_updated"] += updated
        return bytes(buffer)

    def _new_pair(self, key: bytes) -> _Pair:
        size = len(key) // 2
        src = key[:size]
        dst = key[size:]
        src_rewrite = self._address_rewrite(src)
        dst_rewrite = self._address_rewrite(dst)
        changed = [
            rewrite for address, rewrite in ((src, src_rewrite), (dst, dst_rewrite)) if rewrite.new != address
        ]
        pair = _Pair(
            new=src_rewrite.new + dst_rewrite.new if changed else None,
            delta=fold(sum(rewrite.delta for rewrite in changed)),
            rewritten=len(changed),
        )
        self._pairs[key] = pair
        return pair

    def _address_rewrite(self, address: bytes) -> _Rewrite:
        rewrites = self._maps.rewrites
        rewrite = rewrites.get(address)
        if rewrite is None:
            rewrite = _rewrite(address, self._maps.addresses.map(address))
            rewrites[address] = rewrite
        return rewrite

    def _address_edits(self, data: bytes, dissection: Dissection) -> dict[int, _Rewrite]:
        """Map every address field; return the changed ones by offset."""
        counters = self.counters_
        edits: dict[int, _Rewrite] = {}
        in_packet = set()
        for offset, size in dissection.address_fields:
            old = data[offset : offset + size]
            in_packet.add(old)
            rewrite = self._address_rewrite(old)
            if rewrite.new == old:
                counters["addresses_kept"] += 1
            else:
                counters["addresses_rewritten"] += 1
                edits[offset] = rewrite

        for offset, size, prefix_len in dissection.prefix_fields:
            old = data[offset : offset + size]
            new = self._maps.addresses.map_prefix(old, prefix_len)
            if new != old:
                counters["prefixes_rewritten"] += 1
                edits[offset] = _rewrite(old, new)

        counts = self._packets_per_address
        for address in in_packet:
            counts[address] = counts.get(address, 0) + 1
        return edits

    def _mac_edits(self, data: bytes, dissection: Dissection, edits: dict[int, _Rewrite]) -> None:
        rewrites = self._maps.rewrites
        for offset in dissection.mac_fields:
            old = data[offset : offset + 6]
            rewrite = rewrites.get(old)
            if rewrite is None:
                rewrite = _rewrite(old, self._maps.macs.map(old))
                rewrites[old] = rewrite
            if rewrite.new != old:
                self.counters_["macs_rewritten"] += 1
                edits[offset] = rewrite

    def _update_checksums(
        self, buffer: bytearray, dissection: Dissection, edits: dict[int, _Rewrite]
    ) -> None:
        """Adjust each checksum for the edits it covers, innermost first.

        An updated checksum field is itself an edit that outer checksums
        cover (a tunnel's UDP checksum covers the inner TCP checksum).
        """
        updated = 0
        for position, start, end, ip, zero_means_none in reversed(dissection.checksums):
            total = 0
            for offset, rewrite in edits.items():
                if start <= offset < end:
                    total += swap_bytes(rewrite.delta) if (offset - start) & 1 else rewrite.delta
            if ip is not None:
                for offset in (ip.pseudo_src_offset, ip.pseudo_dst_offset):
                    rewrite = edits.get(offset)
                    if rewrite is not None:
                        total += rewrite.delta
            if not total:
                continue

            old = buffer[position] << 8 | buffer[position + 1]
            if old == 0 and zero_means_none:
                continue
            new = adjust_checksum(old, total)
            if new == 0 and zero_means_none:
                new = 0xFFFF
            if new != old:
                buffer[position : position + 2] = new.to_bytes(2)
                edits[position] = _Rewrite(new.to_bytes(2), fold((~old & 0xFFFF) + new))
                updated += 1
        self.counters_["checksums_updated"] += updated

    # -- results ---------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counters of the last run; the plain path's address counts are added up here."""
        stats = super().stats()
        for pair in getattr(self, "_pairs", {}).values():
            stats["addresses_rewritten"] += pair.packets * pair.rewritten
            stats["addresses_kept"] += pair.packets * (2 - pair.rewritten)
        stats["unique_addresses"] = len(self._address_packets())
        return stats

    def _address_packets(self) -> dict[bytes, int]:
        """Packets of the last file per address, from both paths."""
        counts = dict(getattr(self, "_packets_per_address", {}))
        for key, pair in getattr(self, "_pairs", {}).items():
            size = len(key) // 2
            for address in {key[:size], key[size:]}:
                counts[address] = counts.get(address, 0) + pair.packets
        return counts

    def mapping(self) -> pd.DataFrame:
        """Return the addresses of the last file: original, anonymized, ip_version, packets.

        `packets` counts the packets of that file in which the address
        occurs. Kept addresses appear with anonymized equal to original.
        """
        rows = []
        for address, packets in self._address_packets().items():
            rewrite = self._maps.rewrites[address]
            original = ipaddress.ip_address(address)
            rows.append((str(original), str(ipaddress.ip_address(rewrite.new)), original.version, packets))
        frame = pd.DataFrame(rows, columns=MAPPING_COLUMNS)
        return frame.sort_values(["packets", "original"], ascending=[False, True], ignore_index=True)


def _adjust_field(buffer: bytearray, position: int, delta: int, *, zero_means_none: bool) -> int:
    """Apply a delta to the checksum at `position` (RFC 1624); return 1 if the field changed."""
    old = buffer[position] << 8 | buffer[position + 1]
    if old == 0 and zero_means_none:
        return 0
    new = adjust_checksum(old, delta)
    if new == 0 and zero_means_none:
        new = 0xFFFF
    if new == old:
        return 0
    buffer[position] = new >> 8
    buffer[position + 1] = new & 0xFF
    return 1


def _rewrite(old: bytes, new: bytes) -> _Rewrite:
    return _Rewrite(new, fold(replacement_delta(old, new)))
