"""Media worker processes (issue 19): bridged calls' RTP relayed outside the call
process, which keeps the signalling, the recorder's tick and the writer.

:mod:`.protocol` is the control protocol (pure), :mod:`.worker` the worker's side,
:mod:`.pool` the call process's side (a :class:`~proxy.calls.media_wiring.MediaWorkers`).
"""

from .pool import WorkerPool, WorkerSnapshot

__all__ = ["WorkerPool", "WorkerSnapshot"]
