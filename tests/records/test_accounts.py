"""The accounts use case on a real catalog with real argon2 (cheap parameters) and an
injected clock: the password policy, lockout and its release, the per-source throttle,
expired, idle and revoked sessions, a disabled user's token, and an unknown user that
looks exactly like a wrong password.  And no password or token in the catalog or logs."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from proxy.config import AccountsSettings
from proxy.records.accounts import (
    AccountError,
    Accounts,
    LoginSession,
    Refusal,
    Refused,
    UnknownUser,
)
from proxy.storage.catalog import Role, SessionKind, SqliteCatalog, User

from ..storage.test_catalog import FakeClock, at

PASSWORD = "correct horse battery"
SOURCE = "192.0.2.10"
SETTINGS = AccountsSettings(
    max_failures=3,
    lockout_seconds=900,
    source_failures_per_minute=5,
    browser_session_minutes=480,
    idle_minutes=30,
    token_minutes=60,
)
CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)  # real argon2id, fast


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(at(0))


@pytest.fixture
async def catalog(tmp_path: Path, clock: FakeClock) -> AsyncIterator[SqliteCatalog]:
    async with SqliteCatalog(tmp_path / "catalog.db", clock=clock) as opened:
        yield opened


@pytest.fixture
async def accounts(catalog: SqliteCatalog, clock: FakeClock) -> Accounts:
    accounts = Accounts(catalog.users, SETTINGS, hasher=CHEAP, clock=clock)
    await accounts.add_user(
        "alice", role_name="manager", password=PASSWORD, by="root", teams=["north"]
    )
    return accounts


T0 = at(0)


async def login(
    accounts: Accounts,
    password: str = PASSWORD,
    *,
    name: str = "alice",
    when: datetime = T0,
    source: str = SOURCE,
    kind: SessionKind = SessionKind.BROWSER,
) -> LoginSession | Refusal:
    return await accounts.login(name, password, source=source, kind=kind, now=when)


async def session(accounts: Accounts, **kwargs: object) -> LoginSession:
    opened = await login(accounts, **kwargs)  # type: ignore[arg-type]
    assert isinstance(opened, LoginSession), opened
    return opened


async def test_a_login_gives_a_token_that_authenticates_its_user(accounts: Accounts) -> None:
    opened = await session(accounts)
    assert opened.expires_at == at(0) + timedelta(minutes=480)
    assert len(opened.token) >= 43  # 32 random bytes, URL-safe base64
    user = await accounts.authenticate(opened.token, now=at(60))
    assert isinstance(user, User)
    assert (user.name, user.role, user.teams) == ("alice", Role.MANAGER, ("north",))
    assert "<hidden>" in repr(opened) and opened.token not in repr(opened)


async def test_the_name_is_case_insensitive(accounts: Accounts) -> None:
    assert isinstance(await login(accounts, name="ALICE"), LoginSession)


@pytest.mark.parametrize(
    "password, words",
    [
        ("short pass", "at least 12"),
        ("x" * 2000, "at most"),
        ("BOBBY.TABLES", "not be the user name"),
        (" bobby.tables ", "not be the user name"),
    ],
)
async def test_the_password_policy(accounts: Accounts, password: str, words: str) -> None:
    with pytest.raises(AccountError, match=words):
        await accounts.add_user("bobby.tables", role_name="staff", password=password, by="root")
    assert [u.name for u in await accounts.users()] == ["alice"]


@pytest.mark.parametrize(
    "name, role, words",
    [
        ("al ice", "staff", "user name"),
        ("bob", "king", "role must be one of"),
        ("alice", "staff", "already exists"),
    ],
)
async def test_bad_names_roles_and_duplicates_change_nothing(
    accounts: Accounts, catalog: SqliteCatalog, name: str, role: str, words: str
) -> None:
    with pytest.raises(AccountError, match=words):
        await accounts.add_user(name, role_name=role, password=PASSWORD, by="root")
    assert [u.name for u in await accounts.users()] == ["alice"]
    assert [e.action for e in await catalog.audit.entries()] == ["user.add"]


async def test_unknown_user_and_wrong_password_look_the_same(
    accounts: Accounts, catalog: SqliteCatalog
) -> None:
    unknown = await login(accounts, name="mallory")
    wrong = await login(accounts, "wrong password!!")
    malformed = await login(accounts, name="no such/user")
    assert unknown == wrong == malformed == Refusal(Refused.BAD_CREDENTIALS)
    actions = [(e.action, e.detail["why"]) for e in (await catalog.audit.entries())[1:]]
    assert actions == [("login.failed", "bad_credentials")] * 3


async def test_an_unknown_user_is_checked_against_a_real_argon2_hash(
    catalog: SqliteCatalog, clock: FakeClock
) -> None:
    checked: list[str] = []

    class Recording(PasswordHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> bool:
            checked.append(str(hash))
            return super().verify(hash, password)

    accounts = Accounts(catalog.users, SETTINGS, hasher=Recording(1, 8, 1), clock=clock)
    await accounts.login("mallory", PASSWORD, source=SOURCE, now=at(0))
    assert len(checked) == 1 and checked[0].startswith("$argon2id$v=19$m=8,t=1,p=1$")


async def test_failures_in_a_row_lock_the_account_until_the_period_ends(
    accounts: Accounts,
) -> None:
    for n in range(SETTINGS.max_failures):
        assert await login(accounts, "wrong password!!", when=at(n)) == Refusal(
            Refused.BAD_CREDENTIALS
        )
    locked = await login(accounts, when=at(10))  # the right password: still locked
    assert locked == Refusal(Refused.LOCKED, timedelta(seconds=900 - 8))
    assert await login(accounts, when=at(2 + 899)) == Refusal(Refused.LOCKED, timedelta(seconds=1))
    assert isinstance(await login(accounts, when=at(2 + 900)), LoginSession)
    user = (await accounts.users())[0]
    assert (user.failed_logins, user.locked_until) == (0, None)


async def test_a_success_resets_the_count_of_failures_in_a_row(accounts: Accounts) -> None:
    for n in range(SETTINGS.max_failures - 1):
        await login(accounts, "wrong password!!", when=at(n))
    await session(accounts, when=at(5))
    for n in range(SETTINGS.max_failures - 1):
        await login(accounts, "wrong password!!", when=at(10 + n))
    assert isinstance(await login(accounts, when=at(20)), LoginSession)


async def test_a_source_with_too_many_failures_is_throttled_for_a_minute(
    accounts: Accounts, catalog: SqliteCatalog
) -> None:
    limit = SETTINGS.source_failures_per_minute
    for n in range(limit + 1):  # unknown names: no account is locked by this
        assert await login(accounts, name=f"guess{n}", when=at(n)) == Refusal(
            Refused.BAD_CREDENTIALS
        )
    throttled = await login(accounts, when=at(limit + 1))  # even the right password
    assert throttled == Refusal(Refused.THROTTLED, timedelta(minutes=1))
    audited = len(await catalog.audit.entries())
    assert await login(accounts, when=at(30)) == throttled  # not audited, not counted
    assert len(await catalog.audit.entries()) == audited
    assert isinstance(await login(accounts, source="198.51.100.7", when=at(30)), LoginSession)
    assert isinstance(await login(accounts, when=at(61)), LoginSession)  # the first aged out


async def test_at_the_source_limit_exactly_a_login_is_still_tried(accounts: Accounts) -> None:
    for n in range(SETTINGS.source_failures_per_minute):
        await login(accounts, name=f"guess{n}", when=at(n))
    assert isinstance(await login(accounts, when=at(10)), LoginSession)


async def test_a_browser_session_expires_and_idles_out(accounts: Accounts) -> None:
    opened = await session(accounts)
    for minute in range(25, 480, 25):  # used every 25 minutes: never idle
        assert isinstance(await accounts.authenticate(opened.token, now=at(minute * 60)), User)
    expired = await accounts.authenticate(opened.token, now=at(480 * 60))
    assert expired == Refusal(Refused.EXPIRED)
    idle = await session(accounts, when=at(0))
    assert isinstance(await accounts.authenticate(idle.token, now=at(29 * 60)), User)
    assert await accounts.authenticate(idle.token, now=at(59 * 60)) == Refusal(Refused.IDLE)


async def test_a_bearer_token_lives_token_minutes_without_idling(accounts: Accounts) -> None:
    opened = await session(accounts, kind=SessionKind.BEARER)
    assert opened.expires_at == at(3600)
    assert isinstance(await accounts.authenticate(opened.token, now=at(3599)), User)
    assert await accounts.authenticate(opened.token, now=at(3600)) == Refusal(Refused.EXPIRED)


async def test_logout_revokes_the_token(accounts: Accounts, catalog: SqliteCatalog) -> None:
    opened = await session(accounts)
    assert await accounts.logout(opened.token, now=at(5)) is True
    assert await accounts.logout(opened.token, now=at(6)) is False
    assert await accounts.authenticate(opened.token, now=at(7)) == Refusal(Refused.REVOKED)
    assert await accounts.authenticate("not-a-token", now=at(7)) == Refusal(Refused.UNKNOWN_TOKEN)
    assert [e.action for e in await catalog.audit.entries()][-1] == "logout"


async def test_a_disabled_users_token_and_login_are_refused(accounts: Accounts) -> None:
    opened = await session(accounts)
    await accounts.disable("alice", by="root")
    assert await accounts.authenticate(opened.token, now=at(5)) == Refusal(Refused.REVOKED)
    assert await login(accounts, when=at(6)) == Refusal(Refused.DISABLED)
    with pytest.raises(AccountError, match="already disabled"):
        await accounts.disable("alice", by="root")
    with pytest.raises(UnknownUser):
        await accounts.disable("zed", by="root")


async def test_a_token_is_refused_once_its_user_is_disabled_even_if_not_revoked(
    accounts: Accounts, tmp_path: Path
) -> None:
    opened = await session(accounts)
    with sqlite3.connect(tmp_path / "catalog.db") as db:  # a session the disable missed
        db.execute("UPDATE users SET disabled_at = 1")
    assert await accounts.authenticate(opened.token, now=at(5)) == Refusal(Refused.DISABLED)


async def test_a_new_password_ends_sessions_and_the_old_password(accounts: Accounts) -> None:
    opened = await session(accounts)
    with pytest.raises(AccountError, match="at least 12"):
        await accounts.set_password("alice", "short", by="root")
    assert isinstance(await accounts.authenticate(opened.token, now=at(1)), User)
    await accounts.set_password("alice", "a brand new secret", by="root")
    assert await accounts.authenticate(opened.token, now=at(2)) == Refusal(Refused.REVOKED)
    assert await login(accounts, when=at(3)) == Refusal(Refused.BAD_CREDENTIALS)
    assert isinstance(await login(accounts, "a brand new secret", when=at(4)), LoginSession)
    with pytest.raises(UnknownUser):
        await accounts.set_password("zed", "a brand new secret", by="root")


async def test_no_password_or_token_reaches_the_catalog_or_the_logs(
    accounts: Accounts, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    typed_as_name = "my secret typed as a name"
    await login(accounts, name=typed_as_name)
    for n in range(SETTINGS.max_failures):  # locks alice: a warning is logged
        await login(accounts, "wrong password!!", when=at(n))
    opened = await session(accounts, when=at(2000))
    await accounts.authenticate(opened.token, now=at(2001))
    await accounts.set_password("alice", "a brand new secret", by="root")
    await accounts.logout(opened.token, now=at(2002))
    with sqlite3.connect(tmp_path / "catalog.db") as db:
        dump = "\n".join(db.iterdump())
        hashes = [row[0] for row in db.execute("SELECT password_hash FROM users")]
        audit = "\n".join(repr(tuple(row)) for row in db.execute("SELECT * FROM audit_log"))
    secrets = (PASSWORD, "wrong password!!", "a brand new secret", typed_as_name, opened.token)
    assert "locked after" in caplog.text  # the log was captured
    for secret in secrets:
        assert secret not in dump
        assert secret not in caplog.text
    assert hashlib.sha256(opened.token.encode()).hexdigest() in dump  # the digest, only
    assert hashes[0].startswith("$argon2id$") and "argon2" not in audit
    assert hashlib.sha256(opened.token.encode()).hexdigest() not in audit
