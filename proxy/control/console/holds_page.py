"""Holds on the console (issue 17): the active holds (those due for review marked),
placing a hold on a recording and releasing one with a reason — through
:class:`~proxy.records.holds.HoldDesk` and the gate exactly as the API's hold routes
(:func:`~proxy.control.records.holds.asking`), so each is decided and audited once.

Listing every hold is the gate's ``view_holds`` decision: a person it refuses gets the
403 page naming why.  A ``subject_access`` hold is released only by closing its case:
the desk refuses, and the page shows its message next to that hold's reason.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from ...records.errors import RecordNotFound
from ...records.gate import Gate, require
from ...records.holds import HoldDesk
from ...records.policy import Action
from ..records.auth import actor_of
from ..records.holds import asking
from . import render
from .page_errors import error_page, field_errors, form_text, message_of, status_of
from .session import page, page_context, page_user

HOLDS = "/console/holds"
PLACE_FIELDS = ("recording", "kind", "reference", "review_at", "note")
_PLACE_ERRORS = {
    "kind": "kind",
    "reference": "reference",
    "review date": "review_at",
    "note": "note",
    "recording": "recording",
    "hold": "recording",
    "place_hold": "recording",
}


class HoldsPage:
    """The holds page on ``desk``, each action decided by ``gate``."""

    def __init__(self, gate: Gate, desk: HoldDesk) -> None:
        self._gate = gate
        self._desk = desk

    async def show(self, request: web.Request) -> web.StreamResponse:
        given = {"recording": request.query.get("recording", "").strip()}
        return await self._show(request, given=given)

    async def _show(
        self,
        request: web.Request,
        *,
        given: Mapping[str, str],
        errors: Mapping[str, str] | None = None,
        release_errors: Mapping[str, str] | None = None,
        status: int = 200,
    ) -> web.StreamResponse:
        try:
            require(await self._gate.check(actor_of(page_user(request)), Action.VIEW_HOLDS))
        except Exception as exc:
            return error_page(request, exc)
        holds = await self._desk.listing(active_only=True)
        context = page_context(
            request,
            holds=[self._desk.describe(hold) for hold in holds],
            kind_options=[(kind, kind) for kind in self._desk.kinds],
            given=dict(given),
            errors=dict(errors or {}),
            release_errors=dict(release_errors or {}),
            done=request.query.get("done", ""),
        )
        return render(request, "records_holds.html", context, status=status)

    async def place(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        given = {name: form_text(form, name).strip() for name in PLACE_FIELDS}
        user = page_user(request)
        if not given["recording"]:
            errors = {"recording": "Enter the recording's id."}
            return await self._show(request, given=given, errors=errors, status=422)
        try:
            await self._desk.place(
                given["recording"],
                kind=given["kind"],
                reference=given["reference"],
                by=user.name,
                review=given["review_at"] or None,
                note=given["note"] or None,
                authorise=asking(self._gate, actor_of(user), Action.PLACE_HOLD, given["reference"]),
            )
        except RecordNotFound as exc:  # the id is wrong
            errors = {"recording": str(exc)}
            return await self._show(request, given=given, errors=errors, status=404)
        except Exception as exc:
            errors = field_errors(exc, _PLACE_ERRORS)
            return await self._show(request, given=given, errors=errors, status=status_of(exc))
        raise web.HTTPSeeOther(f"{HOLDS}?done=placed")

    async def release(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        reason = form_text(form, "reason").strip()
        hold_id = request.match_info["id"]
        user = page_user(request)
        try:
            await self._desk.release(
                hold_id,
                by=user.name,
                reason=reason,
                authorise=asking(self._gate, actor_of(user), Action.RELEASE_HOLD, reason),
            )
        except Exception as exc:
            said = message_of(exc)  # at its hold, and on top when it is no longer listed
            return await self._show(
                request, given={"recording": ""}, errors={"form": said},
                release_errors={hold_id: said}, status=status_of(exc),
            )  # fmt: skip
        raise web.HTTPSeeOther(f"{HOLDS}?done=released")


def add_routes(app: web.Application, gate: Gate, desk: HoldDesk) -> None:
    """The holds page and its two forms on ``app``."""
    pages = HoldsPage(gate, desk)
    app.router.add_get(HOLDS, page(pages.show))
    app.router.add_post(HOLDS, page(pages.place))
    app.router.add_post(f"{HOLDS}/{{id}}/release", page(pages.release))
