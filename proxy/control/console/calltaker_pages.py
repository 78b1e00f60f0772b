"""The call proxy's console (issue 17): sign-in with the records accounts, the call
takers' page and (from :mod:`.ops_page`) the ops page, on the call proxy's HTTP
listener next to the live-call API.

* ``/console``: a member of staff linked to an operator (``users add --operator``) sees
  the calls that operator is on, live: each change comes over Server-Sent Events
  (``/console/events``, from the domain event bus through :class:`.call_feed.CallFeed`).
  A manager sees the calls of their teams' operators (``users add --team``, and
  ``[[operators]] team``), each marked with who took it, read only: the use case lets
  only a call's own operator switch its recording, and the page offers no more than it
  allows (a manager's POST is refused, 403).
* ``POST /console/calls/{id}/recording`` (``action``, ``reason``; ``confirm=yes`` for
  ``discard``) calls the SAME use case as the API's ``POST /api/calls/{id}/recording``
  (:func:`proxy.records.live.control_recording`), for the user's operator, with the
  recording event naming the signed-in user.  A form answers with the page (the error
  next to the reason field); the page's script asks for JSON and gets the API's answer.

The CSRF key is random per process (``secrets.token_bytes``): the call proxy never holds
the recording private key the records service derives its key from, and a key per
process stores no new secret on disk.  A restart therefore refuses the forms of pages
opened before it (the page says the form expired; reloading it gives a new token).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from ...records.accounts import Accounts
from ...records.errors import (
    CallNotFound,
    InvalidRecordingRequest,
    NotYourCall,
    RecordingActionError,
)
from ...records.live import (
    MAX_REASON,
    checked_reason,
    control_recording,
    own_call,
    team_call,
)
from ...roles import Role
from ...storage.catalog import User
from ..api import CallsView, ControllableCall, error_status
from ..problem import problem
from . import render, setup_console
from .call_feed import CallFeed
from .ops_page import OPS_ROLES, OpsSources, add_ops_page
from .session import (
    CONSOLE_AUTH,
    PAGE_TOKEN,
    ConsoleAuth,
    NavLink,
    add_login_routes,
    page,
    page_context,
    page_user,
)

HOME = "/console"
OPS = "/ops"
#: Seconds between SSE comments that keep an idle stream open through proxies.
KEEPALIVE_SECONDS = 15.0
#: A page that takes longer than this to accept one write is dropped.
WRITE_SECONDS = 5.0
_USE_CASE_ERRORS = (CallNotFound, NotYourCall, InvalidRecordingRequest, RecordingActionError)


@dataclass(frozen=True)
class CallTakerConsole:
    """What the pages read: the accounts, the active calls, the feed of changes."""

    accounts: Accounts
    calls: CallsView
    feed: CallFeed
    #: each operator's team (``[[operators]] team``): whose calls a manager watches
    team_of: Mapping[str, str | None] = field(default_factory=dict)


CONSOLE_KEY: web.AppKey[CallTakerConsole] = web.AppKey("call taker console", CallTakerConsole)


def calltaker_nav(user: User) -> Sequence[NavLink]:
    links = [NavLink(HOME, "My calls")]
    if user.role in OPS_ROLES:
        links.append(NavLink(OPS, "Operations"))
    return links


def add_calltaker_console(app: web.Application, console: CallTakerConsole, ops: OpsSources) -> None:
    """Templates, sign-in, ``/`` → ``/console``, the call takers' page and its events,
    the recording form's route and the ops page, on the call proxy's ``app``."""
    setup_console(app, title="recproxy call taker")
    csrf_secret = secrets.token_bytes(32)  # per process: see the module docstring
    add_login_routes(app, ConsoleAuth(console.accounts, csrf_secret, HOME, calltaker_nav))
    app[CONSOLE_KEY] = console
    app.router.add_get("/", to_home)
    app.router.add_get(HOME, page(home))
    app.router.add_get(f"{HOME}/events", page(events))
    app.router.add_post(f"{HOME}/calls/{{call_id}}/recording", page(recording_action))
    app.on_shutdown.append(_end_streams)
    add_ops_page(app, ops)


async def _end_streams(app: web.Application) -> None:
    app[CONSOLE_KEY].feed.end_all()


async def to_home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther(HOME)


def operator_of(user: User) -> str | None:
    """The operator whose calls ``user`` sees and switches: staff linked to one only."""
    return user.operator if user.role is Role.STAFF else None


@dataclass(frozen=True)
class Viewer:
    """Whose live calls a signed-in user sees: their own operator's (with the controls),
    and, for a manager, their teams' (read only)."""

    operator: str | None
    teams: frozenset[str]

    @classmethod
    def of(cls, user: User) -> Viewer:
        teams = frozenset(user.teams) if user.role is Role.MANAGER else frozenset()
        return cls(operator_of(user), teams)

    @property
    def watching(self) -> bool:
        """Whether there are any calls to show this user at all."""
        return self.operator is not None or bool(self.teams)

    def calls(self, console: CallTakerConsole) -> dict[str, ControllableCall]:
        """The calls in progress this user sees, by id."""
        return {
            call_id: call
            for call_id, call in console.calls().items()
            if (self.operator is not None and call.operator == self.operator)
            or team_call(call, console.team_of, self.teams)
        }


