"""From SQLite rows to the catalog's model, and the lookups every aggregate shares
(a write that names a call, recording or segment first makes sure it exists)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ...recording_state import RecordingState
from . import model
from .db import Connection, Params, Row, one, rows
from .errors import NotFoundError
from .values import from_ms, opt_dt

T = TypeVar("T")


def call(row: Row) -> model.Call:
    return model.Call(
        id=row["id"],
        sip_call_id=row["sip_call_id"],
        caller=row["caller"],
        callee=row["callee"],
        direction=model.CallDirection(row["direction"]),
        started_at=from_ms(row["started_at"]),
        service=row["service"],
        operator=row["operator"],
        answered_at=opt_dt(row["answered_at"]),
        bridged_at=opt_dt(row["bridged_at"]),
        ended_at=opt_dt(row["ended_at"]),
        outcome=None if row["outcome"] is None else model.CallOutcome(row["outcome"]),
        config_version=row["config_version"],
        # the SIPREC migration added kind; a catalog opened with fewer holds calls only
        kind=model.CallKind(row["kind"] if "kind" in row.keys() else "call"),  # noqa: SIM118
        node=_since_17(row),
    )


def receipt(row: Row) -> model.ConsentReceipt:
    return model.ConsentReceipt(
        call_id=row["call_id"],
        mode=model.NoticeMode(row["mode"]),
        notice_sha256=row["notice_sha256"],
        notice_version=row["notice_version"],
        started_at=opt_dt(row["started_at"]),
        played_ms=row["played_ms"],
        notice_ms=row["notice_ms"],
        completed=bool(row["completed"]),
        caller_left_during_notice=bool(row["caller_left_during_notice"]),
        do_not_record=bool(row["do_not_record"]),
        notice_restarts=row["notice_restarts"],
        held_ms=row["held_ms"],
    )


def recording(row: Row) -> model.Recording:
    return model.Recording(
        id=row["id"],
        call_id=row["call_id"],
        state=RecordingState(row["state"]),
        directory=row["directory"],
        encoding=row["encoding"],
        sample_rate=row["sample_rate"],
        channels=row["channels"],
        started_at=from_ms(row["started_at"]),
        ended_at=opt_dt(row["ended_at"]),
        duration_ms=row["duration_ms"],
        failure_reason=row["failure_reason"],
        wrapped_key_sha256=row["wrapped_key_sha256"],
        discarded_by=row["discarded_by"],
        discarded_reason=row["discarded_reason"],
        discarded_at=opt_dt(row["discarded_at"]),
        degraded_reason=row["degraded_reason"],
        expires_at=opt_dt(_since_8(row, "expires_at")),
        deleted_at=opt_dt(_since_8(row, "deleted_at")),
        deleted_reason=_since_8(row, "deleted_reason"),
        node=_since_17(row),
    )


def _since_8(row: Row, name: str) -> Any:
    """A column migration 8 added: None in a database opened with fewer migrations."""
    return row[name] if name in row.keys() else None  # noqa: SIM118 (Row: in tests values)


def _since_17(row: Row) -> str | None:
    """The ``node`` column migration 17 added: None in a database opened with fewer
    migrations, and in rows written before nodes had names."""
    return row["node"] if "node" in row.keys() else None  # noqa: SIM118


def segment(row: Row) -> model.Segment:
    return model.Segment(
        recording_id=row["recording_id"],
        segment_index=row["segment_index"],
        file_name=row["file_name"],
        first_frame=row["first_frame"],
        chunks=row["chunks"],
        frames=row["frames"],
        size_bytes=row["size_bytes"],
        sha256=row["sha256"],
        closed=bool(row["closed"]),
    )


def quality(row: Row) -> model.ChannelQuality:
    return model.ChannelQuality(
        channel=row["channel"],
        frames=row["frames"],
        lost_frames=row["lost_frames"],
        late_frames=row["late_frames"],
        missing_frames=row["missing_frames"],
        longest_gap_ms=row["longest_gap_ms"],
    )


def summary(row: Row, channels: tuple[model.ChannelQuality, ...]) -> model.RecordingSummary:
    return model.RecordingSummary(
        id=row["id"],
        call_id=row["call_id"],
        caller=row["caller"],
        callee=row["callee"],
        started_at=from_ms(row["call_started_at"]),
        duration_ms=row["duration_ms"],
        state=RecordingState(row["state"]),
        segments=row["segments"],
        reason=row["failure_reason"] or row["degraded_reason"],
        quality=channels,
        config_version=row["config_version"],
        expires_at=opt_dt(row["expires_at"]),
        deleted_at=opt_dt(row["deleted_at"]),
        deleted_reason=row["deleted_reason"],
        node=_since_17(row),
    )


def event(row: Row) -> model.RecordingEvent:
    return model.RecordingEvent(
        id=row["id"],
        recording_id=row["recording_id"],
        at=from_ms(row["at"]),
        action=model.RecordingAction(row["action"]),
        channel=model.EventChannel(row["channel"]),
        actor=row["actor"],
        reason=row["reason"],
    )


def do_not_record(row: Row) -> model.DoNotRecordEntry:
    return model.DoNotRecordEntry(
        row["number"], row["reference"], row["added_by"], from_ms(row["added_at"])
    )


def access(row: Row) -> model.AccessEntry:
    return model.AccessEntry(
        row["id"],
        from_ms(row["at"]),
        row["actor"],
        row["action"],
        row["recording_id"],
        row["reason"],
        row["detail"],
    )


def find(conn: Connection, convert: Callable[[Row], T], sql: str, params: Params) -> T | None:
    """The one row ``sql`` selects, converted; None if there is none."""
    row = one(conn, sql, params)
    return None if row is None else convert(row)


def find_all(
    conn: Connection, convert: Callable[[Row], T], sql: str, params: Params = ()
) -> list[T]:
    return [convert(row) for row in rows(conn, sql, params)]


def find_call(conn: Connection, call_id: str) -> model.Call | None:
    return find(conn, call, "SELECT * FROM calls WHERE id = ?", (call_id,))


def find_recording(conn: Connection, recording_id: str) -> model.Recording | None:
    return find(conn, recording, "SELECT * FROM recordings WHERE id = ?", (recording_id,))


def require_call(conn: Connection, call_id: str) -> model.Call:
    found = find_call(conn, call_id)
    if found is None:
        raise NotFoundError(f"call {call_id} does not exist")
    return found


def require_recording(conn: Connection, recording_id: str) -> model.Recording:
    found = find_recording(conn, recording_id)
    if found is None:
        raise NotFoundError(f"recording {recording_id} does not exist")
    return found


def require_segment(conn: Connection, recording_id: str, segment_index: int) -> model.Segment:
    found = find(
        conn,
        segment,
        "SELECT * FROM segments WHERE recording_id = ? AND segment_index = ?",
        (recording_id, segment_index),
    )
    if found is None:
        raise NotFoundError(f"recording {recording_id} has no segment {segment_index}")
    return found
