"""The last writes of a call or a SIPREC session, whatever ended it: close its recording
(seal, then catalogue how it ended) and write the call's end and outcome — in one
transaction (issue 19), or the call's end alone when there is no recording.  A failure
is logged, never raised (``RecordingService.finish`` writes the call's end even when
working out the recording's fails, and ``write_call`` tries the recording's end and the
call's end apart if the catalog refuses them together); the callers give the ports and
routes back in a ``finally``, so a cancellation at shutdown does not keep them."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from ..storage.catalog import CallBatch, CallOutcome, CallUpdate

if TYPE_CHECKING:
    from .recording import ActiveRecording, RecordingService

log = logging.getLogger(__name__)


def call_end(call_id: str, ended_at: datetime, outcome: CallOutcome) -> CallBatch:
    """The end of a call already in the catalog."""
    return CallBatch(call_id, changes=CallUpdate(ended_at=ended_at, outcome=outcome))


async def close_recording_and_call(
    recordings: RecordingService,
    recording: ActiveRecording | None,
    call: CallBatch | None,
    *,
    what: str,
) -> None:
    """``call``: what the call still has to write (its end at least), None when it is
    not in the catalog; ``what`` names the call in log lines ("call ID", "SIPREC
    session ID")."""
    if recording is not None:
        try:
            await recordings.finish(recording, call)
        except Exception:
            log.exception("%s: closing the recording failed", what)
    elif call is not None:
        await recordings.write_call(f"{what}: end", call)
