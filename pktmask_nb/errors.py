"""Errors raised for bad input: each names the file, the packet and what to do."""

from __future__ import annotations

import os


class PktmaskError(Exception):
    """Base class of the errors this package raises on purpose."""


class CaptureError(PktmaskError):
    """A capture file that cannot be read or written.

    `path` is the file, `packet_number` the 1-based frame number as Wireshark
    counts it (None when the problem is in a file header), and `hint` what the
    user can do about it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        message: str,
        *,
        packet_number: int | None = None,
        hint: str = "",
    ) -> None:
        self.path = os.fspath(path)
        self.packet_number = packet_number
        self.reason = message
        self.hint = hint
        super().__init__(self._format())

    def _format(self) -> str:
        where = self.path
        if self.packet_number is not None:
            where = f"{where}, packet {self.packet_number}"
        text = f"{where}: {self.reason}"
        if self.hint:
            text = f"{text}. {self.hint}"
        return text


class UnparseablePacketError(CaptureError):
    """A packet whose headers a stage cannot parse.

    Sanitizing such a packet could leave private bytes in place, so the run
    stops unless the user asked to drop these packets (`on_unparseable="drop"`).
    """
