"""SIPREC recording sessions (RFC 7866): what a recording client told us about the
communication session it recorded with us.

The call row (kind ``siprec``) holds the session's times, outcome and the numbers of
the parties on its two channels; this holds the rest: the SRC's Call-ID, the
communication session's identifiers from the metadata (its ``session_id`` and
``sipSessionID``), and every metadata snapshot as received — the first with the
INVITE, each later one with a re-INVITE (RFC 7866 §9.2) — with its participants, their
AORs and names, and the recording channel each one sends on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from .db import Connection, Database, insert, one, rows
from .errors import InvalidFieldError
from .values import from_ms, opt_text, text, to_ms

Channel = Literal["left", "right"]


@dataclass(frozen=True, slots=True)
class SiprecSession:
    """The communication session a SIPREC call recorded."""

    call_id: str  # the catalog's call
    src_call_id: str  # the Call-ID of the recording session's INVITE
    session_id: str | None  # the metadata's <session session_id>
    sip_session_id: str | None  # its <sipSessionID> (RFC 7989), first one


@dataclass(frozen=True, slots=True)
class SiprecParticipant:
    participant_id: str
    aor: str | None
    name: str | None
    channel: Channel | None  # the channel of the stream it sends; None: sends none


@dataclass(frozen=True, slots=True)
class SiprecSnapshot:
    number: int  # 1 for the INVITE's, then one more per re-INVITE's
    received_at: datetime
    metadata: str  # the XML as received
    participants: tuple[SiprecParticipant, ...]


class SiprecRepository(Protocol):
    """What the proxy keeps about SIPREC sessions."""

    async def add_session(self, session: SiprecSession) -> None: ...

    async def add_snapshot(
        self,
        call_id: str,
        received_at: datetime,
        metadata: str,
        participants: Sequence[SiprecParticipant],
    ) -> int: ...

    async def session(self, call_id: str) -> SiprecSession | None: ...

    async def snapshots(self, call_id: str) -> list[SiprecSnapshot]: ...


class SqliteSiprec:
    """:class:`SiprecRepository` in the catalog's SQLite database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add_session(self, session: SiprecSession) -> None:
        values = (
            text("call_id", session.call_id),
            text("src_call_id", session.src_call_id),
            opt_text("session_id", session.session_id),
            opt_text("sip_session_id", session.sip_session_id),
        )

        def body(conn: Connection) -> None:
            insert(
                conn,
                "INSERT INTO siprec_sessions (call_id, src_call_id, session_id, sip_session_id)"
                " VALUES (?, ?, ?, ?)",
                values,
                missing=f"call {values[0]} does not exist",
                duplicate=f"call {values[0]} already has a SIPREC session",
            )

        await self._db.write(body)

    async def add_snapshot(
        self,
        call_id: str,
        received_at: datetime,
        metadata: str,
        participants: Sequence[SiprecParticipant],
    ) -> int:
        """Store the next snapshot of ``call_id``'s metadata; its number."""
        at = to_ms("received_at", received_at)
        document = text("metadata", metadata)
        people = [_checked(p) for p in participants]

        def body(conn: Connection) -> int:
            row = one(
                conn,
                "SELECT COALESCE(MAX(snapshot), 0) + 1 FROM siprec_snapshots WHERE call_id = ?",
                (call_id,),
            )
            number = int(row[0]) if row is not None else 1
            insert(
                conn,
                "INSERT INTO siprec_snapshots (call_id, snapshot, received_at, metadata)"
                " VALUES (?, ?, ?, ?)",
                (call_id, number, at, document),
                missing=f"call {call_id} has no SIPREC session",
                duplicate=f"snapshot {number} of call {call_id} already exists",
            )
            for position, p in enumerate(people, start=1):
                conn.execute(
                    "INSERT INTO siprec_participants (call_id, snapshot, position,"
                    " participant_id, aor, name, channel) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (call_id, number, position, p.participant_id, p.aor, p.name, p.channel),
                )
            return number

        return await self._db.write(body)

    async def session(self, call_id: str) -> SiprecSession | None:
        def body(conn: Connection) -> SiprecSession | None:
            row = one(conn, "SELECT * FROM siprec_sessions WHERE call_id = ?", (call_id,))
            if row is None:
                return None
            return SiprecSession(
                row["call_id"], row["src_call_id"], row["session_id"], row["sip_session_id"]
            )

        return await self._db.read(body)

    async def snapshots(self, call_id: str) -> list[SiprecSnapshot]:
        """Every snapshot of ``call_id``, oldest first, each with its participants."""

        def body(conn: Connection) -> list[SiprecSnapshot]:
            found = rows(
                conn,
                "SELECT * FROM siprec_snapshots WHERE call_id = ? ORDER BY snapshot",
                (call_id,),
            )
            people = rows(
                conn,
                "SELECT * FROM siprec_participants WHERE call_id = ? ORDER BY snapshot, position",
                (call_id,),
            )
            return [
                SiprecSnapshot(
                    row["snapshot"],
                    from_ms(row["received_at"]),
                    row["metadata"],
                    tuple(
                        SiprecParticipant(p["participant_id"], p["aor"], p["name"], p["channel"])
                        for p in people
                        if p["snapshot"] == row["snapshot"]
                    ),
                )
                for row in found
            ]

        return await self._db.read(body)


def _checked(participant: SiprecParticipant) -> SiprecParticipant:
    if participant.channel not in (None, "left", "right"):
        raise InvalidFieldError(f"channel must be left, right or None: {participant.channel!r}")
    text("participant_id", participant.participant_id)
    return participant
