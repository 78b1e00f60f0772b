"""Media worker processes (issue 19): bridged calls' RTP relayed outside the call
process, which keeps the signalling and the catalog — and, with the local store, each
call's recording run by the worker that relays it (step 2).

:mod:`.protocol` and :mod:`.recording_messages` are the control protocol (pure),
:mod:`.worker` and :mod:`.recording` the worker's side, :mod:`.pool` and :mod:`.remote`
the call process's side (a :class:`~proxy.calls.media_wiring.MediaWorkers` and a
:class:`~proxy.calls.recording_engines.RecordingWorkers`).
"""

from .pool import WorkerPool, WorkerSnapshot

__all__ = ["WorkerPool", "WorkerSnapshot"]
