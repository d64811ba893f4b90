"""Output files that appear only when complete.

The capture is written to a partial file beside the final path (same
folder, so the rename is atomic on POSIX file systems) and renamed when the
run succeeds. On any error, the partial file is removed and nothing appears.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from pktmask_nb.resources import ResourceOwner

logger = logging.getLogger(__name__)

WRITE_BUFFER = 1 << 20


def partial_path(final: Path) -> Path:
    """Return a hidden name beside `final` for the file being written."""
    return final.with_name(f".{final.name}.partial-{secrets.token_hex(4)}")


@contextmanager
def atomic_output(final: str | os.PathLike[str], owner: ResourceOwner) -> Iterator[BinaryIO]:
    """Open a partial file beside `final`; rename it to `final` if the block succeeds.

    The partial file is registered with `owner` while it exists, so a crash
    that skips the cleanup below still gets it removed (by the owner's
    finalizer, or by the sweep of a later import after a hard kill). If the
    block raises, or the rename fails, the partial file is removed and the
    exception propagates.
    """
    final = Path(final)
    partial = owner.adopt(partial_path(final))
    fileobj = open(partial, "xb", buffering=WRITE_BUFFER)
    try:
        yield fileobj
        fileobj.close()
        os.replace(partial, final)
    except BaseException:
        fileobj.close()
        try:
            owner.release(partial)
        except OSError as error:
            logger.warning("could not remove the partial output %s: %s", partial, error)
        raise
    owner.forget(partial)
