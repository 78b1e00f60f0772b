"""The records service's HTTP API (issue 15), versioned under ``/api/v1/``.

``build_records_app`` makes the application: the error middleware (every error a
problem document, unknown paths and methods included), ``GET /healthz``, the OpenAPI
document at ``GET /api/v1/openapi.json``, and the session routes (login, logout, me).
The records endpoints plug in the same way the session routes do, each module with an
``add_routes(routes: Routes)`` that describes what it adds (see ``.routes``); inside a
handler, ``current_user(request)`` and ``current_actor(request)`` (``.auth``) say who
is signed in.
"""

from __future__ import annotations

from aiohttp import web

from ... import __version__
from ...records.accounts import Accounts
from ..console.records_console import add_records_console
from ..http import HEALTH_KEY, HealthCheck, healthz
from ..problem import problems
from . import session
from .auth import ACCOUNTS_KEY, CSRF_SECRET_KEY, current_actor, current_user
from .routes import API, PROBLEM, Routes, ok_json

__all__ = [
    "API",
    "PROBLEM",
    "Routes",
    "build_records_app",
    "current_actor",
    "current_user",
    "ok_json",
]


def build_records_app(
    accounts: Accounts, csrf_secret: bytes, health: HealthCheck
) -> tuple[web.Application, Routes]:
    """The application and its route registry (add the records endpoints to it before
    the application starts).  ``csrf_secret`` keys the CSRF tokens of browser sessions;
    ``health()`` answers ``GET /healthz``."""
    app = web.Application(middlewares=[problems])
    app[ACCOUNTS_KEY] = accounts
    app[CSRF_SECRET_KEY] = csrf_secret
    app[HEALTH_KEY] = health
    routes = Routes(app, title="recproxy records service", version=__version__)
    routes.add(
        "GET",
        "/healthz",
        healthz,
        summary="Whether the records service is up",
        public=True,
        responses={"200": ok_json("Up"), "503": ok_json("Not ready")},
    )
    session.add_routes(routes)
    add_records_console(app, accounts, csrf_secret)
    return app, routes
