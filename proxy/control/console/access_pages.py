"""Access requests on the console (issue 17): asking for access from a recording's
page, one's own requests (withdraw a pending one), and the approvals queue of records
officers and the DPO — each through :class:`~proxy.records.access.AccessDesk`, the
API's desk, so the gate decides and audits each once.

A form that succeeds answers with a redirect to the page it came from (``?done=``
saying what was done), so reloading never repeats it; one that fails is shown again
with the error next to the field it is about and the API's status.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from ...records.access import AccessDesk
from ...records.errors import AccessDenied
from ..records.auth import actor_of
from . import render
from .page_errors import FORM, field_errors, form_text, message_of, message_page, status_of
from .records_console import SECTIONS
from .session import page, page_context, page_user
from .shown import shown_time

REQUESTS = "/console/requests"
APPROVALS = "/console/approvals"
#: A recording's page, shown again with a request form's errors and values.
RecordingPage = Callable[..., Awaitable[web.StreamResponse]]

_ASK_FIELDS = {"purpose": "purpose", "reason": "reason"}
_DECIDE_FIELDS = {
    "reason": "reason",
    "a decision needs a reason": "reason",
    "days": "days",
    "a refusal lasts no days": "days",
    "the decision": FORM,
}
_DECISIONS = {"approve": True, "refuse": False}


class AccessPages:
    """The request form's handler, my requests and the approvals queue on ``desk``."""

    def __init__(self, desk: AccessDesk, recording_page: RecordingPage) -> None:
        self._desk = desk
        self._recording_page = recording_page

    async def ask(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        asked = {name: form_text(form, name) for name in _ASK_FIELDS}
        recording_id = request.match_info["id"]
        try:
            await self._desk.request(
                actor_of(page_user(request)), recording_id, asked["purpose"], asked["reason"]
            )
        except Exception as exc:
            errors = field_errors(exc, _ASK_FIELDS)
            status = status_of(exc)
            if isinstance(exc, AccessDenied) and FORM not in errors:
                status = 422  # a missing purpose or reason: the form's fault, not a refusal
            return await self._recording_page(request, errors=errors, asked=asked, status=status)
        raise web.HTTPSeeOther(f"/console/recordings/{recording_id}?done=requested")

    async def mine(self, request: web.Request) -> web.StreamResponse:
        return await self._mine(request)

    async def _mine(
        self, request: web.Request, *, error: str = "", status: int = 200
    ) -> web.StreamResponse:
        shown = await self._desk.mine(actor_of(page_user(request)))
        context = page_context(
            request,
            requests=shown,
            error=error,
            done=request.query.get("done", ""),
            when=shown_time,
        )
        return render(request, "records_requests.html", context, status=status)

    async def withdraw(self, request: web.Request) -> web.StreamResponse:
        try:
            await self._desk.withdraw(actor_of(page_user(request)), request.match_info["id"])
        except Exception as exc:
            return await self._mine(request, error=message_of(exc), status=status_of(exc))
        raise web.HTTPSeeOther(f"{REQUESTS}?done=withdrawn")

    async def queue(self, request: web.Request) -> web.StreamResponse:
        return await self._queue(request)

    async def _queue(
        self,
        request: web.Request,
        *,
        failed: str = "",
        errors: Mapping[str, str] | None = None,
        given: Mapping[str, str] | None = None,
        status: int = 200,
    ) -> web.StreamResponse:
        user = page_user(request)
        officers = next(roles for path, _, roles in SECTIONS if path == APPROVALS)
        if user.role not in officers:
            message = "Only records officers and the DPO decide access requests."
            return message_page(request, message, 403)
        pending = await self._desk.pending(actor_of(user))
        context = page_context(
            request,
            pending=pending,
            failed=failed,
            errors=dict(errors or {}),
            given=dict(given or {}),
            done=request.query.get("done", ""),
        )
        return render(request, "records_approvals.html", context, status=status)

    async def decide(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        given = {name: form_text(form, name).strip() for name in ("decision", "reason", "days")}
        request_id = request.match_info["id"]
        try:
            decided = await self._desk.decide(
                actor_of(page_user(request)),
                request_id,
                _DECISIONS.get(given["decision"]),
                given["reason"],
                given["days"] or None,
            )
        except Exception as exc:
            errors = field_errors(exc, _DECIDE_FIELDS)
            return await self._queue(
                request, failed=request_id, errors=errors, given=given, status=status_of(exc)
            )
        raise web.HTTPSeeOther(f"{APPROVALS}?done={decided.state.value}")


def add_routes(app: web.Application, desk: AccessDesk, recording_page: RecordingPage) -> None:
    """The access pages on ``app`` (``recording_page`` shows a request form's errors)."""
    pages = AccessPages(desk, recording_page)
    app.router.add_post("/console/recordings/{id}/access-requests", page(pages.ask))
    app.router.add_get(REQUESTS, page(pages.mine))
    app.router.add_post(f"{REQUESTS}/{{id}}/withdraw", page(pages.withdraw))
    app.router.add_get(APPROVALS, page(pages.queue))
    app.router.add_post(f"{APPROVALS}/{{id}}", page(pages.decide))
