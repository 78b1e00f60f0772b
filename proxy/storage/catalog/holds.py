"""Holds (P16, P4): a complaint, training or conduct hold keeps a recording past its
retention period until someone releases it.

A hold is placed on a recording that still has its audio (not ``deleting``, ``deleted``
or ``discarded``), with a reference (the complaint, the case), who placed it and when,
an optional review date and a note.  Releasing it records who, when and why; a released
hold stays in the table (the history is the evidence) and cannot be released again.

Each place and release appends its audit entry (``hold.place``, ``hold.release``,
object ``recording:ID``) in the same transaction, so a hold never exists without its
entry, nor an entry without its hold.

A recording is *held* while it has a hold whose ``released_at`` is NULL: that is the
whole rule the retention sweeper reads (``holds.released_at IS NULL``), so releasing the
last hold re-arms the recording's expiry with nothing else to store.

Which kinds exist is configuration (``[holds] kinds``), checked by the use case
(:mod:`proxy.records.holds`); the catalog stores the kind as text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any, Protocol

from ...recording_state import RecordingState
from . import rows as to
from .audit import append
from .db import Connection, Database, Row, insert, one
from .errors import CatalogError, NotFoundError
from .model import format_utc
from .values import at_or_now_ms, from_ms, opt_text, text, to_ms, uuid_or_new

#: A recording in one of these states has no audio left to keep.
UNHOLDABLE = frozenset({RecordingState.DELETING, RecordingState.DELETED, RecordingState.DISCARDED})


class HoldRefusedError(CatalogError):
    """The hold cannot be placed or released as asked: its recording has no audio to
    keep, or the hold was already released."""


@dataclass(frozen=True, slots=True)
class NewHold:
    """A hold as it is placed (``place``); ``review_on`` is a calendar date (UTC)."""

    recording_id: str
    kind: str
    reference: str
    placed_by: str
    review_on: date | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Hold:
    """A hold, active while ``released_at`` is None."""

    id: str
    recording_id: str
    kind: str
    reference: str
    placed_by: str
    placed_at: datetime
    review_on: date | None
    note: str | None
    released_by: str | None = None
    released_at: datetime | None = None
    release_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.released_at is None

    def due(self, as_of: datetime) -> bool:
        """An active hold whose review date has come (on or before ``as_of``)."""
        return self.active and self.review_on is not None and _day_start(self.review_on) <= as_of

    def as_dict(self) -> dict[str, Any]:
        """For ``--json`` and the API: times in ISO 8601 UTC, the review date as a date."""
        return {
            "id": self.id,
            "recording_id": self.recording_id,
            "kind": self.kind,
            "reference": self.reference,
            "placed_by": self.placed_by,
            "placed_at": format_utc(self.placed_at),
            "review_at": None if self.review_on is None else self.review_on.isoformat(),
            "note": self.note,
            "released_by": self.released_by,
            "released_at": None if self.released_at is None else format_utc(self.released_at),
            "release_reason": self.release_reason,
        }


@dataclass(frozen=True, slots=True)
class HoldCounts:
    """Active holds by kind, and how many of them are due for review, at one moment
    (what the metrics show)."""

    active_by_kind: Mapping[str, int]
    due_for_review: int


class HoldRepository(Protocol):
    """Holds on recordings: place, release, look up, list."""

    async def place(self, hold: NewHold, *, at: datetime | None = None) -> Hold: ...

    async def release(
        self, hold_id: str, *, by: str, reason: str, at: datetime | None = None
    ) -> Hold: ...

    async def get(self, hold_id: str) -> Hold | None: ...

    async def holds(
        self,
        *,
        recording_id: str | None = None,
        active_only: bool = False,
        due_as_of: datetime | None = None,
    ) -> list[Hold]: ...

    async def active_for(self, recording_id: str) -> list[Hold]: ...

    async def counts(self, as_of: datetime) -> HoldCounts: ...


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def _hold(row: Row) -> Hold:
    review = row["review_at"]
    released = row["released_at"]
    return Hold(
        id=row["id"],
        recording_id=row["recording_id"],
        kind=row["kind"],
        reference=row["reference"],
        placed_by=row["placed_by"],
        placed_at=from_ms(row["placed_at"]),
        review_on=None if review is None else from_ms(review).date(),
        note=row["note"],
        released_by=row["released_by"],
        released_at=None if released is None else from_ms(released),
        release_reason=row["release_reason"],
    )


def _audit_detail(hold: Hold) -> dict[str, Any]:
    review = None if hold.review_on is None else hold.review_on.isoformat()
    return {"hold": hold.id, "kind": hold.kind, "reference": hold.reference, "review_at": review}


def _require_hold(conn: Connection, hold_id: str) -> Hold:
    found = to.find(conn, _hold, "SELECT * FROM holds WHERE id = ?", (hold_id,))
    if found is None:
        raise NotFoundError(f"hold {hold_id} does not exist")
    return found


_ACTIVE = "released_at IS NULL"


def place_hold(conn: Connection, placed: Hold, review_ms: int | None = None) -> Hold:
    """Insert ``placed`` and its ``hold.place`` entry, in the caller's write transaction
    (a subject access case places its holds with its own rows).  ``NotFoundError`` for
    an unknown recording, ``HoldRefusedError`` for one with no audio left."""
    recording = to.require_recording(conn, placed.recording_id)
    if recording.state in UNHOLDABLE:
        raise HoldRefusedError(
            f"recording {recording.id} is {recording.state.value}: there is no audio left to hold"
        )
    placed_ms = to_ms("at", placed.placed_at)
    insert(
        conn,
        "INSERT INTO holds (id, recording_id, kind, reference, placed_by, placed_at,"
        " review_at, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            placed.id,
            placed.recording_id,
            placed.kind,
            placed.reference,
            placed.placed_by,
            placed_ms,
            review_ms,
            placed.note,
        ),
    )
    append(
        conn,
        at_ms=placed_ms,
        actor=placed.placed_by,
        action="hold.place",
        object=f"recording:{placed.recording_id}",
        detail=_audit_detail(placed),
    )
    return placed


def release_hold(conn: Connection, hold_id: str, *, by: str, reason: str, at_ms: int) -> Hold:
    """Release an active hold with its ``hold.release`` entry, in the caller's write
    transaction; ``HoldRefusedError`` for one already released."""
    hold = _require_hold(conn, hold_id)
    if hold.released_at is not None:
        raise HoldRefusedError(
            f"hold {hold.id} was already released on {format_utc(hold.released_at)}"
            f" by {hold.released_by}"
        )
    conn.execute(
        "UPDATE holds SET released_by = ?, released_at = ?, release_reason = ?"
        f" WHERE id = ? AND {_ACTIVE}",
        (by, at_ms, reason, hold.id),
    )
    append(
        conn,
        at_ms=at_ms,
        actor=by,
        action="hold.release",
        object=f"recording:{hold.recording_id}",
        reason=reason,
        detail=_audit_detail(hold),
    )
    return _require_hold(conn, hold.id)


class SqliteHolds:
    """:class:`HoldRepository` in the catalog's SQLite database (migration 7)."""

    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._clock = clock

    async def place(self, hold: NewHold, *, at: datetime | None = None) -> Hold:
        """Place a hold on an existing recording that still has its audio; raises
        ``NotFoundError`` for an unknown recording, ``HoldRefusedError`` for one that is
        deleting, deleted or discarded."""
        placed = Hold(
            id=uuid_or_new("hold id", None),
            recording_id=text("recording_id", hold.recording_id),
            kind=text("kind", hold.kind),
            reference=text("reference", hold.reference),
            placed_by=text("placed_by", hold.placed_by),
            placed_at=from_ms(at_or_now_ms(self._clock, at)),
            review_on=hold.review_on,
            note=opt_text("note", hold.note),
        )
        review_ms = None if hold.review_on is None else to_ms("review", _day_start(hold.review_on))

        return await self._db.write(lambda conn: place_hold(conn, placed, review_ms))

    async def release(
        self, hold_id: str, *, by: str, reason: str, at: datetime | None = None
    ) -> Hold:
        """Release an active hold; ``NotFoundError`` for an unknown id,
        ``HoldRefusedError`` for a hold already released."""
        by, reason = text("by", by), text("reason", reason)
        at_ms = at_or_now_ms(self._clock, at)

        return await self._db.write(
            lambda conn: release_hold(conn, hold_id, by=by, reason=reason, at_ms=at_ms)
        )

    async def get(self, hold_id: str) -> Hold | None:
        return await self._db.read(
            lambda conn: to.find(conn, _hold, "SELECT * FROM holds WHERE id = ?", (hold_id,))
        )

    async def holds(
        self,
        *,
        recording_id: str | None = None,
        active_only: bool = False,
        due_as_of: datetime | None = None,
    ) -> list[Hold]:
        """Holds in the order placed: all, or those of one recording, only the active
        ones, or only those due for review as of ``due_as_of`` (active, review date
        reached)."""
        where: list[str] = ["1 = 1"]
        params: list[object] = []
        if recording_id is not None:
            where.append("recording_id = ?")
            params.append(recording_id)
        if active_only or due_as_of is not None:
            where.append(_ACTIVE)
        if due_as_of is not None:
            where.append("review_at IS NOT NULL AND review_at <= ?")
            params.append(to_ms("due_as_of", due_as_of))
        sql = f"SELECT * FROM holds WHERE {' AND '.join(where)} ORDER BY placed_at, rowid"
        return await self._db.read(lambda conn: to.find_all(conn, _hold, sql, params))

    async def active_for(self, recording_id: str) -> list[Hold]:
        """The holds keeping ``recording_id`` (none: it may expire)."""
        return await self.holds(recording_id=recording_id, active_only=True)

    async def counts(self, as_of: datetime) -> HoldCounts:
        """Active holds by kind and those due for review, in one read."""
        as_of_ms = to_ms("as_of", as_of)

        def body(conn: Connection) -> HoldCounts:
            by_kind = {
                str(row[0]): int(row[1])
                for row in conn.execute(
                    f"SELECT kind, COUNT(*) FROM holds WHERE {_ACTIVE} GROUP BY kind"
                )
            }
            due = one(
                conn,
                f"SELECT COUNT(*) FROM holds WHERE {_ACTIVE} AND review_at <= ?",
                (as_of_ms,),
            )
            return HoldCounts(by_kind, 0 if due is None else int(due[0]))

        return await self._db.read(body)
