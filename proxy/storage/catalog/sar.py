"""Subject access cases (P17-P19): a caller asks for copies of their own calls.

A records officer or the DPO opens a case with the requester's name (and how to reach
them), how their identity was checked, the number or numbers they call from, the window
of time to search and, optionally, one operator.  The use case
(:mod:`proxy.records.sar`) searches the catalog and the recordings found are attached
when the case is opened, in the order found.  Each attached recording that still has its
audio gets a ``subject_access`` hold referencing the case, so retention cannot delete
what a requester has asked for while the case is open; closing the case releases them.

The DPO then records one decision per recording: release ``both`` parties, the
``caller`` only, or ``refuse``, each with a reason; a decision may be revised while the
case is not closed (each one is audited), and a recording with no audio left cannot be
released.  Each bundle exported is recorded (who, when, where, the manifest's SHA-256
and the recordings in it); the first export marks the case ``answered``.  ``closed`` is
final.

The statutory deadline is stored with the case (one month from receipt by default,
``[sar] deadline_months``, computed by the use case), so a later change of configuration
does not move the deadline of a case already open.

Every change appends its audit entry in the same transaction: ``sar.open``,
``sar.decide``, ``sar.export``, ``sar.close`` (object ``sar:ID``), and ``hold.place`` /
``hold.release`` for the holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from . import rows as to
from .audit import append
from .db import Connection, Database, Row, insert, one, rows
from .errors import CatalogError, InvalidFieldError, NotFoundError
from .holds import UNHOLDABLE, Hold, HoldRefusedError, place_hold, release_hold
from .model import format_utc
from .values import at_or_now_ms, from_ms, opt_dt, opt_text, sha256, text, to_ms, uuid_or_new

#: The kind of the holds a case places (not one of ``[holds] kinds``: only a case
#: places and releases these, and the hold's reference is the case id).
SAR_HOLD_KIND = "subject_access"


class SarState(StrEnum):
    OPEN = "open"  # decisions being made; no bundle sent yet
    ANSWERED = "answered"  # a bundle was exported; decisions and exports may go on
    CLOSED = "closed"  # final: holds released, nothing more changes


class Release(StrEnum):
    BOTH = "both"  # the whole call, both parties
    CALLER = "caller"  # the caller's channel alone; the call taker is removed
    REFUSE = "refuse"  # not released


class SarCaseError(CatalogError):
    """The case cannot change as asked: it is closed, or the recording cannot be
    released."""


@dataclass(frozen=True, slots=True)
class NewSarCase:
    """A case as it is opened, with the recordings its search found."""

    requester: str
    identity_check: str
    numbers: tuple[str, ...]
    window_from: datetime
    window_to: datetime
    received_at: datetime
    deadline_at: datetime
    opened_by: str
    recording_ids: tuple[str, ...] = ()
    operator: str | None = None
    contact: str | None = None


@dataclass(frozen=True, slots=True)
class SarRecording:
    """A recording attached to a case and the DPO's decision on it (None: not yet)."""

    recording_id: str
    position: int
    release: Release | None = None
    decision_reason: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    hold_id: str | None = None

    @property
    def released(self) -> bool:
        return self.release in (Release.BOTH, Release.CALLER)

    def as_dict(self) -> dict[str, Any]:
        return {
            "recording_id": self.recording_id,
            "position": self.position,
            "release": None if self.release is None else self.release.value,
            "decision_reason": self.decision_reason,
            "decided_by": self.decided_by,
            "decided_at": _iso(self.decided_at),
            "hold_id": self.hold_id,
        }


@dataclass(frozen=True, slots=True)
class SarExport:
    """One bundle exported for a case: its recordings, each as it was released."""

    number: int
    exported_by: str
    exported_at: datetime
    bundle: str
    manifest_sha256: str
    releases: Mapping[str, Release]

    @property
    def recording_ids(self) -> tuple[str, ...]:
        return tuple(self.releases)

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "exported_by": self.exported_by,
            "exported_at": format_utc(self.exported_at),
            "bundle": self.bundle,
            "manifest_sha256": self.manifest_sha256,
            "recording_ids": list(self.recording_ids),
            "releases": {rid: release.value for rid, release in self.releases.items()},
        }


