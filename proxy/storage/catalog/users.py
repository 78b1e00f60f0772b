"""Accounts (issue 15): users with one role and any number of teams, their login
sessions, and the failed logins that lock an account or throttle a source address.

What is stored, and what never is:

* a user's password only as its argon2 hash (made by the use case,
  :mod:`proxy.records.accounts`); :class:`User` does not carry it, only
  :meth:`UserRepository.credentials` returns it, for the login check;
* a session's token only as its SHA-256 (``token_sha256``): a copy of the catalog
  gives nobody a working token;
* the audit entries (``user.add``, ``user.disable``, ``user.password``, ``login``,
  ``login.failed``, ``logout``) are appended in the same transaction as the change and
  hold names, roles, kinds and source addresses, never a password, hash or token.

A login attempt for a name that is no user is audited under the actor ``(unknown)``:
the name typed may be a password typed into the wrong field.

The rules (how many failures lock an account and for how long, how long a session
lives) are the use case's; this module stores what it decides, each decision in one
transaction so that two attempts at once cannot both escape the count.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from ...roles import Role
from . import rows as to
from .audit import append
from .db import GREATEST, Connection, Database, Row, dialect, insert, one, rows
from .errors import CatalogError, InvalidFieldError, NotFoundError
from .model import format_utc
from .values import at_or_now_ms, from_ms, member, opt_dt, opt_text, sha256, text, to_ms

_NAME = re.compile(r"[a-z0-9._-]{1,64}")

#: The audit actor of a failed login whose name is no user's.
UNKNOWN_ACTOR = "(unknown)"


class SessionKind(StrEnum):
    """A browser session (cookie, idle timeout) or an API client's bearer token."""

    BROWSER = "browser"
    BEARER = "bearer"


class UserStateError(CatalogError):
    """The user cannot take that change now (already disabled)."""


def user_name(value: object) -> str:
    """A login name: 1-64 characters of ``a-z 0-9 . _ -``, lower-cased first."""
    if not isinstance(value, str) or _NAME.fullmatch(value.lower()) is None:
        raise InvalidFieldError(
            f"user name must be 1-64 characters of a-z, 0-9, '.', '_' or '-', got {value!r}"
        )
    return value.lower()


@dataclass(frozen=True, slots=True)
class NewUser:
    """A user as added (``password_hash`` already made by the use case)."""

    name: str
    role: Role
    password_hash: str
    teams: tuple[str, ...] = ()
    operator: str | None = None


