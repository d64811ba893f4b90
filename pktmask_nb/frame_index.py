"""The frame index of a run: where each input packet went in the output.

Entry i (0-based) is the 1-based output frame number of input frame i + 1,
or 0 when a stage dropped it. The index is written to a temp file in chunks,
so it costs no memory per packet. Per-packet views read it back with numpy.
"""

from __future__ import annotations

import logging
from array import array

import numpy as np

from pktmask_nb.resources import ResourceOwner

logger = logging.getLogger(__name__)

CHUNK = 65_536


class FrameIndexWriter:
    """Append-only uint32 index kept in a temp file of `owner`, removed when the owner closes."""

    def __init__(self, owner: ResourceOwner) -> None:
        self.path = owner.temp_path(".u32", prefix="index-")
        self._file = open(self.path, "wb")
        owner.add_cleanup("frame index file", self._file.close)
        self._chunk = array("I")
        self.count = 0

    def add(self, output_number: int) -> None:
        self._chunk.append(output_number)
        if len(self._chunk) >= CHUNK:
            self._flush()

    def _flush(self) -> None:
        self._chunk.tofile(self._file)
        self.count += len(self._chunk)
        self._chunk = array("I")

    def close(self) -> None:
        """Flush the index; the file stays until its owner closes."""
        if not self._file.closed:
            self._flush()
            self._file.close()

    def read(self) -> np.ndarray:
        """Return the whole index as a read-only memory map (entries for input frames 1..N)."""
        if self.count == 0:
            return np.zeros(0, dtype=np.uint32)
        return np.memmap(self.path, dtype=np.uint32, mode="r", shape=(self.count,))
