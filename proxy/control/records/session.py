"""Signing in and out of the records service.

    POST /api/v1/login   {"username", "password", "kind"?: "browser"|"bearer"}
         → 200 {"token", "expires_at", "csrf_token", "user": {"name", "role", "teams"}}
    POST /api/v1/logout  ends the session (and clears the cookie)
    GET  /api/v1/me      the signed-in user

A browser login (the default ``kind``) sets the session cookie — ``Secure; HttpOnly;
SameSite=Strict; Path=/`` — and answers the CSRF token its unsafe requests must carry
in ``X-CSRF-Token``; a ``"kind": "bearer"`` login sets no cookie and answers a bearer
token for ``Authorization: Bearer`` (``csrf_token`` is then null).  Every login makes a
new token: a cookie sent with the login is never looked at, let alone adopted (no
session fixation).  The rules — throttling, lockout, expiry — are ``Accounts``'s.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ...records.accounts import Refusal
from ...storage.catalog import SessionKind, User, format_utc
from ..body import BodyRefused, json_object
from ..problem import problem
from .auth import (
    ACCOUNTS_KEY,
    COOKIE,
    CSRF_SECRET_KEY,
    csrf_token,
    current_user,
    refused,
    session_token,
    set_session_cookie,
)
from .routes import API, PROBLEM, Routes, ok_json

USER_SCHEMA = {
    "type": "object",
    "required": ["name", "role", "teams"],
    "properties": {
        "name": {"type": "string"},
        "role": {"type": "string"},
        "teams": {"type": "array", "items": {"type": "string"}},
        "operator": {"type": ["string", "null"]},
    },
}
LOGIN_SCHEMA = {
    "type": "object",
    "required": ["username", "password"],
    "properties": {
        "username": {"type": "string"},
        "password": {"type": "string", "format": "password"},
        "kind": {"enum": ["browser", "bearer"], "default": "browser"},
    },
}
SESSION_SCHEMA = {
    "type": "object",
    "required": ["token", "expires_at", "csrf_token", "user"],
    "properties": {
        "token": {"type": "string"},
        "expires_at": {"type": "string", "format": "date-time"},
        "csrf_token": {"type": ["string", "null"]},
        "user": USER_SCHEMA,
    },
}


def add_routes(routes: Routes) -> None:
    routes.add(
        "POST",
        f"{API}/login",
        login,
        summary="Sign in: a browser session (cookie + CSRF token) or a bearer token",
        public=True,
        request_body=LOGIN_SCHEMA,
        responses={
            "200": ok_json("The new session", SESSION_SCHEMA),
            "401": {"description": "Wrong user name or password, or disabled", **PROBLEM},
            "422": {"description": "Not a login body", **PROBLEM},
            "429": {"description": "Too many failures: locked or throttled", **PROBLEM},
        },
    )
    routes.add(
        "POST",
        f"{API}/logout",
        logout,
        summary="End this session (the cookie is cleared)",
        responses={"204": {"description": "Signed out"}, "403": PROBLEM},
    )
    routes.add(
        "GET",
        f"{API}/me",
        me,
        summary="The signed-in user",
        responses={"200": ok_json("The user", USER_SCHEMA)},
    )


def describe_user(user: User) -> dict[str, Any]:
    return {
        "name": user.name,
        "role": user.role.value,
        "teams": list(user.teams),
        "operator": user.operator,
    }


async def login(request: web.Request) -> web.StreamResponse:
    try:
        body = await json_object(request)
    except BodyRefused as exc:
        return problem(exc.status, str(exc))
    username, password, kind = body.get("username"), body.get("password"), body.get("kind")
    if not isinstance(username, str) or not isinstance(password, str):
        return problem(422, "username and password must be strings")
    if kind not in (None, "browser", "bearer"):
        return problem(422, 'kind must be "browser" or "bearer"')
    session_kind = SessionKind.BEARER if kind == "bearer" else SessionKind.BROWSER
    accounts = request.app[ACCOUNTS_KEY]
    session = await accounts.login(
        username, password, source=request.remote or "unknown", kind=session_kind
    )
    if isinstance(session, Refusal):
        return refused(session)
    found = await accounts.authenticate(session.token)
    if not isinstance(found, User):  # disabled between the two: as if refused
        return refused(found)
    browser = session_kind is SessionKind.BROWSER
    answer = web.json_response(
        {
            "token": session.token,
            "expires_at": format_utc(session.expires_at),
            "csrf_token": (
                csrf_token(request.app[CSRF_SECRET_KEY], session.token) if browser else None
            ),
            "user": describe_user(found),
        },
        headers={"Cache-Control": "no-store"},
    )
    if browser:
        set_session_cookie(answer, session)
    return answer


async def logout(request: web.Request) -> web.StreamResponse:
    await request.app[ACCOUNTS_KEY].logout(session_token(request))
    answer = web.Response(status=204)
    answer.del_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
    return answer


async def me(request: web.Request) -> web.StreamResponse:
    return web.json_response(describe_user(current_user(request)))
