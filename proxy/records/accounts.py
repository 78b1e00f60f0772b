"""Accounts: adding users, logging in and out, and knowing who holds a token (issue 15),
whichever shell asks — ``recproxy users`` now, the records service's HTTP API later.

The rules live here:

* a password has at least :data:`MIN_PASSWORD` characters and is not the user name; it
  is stored only as its argon2 hash (``argon2-cffi``), made and checked off the event
  loop (a hash costs tens of milliseconds of CPU on purpose);
* a login answers an unknown name and a wrong password alike, in the same time: an
  argon2 verify always runs, against a dummy hash made with the same parameters when
  there is no such user;
* ``accounts.max_failures`` failures in a row lock the account for
  ``accounts.lockout_seconds``; a correct password clears the count.  While locked, a
  login is refused whatever the password (a lock therefore says the name exists, but
  only after that many tries, which the source throttle slows);
* a source address with more than ``accounts.source_failures_per_minute`` failures in
  the last minute is refused at once (the HTTP API answers 429) until its failures age
  out; those refusals are neither counted nor audited, so a flood cannot fill the log;
* a token is ``secrets.token_urlsafe(32)``, given to the person once and stored only as
  its SHA-256; a browser session lives ``browser_session_minutes`` and ends after
  ``idle_minutes`` unused, a bearer token lives ``token_minutes``.

Nothing here logs or audits a password, a hash or a token.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ..config import AccountsSettings
from ..storage.catalog import (
    DuplicateError,
    InvalidFieldError,
    Lockout,
    NewSession,
    NewUser,
    NotFoundError,
    Role,
    SessionKind,
    User,
    UserRepository,
    UserStateError,
    user_name,
)
from ..storage.catalog.values import utc_now

log = logging.getLogger(__name__)

MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # argon2 takes any length; a megabyte "password" is only a cost
THROTTLE_WINDOW = timedelta(minutes=1)


class AccountError(ValueError):
    """A user cannot be added or changed as asked (a bad name, role or password, a
    duplicate): one line saying why; nothing was changed."""


class UnknownUser(LookupError):
    """No user has that name."""


class Refused(StrEnum):
    """Why a login or a token was refused (the HTTP API maps each to a status)."""

    BAD_CREDENTIALS = "bad_credentials"  # unknown user or wrong password: the same (401)
    LOCKED = "locked"  # too many failures in a row (429, with retry_after)
    DISABLED = "disabled"  # the account is disabled (401)
    THROTTLED = "throttled"  # too many failures from this source (429)
    UNKNOWN_TOKEN = "unknown_token"  # (401)
    EXPIRED = "expired"
    IDLE = "idle"  # a browser session unused past accounts.idle_minutes
    REVOKED = "revoked"  # logged out, or its user's password changed or disabled


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused login or token; ``retry_after`` when waiting helps (locked, throttled)."""

    reason: Refused
    retry_after: timedelta | None = None


@dataclass(frozen=True, slots=True)
class LoginSession:
    """What a login gives the person: the token (shown once, stored nowhere) and when it
    expires."""

    token: str
    expires_at: datetime
    kind: SessionKind

    def __repr__(self) -> str:  # a token must not reach a log through a repr
        return f"LoginSession(token=<hidden>, expires_at={self.expires_at!r}, kind={self.kind})"


