"""SIP credentials (issue 18): what the registrar checks a phone's digest answer against.

A user's SIP password is apart from their console password (a phone keeps its password
in a plain-text configuration file, so it must open nothing else).  It is never stored:
only its HA1 values, ``H(user ":" realm ":" password)`` with SHA-256 and with MD5 (RFC
8760), for the one realm they were made for.  An HA1 proves a password in that realm
only, so changing ``[registrar] realm`` means setting every SIP password again: the
stored ``realm`` says which realm each was set for.

A disabled user has no SIP credentials: disabling removes them (``users.disable``) and
:meth:`SqliteSipCredentials.lookup` answers only for users that are not disabled.

Setting and removing are audited (``user.sip_password``, ``user.sip_password.remove``)
in the same transaction, with the realm, never an HA1.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from .audit import append
from .db import Connection, Database, Row, one, rows
from .errors import InvalidFieldError, NotFoundError
from .users import UserStateError
from .values import at_or_now_ms, from_ms, text

_HEX = {"ha1_sha256": re.compile(r"[0-9a-f]{64}"), "ha1_md5": re.compile(r"[0-9a-f]{32}")}


@dataclass(frozen=True, slots=True)
class SipCredentials:
    """A user's digest secrets for ``realm`` (HA1 values, lower-case hex)."""

    user: str
    realm: str
    ha1_sha256: str
    ha1_md5: str
    set_at: datetime


class SipCredentialRepository(Protocol):
    """The SIP credentials of users (one set each)."""

    async def set(
        self,
        user: str,
        *,
        realm: str,
        ha1_sha256: str,
        ha1_md5: str,
        by: str,
        at: datetime | None = None,
    ) -> SipCredentials: ...

    async def remove(self, user: str, *, by: str, at: datetime | None = None) -> bool: ...

    async def lookup(self, user: str) -> SipCredentials | None: ...

    async def realms(self) -> dict[str, list[str]]: ...


def _credentials(row: Row) -> SipCredentials:
    return SipCredentials(
        user=row["user"],
        realm=row["realm"],
        ha1_sha256=row["ha1_sha256"],
        ha1_md5=row["ha1_md5"],
        set_at=from_ms(row["set_at"]),
    )


def _hex(name: str, value: str) -> str:
    if not isinstance(value, str) or _HEX[name].fullmatch(value) is None:
        raise InvalidFieldError(f"{name} must be lower-case hex of the digest's length")
    return value


def _enabled_user(conn: Connection, name: str) -> str:
    row = one(conn, "SELECT name, disabled_at FROM users WHERE name = ?", (name.lower(),))
    if row is None:
        raise NotFoundError(f"user {name} does not exist")
    if row["disabled_at"] is not None:
        raise UserStateError(f"user {row['name']} is disabled: no SIP password can be set")
    return str(row["name"])


class SqliteSipCredentials:
    """:class:`SipCredentialRepository` in the catalog's SQLite database (migration 15)."""

    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._clock = clock

    async def set(
        self,
        user: str,
        *,
        realm: str,
        ha1_sha256: str,
        ha1_md5: str,
        by: str,
        at: datetime | None = None,
    ) -> SipCredentials:
        """Set (or replace) ``user``'s SIP credentials; ``NotFoundError`` for an unknown
        user, ``UserStateError`` for a disabled one."""
        realm, by = text("realm", realm), text("by", by)
        sha, md5 = _hex("ha1_sha256", ha1_sha256), _hex("ha1_md5", ha1_md5)
        at_ms = at_or_now_ms(self._clock, at)

        def body(conn: Connection) -> SipCredentials:
            name = _enabled_user(conn, user)
            conn.execute(
                "INSERT INTO sip_credentials (user, realm, ha1_sha256, ha1_md5, set_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user) DO UPDATE SET realm = excluded.realm,"
                " ha1_sha256 = excluded.ha1_sha256, ha1_md5 = excluded.ha1_md5,"
                " set_at = excluded.set_at",
                (name, realm, sha, md5, at_ms),
            )
            append(
                conn,
                at_ms=at_ms,
                actor=by,
                action="user.sip_password",
                object=f"user:{name}",
                detail={"realm": realm},
            )
            return SipCredentials(name, realm, sha, md5, from_ms(at_ms))

        return await self._db.write(body)

    async def remove(self, user: str, *, by: str, at: datetime | None = None) -> bool:
        """Remove ``user``'s SIP credentials (audited); False, and nothing written, when
        there were none.  ``NotFoundError`` for an unknown user."""
        by = text("by", by)
        at_ms = at_or_now_ms(self._clock, at)

        def body(conn: Connection) -> bool:
            row = one(conn, "SELECT name FROM users WHERE name = ?", (user.lower(),))
            if row is None:
                raise NotFoundError(f"user {user} does not exist")
            name = str(row["name"])
            if not conn.execute("DELETE FROM sip_credentials WHERE user = ?", (name,)).rowcount:
                return False
            append(
                conn,
                at_ms=at_ms,
                actor=by,
                action="user.sip_password.remove",
                object=f"user:{name}",
            )
            return True

        return await self._db.write(body)

    async def lookup(self, user: str) -> SipCredentials | None:
        """The credentials of ``user`` if it exists, is not disabled and has some."""
        sql = (
            "SELECT c.* FROM sip_credentials c JOIN users u ON u.name = c.user"
            " WHERE c.user = ? AND u.disabled_at IS NULL"
        )

        def body(conn: Connection) -> SipCredentials | None:
            found = one(conn, sql, (user.lower(),))
            return None if found is None else _credentials(found)

        return await self._db.read(body)

    async def realms(self) -> dict[str, list[str]]:
        """Each realm SIP passwords were set for, with its users (by name)."""
        sql = "SELECT realm, user FROM sip_credentials ORDER BY realm, user"
        found: dict[str, list[str]] = {}
        for row in await self._db.read(lambda conn: rows(conn, sql)):
            found.setdefault(row["realm"], []).append(row["user"])
        return found
