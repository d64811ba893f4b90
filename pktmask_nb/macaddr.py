"""Keyed MAC address anonymization.

A MAC address maps to the first bytes of HMAC-SHA256 under a key derived
from the anonymization key, so the mapping is the same in every file and
run with one key. The individual/group (I/G) bit is kept, so unicast stays
unicast and multicast stays multicast. The replaced bytes get the locally
administered (U/L) bit set, so that an anonymized address never carries a
vendor's OUI by chance. With `keep_oui` the first three bytes (the vendor's
OUI) stay as they are and only the last three are replaced.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

logger = logging.getLogger(__name__)

BROADCAST = b"\xff" * 6
UNSPECIFIED = bytes(6)
GROUP_BIT = 0x01  # I/G: set for multicast and broadcast
LOCAL_BIT = 0x02  # U/L: set for locally administered addresses

# Domain separation: the MAC key is not the Crypto-PAn key itself.
_KEY_LABEL = b"pktmask_nb MAC address anonymization"


class MacMap:
    """Map 6-byte MAC addresses under a 32-byte key; cached per address.

    With `keep_special` the broadcast and all-zero addresses map to themselves.
    """

    def __init__(self, key: bytes, *, keep_oui: bool = False, keep_special: bool = True) -> None:
        self._key = hmac.digest(key, _KEY_LABEL, hashlib.sha256)
        self._keep_oui = keep_oui
        self._kept = frozenset((BROADCAST, UNSPECIFIED)) if keep_special else frozenset()
        self._cache: dict[bytes, bytes] = {}

    def map(self, mac: bytes) -> bytes:
        """Return the anonymized form of a 6-byte MAC address."""
        mapped = self._cache.get(mac)
        if mapped is None:
            mapped = self._compute(mac)
            self._cache[mac] = mapped
        return mapped

    def _compute(self, mac: bytes) -> bytes:
        if mac in self._kept:
            return mac
        digest = hmac.digest(self._key, mac, hashlib.sha256)
        if self._keep_oui:
            return mac[:3] + digest[:3]
        first = (digest[0] & ~(GROUP_BIT | LOCAL_BIT)) | LOCAL_BIT | (mac[0] & GROUP_BIT)
        return bytes((first,)) + digest[1:6]
