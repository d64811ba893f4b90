"""Sanitize packet captures before sharing them, and show what the sanitizing did.

Three stages run in this order, each usable alone: `Deduplicate`, `AnonymizeIPs`
and `MaskPayloads`. `Pipeline` streams a pcap or pcapng file through them one
packet at a time.
"""

import logging

from pktmask_nb.errors import CaptureError, PktmaskError, UnparseablePacketError
from pktmask_nb.memory import MemoryMonitor
from pktmask_nb.packet import Interface, Packet
from pktmask_nb.pipeline import Pipeline
from pktmask_nb.resources import ResourceOwner, held_resources, sweep_stale
from pktmask_nb.result import RunResult
from pktmask_nb.stages.anonymize import AnonymizeIPs
from pktmask_nb.stages.base import Stage
from pktmask_nb.stages.dedup import Deduplicate
from pktmask_nb.stages.mask import MaskPayloads

logging.getLogger(__name__).addHandler(logging.NullHandler())

# Remove the temp folders of processes that died without cleaning up
# (SIGKILL, the OOM killer, a kernel restarted with now=True).
sweep_stale()

__all__ = [
    "AnonymizeIPs",
    "CaptureError",
    "Deduplicate",
    "Interface",
    "MaskPayloads",
    "MemoryMonitor",
    "Packet",
    "Pipeline",
    "PktmaskError",
    "ResourceOwner",
    "RunResult",
    "Stage",
    "UnparseablePacketError",
    "held_resources",
]
