"""A call's catalog writes as one unit of work: what a call writes at one moment, in one
transaction (issue 19).

A recorded call used to make about a dozen catalog writes, each its own transaction,
thread hop and commit: the call row, its answer, its consent receipt, its recording
and part 1, its bridge, then the recording's totals, quality and end state and the
call's end.  The call flow now keeps what it learns in memory and writes it twice:

1. when the call is bridged — the call row with its answer, bridge and operator, the
   consent receipt, the recording (with its ``start`` event) and its part 1;
2. when it ends — the recording's last segments, totals, quality and end state (with
   its event and retention date), and the call's end and outcome.

A call that ends before it is bridged writes all it has in one.  Each piece is checked
before any SQL and written by the same function of the connection its repository
method uses (:mod:`.calls`, :mod:`.recordings`, :mod:`.parts`), so a batch leaves
exactly the rows the separate writes left, and is refused for the same reasons; it is
one transaction, so a refused batch leaves nothing.  A PostgreSQL catalog implements
:class:`CallWriteRepository` as one transaction of the same statements.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from ...recording_state import RecordingState
from .calls import (
    call_change,
    call_insert,
    change_call,
    insert_call,
    insert_receipt,
    receipt_values,
)
from .db import Connection, Database
from .errors import InvalidFieldError
from .model import (
    Attribution,
    CallUpdate,
    ChannelQuality,
    ConsentReceipt,
    Expiry,
    NewCall,
    NewRecording,
    NewSegment,
    RecordingUpdate,
)
from .parts import insert_part
from .recordings import (
    change_recording,
    insert_recording,
    insert_segment,
    move_recording,
    quality_values,
    recording_change,
    recording_values,
    replace_quality,
    segment_insert,
    state_move,
)
from .values import opt_text, to_ms


@dataclass(frozen=True, slots=True)
class FirstPart:
    """Part 1 of a new recording: the call taker who answered (P9)."""

    operator: str | None
    team: str | None


@dataclass(frozen=True, slots=True)
class RecordingEnd:
    """How a recording ended: its segments not yet catalogued, its totals (when the
    writer opened it), what each channel lost, and its end state."""

    recording_id: str
    state: RecordingState
    by: Attribution
    quality: Sequence[ChannelQuality]
    duration_ms: int | None = None
    wrapped_key_sha256: str | None = None
    segments: Sequence[NewSegment] = ()
    expires: Expiry | None = None


@dataclass(frozen=True, slots=True)
class CallBatch:
    """What one call writes at one moment, in the order it is written: the call row
    (``new_call``, None when it is already in the catalog), its consent receipt, its
    recording and part 1, the end of a recording, and ``changes`` to the call row."""

    call_id: str
    new_call: NewCall | None = None
    receipt: ConsentReceipt | None = None
    recording: NewRecording | None = None
    first_part: FirstPart | None = None
    recording_end: RecordingEnd | None = None
    changes: CallUpdate = field(default_factory=lambda: CallUpdate())

    def then(self, later: CallBatch) -> CallBatch:
        """This batch and a ``later`` one of the same call as one: a write that could
        not be made (dropped) rides with the call's next."""
        if later.call_id != self.call_id:
            raise InvalidFieldError("batches of two calls cannot be joined")
        changes: CallUpdate = {**self.changes, **later.changes}
        return CallBatch(
            self.call_id,
            new_call=later.new_call or self.new_call,
            receipt=later.receipt or self.receipt,
            recording=later.recording or self.recording,
            first_part=later.first_part or self.first_part,
            recording_end=later.recording_end or self.recording_end,
            changes=changes,
        )

    def split(self) -> tuple[CallBatch, CallBatch] | None:
        """The recording's end and the rest as two batches (None when there is only
        one of them): when the catalog refuses the whole, each is tried on its own,
        so a refused recording end does not lose the call's end, nor the reverse."""
        rest = replace(self, recording_end=None)
        if self.recording_end is None or rest == CallBatch(self.call_id):
            return None
        return CallBatch(self.call_id, recording_end=self.recording_end), rest


class CallWriteRepository(Protocol):
    """A call's writes, a batch at a time."""

    async def write(self, batch: CallBatch) -> None:
        """Write ``batch`` in one transaction: all of it, or (raising) none of it."""
        ...


def _writer(batch: CallBatch, clock: Callable[[], datetime]) -> Callable[[Connection], None]:
    """Check every piece of ``batch`` now, and return the transaction's body."""
    call = None if batch.new_call is None else call_insert(batch.new_call)
    receipt = None if batch.receipt is None else receipt_values(batch.receipt)
    recording = None if batch.recording is None else recording_values(batch.recording)
    part = batch.first_part
    operator = team = None
    if part is not None:
        if batch.recording is None:
            raise InvalidFieldError("part 1 comes with its recording")
        operator, team = opt_text("operator", part.operator), opt_text("team", part.team)
        started_ms = to_ms("started_at", batch.recording.started_at)
    end = batch.recording_end
    if end is not None:
        segments = [segment_insert(segment) for segment in end.segments]
        totals = RecordingUpdate()
        if end.duration_ms is not None:
            totals["duration_ms"] = end.duration_ms
        if end.wrapped_key_sha256 is not None:
            totals["wrapped_key_sha256"] = end.wrapped_key_sha256
        total_change = recording_change(totals) if totals else None
        quality = quality_values(end.recording_id, end.quality)
        move = state_move(end.state, end.by, clock)
    changes = call_change(batch.changes) if batch.changes else None

    def body(conn: Connection) -> None:
        if call is not None:
            insert_call(conn, call)
        if receipt is not None:
            insert_receipt(conn, receipt)
        if recording is not None:
            insert_recording(conn, recording)
            if part is not None:
                insert_part(conn, str(recording[0]), 1, operator, team, started_ms)
        if end is not None:
            for segment in segments:
                insert_segment(conn, segment)
            if total_change is not None:
                change_recording(conn, end.recording_id, total_change)
            replace_quality(conn, end.recording_id, quality)
            move_recording(conn, end.recording_id, move, end.expires)
        if changes is not None:
            change_call(conn, batch.call_id, changes)

    return body


class SqliteCallWrites:
    """:class:`CallWriteRepository` in the catalog's SQLite database."""

    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._clock = clock

    async def write(self, batch: CallBatch) -> None:
        await self._db.write(_writer(batch, self._clock))