@dataclass(frozen=True, slots=True)
class SarCase:
    """A subject access case, its recordings and its exports."""

    id: str
    requester: str
    contact: str | None
    identity_check: str
    numbers: tuple[str, ...]
    window_from: datetime
    window_to: datetime
    operator: str | None
    received_at: datetime
    deadline_at: datetime
    opened_by: str
    opened_at: datetime
    state: SarState
    recordings: tuple[SarRecording, ...] = ()
    exports: tuple[SarExport, ...] = ()
    closed_by: str | None = None
    closed_at: datetime | None = None
    close_reason: str | None = None

    def recording(self, recording_id: str) -> SarRecording | None:
        for attached in self.recordings:
            if attached.recording_id == recording_id:
                return attached
        return None

    @property
    def released(self) -> tuple[SarRecording, ...]:
        return tuple(r for r in self.recordings if r.released)

    @property
    def undecided(self) -> tuple[SarRecording, ...]:
        return tuple(r for r in self.recordings if r.release is None)

    def as_dict(self) -> dict[str, Any]:
        """For ``--json`` and the API: times in ISO 8601 UTC."""
        return {
            "id": self.id,
            "requester": self.requester,
            "contact": self.contact,
            "identity_check": self.identity_check,
            "numbers": list(self.numbers),
            "from": format_utc(self.window_from),
            "to": format_utc(self.window_to),
            "operator": self.operator,
            "received_at": format_utc(self.received_at),
            "deadline_at": format_utc(self.deadline_at),
            "opened_by": self.opened_by,
            "opened_at": format_utc(self.opened_at),
            "state": self.state.value,
            "recordings": [r.as_dict() for r in self.recordings],
            "exports": [e.as_dict() for e in self.exports],
            "closed_by": self.closed_by,
            "closed_at": _iso(self.closed_at),
            "close_reason": self.close_reason,
        }


@dataclass(frozen=True, slots=True)
class SarCounts:
    """Cases not yet answered or closed, at one moment (what the metrics show):
    how many, how many are due within ``due_within`` of it, how many are overdue."""

    open: int
    due_soon: int
    overdue: int


def _iso(value: datetime | None) -> str | None:
    return None if value is None else format_utc(value)


class SarCaseRepository(Protocol):
    """Subject access cases: open, decide, record exports, close, look up, count."""

    async def open(self, new: NewSarCase, *, at: datetime | None = None) -> SarCase: ...

    async def get(self, case_id: str) -> SarCase | None: ...

    async def cases(self, *, state: SarState | None = None) -> list[SarCase]: ...

    async def decide(
        self,
        case_id: str,
        recording_id: str,
        *,
        release: Release,
        by: str,
        reason: str,
        at: datetime | None = None,
    ) -> SarCase: ...

    async def record_export(
        self,
        case_id: str,
        *,
        by: str,
        bundle: str,
        manifest_sha256: str,
        releases: Mapping[str, Release],
        at: datetime | None = None,
    ) -> SarExport: ...

    async def close(
        self, case_id: str, *, by: str, reason: str, at: datetime | None = None
    ) -> SarCase: ...

    async def counts(self, as_of: datetime, due_within_ms: int) -> SarCounts: ...


_SELECT = "SELECT * FROM sar_cases"
_RECORDINGS = "SELECT * FROM sar_case_recordings WHERE case_id = ? ORDER BY position"
_EXPORTS = "SELECT * FROM sar_exports WHERE case_id = ? ORDER BY number"


def _recordings(conn: Connection, case_id: str) -> tuple[SarRecording, ...]:
    return tuple(
        SarRecording(
            recording_id=row["recording_id"],
            position=row["position"],
            release=None if row["release"] is None else Release(row["release"]),
            decision_reason=row["decision_reason"],
            decided_by=row["decided_by"],
            decided_at=opt_dt(row["decided_at"]),
            hold_id=row["hold_id"],
        )
        for row in rows(conn, _RECORDINGS, (case_id,))
    )


