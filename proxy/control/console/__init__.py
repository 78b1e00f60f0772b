"""The web console (issue 17): server-rendered pages on the listeners that already serve
the APIs — the call takers' page on the call proxy's, the records, DPO and ops pages on
the records service's.

Why server-rendered (Jinja2 through aiohttp-jinja2) with a little progressive
JavaScript, and not a built single-page front end: every page is a view of what one API
handler already decides through the gate, so rendering it beside that handler keeps one
decision and one audit entry per action, needs no build step or Node.js at run time, and
works with JavaScript off except where the page is live by nature (the call takers'
call list, over Server-Sent Events).  Everything is served from this package: no CDN, no
external fonts.

``setup_console(app)`` gives an ``aiohttp`` application the templates (autoescaped) and
``/static/``; ``render(request, name, context)`` renders a page with the layout's common
context (the signed-in user, the CSRF token, the console's title).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
STATIC_PREFIX = "/static/"

#: What ``render`` adds to every page's context, set by the listener's middleware.
USER_KEY = web.AppKey("console_user", dict)
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; media-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)


def setup_console(app: web.Application, *, title: str) -> None:
    """Templates and static files for ``app`` (a listener's application)."""
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
    )
    env.globals["console_title"] = title
    env.globals["static"] = lambda name: f"{STATIC_PREFIX}{name}"
    app.router.add_static(STATIC_PREFIX, STATIC, name="static", follow_symlinks=False)


def render(
    request: web.Request, name: str, context: Mapping[str, Any], *, status: int = 200
) -> web.Response:
    """The page ``name`` with ``context``; never cached, framed or sniffed."""
    response = aiohttp_jinja2.render_template(name, request, dict(context), status=status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = PAGE_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


# The records service's API package first, whichever side is imported first: its
# ``__init__`` builds the records console from this package's modules, and the console's
# sign-in (``session``) uses its ``auth``.  Importing ``session`` before it (the call
# proxy's console does) would otherwise reach ``session`` again while half made.
from .. import records as _records  # noqa: E402,F401
