"""Crypto-PAn mapping, kept networks, key files and MAC anonymization."""

from __future__ import annotations

import ipaddress
import os
import stat

import pytest
from anon_helpers import VECTOR_KEY, cryptopan_image
from hypothesis import given, settings
from hypothesis import strategies as st

from pktmask_nb.cryptopan import (
    SPECIAL_NETWORKS,
    PrefixPreservingMap,
    check_key,
    generate_key,
    parse_networks,
    read_key_file,
    write_key_file,
)
from pktmask_nb.macaddr import MacMap

# Published test vectors of the Crypto-PAn reference implementation.
VECTORS = [
    ("128.11.68.132", "135.242.180.132"),
    ("129.118.74.4", "134.136.186.123"),
    ("10.185.25.118", "117.161.29.118"),
    ("192.102.249.13", "252.138.62.131"),
    ("141.223.7.43", "141.167.8.160"),
]

DEFAULT_KEPT = parse_networks(SPECIAL_NETWORKS)


def packed(address: str) -> bytes:
    return ipaddress.ip_address(address).packed


def text(address: bytes) -> str:
    return str(ipaddress.ip_address(address))


def common_prefix_bits(a: int, b: int, width: int) -> int:
    return width - (a ^ b).bit_length()


@pytest.mark.parametrize(("original", "expected"), VECTORS)
def test_published_vectors(original: str, expected: str) -> None:
    mapping = PrefixPreservingMap(VECTOR_KEY)
    assert text(mapping.map(packed(original))) == expected


def test_default_kept_addresses_map_to_themselves() -> None:
    mapping = PrefixPreservingMap(VECTOR_KEY, kept_networks=DEFAULT_KEPT)
    for address in [
        "0.0.0.0",
        "127.3.4.5",
        "224.0.0.251",
        "239.255.255.250",
        "255.255.255.255",
        "169.254.9.9",
    ]:
        assert text(mapping.map(packed(address))) == address
    for address in ["::", "::1", "ff02::1:ff00:1", "fe80::ca4c:75ff:fe78:ed00"]:
        assert text(mapping.map(packed(address))) == address


def test_unkept_addresses_match_yacryptopan() -> None:
    mapping = PrefixPreservingMap(VECTOR_KEY, kept_networks=DEFAULT_KEPT)
    for address in ["192.168.1.10", "8.8.8.8", "2001:db8::1", "2a00:5e80:101:212d::1"]:
        assert text(mapping.map(packed(address))) == cryptopan_image(address)


def test_keep_prefix_added() -> None:
    mapping = PrefixPreservingMap(VECTOR_KEY, kept_networks=parse_networks(["203.0.113.0/24"]))
    assert text(mapping.map(packed("203.0.113.77"))) == "203.0.113.77"
    assert text(mapping.map(packed("203.0.114.77"))) != "203.0.114.77"
    assert text(mapping.map(packed("127.0.0.1"))) != "127.0.0.1"


def test_invalid_keep_prefix_rejected() -> None:
    with pytest.raises(ValueError, match="invalid address prefix '10.0.0.0/33'"):
        parse_networks(["10.0.0.0/33"])


def test_same_key_same_mapping_across_objects() -> None:
    first = PrefixPreservingMap(VECTOR_KEY)
    second = PrefixPreservingMap(bytes(VECTOR_KEY))
    assert first.map(packed("10.1.2.3")) == second.map(packed("10.1.2.3"))


def test_other_key_other_mapping() -> None:
    first = PrefixPreservingMap(VECTOR_KEY)
    second = PrefixPreservingMap(bytes(32))
    assert first.map(packed("10.1.2.3")) != second.map(packed("10.1.2.3"))


def _is_kept(value: int, version: int) -> bool:
    address = ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)
    return any(address in network for network in DEFAULT_KEPT if network.version == version)


def _outside_kept(version: int) -> st.SearchStrategy[int]:
    width = 32 if version == 4 else 128
    return st.integers(0, 2**width - 1).filter(lambda value: not _is_kept(value, version))


@settings(max_examples=150, deadline=None)
@given(a=_outside_kept(4), b=_outside_kept(4))
def test_prefix_preserved_ipv4(a: int, b: int) -> None:
    mapping = PrefixPreservingMap(VECTOR_KEY, kept_networks=DEFAULT_KEPT)
    mapped_a = int.from_bytes(mapping.map(a.to_bytes(4)))
    mapped_b = int.from_bytes(mapping.map(b.to_bytes(4)))
    assert common_prefix_bits(mapped_a, mapped_b, 32) == common_prefix_bits(a, b, 32)


