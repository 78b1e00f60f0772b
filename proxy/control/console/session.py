"""Signing in to the console: the login page, logout, and the guard every page sits
behind — on either listener, with the accounts of "Records governance II".

A browser signs in with the login form; the session is the one ``POST /api/v1/login``
makes for a browser (``Accounts.login``), in the same cookie (``__Host-recproxy``:
Secure, HttpOnly, SameSite=Strict, Path=/).  Pages are for browser sessions only.

* :func:`page` guards a page handler: no session, or one expired, idle, revoked or
  disabled → a GET is redirected to ``/login?next=...`` (and told why), anything else is
  refused 401 with a page saying so.  A form POST must carry the CSRF token of its
  session in the field ``csrf_token`` (the same HMAC the API takes in
  ``X-CSRF-Token``): a page on another site cannot know it.
* :func:`page_context` is what every template reads besides its own: the user, the CSRF
  token for its forms, and the navigation for the user's role.

``next`` is followed only to a path on this listener (``/...``, never ``//host``), so the
login form is no open redirect.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web

from ...records.accounts import Accounts, Refusal, Refused
from ...storage.catalog import SessionKind, User
from ..records.auth import COOKIE, CSRF_HEADER, SAFE_METHODS, csrf_token, set_session_cookie
from . import render

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class NavLink:
    href: str
    label: str


@dataclass(frozen=True)
class ConsoleAuth:
    """What the guard needs: the accounts, the CSRF key, the first page after login,
    and the navigation for a user (each listener has its own)."""

    accounts: Accounts
    csrf_secret: bytes
    home: str
    nav: Callable[[User], Sequence[NavLink]]


CONSOLE_AUTH: web.AppKey[ConsoleAuth] = web.AppKey("console auth", ConsoleAuth)
PAGE_USER: web.RequestKey[User] = web.RequestKey("page user", User)
PAGE_TOKEN: web.RequestKey[str] = web.RequestKey("page session token", str)

_WHY = {
    Refused.EXPIRED: "Your session has expired. Please sign in again.",
    Refused.IDLE: "You were signed out after a time without activity. Please sign in again.",
    Refused.REVOKED: "Your session was ended. Please sign in again.",
    Refused.DISABLED: "Your account is disabled.",
}
_LOGIN_REFUSED = {
    Refused.BAD_CREDENTIALS: "Wrong user name or password.",
    Refused.LOCKED: "This account is locked after too many failed sign-ins. Try again later.",
    Refused.DISABLED: "This account is disabled.",
    Refused.THROTTLED: "Too many failed sign-ins from this address. Try again later.",
}


def local_path(value: object, default: str) -> str:
    """``value`` if it is a path on this listener (``/x``, not ``//host/x`` or a URL)."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//"):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or "\\" in value:
        return default
    return value


def add_login_routes(app: web.Application, auth: ConsoleAuth) -> None:
    """``/login`` (GET, POST) and ``/logout`` (POST), and ``auth`` for :func:`page`."""
    app[CONSOLE_AUTH] = auth
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login_submit)
    app.router.add_post("/logout", page(logout))


async def login_page(request: web.Request) -> web.StreamResponse:
    auth = request.app[CONSOLE_AUTH]
    why = request.query.get("why", "")
    return render(
        request,
        "login.html",
        {
            "next": local_path(request.query.get("next"), auth.home),
            "message": _WHY.get(Refused(why), "") if why in Refused._value2member_map_ else "",
            "errors": {},
            "username": "",
        },
    )


def _cross_site(request: web.Request) -> bool:
    """A form posted from another site (login CSRF: signing a victim in as someone
    else): the browser says so in ``Sec-Fetch-Site``, or its ``Origin`` is not ours."""
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return True
    origin = request.headers.get("Origin")  # "null" under our own no-referrer policy
    return origin not in (None, "null", f"{request.scheme}://{request.host}")


async def login_submit(request: web.Request) -> web.StreamResponse:
    auth = request.app[CONSOLE_AUTH]
    if _cross_site(request):
        return render(request, "signed_out.html", {"message": ""}, status=403)
    form = await request.post()
    username, password = form.get("username"), form.get("password")
    target = local_path(form.get("next"), auth.home)
    errors: dict[str, str] = {}
    if not isinstance(username, str) or not username.strip():
        errors["username"] = "Enter your user name."
    if not isinstance(password, str) or not password:
        errors["password"] = "Enter your password."
    if errors:
        return _login_again(request, target, errors, username, status=422)
    assert isinstance(username, str) and isinstance(password, str)
    session = await auth.accounts.login(
        username.strip(), password, source=request.remote or "unknown", kind=SessionKind.BROWSER
    )
    if isinstance(session, Refusal):
        status = 429 if session.reason in (Refused.LOCKED, Refused.THROTTLED) else 401
        message = _LOGIN_REFUSED.get(session.reason, "You cannot sign in now.")
        return _login_again(request, target, {"password": message}, username, status=status)
    answer = web.HTTPSeeOther(target)
    set_session_cookie(answer, session)
    return answer


def _login_again(
    request: web.Request,
    target: str,
    errors: Mapping[str, str],
    username: object,
    *,
    status: int,
) -> web.Response:
    return render(
        request,
        "login.html",
        {
            "next": target,
            "message": "",
            "errors": dict(errors),
            "username": username if isinstance(username, str) else "",
        },
        status=status,
    )


async def logout(request: web.Request) -> web.StreamResponse:
    await request.app[CONSOLE_AUTH].accounts.logout(request[PAGE_TOKEN])
    answer = web.HTTPSeeOther("/login")
    answer.del_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
    return answer


def page(handler: Handler) -> Handler:
    """``handler``, for a signed-in browser session only (see the module docstring)."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        auth = request.app[CONSOLE_AUTH]
        token = request.cookies.get(COOKIE, "")
        found: User | Refusal = (
            await auth.accounts.authenticate(token) if token else Refusal(Refused.UNKNOWN_TOKEN)
        )
        if isinstance(found, Refusal):
            if request.method in SAFE_METHODS:
                why = "" if found.reason is Refused.UNKNOWN_TOKEN else found.reason.value
                target = quote(request.path_qs, safe="/")
                raise web.HTTPSeeOther(f"/login?next={target}" + (f"&why={why}" if why else ""))
            return render(
                request, "signed_out.html", {"message": _WHY.get(found.reason, "")}, status=401
            )
        if request.method not in SAFE_METHODS and not await _csrf_ok(request, auth, token):
            return render(request, "signed_out.html", {"message": ""}, status=403)
        request[PAGE_USER] = found
        request[PAGE_TOKEN] = token
        return await handler(request)

    return guarded


async def _csrf_ok(request: web.Request, auth: ConsoleAuth, token: str) -> bool:
    expected = csrf_token(auth.csrf_secret, token).encode()
    given = request.headers.get(CSRF_HEADER, "")
    if not given and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        value = (await request.post()).get(CSRF_FIELD, "")
        given = value if isinstance(value, str) else ""
    return hmac.compare_digest(expected, given.encode())


def page_user(request: web.Request) -> User:
    """The signed-in user of a request that passed :func:`page`."""
    return request[PAGE_USER]


def page_context(request: web.Request, **extra: Any) -> dict[str, Any]:
    """The layout's context (user, CSRF token, navigation) and ``extra``."""
    auth = request.app[CONSOLE_AUTH]
    user = page_user(request)
    return {
        "user": user,
        "csrf_token": csrf_token(auth.csrf_secret, request[PAGE_TOKEN]),
        "nav": auth.nav(user),
        "here": request.path,
        **extra,
    }
