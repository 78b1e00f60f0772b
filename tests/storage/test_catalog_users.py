"""The users repository (migration 10) on a real SQLite catalog: each change and its
audit entry commit together, sessions are kept by their token's digest, disabling a user
or changing its password ends its sessions, and failed logins lock and throttle."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.storage.catalog import (
    DuplicateError,
    InvalidFieldError,
    Lockout,
    NewSession,
    NewUser,
    NotFoundError,
    Role,
    SessionKind,
    SqlCatalog,
    SqliteCatalog,
    UserStateError,
    user_name,
)
from proxy.storage.catalog.users import UNKNOWN_ACTOR
from proxy.storage.catalog.values import to_ms
from tests.catalog_backends import Backend

from .test_catalog import FakeClock, at

HASH = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"  # stored text only


@pytest.fixture
async def catalog(backend: Backend) -> AsyncIterator[SqlCatalog]:
    async with backend.catalog(clock=FakeClock(at(3600))) as opened:
        yield opened


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def add(catalog: SqlCatalog, name: str = "alice", role: Role = Role.STAFF) -> None:
    await catalog.users.add(
        NewUser(name, role, HASH, ("north", "south", "north"), "op-7"), by="root", at=at(0)
    )


async def session(catalog: SqlCatalog, token: str, user: str = "alice") -> None:
    opened = NewSession(digest(token), user, SessionKind.BROWSER, at(600), "192.0.2.1")
    await catalog.users.open_session(opened, at=at(10))


async def actions(catalog: SqlCatalog) -> list[tuple[str, str, str | None]]:
    return [(e.actor, e.action, e.object) for e in await catalog.audit.entries()]


async def test_a_user_is_added_with_its_teams_and_audited(catalog: SqlCatalog) -> None:
    await add(catalog, "Alice")
    user = await catalog.users.get("ALICE")
    assert user is not None
    assert (user.name, user.role, user.teams, user.operator) == (
        "alice",
        Role.STAFF,
        ("north", "south"),
        "op-7",
    )
    assert (user.created_at, user.password_changed_at, user.disabled) == (at(0), at(0), False)
    credentials = await catalog.users.credentials("alice")
    assert credentials is not None and credentials.password_hash == HASH
    entries = await catalog.audit.entries()
    assert [(e.actor, e.action, e.object) for e in entries] == [("root", "user.add", "user:alice")]
    assert entries[0].detail == {"role": "staff", "teams": ["north", "south"], "operator": "op-7"}


async def test_a_taken_name_is_refused_and_nothing_is_written(catalog: SqlCatalog) -> None:
    await add(catalog)
    with pytest.raises(DuplicateError, match="alice already exists"):
        await add(catalog, "ALICE", Role.ADMIN)
    assert [u.role for u in await catalog.users.users()] == [Role.STAFF]
    assert len(await catalog.audit.entries()) == 1


@pytest.mark.parametrize("name", ["", "a" * 65, "al ice", "al/ice", "ålice", "x;drop", None])
async def test_a_malformed_name_is_refused_before_any_sql(
    catalog: SqlCatalog, name: object
) -> None:
    with pytest.raises(InvalidFieldError, match="user name"):
        await catalog.users.add(NewUser(name, Role.STAFF, HASH), by="root")  # type: ignore[arg-type]
    assert await catalog.users.users() == []
    assert await catalog.audit.entries() == []


def test_names_are_lower_cased_and_may_hold_dots_dashes_underscores() -> None:
    assert user_name("Dr.Smith_2-a") == "dr.smith_2-a"
    assert user_name("a" * 64) == "a" * 64


async def test_the_schema_refuses_a_bad_role_or_name_even_from_raw_sql(
    catalog: SqlCatalog, backend: Backend
) -> None:
    with backend.raw() as db:
        for name, role in (("bob", "king"), ("Bob", "staff"), ("b b", "staff")):
            with pytest.raises(sqlite3.IntegrityError):
                db.execute(
                    "INSERT INTO users (name, role, password_hash, created_at,"
                    " password_changed_at) VALUES (?, ?, 'h', 0, 0)",
                    (name, role),
                )


async def test_disable_ends_every_session_in_the_same_transaction(catalog: SqlCatalog) -> None:
    await add(catalog)
    await session(catalog, "one")
    await session(catalog, "two")
    user = await catalog.users.disable("alice", by="root", at=at(60))
    assert user.disabled_at == at(60)
    for token in ("one", "two"):
        found = await catalog.users.session(digest(token))
        assert found is not None and found.revoked_at == at(60)
    last = (await catalog.audit.entries())[-1]
    assert (last.action, last.detail) == ("user.disable", {"sessions_revoked": 2})
    with pytest.raises(UserStateError, match="already disabled"):
        await catalog.users.disable("alice", by="root")
    with pytest.raises(NotFoundError, match="zed does not exist"):
        await catalog.users.disable("zed", by="root")
    assert [a for _, a, _ in await actions(catalog)].count("user.disable") == 1


async def test_a_new_password_clears_the_lock_and_ends_sessions(catalog: SqlCatalog) -> None:
    await add(catalog)
    await session(catalog, "one")
    lock = Lockout(after=1, until=at(900))
    await catalog.users.record_failure(
        "alice", source="192.0.2.9", why="bad_credentials", at=at(20), forget_before=at(0),
        lockout=lock,
    )  # fmt: skip
    locked = await catalog.users.get("alice")
    assert locked is not None and locked.locked(at(30)) and locked.failed_logins == 1
    user = await catalog.users.set_password("alice", "$argon2id$new", by="root", at=at(40))
    assert (user.failed_logins, user.locked_until, user.password_changed_at) == (0, None, at(40))
    credentials = await catalog.users.credentials("alice")
    assert credentials is not None and credentials.password_hash == "$argon2id$new"
    found = await catalog.users.session(digest("one"))
    assert found is not None and found.revoked_at == at(40)
    assert (await actions(catalog))[-1] == ("root", "user.password", "user:alice")


async def test_failures_in_a_row_lock_and_a_login_clears_them(catalog: SqlCatalog) -> None:
    await add(catalog)
    lock = Lockout(after=3, until=at(1000))
    for n in range(1, 4):
        user = await catalog.users.record_failure(
            "alice", source="192.0.2.9", why="bad_credentials", at=at(n), forget_before=at(0),
            lockout=lock,
        )  # fmt: skip
        assert user is not None and user.failed_logins == n
        assert user.locked(at(n)) is (n == 3)
    await session(catalog, "tok")
    cleared = await catalog.users.get("alice")
    assert cleared is not None and (cleared.failed_logins, cleared.locked_until) == (0, None)
    failed = [e for e in await catalog.audit.entries() if e.action == "login.failed"]
    assert [e.detail["locked"] for e in failed] == [False, False, True]
    assert (await actions(catalog))[-1] == ("alice", "login", "user:alice")


async def test_an_unknown_name_is_audited_without_the_name(catalog: SqlCatalog) -> None:
    typed = "correct horse battery staple"  # a password typed into the name field
    user = await catalog.users.record_failure(
        typed, source="192.0.2.9", why="bad_credentials", at=at(5), forget_before=at(0),
        lockout=Lockout(1, at(99)),
    )  # fmt: skip
    assert user is None
    (entry,) = await catalog.audit.entries()
    assert (entry.actor, entry.object) == (UNKNOWN_ACTOR, None)
    assert typed not in repr(entry)


async def test_source_failures_count_the_window_and_forget_old_ones(
    catalog: SqlCatalog, backend: Backend
) -> None:
    for second in (0, 30, 61, 62):
        await catalog.users.record_failure(
            None, source="192.0.2.9", why="bad_credentials", at=at(second),
            forget_before=at(second - 60), lockout=None,
        )  # fmt: skip
    await catalog.users.record_failure(
        None, source="198.51.100.1", why="bad_credentials", at=at(62), forget_before=at(2),
        lockout=None,
    )  # fmt: skip
    assert await catalog.users.source_failures("192.0.2.9", since=at(31)) == 2
    assert await catalog.users.source_failures("192.0.2.9", since=at(0)) == 3  # 0 forgotten
    assert await catalog.users.source_failures("198.51.100.1", since=at(2)) == 1
    with backend.raw() as db:
        assert db.execute("SELECT min(at) FROM login_failures").fetchone()[0] == to_ms("", at(30))
        assert db.execute("SELECT count(*) FROM login_failures").fetchone()[0] == 4


async def test_sessions_are_stored_by_digest_touched_and_revoked_once(
    catalog: SqlCatalog, backend: Backend
) -> None:
    await add(catalog)
    await session(catalog, "secret-token")
    with backend.raw() as db:
        (stored,) = db.execute("SELECT token_sha256 FROM sessions").fetchone()
    assert stored == digest("secret-token")
    await catalog.users.touch_session(digest("secret-token"), at=at(100))
    await catalog.users.touch_session(digest("secret-token"), at=at(50))  # never backwards
    found = await catalog.users.session(digest("secret-token"))
    assert found is not None and found.last_seen_at == at(100) and found.expires_at == at(600)
    revoked = await catalog.users.revoke_session(digest("secret-token"), at=at(200))
    assert revoked is not None and revoked.revoked_at == at(200)
    assert await catalog.users.revoke_session(digest("secret-token"), at=at(300)) is None
    assert await catalog.users.revoke_session(digest("unknown"), at=at(300)) is None
    assert [a for _, a, _ in await actions(catalog)] == ["user.add", "login", "logout"]


async def test_a_session_for_an_unknown_user_is_refused(catalog: SqlCatalog) -> None:
    with pytest.raises(NotFoundError):
        await session(catalog, "tok", user="nobody")
    assert await catalog.audit.entries() == []


async def test_a_login_whose_audit_entry_fails_leaves_no_session(
    catalog: SqlCatalog, backend: Backend
) -> None:
    await add(catalog)
    with backend.raw() as db:
        db.execute(
            "CREATE TRIGGER no_login BEFORE INSERT ON audit_log WHEN NEW.action = 'login'"
            " BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    with pytest.raises(sqlite3.IntegrityError):
        await session(catalog, "tok")
    assert await catalog.users.session(digest("tok")) is None
    assert len(await catalog.audit.entries()) == 1  # only user.add
    await catalog.audit.append(actor="root", action="search")  # only logins are refused


async def test_the_schema_takes_exactly_the_roles_the_policy_knows(tmp_path: Path) -> None:
    """Migration 10's CHECK lists the roles as text; ``proxy.roles.Role`` is the one list
    the accounts store and the access policy share.  The two must never drift apart.
    (Read from SQLite's copy of the statement; PostgreSQL runs the same text.)"""
    async with SqliteCatalog(tmp_path / "catalog.db"):
        pass
    with sqlite3.connect(tmp_path / "catalog.db") as conn:
        (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'users'").fetchone()
    conn.close()
    listed = re.search(r"CHECK \(role IN \(([^)]*)\)\)", sql)
    assert listed is not None, sql
    in_schema = {name.strip().strip("'") for name in listed.group(1).split(",")}
    assert in_schema == {role.value for role in Role}