@settings(max_examples=40, deadline=None)
@given(a=_outside_kept(6), b=_outside_kept(6), shared=st.integers(0, 128))
def test_prefix_preserved_ipv6(a: int, b: int, shared: int) -> None:
    # Force a common prefix of `shared` bits, so long shared prefixes get tested too.
    host_mask = (1 << (128 - shared)) - 1
    b = (a & ~host_mask) | (b & host_mask)
    if _is_kept(b, 6):
        return
    mapping = PrefixPreservingMap(VECTOR_KEY, kept_networks=DEFAULT_KEPT)
    mapped_a = int.from_bytes(mapping.map(a.to_bytes(16)))
    mapped_b = int.from_bytes(mapping.map(b.to_bytes(16)))
    assert common_prefix_bits(mapped_a, mapped_b, 128) == common_prefix_bits(a, b, 128)


def test_map_prefix_matches_address_prefix() -> None:
    mapping = PrefixPreservingMap(VECTOR_KEY)
    prefix = packed("2001:db8:1234::")
    mapped = mapping.map_prefix(prefix, 48)
    address_image = mapping.map(packed("2001:db8:1234::99"))
    assert mapped[:6] == address_image[:6]
    assert mapped[6:] == bytes(10)


def test_map_prefix_of_eight_bytes() -> None:
    mapping = PrefixPreservingMap(VECTOR_KEY)
    mapped = mapping.map_prefix(packed("2001:db8:77::")[:8], 56)
    assert len(mapped) == 8
    assert mapped[:7] == mapping.map(packed("2001:db8:77::1"))[:7]
    assert mapped[7] == 0


@pytest.mark.parametrize("key", [b"short", bytes(33), "a" * 32, None, 32])
def test_check_key_rejects(key: object) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        check_key(key)


def test_generate_key_is_random() -> None:
    first = generate_key()
    assert len(first) == 32
    assert first != generate_key()


def test_key_file_round_trip(tmp_path) -> None:
    path = tmp_path / "anon.key"
    write_key_file(path, VECTOR_KEY)
    assert read_key_file(path) == VECTOR_KEY
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text() == VECTOR_KEY.hex() + "\n"


def test_key_file_mode_reset_on_overwrite(tmp_path) -> None:
    path = tmp_path / "anon.key"
    path.write_text("old")
    path.chmod(0o644)
    write_key_file(path, VECTOR_KEY)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_key_file_raw_bytes(tmp_path) -> None:
    path = tmp_path / "raw.key"
    path.write_bytes(VECTOR_KEY)
    assert read_key_file(path) == VECTOR_KEY


def test_key_file_invalid_content(tmp_path) -> None:
    path = tmp_path / "bad.key"
    path.write_text("not a key\n")
    with pytest.raises(ValueError, match="64 hexadecimal digits or 32 raw bytes"):
        read_key_file(path)


def test_mac_map_keeps_group_bit() -> None:
    macs = MacMap(VECTOR_KEY)
    unicast = bytes.fromhex("001b21aabbcc")
    multicast = bytes.fromhex("01005e000001")
    assert macs.map(unicast)[0] & 0x01 == 0
    assert macs.map(multicast)[0] & 0x01 == 1
    assert macs.map(unicast) != unicast
    assert macs.map(multicast) != multicast


def test_mac_map_marks_locally_administered() -> None:
    macs = MacMap(VECTOR_KEY)
    assert macs.map(bytes.fromhex("001b21aabbcc"))[0] & 0x02 == 0x02


def test_mac_map_keep_oui() -> None:
    macs = MacMap(VECTOR_KEY, keep_oui=True)
    mapped = macs.map(bytes.fromhex("001b21aabbcc"))
    assert mapped[:3] == bytes.fromhex("001b21")
    assert mapped[3:] != bytes.fromhex("aabbcc")


def test_mac_map_deterministic_per_key() -> None:
    mac = bytes.fromhex("3c970e112233")
    assert MacMap(VECTOR_KEY).map(mac) == MacMap(VECTOR_KEY).map(mac)
    assert MacMap(VECTOR_KEY).map(mac) != MacMap(bytes(32)).map(mac)


def test_mac_map_broadcast_kept() -> None:
    assert MacMap(VECTOR_KEY).map(b"\xff" * 6) == b"\xff" * 6
    assert MacMap(VECTOR_KEY, keep_special=False).map(b"\xff" * 6) != b"\xff" * 6
