"""A compact set of 64-bit packet digests: 16 to 32 bytes of memory per member.

Python's `set` costs about 60 bytes per 64-bit int; a capture with millions
of distinct packets would then need hundreds of MiB. This is an
open-addressing hash table (linear probing) in a numpy uint64 array, kept at
most half full.
"""

from __future__ import annotations

import numpy as np

INITIAL_SLOTS = 1 << 16
REHASH_CHUNK = 1 << 16


class DigestSet:
    """Set of non-zero 64-bit integers; `add` returns whether the value was new."""

    def __init__(self) -> None:
        self._table = np.zeros(INITIAL_SLOTS, dtype=np.uint64)
        self._mask = INITIAL_SLOTS - 1
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, digest: int) -> bool:
        """Insert `digest` (0 is stored as 1); return False if it was already present."""
        digest = digest or 1
        table = self._table
        slot = digest & self._mask
        while True:
            current = table.item(slot)
            if current == 0:
                break
            if current == digest:
                return False
            slot = (slot + 1) & self._mask
        table[slot] = digest
        self._count += 1
        if self._count * 2 > len(table):
            self._grow()
        return True

    def _grow(self) -> None:
        old = self._table
        self._table = np.zeros(len(old) * 2, dtype=np.uint64)
        self._mask = len(self._table) - 1
        self._count = 0
        # Re-insert in chunks: a Python list of all members would cost 40 bytes each.
        for start in range(0, len(old), REHASH_CHUNK):
            chunk = old[start : start + REHASH_CHUNK]
            for digest in chunk[chunk != 0].tolist():
                self.add(digest)