@dataclass(frozen=True, slots=True)
class User:
    """A user as the rest of the proxy sees it: never its password hash."""

    name: str
    role: Role
    teams: tuple[str, ...]
    operator: str | None
    created_at: datetime
    password_changed_at: datetime
    disabled_at: datetime | None = None
    failed_logins: int = 0
    locked_until: datetime | None = None

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until

    def as_dict(self, now: datetime) -> dict[str, Any]:
        """For ``users list --json`` and the API (no hash: it is not here)."""
        return {
            "name": self.name,
            "role": self.role.value,
            "teams": list(self.teams),
            "operator": self.operator,
            "created_at": format_utc(self.created_at),
            "password_changed_at": format_utc(self.password_changed_at),
            "disabled_at": None if self.disabled_at is None else format_utc(self.disabled_at),
            "locked_until": (
                format_utc(self.locked_until)
                if self.locked_until is not None and now < self.locked_until
                else None
            ),
            "failed_logins": self.failed_logins,
        }


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user and its password hash: what a login checks, and nothing else reads."""

    user: User
    password_hash: str


@dataclass(frozen=True, slots=True)
class NewSession:
    """A session as a login opens it; ``token_sha256`` is the digest of the token."""

    token_sha256: str
    user: str
    kind: SessionKind
    expires_at: datetime
    source: str


@dataclass(frozen=True, slots=True)
class Session:
    """A stored session (its token is nowhere: only ``token_sha256``)."""

    token_sha256: str
    user: str
    kind: SessionKind
    created_at: datetime
    expires_at: datetime
    last_seen_at: datetime
    source: str
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Lockout:
    """A failed login's consequence for a known user: after ``after`` failures in a row
    the account is locked until ``until``."""

    after: int
    until: datetime


class UserRepository(Protocol):
    """Users, their sessions and failed logins."""

    async def add(self, user: NewUser, *, by: str, at: datetime | None = None) -> User: ...

    async def get(self, name: str) -> User | None: ...

    async def credentials(self, name: str) -> Credentials | None: ...

    async def users(self) -> list[User]: ...

    async def disable(self, name: str, *, by: str, at: datetime | None = None) -> User: ...

    async def set_password(
        self, name: str, password_hash: str, *, by: str, at: datetime | None = None
    ) -> User: ...

    async def record_failure(
        self,
        name: str | None,
        *,
        source: str,
        why: str,
        at: datetime,
        forget_before: datetime,
        lockout: Lockout | None,
    ) -> User | None: ...

    async def source_failures(self, source: str, *, since: datetime) -> int: ...

    async def open_session(self, session: NewSession, *, at: datetime) -> Session: ...

    async def session(self, token_sha256: str) -> Session | None: ...

    async def touch_session(self, token_sha256: str, *, at: datetime) -> None: ...

    async def revoke_session(self, token_sha256: str, *, at: datetime) -> Session | None: ...


def _teams(conn: Connection, name: str) -> tuple[str, ...]:
    found = conn.execute("SELECT team FROM user_teams WHERE user = ? ORDER BY team", (name,))
    return tuple(str(row[0]) for row in found)


def _user(conn: Connection, row: Row) -> User:
    return User(
        name=row["name"],
        role=Role(row["role"]),
        teams=_teams(conn, row["name"]),
        operator=row["operator"],
        created_at=from_ms(row["created_at"]),
        password_changed_at=from_ms(row["password_changed_at"]),
        disabled_at=opt_dt(row["disabled_at"]),
        failed_logins=int(row["failed_logins"]),
        locked_until=opt_dt(row["locked_until"]),
    )


def _find(conn: Connection, name: str) -> Row | None:
    return one(conn, "SELECT * FROM users WHERE name = ?", (name,))


def _require(conn: Connection, name: str) -> Row:
    found = _find(conn, name)
    if found is None:
        raise NotFoundError(f"user {name} does not exist")
    return found


def _session(row: Row) -> Session:
    return Session(
        token_sha256=row["token_sha256"],
        user=row["user"],
        kind=SessionKind(row["kind"]),
        created_at=from_ms(row["created_at"]),
        expires_at=from_ms(row["expires_at"]),
        last_seen_at=from_ms(row["last_seen_at"]),
        source=row["source"],
        revoked_at=opt_dt(row["revoked_at"]),
    )


def _changed(conn: Connection, name: str, *, by: str, action: str, at_ms: int) -> User:
    """After a change that must end the user's sessions (disabled, new password): revoke
    them, audit the change with how many ended, and give the user as it now is."""
    revoked = conn.execute(
        "UPDATE sessions SET revoked_at = ? WHERE user = ? AND revoked_at IS NULL", (at_ms, name)
    )
    detail = {"sessions_revoked": int(revoked.rowcount)}
    append(conn, at_ms=at_ms, actor=by, action=action, object=f"user:{name}", detail=detail)
    return _user(conn, _require(conn, name))


def _teams_of(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(sorted({" ".join(text("team", team).split()) for team in values}))


class SqliteUsers:
    """:class:`UserRepository` in the catalog's SQLite database (migration 10)."""

    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._clock = clock

    async def add(self, user: NewUser, *, by: str, at: datetime | None = None) -> User:
        """Add a user; ``DuplicateError`` if the name is taken."""
        name = user_name(user.name)
        role = member(Role, "role", user.role)
        password_hash = text("password_hash", user.password_hash)
        teams = _teams_of(user.teams)
        operator = opt_text("operator", user.operator)
        by = text("by", by)
        at_ms = at_or_now_ms(self._clock, at)

        def body(conn: Connection) -> User:
            insert(
                conn,
                "INSERT INTO users (name, role, password_hash, operator, created_at,"
                " password_changed_at) VALUES (?, ?, ?, ?, ?, ?)",
                (name, role.value, password_hash, operator, at_ms, at_ms),
                duplicate=f"user {name} already exists",
            )
            conn.executemany(
                "INSERT INTO user_teams (user, team) VALUES (?, ?)", [(name, t) for t in teams]
            )
            detail = {"role": role.value, "teams": list(teams), "operator": operator}
            append(
                conn, at_ms=at_ms, actor=by, action="user.add", object=f"user:{name}", detail=detail
            )
            return _user(conn, _require(conn, name))

        return await self._db.write(body)

    async def get(self, name: str) -> User | None:
        def body(conn: Connection) -> User | None:
            found = _find(conn, name.lower())
            return None if found is None else _user(conn, found)

        return await self._db.read(body)

    async def credentials(self, name: str) -> Credentials | None:
        """The user and its password hash, for a login check only."""

        def body(conn: Connection) -> Credentials | None:
            found = _find(conn, name.lower())
            if found is None:
                return None
            return Credentials(_user(conn, found), found["password_hash"])

        return await self._db.read(body)

    async def users(self) -> list[User]:
        """Every user, by name."""
        sql = "SELECT * FROM users ORDER BY name"
        return await self._db.read(lambda conn: [_user(conn, row) for row in rows(conn, sql)])

    async def disable(self, name: str, *, by: str, at: datetime | None = None) -> User:
        """Disable a user, revoke its sessions and remove its SIP credentials;
        ``NotFoundError`` for an unknown name, ``UserStateError`` for one already
        disabled."""
        by = text("by", by)
        at_ms = at_or_now_ms(self._clock, at)

        def body(conn: Connection) -> User:
            row = _require(conn, name.lower())
            if row["disabled_at"] is not None:
                since = format_utc(from_ms(row["disabled_at"]))
                raise UserStateError(f"user {row['name']} was already disabled on {since}")
            conn.execute("UPDATE users SET disabled_at = ? WHERE name = ?", (at_ms, row["name"]))
            # a disabled user's phone registers no more (sip_credentials.py)
            conn.execute("DELETE FROM sip_credentials WHERE user = ?", (row["name"],))
            return _changed(conn, row["name"], by=by, action="user.disable", at_ms=at_ms)

        return await self._db.write(body)

    async def set_password(
        self, name: str, password_hash: str, *, by: str, at: datetime | None = None
    ) -> User:
        """Replace a user's password hash, clear its lock and failure count and revoke its
        sessions; ``NotFoundError`` for an unknown name."""
        password_hash, by = text("password_hash", password_hash), text("by", by)
        at_ms = at_or_now_ms(self._clock, at)

        def body(conn: Connection) -> User:
            row = _require(conn, name.lower())
            conn.execute(
                "UPDATE users SET password_hash = ?, password_changed_at = ?, failed_logins = 0,"
                " locked_until = NULL WHERE name = ?",
                (password_hash, at_ms, row["name"]),
            )
            return _changed(conn, row["name"], by=by, action="user.password", at_ms=at_ms)

        return await self._db.write(body)

    async def record_failure(
        self,
        name: str | None,
        *,
        source: str,
        why: str,
        at: datetime,
        forget_before: datetime,
        lockout: Lockout | None,
    ) -> User | None:
        """A refused login from ``source``: counted for the source's throttle, audited
        (``login.failed``), and, with ``lockout``, counted against the user ``name`` (if
        it is one), locking it at ``lockout.after`` failures in a row.  Failures of any
        source before ``forget_before`` are dropped (the throttle looks back no further).
        The user after the change, or None when ``name`` is no user."""
        source, why = text("source", source), text("why", why)
        at_ms, forget_ms = to_ms("at", at), to_ms("forget_before", forget_before)
        until_ms = None if lockout is None else to_ms("lockout.until", lockout.until)

        def body(conn: Connection) -> User | None:
            conn.execute("DELETE FROM login_failures WHERE at < ?", (forget_ms,))
            conn.execute("INSERT INTO login_failures (source, at) VALUES (?, ?)", (source, at_ms))
            row = None if name is None else _find(conn, name.lower())
            detail: dict[str, Any] = {"source": source, "why": why}
            if row is not None and lockout is not None:
                failed = int(row["failed_logins"]) + 1
                locked = until_ms if failed >= lockout.after else row["locked_until"]
                conn.execute(
                    "UPDATE users SET failed_logins = ?, locked_until = ? WHERE name = ?",
                    (failed, locked, row["name"]),
                )
                detail |= {"failed_logins": failed, "locked": locked is not None and locked > at_ms}
            actor = UNKNOWN_ACTOR if row is None else row["name"]
            target = None if row is None else f"user:{row['name']}"
            append(
                conn, at_ms=at_ms, actor=actor, action="login.failed", object=target, detail=detail
            )
            return None if row is None else _user(conn, _require(conn, row["name"]))

        return await self._db.write(body)

    async def source_failures(self, source: str, *, since: datetime) -> int:
        """Failed logins from ``source`` at or after ``since``."""
        since_ms = to_ms("since", since)
        sql = "SELECT count(*) FROM login_failures WHERE source = ? AND at >= ?"
        found = await self._db.read(lambda conn: one(conn, sql, (source, since_ms)))
        return 0 if found is None else int(found[0])

    async def open_session(self, session: NewSession, *, at: datetime) -> Session:
        """A successful login: the user's failure count and lock cleared, the session
        stored (by its token's digest) and audited (``login``), in one transaction."""
        digest = sha256("token_sha256", session.token_sha256)
        kind = member(SessionKind, "kind", session.kind)
        source = text("source", session.source)
        at_ms, expires_ms = to_ms("at", at), to_ms("expires_at", session.expires_at)

        def body(conn: Connection) -> Session:
            row = _require(conn, session.user.lower())
            conn.execute(
                "UPDATE users SET failed_logins = 0, locked_until = NULL WHERE name = ?",
                (row["name"],),
            )
            insert(
                conn,
                "INSERT INTO sessions (token_sha256, user, kind, created_at, expires_at,"
                " last_seen_at, source) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (digest, row["name"], kind.value, at_ms, expires_ms, at_ms, source),
                duplicate="a session with that token already exists",
            )
            detail = {
                "kind": kind.value,
                "source": source,
                "expires_at": format_utc(from_ms(expires_ms)),
            }
            append(
                conn,
                at_ms=at_ms,
                actor=row["name"],
                action="login",
                object=f"user:{row['name']}",
                detail=detail,
            )
            return _require_session(conn, digest)

        return await self._db.write(body)

    async def session(self, token_sha256: str) -> Session | None:
        return await self._db.read(lambda conn: _find_session(conn, token_sha256))

    async def touch_session(self, token_sha256: str, *, at: datetime) -> None:
        """Note that the session was used at ``at`` (its idle timeout starts again)."""
        at_ms = to_ms("at", at)
        await self._db.write(
            lambda conn: conn.execute(
                f"UPDATE sessions SET last_seen_at = {GREATEST[dialect(conn)]}(last_seen_at, ?)"
                " WHERE token_sha256 = ?",
                (at_ms, token_sha256),
            )
        )

    async def revoke_session(self, token_sha256: str, *, at: datetime) -> Session | None:
        """Log out: revoke the session and audit it (``logout``).  None, and nothing
        written, for an unknown or already revoked session."""
        at_ms = to_ms("at", at)

        def body(conn: Connection) -> Session | None:
            found = _find_session(conn, token_sha256)
            if found is None or found.revoked_at is not None:
                return None
            conn.execute(
                "UPDATE sessions SET revoked_at = ? WHERE token_sha256 = ?", (at_ms, token_sha256)
            )
            append(
                conn,
                at_ms=at_ms,
                actor=found.user,
                action="logout",
                object=f"user:{found.user}",
                detail={"kind": found.kind.value},
            )
            return _require_session(conn, token_sha256)

        return await self._db.write(body)


def _find_session(conn: Connection, token_sha256: str) -> Session | None:
    return to.find(conn, _session, "SELECT * FROM sessions WHERE token_sha256 = ?", (token_sha256,))


def _require_session(conn: Connection, token_sha256: str) -> Session:
    found = _find_session(conn, token_sha256)
    if found is None:  # pragma: no cover - only called for a row just written
        raise NotFoundError("session does not exist")
    return found
