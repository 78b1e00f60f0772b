"""Who is asking: every records-service route but login, health and the OpenAPI
document runs for a signed-in user only.

A request is authenticated by ``Authorization: Bearer TOKEN`` (API clients) or by the
session cookie (browsers), each checked by ``Accounts.authenticate``.  With the cookie,
an unsafe method (anything but GET, HEAD, OPTIONS) must also carry ``X-CSRF-Token``: the
HMAC-SHA256 of the session token under a key only the records service holds (derived
from the recording private key), so nothing new is stored and a page on another site,
which the browser would send the cookie for, cannot know it.  A bearer token needs no
CSRF token: browsers never attach it on their own.

Not signed in, expired, idle, revoked or disabled: 401 with ``WWW-Authenticate:
Bearer``; a locked account or a throttled source: 429 with ``Retry-After``.  Route
modules read the user with :func:`current_user` and the policy's view of them with
:func:`current_actor`.  No token, CSRF token or password is ever logged.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Awaitable, Callable

from aiohttp import web

from ...records.accounts import Accounts, LoginSession, Refusal, Refused
from ...records.policy import Actor
from ...storage.catalog import User
from ..problem import problem

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: ``__Host-``: the browser keeps it only if Secure, Path=/ and no Domain (RFC 6265bis)
COOKIE = "__Host-recproxy"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

ACCOUNTS_KEY: web.AppKey[Accounts] = web.AppKey("accounts", Accounts)
CSRF_SECRET_KEY: web.AppKey[bytes] = web.AppKey("csrf secret", bytes)
USER_KEY: web.RequestKey[User] = web.RequestKey("user", User)
TOKEN_KEY: web.RequestKey[str] = web.RequestKey("session token", str)

_DETAIL = {
    Refused.BAD_CREDENTIALS: "wrong user name or password",
    Refused.LOCKED: "the account is locked after too many failed logins; try again later",
    Refused.DISABLED: "the account is disabled",
    Refused.THROTTLED: "too many failed logins from this address; try again later",
    Refused.UNKNOWN_TOKEN: "not signed in (no valid session or bearer token)",
    Refused.EXPIRED: "the session has expired; sign in again",
    Refused.IDLE: "the session ended after being unused; sign in again",
    Refused.REVOKED: "the session was ended; sign in again",
}


def set_session_cookie(response: web.StreamResponse, session: LoginSession) -> None:
    """The browser session's cookie on ``response``: ``__Host-``, Secure, HttpOnly,
    SameSite=Strict, Path=/, until the session expires (the API's login and the console's
    sign-in form set it alike)."""
    response.set_cookie(
        COOKIE,
        session.token,
        expires=session.expires_at.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        path="/",
        secure=True,
        httponly=True,
        samesite="Strict",
    )


def csrf_token(secret: bytes, session_token: str) -> str:
    """The CSRF token that goes with a browser session's token."""
    return hmac.new(secret, session_token.encode(), hashlib.sha256).hexdigest()


def refused(refusal: Refusal) -> web.Response:
    """The problem document for a refused login or token: 429 with ``Retry-After`` when
    waiting helps (locked, throttled), else 401 with ``WWW-Authenticate``."""
    detail = _DETAIL[refusal.reason]
    if refusal.reason in (Refused.LOCKED, Refused.THROTTLED):
        wait = refusal.retry_after.total_seconds() if refusal.retry_after else 60
        return problem(429, detail, headers={"Retry-After": str(max(1, math.ceil(wait)))})
    return unauthorised(detail)


def unauthorised(detail: str) -> web.Response:
    return problem(401, detail, headers={"WWW-Authenticate": 'Bearer realm="recproxy records"'})


def require_user(handler: Handler) -> Handler:
    """``handler``, run only once the request is authenticated (see the module)."""

    async def authenticated(request: web.Request) -> web.StreamResponse:
        token, from_cookie = _presented_token(request)
        if not token:
            return unauthorised(_DETAIL[Refused.UNKNOWN_TOKEN])
        if from_cookie and request.method not in SAFE_METHODS:
            expected = csrf_token(request.app[CSRF_SECRET_KEY], token)
            given = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(expected.encode(), given.encode()):
                return problem(403, f"a session cookie needs its {CSRF_HEADER} header here")
        found = await request.app[ACCOUNTS_KEY].authenticate(token)
        if isinstance(found, Refusal):
            return refused(found)
        request[USER_KEY] = found
        request[TOKEN_KEY] = token
        return await handler(request)

    return authenticated


def _presented_token(request: web.Request) -> tuple[str, bool]:
    """The token the request carries, and whether it came in the cookie (a bearer token
    is taken first)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip(), False
    return request.cookies.get(COOKIE, ""), True


def current_user(request: web.Request) -> User:
    """The signed-in user of a request that passed :func:`require_user`."""
    return request[USER_KEY]


def session_token(request: web.Request) -> str:
    """The token the signed-in request presented (to end its session)."""
    return request[TOKEN_KEY]


def actor_of(user: User) -> Actor:
    """The access policy's view of ``user``."""
    return Actor(
        name=user.name,
        role=user.role,
        teams=frozenset(user.teams),
        operator=user.operator,
        disabled=user.disabled,
    )


def current_actor(request: web.Request) -> Actor:
    """The signed-in user as the access policy sees them (``proxy.records.policy``)."""
    return actor_of(current_user(request))