def token_digest(token: str) -> str:
    """The SHA-256 a token is stored and looked up by."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_password(name: str, password: str) -> str:
    """``password`` if the policy accepts it for user ``name``; else ``AccountError``."""
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"the password must have at most {MAX_PASSWORD} characters")
    if password.strip().lower() == name.lower():
        raise AccountError("the password must not be the user name")
    return password


def check_new_user(name: str, role_name: str, password: str) -> tuple[str, Role]:
    """The login name and role of a user to add, once name, role and password pass the
    checks (callers may check before opening anything); ``AccountError`` naming the
    first that does not."""
    try:
        login = user_name(name)
    except InvalidFieldError as exc:
        raise AccountError(str(exc)) from None
    new_role = role(role_name)
    check_password(login, password)
    return login, new_role


def role(value: str) -> Role:
    """A role by its name; ``AccountError`` naming the roles for any other."""
    try:
        return Role(value)
    except ValueError:
        known = ", ".join(r.value for r in Role)
        raise AccountError(f"role must be one of {known}; got {value!r}") from None


class Accounts:
    """Users and sessions on ``users`` under ``settings``; ``hasher`` makes and checks
    password hashes (the argon2-cffi defaults; tests pass cheaper parameters), ``clock``
    says when "now" is where a caller gives no ``now``."""

    def __init__(
        self,
        users: UserRepository,
        settings: AccountsSettings,
        *,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._users = users
        self._settings = settings
        self._hasher = hasher or PasswordHasher()
        self._clock = clock

    @functools.cached_property
    def _dummy_hash(self) -> str:
        """Checked against when the name is no user's, so that both answers take as long
        (made with the same parameters, once, when first needed)."""
        return self._hasher.hash(secrets.token_urlsafe(32))

    async def add_user(
        self,
        name: str,
        *,
        role_name: str,
        password: str,
        by: str,
        teams: Sequence[str] = (),
        operator: str | None = None,
    ) -> User:
        """Add a user; ``AccountError`` for a bad name, role or password, or a name
        already taken."""
        login, new_role = check_new_user(name, role_name, password)
        password_hash = await asyncio.to_thread(self._hasher.hash, password)
        request = NewUser(login, new_role, password_hash, tuple(teams), operator or None)
        try:
            return await self._users.add(request, by=by)
        except (DuplicateError, InvalidFieldError) as exc:
            raise AccountError(str(exc)) from None

    async def set_password(self, name: str, password: str, *, by: str) -> User:
        """Replace ``name``'s password (its sessions end, its lock is cleared);
        ``UnknownUser``, or ``AccountError`` for a password the policy refuses."""
        current = await self._users.get(name)
        if current is None:
            raise UnknownUser(f"user {name} does not exist")
        check_password(current.name, password)
        password_hash = await asyncio.to_thread(self._hasher.hash, password)
        try:
            return await self._users.set_password(current.name, password_hash, by=by)
        except NotFoundError as exc:
            raise UnknownUser(str(exc)) from None

    async def disable(self, name: str, *, by: str) -> User:
        """Disable ``name`` and end its sessions; ``UnknownUser``, or ``AccountError``
        for a user already disabled."""
        try:
            return await self._users.disable(name, by=by)
        except NotFoundError as exc:
            raise UnknownUser(str(exc)) from None
        except UserStateError as exc:
            raise AccountError(str(exc)) from None

    async def users(self) -> list[User]:
        return await self._users.users()

    async def login(
        self,
        name: str,
        password: str,
        *,
        source: str,
        kind: SessionKind = SessionKind.BROWSER,
        now: datetime | None = None,
    ) -> LoginSession | Refusal:
        """A session for ``name`` if ``password`` is theirs and nothing stops them."""
        now = self._clock() if now is None else now
        settings = self._settings
        recent = await self._users.source_failures(source, since=now - THROTTLE_WINDOW)
        if recent > settings.source_failures_per_minute:
            return Refusal(Refused.THROTTLED, THROTTLE_WINDOW)
        found = await self._users.credentials(name) if _plausible(name) else None
        stored = None if found is None else found.password_hash
        matches = await asyncio.to_thread(self._verify, stored, password)
        user = None if found is None else found.user
        if user is not None and user.locked_until is not None and now < user.locked_until:
            await self._fail(user.name, source, "locked", now, count=False)
            return Refusal(Refused.LOCKED, user.locked_until - now)
        if user is None or not matches:
            after = await self._fail(
                None if user is None else user.name, source, "bad_credentials", now, count=True
            )
            if after is not None and after.locked(now):
                log.warning(
                    "account %s locked after %d failed logins", after.name, after.failed_logins
                )
            return Refusal(Refused.BAD_CREDENTIALS)
        if user.disabled:
            await self._fail(user.name, source, "disabled", now, count=False)
            return Refusal(Refused.DISABLED)
        token = secrets.token_urlsafe(32)
        minutes = (
            settings.browser_session_minutes
            if kind is SessionKind.BROWSER
            else settings.token_minutes
        )
        expires = now + timedelta(minutes=minutes)
        opened = NewSession(token_digest(token), user.name, kind, expires, source)
        await self._users.open_session(opened, at=now)
        return LoginSession(token, expires, kind)

    async def authenticate(self, token: str, *, now: datetime | None = None) -> User | Refusal:
        """The user holding ``token``, if its session is open and the user enabled; the
        session's idle timer starts again."""
        now = self._clock() if now is None else now
        digest = token_digest(token)
        session = await self._users.session(digest)
        if session is None or not hmac.compare_digest(session.token_sha256, digest):
            return Refusal(Refused.UNKNOWN_TOKEN)
        if session.revoked_at is not None:
            return Refusal(Refused.REVOKED)
        if now >= session.expires_at:
            return Refusal(Refused.EXPIRED)
        idle = timedelta(minutes=self._settings.idle_minutes)
        if session.kind is SessionKind.BROWSER and now - session.last_seen_at >= idle:
            return Refusal(Refused.IDLE)
        user = await self._users.get(session.user)
        if user is None or user.disabled:
            return Refusal(Refused.DISABLED)
        await self._users.touch_session(digest, at=now)
        return user

    async def logout(self, token: str, *, now: datetime | None = None) -> bool:
        """End the session of ``token``; False if it was unknown or already ended."""
        now = self._clock() if now is None else now
        return await self._users.revoke_session(token_digest(token), at=now) is not None

    def _verify(self, stored: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored`` (None: the dummy hash, never)."""
        try:
            return self._hasher.verify(stored or self._dummy_hash, password) and bool(stored)
        except (VerificationError, InvalidHashError):
            return False

    async def _fail(
        self, name: str | None, source: str, why: str, now: datetime, *, count: bool
    ) -> User | None:
        settings = self._settings
        lockout = Lockout(settings.max_failures, now + timedelta(seconds=settings.lockout_seconds))
        return await self._users.record_failure(
            name,
            source=source,
            why=why,
            at=now,
            forget_before=now - THROTTLE_WINDOW,
            lockout=lockout if count else None,
        )


def _plausible(name: str) -> bool:
    """Whether ``name`` could be a user's (a malformed one is not looked up at all)."""
    try:
        user_name(name)
    except InvalidFieldError:
        return False
    return True