def call_view(call: ControllableCall, now: datetime, viewer: Viewer) -> dict[str, Any]:
    """A call as the page shows it: the API's view, the seconds since it started, who
    took it and whether this viewer switches its recording (their own call)."""
    view = call.describe()
    started = datetime.fromisoformat(view["started_at"].replace("Z", "+00:00"))
    mine = viewer.operator is not None and call.operator == viewer.operator
    return view | {
        "elapsed": max(int((now - started).total_seconds()), 0),
        "taker": call.operator or "",
        "mine": mine,
    }


def _shown(request: web.Request, viewer: Viewer) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    calls = viewer.calls(request.app[CONSOLE_KEY]).values()
    return [call_view(call, now, viewer) for call in calls]


async def home(request: web.Request) -> web.StreamResponse:
    return _home(request)


def _home(
    request: web.Request,
    *,
    errors: dict[str, str] | None = None,
    reasons: dict[str, str] | None = None,
    confirm: str = "",
    status: int = 200,
) -> web.Response:
    viewer = Viewer.of(page_user(request))
    calls = _shown(request, viewer)
    errors = errors or {}
    listed = {call["id"] for call in calls}
    context = page_context(
        request,
        operator=viewer.operator,
        watching=viewer.watching,
        teams=sorted(viewer.teams),
        calls=calls,
        # an error about a call no longer listed (it ended meanwhile) is said on top
        notice=next((error for key, error in errors.items() if key not in listed), ""),
        errors=errors,
        reasons=reasons or {},
        confirm=confirm,
        max_reason=MAX_REASON,
    )
    return render(request, "calltaker_home.html", context, status=status)


async def recording_action(request: web.Request) -> web.StreamResponse:
    user = page_user(request)
    operator = operator_of(user)
    call_id = request.match_info["call_id"]
    wants_json = "application/json" in request.headers.get("Accept", "")
    if operator is None:
        message = "only call takers linked to a phone (an operator) switch recordings"
        if wants_json:
            return problem(403, message)
        return _home(request, status=403)
    form = await request.post()
    action, reason = form.get("action"), form.get("reason")
    text = reason if isinstance(reason, str) else ""
    try:
        if action == "discard" and form.get("confirm") != "yes":
            # whose call first (403/404), then a missing reason, before the confirmation
            own_call(request.app[CONSOLE_KEY].calls(), call_id, operator)
            checked_reason(reason)
            if wants_json:
                return problem(422, "deleting a recording needs confirm=yes")
            # the second step: the same page, asking to confirm the deletion
            return _home(request, reasons={call_id: text}, confirm=call_id)
        result = await control_recording(
            request.app[CONSOLE_KEY].calls(),
            call_id,
            operator,
            action,
            reason,
            channel="console",  # a signed-in user's click, not an operator's API token
            actor=user.name,
        )
    except _USE_CASE_ERRORS as exc:
        status = error_status(exc)
        if wants_json:
            return problem(status, str(exc))
        return _home(request, errors={call_id: str(exc)}, reasons={call_id: text}, status=status)
    if wants_json:
        return web.json_response(result)
    raise web.HTTPSeeOther(HOME)


