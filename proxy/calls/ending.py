"""The last two writes of a call or a SIPREC session, whatever ended it: close its
recording (seal, then catalogue how it ended), then write the call row's end and
outcome.  Each failure is logged and the other write still made: an ending never
raises, so the ports and routes are always given back after it."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from ..storage.catalog import CallOutcome, CallRepository

if TYPE_CHECKING:
    from .recording import ActiveRecording, RecordingService

log = logging.getLogger(__name__)


async def close_recording_and_call(
    recordings: RecordingService,
    calls: CallRepository,
    recording: ActiveRecording | None,
    catalog_id: str | None,
    *,
    ended_at: datetime,
    outcome: CallOutcome,
    what: str,
) -> None:
    """``what`` names the call in log lines ("call ID", "SIPREC session ID")."""
    if recording is not None:
        try:
            await recordings.finish(recording)
        except Exception:
            log.exception("%s: closing the recording failed", what)
    if catalog_id is not None:
        try:
            await calls.update_call(catalog_id, ended_at=ended_at, outcome=outcome)
        except Exception:
            log.exception("%s: catalog update failed", what)
