"""Keyed, prefix-preserving IP address anonymization (Crypto-PAn) and its keys.

Crypto-PAn (Xu, Fan, Ammar and Moon, "Prefix-Preserving IP Address
Anonymization", ICNP 2002) maps addresses one-to-one so that two addresses
sharing their first n bits map to two addresses sharing exactly their first n
bits. The mapping depends only on the 32-byte key: the same key gives the
same mapping in every file and every run. The block cipher work is done by
`yacryptopan`; this module adds the kept address ranges, the per-address
cache and the key handling.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
from collections.abc import Iterable

import yacryptopan

logger = logging.getLogger(__name__)

KEY_BYTES = 32

# Addresses that identify no host or network, kept unchanged by default:
# unspecified, loopback, multicast, limited broadcast and link-local.
SPECIAL_NETWORKS = (
    "0.0.0.0/32",
    "127.0.0.0/8",
    "224.0.0.0/4",
    "255.255.255.255/32",
    "169.254.0.0/16",
    "::/128",
    "::1/128",
    "ff00::/8",
    "fe80::/10",
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def check_key(key: object) -> bytes:
    """Return `key` as bytes, or raise ValueError unless it is 32 bytes."""
    if not isinstance(key, bytes | bytearray | memoryview):
        raise ValueError(f"the anonymization key must be {KEY_BYTES} bytes, not {type(key).__name__}")
    key = bytes(key)
    if len(key) != KEY_BYTES:
        raise ValueError(f"the anonymization key must be {KEY_BYTES} bytes long, got {len(key)} bytes")
    return key


def generate_key() -> bytes:
    """Return a new random key from the operating system's CSPRNG."""
    return secrets.token_bytes(KEY_BYTES)


def read_key_file(path: str | os.PathLike[str]) -> bytes:
    """Read a key file: 64 hexadecimal digits (surrounding whitespace allowed) or 32 raw bytes.

    Raises FileNotFoundError naming the file and how to create one, OSError
    when the file cannot be read, and ValueError for any other content.
    """
    try:
        with open(path, "rb") as key_file:
            content = key_file.read(4096)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"anonymization key file {os.fspath(path)} not found; create one with "
            "AnonymizeIPs().save_key(path) or `pktmask-nb run ... --save-key FILE`"
        ) from None
    text = content.strip()
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    if len(content) == KEY_BYTES:
        return content
    raise ValueError(
        f"{os.fspath(path)}: a key file must contain {2 * KEY_BYTES} hexadecimal digits or "
        f"{KEY_BYTES} raw bytes, found {len(content)} bytes"
    )


def write_key_file(path: str | os.PathLike[str], key: bytes) -> None:
    """Write `key` as 64 hexadecimal digits and a newline, readable by the owner only (mode 0600).

    An existing file is overwritten and its mode set to 0600.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as key_file:
        os.fchmod(key_file.fileno(), 0o600)
        key_file.write(check_key(key).hex() + "\n")


def parse_networks(prefixes: Iterable[str]) -> list[Network]:
    """Parse CIDR prefixes such as "203.0.113.0/24"; host bits may be set.

    Raises ValueError naming the first prefix that is not a valid IPv4 or IPv6 network.
    """
    networks = []
    for prefix in prefixes:
        try:
            networks.append(ipaddress.ip_network(prefix, strict=False))
        except (TypeError, ValueError) as error:
            raise ValueError(f"invalid address prefix {prefix!r} to keep: {error}") from error
    return networks


class PrefixPreservingMap:
    """Crypto-PAn over raw 4- and 16-byte addresses, with kept networks and a cache.

    Addresses inside `kept_networks` map to themselves, so prefix
    preservation applies only between addresses that are not kept. NOTE: a rewritten
    address can land on the value of a kept one (Crypto-PAn maps onto the
    whole address space), so an output address equal to a kept address is not
    proof that it was kept.
    """

    def __init__(self, key: bytes, *, kept_networks: Iterable[Network] = ()) -> None:
        self._cryptopan = yacryptopan.CryptoPAn(check_key(key))
        kept = list(kept_networks)
        self._kept_v4 = [(int(n.network_address), int(n.netmask)) for n in kept if n.version == 4]
        self._kept_v6 = [(int(n.network_address), int(n.netmask)) for n in kept if n.version == 6]
        self._cache: dict[bytes, bytes] = {}

    def __len__(self) -> int:
        """Number of distinct addresses mapped so far."""
        return len(self._cache)

    def map(self, address: bytes) -> bytes:
        """Return the anonymized form of a raw IPv4 (4 bytes) or IPv6 (16 bytes) address."""
        mapped = self._cache.get(address)
        if mapped is None:
            mapped = self._compute(address)
            self._cache[address] = mapped
        return mapped

    def is_kept(self, address: bytes) -> bool:
        """Return whether a raw address lies in a kept network."""
        value = int.from_bytes(address)
        kept = self._kept_v4 if len(address) == 4 else self._kept_v6
        return any(value & netmask == network for network, netmask in kept)

    def map_prefix(self, field: bytes, prefix_len: int) -> bytes:
        """Anonymize the first `prefix_len` bits of an IPv6 prefix field of up to 16 bytes.

        Bits past the prefix length are kept as they are (normally zero).
        Because the mapping preserves prefixes, the result is the prefix of
        the addresses that the prefix's own addresses map to.
        """
        prefix_len = min(prefix_len, 8 * len(field))
        padded = field + bytes(16 - len(field))
        mapped = int.from_bytes(self.map(padded)[: len(field)])
        original = int.from_bytes(field)
        host_mask = (1 << (8 * len(field) - prefix_len)) - 1
        return ((mapped & ~host_mask) | (original & host_mask)).to_bytes(len(field))

    def _compute(self, address: bytes) -> bytes:
        if len(address) not in (4, 16):
            raise ValueError(f"an IP address is 4 or 16 bytes long, got {len(address)} bytes")
        if self.is_kept(address):
            return address

        version = 4 if len(address) == 4 else 6
        anonymized = self._cryptopan.anonymize_bin(int.from_bytes(address), version)
        return anonymized.to_bytes(len(address))
