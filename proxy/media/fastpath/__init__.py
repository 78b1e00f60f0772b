"""The kernel fast path (issue 19): nftables forwards a bridged call's RTP, and the
recorder reads the same packets from an ``AF_PACKET`` ring.  Optional, detected at
start (``[media] fast_path``); without it the userspace relay does everything."""

from .kernel_path import FastPathSnapshot, KernelPath, not_ready
from .probe import Detection, detect, remove_tables

__all__ = ["Detection", "FastPathSnapshot", "KernelPath", "detect", "not_ready", "remove_tables"]