async def events(request: web.Request) -> web.StreamResponse:
    """The changes of the calls the user sees as Server-Sent Events: ``event: KIND`` and
    ``data:`` the call's view and its row rendered (``ended``: its id and a note)."""
    viewer = Viewer.of(page_user(request))
    if not viewer.watching:
        return problem(
            403, "only call takers linked to a phone, and managers of a team, see live calls"
        )
    console = request.app[CONSOLE_KEY]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        }
    )
    await response.prepare(request)
    feed = console.feed.open()
    try:
        await _send(request, response, ": live\nretry: 2000\n\n")
        # the calls as they are now, so a page (re)connecting after a gap is right at once
        now = viewer.calls(console)
        shown = set(now)
        ids = json.dumps({"ids": sorted(shown)})
        await _send(request, response, f"event: snapshot\ndata: {ids}\n\n")
        for mine in now.values():
            data = _changed(request, mine, viewer, "recording", "")
            await _send(request, response, f"event: recording\ndata: {json.dumps(data)}\n\n")
        # the session is checked again every KEEPALIVE_SECONDS, busy or quiet: a stream
        # that always has changes to send must not outlive a sign-out either
        check_at = time.monotonic() + KEEPALIVE_SECONDS
        while True:
            quiet = False
            try:
                wait = max(check_at - time.monotonic(), 0.0)
                change = await asyncio.wait_for(feed.next(), wait)
            except TimeoutError:
                change, quiet = None, True
            if time.monotonic() >= check_at:
                if not await _still_signed_in(request, viewer):
                    break  # signed out, expired, revoked, disabled or relinked: no more
                check_at = time.monotonic() + KEEPALIVE_SECONDS
            if quiet:
                await _send(request, response, ": keep-alive\n\n")
                continue
            if change is None:  # dropped for falling behind
                break
            call = viewer.calls(console).get(change.call_id)
            if call is not None and change.kind != "ended":
                shown.add(change.call_id)
                data = _changed(request, call, viewer, change.kind, change.note)
            elif change.call_id in shown:
                shown.discard(change.call_id)
                data = {"id": change.call_id, "kind": "ended", "note": change.note}
            else:
                continue
            await _send(request, response, f"event: {data['kind']}\ndata: {json.dumps(data)}\n\n")
    except (ConnectionResetError, TimeoutError):
        pass  # gone, or not reading: the page's script reconnects if it still can
    finally:
        console.feed.close(feed)
    return response


async def _still_signed_in(request: web.Request, viewer: Viewer) -> bool:
    """The stream's session is still good and still sees the same calls (checked every
    ``KEEPALIVE_SECONDS``, so a stream outlives a sign-out by at most that long)."""
    found = await request.app[CONSOLE_AUTH].accounts.authenticate(request[PAGE_TOKEN])
    return isinstance(found, User) and Viewer.of(found) == viewer


def _changed(
    request: web.Request, call: ControllableCall, viewer: Viewer, kind: str, note: str
) -> dict[str, Any]:
    view = call_view(call, datetime.now(UTC), viewer)
    context = page_context(
        request,
        call=view,
        errors={},
        reasons={},
        confirm="",
        max_reason=MAX_REASON,
    )
    return {
        "id": view["id"],
        "kind": kind,
        "note": note,
        "recording": view["recording"],
        "html": aiohttp_jinja2.render_string("calltaker_call.html", request, context),
    }


async def _send(request: web.Request, response: web.StreamResponse, text: str) -> None:
    try:
        await asyncio.wait_for(response.write(text.encode()), WRITE_SECONDS)
    except TimeoutError:
        if request.transport is not None:
            request.transport.close()  # a client that does not read is not waited for
        raise