def _exports(conn: Connection, case_id: str) -> tuple[SarExport, ...]:
    return tuple(
        SarExport(
            number=row["number"],
            exported_by=row["exported_by"],
            exported_at=from_ms(row["exported_at"]),
            bundle=row["bundle"],
            manifest_sha256=row["manifest_sha256"],
            releases={rid: Release(r) for rid, r in json.loads(row["recordings"]).items()},
        )
        for row in rows(conn, _EXPORTS, (case_id,))
    )


def _case(conn: Connection, row: Row) -> SarCase:
    return SarCase(
        id=row["id"],
        requester=row["requester"],
        contact=row["contact"],
        identity_check=row["identity_check"],
        numbers=tuple(json.loads(row["numbers"])),
        window_from=from_ms(row["window_from"]),
        window_to=from_ms(row["window_to"]),
        operator=row["operator"],
        received_at=from_ms(row["received_at"]),
        deadline_at=from_ms(row["deadline_at"]),
        opened_by=row["opened_by"],
        opened_at=from_ms(row["opened_at"]),
        state=SarState(row["state"]),
        recordings=_recordings(conn, row["id"]),
        exports=_exports(conn, row["id"]),
        closed_by=row["closed_by"],
        closed_at=opt_dt(row["closed_at"]),
        close_reason=row["close_reason"],
    )


def _find(conn: Connection, case_id: str) -> SarCase | None:
    row = one(conn, f"{_SELECT} WHERE id = ?", (case_id,))
    return None if row is None else _case(conn, row)


def _require(conn: Connection, case_id: str, *, changing: bool = False) -> SarCase:
    found = _find(conn, case_id)
    if found is None:
        raise NotFoundError(f"no subject access case {case_id}")
    if changing and found.state is SarState.CLOSED:
        raise SarCaseError(f"case {found.id} is closed; nothing in it changes any more")
    return found


def _next_id(conn: Connection, year: int) -> str:
    """``SAR-YYYY-NNNN``: the year's next number (short enough to say on the phone)."""
    prefix = f"SAR-{year:04d}-"
    row = one(
        conn,
        "SELECT COUNT(*) FROM sar_cases WHERE id >= ? AND id < ?",
        (prefix, f"SAR-{year:04d}.."),
    )
    return f"{prefix}{(0 if row is None else int(row[0])) + 1:04d}"


def _numbers(values: Sequence[str]) -> tuple[str, ...]:
    numbers = tuple(text("number", value).strip() for value in values)
    if not numbers:
        raise InvalidFieldError("a case names one or more numbers")
    return tuple(dict.fromkeys(numbers))


def _audit(
    conn: Connection,
    at_ms: int,
    actor: str,
    action: str,
    case_id: str,
    reason: str | None,
    detail: dict[str, Any],
) -> None:
    append(
        conn,
        at_ms=at_ms,
        actor=actor,
        action=action,
        object=f"sar:{case_id}",
        reason=reason,
        detail=detail,
    )


