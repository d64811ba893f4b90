"""DigestSet: membership through growth, compared with Python's set."""

from __future__ import annotations

import random

from pktmask_nb.digest_set import INITIAL_SLOTS, DigestSet


def test_digest_set_agrees_with_python_set_through_growth() -> None:
    rng = random.Random(7)
    values = [rng.getrandbits(64) for _ in range(INITIAL_SLOTS * 3)]
    values += values[: INITIAL_SLOTS // 2]  # repeats
    values += [0, 1, 0]  # zero is stored as one

    compact = DigestSet()
    reference: set[int] = set()
    for value in values:
        expected_new = (value or 1) not in reference
        reference.add(value or 1)
        assert compact.add(value) == expected_new

    assert len(compact) == len(reference)
