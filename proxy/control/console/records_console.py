"""The records service's console (issue 17): sign-in, the landing page, and the
navigation each role sees.  Each section's pages live in their own module and register
their routes through :func:`add_records_console`'s callers (``records_service.py``)."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from ...records.accounts import Accounts
from ...roles import Role
from ...storage.catalog import User
from . import render, setup_console
from .session import ConsoleAuth, NavLink, add_login_routes, page, page_context

HOME = "/console"
_OFFICERS = frozenset({Role.RECORDS_OFFICER, Role.DPO})
_EVERYONE = frozenset(Role)

#: (path, label, who sees it): the order is the menu's.
SECTIONS: tuple[tuple[str, str, frozenset[Role]], ...] = (
    (HOME, "Home", _EVERYONE),
    ("/console/search", "Search", _EVERYONE),
    ("/console/requests", "My requests", _EVERYONE),
    ("/console/approvals", "Approvals", _OFFICERS),
    ("/console/holds", "Holds", _OFFICERS),
    ("/console/sar", "Subject access", _OFFICERS),
    ("/console/audit", "Audit log", frozenset({Role.DPO})),
    # verify_integrity without view_audit: the audit page shows them the chain's check
    (
        "/console/audit",
        "Audit chain",
        frozenset({Role.RECORDS_OFFICER, Role.MAINTENANCE, Role.ADMIN}),
    ),
    ("/console/flags", "Flags", frozenset({Role.DPO})),
)


def records_nav(user: User) -> Sequence[NavLink]:
    """The sections ``user``'s role may open (the pages still decide through the gate)."""
    return [NavLink(path, label) for path, label, roles in SECTIONS if user.role in roles]


def add_records_console(app: web.Application, accounts: Accounts, csrf_secret: bytes) -> None:
    """Templates, static files, sign-in, ``/`` and the landing page on ``app``."""
    setup_console(app, title="recproxy records")
    add_login_routes(app, ConsoleAuth(accounts, csrf_secret, HOME, records_nav))
    app.router.add_get("/", to_home)
    app.router.add_get(HOME, page(home))


async def to_home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther(HOME)


async def home(request: web.Request) -> web.StreamResponse:
    context = page_context(request)
    sections = [link for link in context["nav"] if link.href != HOME]
    return render(request, "records_home.html", context | {"sections": sections})