class SqliteSarCases:
    """:class:`SarCaseRepository` in the catalog's SQLite database (migration 14)."""

    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._clock = clock

    async def open(self, new: NewSarCase, *, at: datetime | None = None) -> SarCase:
        """Open a case with the recordings found; ``NotFoundError`` naming an unknown
        recording, ``InvalidFieldError`` for a bad field (no number, an empty window, a
        deadline not after receipt)."""
        requester = text("requester", new.requester)
        identity = text("identity_check", new.identity_check)
        opened_by = text("opened_by", new.opened_by)
        numbers = _numbers(new.numbers)
        window_from, window_to = to_ms("from", new.window_from), to_ms("to", new.window_to)
        if window_to <= window_from:
            raise InvalidFieldError("the window's end must be after its start")
        received = to_ms("received_at", new.received_at)
        deadline = to_ms("deadline", new.deadline_at)
        if deadline <= received:
            raise InvalidFieldError("the deadline must be after the request was received")
        ids = tuple(text("recording id", each) for each in new.recording_ids)
        if len(set(ids)) != len(ids):
            raise InvalidFieldError("a recording is attached to a case once")
        operator, contact = opt_text("operator", new.operator), opt_text("contact", new.contact)
        at_ms = at_or_now_ms(self._clock, at)

        def body(conn: Connection) -> SarCase:
            case_id = _next_id(conn, from_ms(at_ms).year)
            insert(
                conn,
                "INSERT INTO sar_cases (id, requester, contact, identity_check, numbers,"
                " window_from, window_to, operator, received_at, deadline_at, opened_by,"
                " opened_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    case_id, requester, contact, identity, json.dumps(list(numbers)),
                    window_from, window_to, operator, received, deadline, opened_by, at_ms,
                    SarState.OPEN.value,
                ),
            )  # fmt: skip
            _audit(
                conn,
                at_ms,
                opened_by,
                "sar.open",
                case_id,
                None,
                {
                    "requester": requester,
                    "identity_check": identity,
                    "numbers": list(numbers),
                    "from": format_utc(from_ms(window_from)),
                    "to": format_utc(from_ms(window_to)),
                    "operator": operator,
                    "deadline_at": format_utc(from_ms(deadline)),
                    "recordings": list(ids),
                },
            )
            for position, recording_id in enumerate(ids, start=1):
                recording = to.require_recording(conn, recording_id)
                hold_id = None
                if recording.state not in UNHOLDABLE:
                    hold = Hold(
                        id=uuid_or_new("hold id", None),
                        recording_id=recording_id,
                        kind=SAR_HOLD_KIND,
                        reference=case_id,
                        placed_by=opened_by,
                        placed_at=from_ms(at_ms),
                        review_on=None,
                        note=f"kept while subject access case {case_id} is open",
                    )
                    hold_id = place_hold(conn, hold).id
                insert(
                    conn,
                    "INSERT INTO sar_case_recordings (case_id, position, recording_id, hold_id)"
                    " VALUES (?, ?, ?, ?)",
                    (case_id, position, recording_id, hold_id),
                )
            return _require(conn, case_id)

        return await self._db.write(body)

    async def get(self, case_id: str) -> SarCase | None:
        return await self._db.read(lambda conn: _find(conn, case_id))

    async def cases(self, *, state: SarState | None = None) -> list[SarCase]:
        """Cases by deadline (soonest first), optionally in one state."""
        where, params = "", tuple[str, ...]()
        if state is not None:
            where, params = " WHERE state = ?", (SarState(state).value,)
        sql = f"{_SELECT}{where} ORDER BY deadline_at, id"
        return await self._db.read(
            lambda conn: [_case(conn, row) for row in rows(conn, sql, params)]
        )

    async def decide(
        self,
        case_id: str,
        recording_id: str,
        *,
        release: Release,
        by: str,
        reason: str,
        at: datetime | None = None,
    ) -> SarCase:
        """Record (or revise) the decision on one recording of an open or answered case.
        ``NotFoundError`` for an unknown case or a recording not in it;
        ``SarCaseError`` for a closed case or a release of a recording with no audio."""
        release = Release(release)
        by, reason = text("by", by), text("reason", reason)
        at_ms = at_or_now_ms(self._clock, at)

        def body(conn: Connection) -> SarCase:
            case = _require(conn, case_id, changing=True)
            attached = case.recording(recording_id)
            if attached is None:
                raise NotFoundError(f"recording {recording_id} is not in case {case.id}")
            if release is not Release.REFUSE:
                recording = to.require_recording(conn, recording_id)
                if recording.state in UNHOLDABLE:
                    raise SarCaseError(
                        f"recording {recording_id} is {recording.state.value}: it has no audio "
                        "to release; record --release refuse with the reason"
                    )
                if recording.state.live:
                    raise SarCaseError(f"recording {recording_id} is still being recorded")
            conn.execute(
                "UPDATE sar_case_recordings SET release = ?, decision_reason = ?,"
                " decided_by = ?, decided_at = ? WHERE case_id = ? AND recording_id = ?",
                (release.value, reason, by, at_ms, case.id, recording_id),
            )
            _audit(
                conn,
                at_ms,
                by,
                "sar.decide",
                case.id,
                reason,
                {
                    "recording_id": recording_id,
                    "release": release.value,
                    "previous": None if attached.release is None else attached.release.value,
                },
            )
            return _require(conn, case.id)

        return await self._db.write(body)

    async def record_export(
        self,
        case_id: str,
        *,
        by: str,
        bundle: str,
        manifest_sha256: str,
        releases: Mapping[str, Release],
        at: datetime | None = None,
    ) -> SarExport:
        """Record a bundle sealed for the case, each recording as it was released in it.
        ``SarCaseError`` when a decision changed while the bundle was written (the
        bundle must then not go out), or none is given.  The case becomes ``answered``
        once a bundle has gone out with no call left undecided (until then it still
        counts towards the deadline metric)."""
        by, bundle = text("by", by), text("bundle", bundle)
        digest = sha256("manifest_sha256", manifest_sha256)
        exported = {text("recording id", rid): Release(r) for rid, r in releases.items()}
        if not exported:
            raise InvalidFieldError("an export holds one or more recordings")
        at_ms = at_or_now_ms(self._clock, at)

        def body(conn: Connection) -> SarExport:
            case = _require(conn, case_id, changing=True)
            for recording_id, release in exported.items():
                attached = case.recording(recording_id)
                if attached is None or not attached.released:
                    raise SarCaseError(f"recording {recording_id} is not released in {case.id}")
                if attached.release is not release:
                    raise SarCaseError(
                        f"the decision on recording {recording_id} changed while the bundle was"
                        f" written ({release.value} → {attached.release}): export again"
                    )
            number = len(case.exports) + 1
            recorded = {rid: release.value for rid, release in exported.items()}
            insert(
                conn,
                "INSERT INTO sar_exports (case_id, number, exported_by, exported_at, bundle,"
                " manifest_sha256, recordings) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (case.id, number, by, at_ms, bundle, digest, json.dumps(recorded)),
            )
            if not case.undecided:
                conn.execute(
                    "UPDATE sar_cases SET state = ? WHERE id = ? AND state = ?",
                    (SarState.ANSWERED.value, case.id, SarState.OPEN.value),
                )
            _audit(
                conn,
                at_ms,
                by,
                "sar.export",
                case.id,
                None,
                {"bundle": bundle, "manifest_sha256": digest, "recordings": recorded},
            )
            return SarExport(number, by, from_ms(at_ms), bundle, digest, exported)

        return await self._db.write(body)

    async def close(
        self, case_id: str, *, by: str, reason: str, at: datetime | None = None
    ) -> SarCase:
        """Close the case for good, releasing its holds."""
        by, reason = text("by", by), text("reason", reason)
        at_ms = at_or_now_ms(self._clock, at)

        def body(conn: Connection) -> SarCase:
            case = _require(conn, case_id, changing=True)
            conn.execute(
                "UPDATE sar_cases SET state = ?, closed_by = ?, closed_at = ?, close_reason = ?"
                " WHERE id = ?",
                (SarState.CLOSED.value, by, at_ms, reason, case.id),
            )
            _audit(conn, at_ms, by, "sar.close", case.id, reason, {"state": case.state.value})
            for attached in case.recordings:
                if attached.hold_id is None:
                    continue
                try:
                    release_hold(
                        conn,
                        attached.hold_id,
                        by=by,
                        reason=f"subject access case {case.id} closed",
                        at_ms=at_ms,
                    )
                except HoldRefusedError:  # released by hand already
                    continue
            return _require(conn, case.id)

        return await self._db.write(body)

    async def counts(self, as_of: datetime, due_within_ms: int) -> SarCounts:
        """Open cases (not answered, not closed) at ``as_of``: all, due within
        ``due_within_ms`` (not yet overdue), and overdue."""
        now = to_ms("as_of", as_of)

        def body(conn: Connection) -> SarCounts:
            row = one(
                conn,
                "SELECT COUNT(*), "
                "COUNT(CASE WHEN deadline_at > ? AND deadline_at <= ? THEN 1 END), "
                "COUNT(CASE WHEN deadline_at <= ? THEN 1 END) FROM sar_cases WHERE state = ?",
                (now, now + due_within_ms, now, SarState.OPEN.value),
            )
            return SarCounts(0, 0, 0) if row is None else SarCounts(*(int(v) for v in row))

        return await self._db.read(body)
