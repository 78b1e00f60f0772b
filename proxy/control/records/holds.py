"""Holds in the records service (P16, P4): keep a recording past its retention until
someone releases it.  Moved here from the call proxy's API: a hold is a decision about
a recording, so it is a signed-in person's, asked of the access policy like every other.

    GET  /api/v1/holds?active=1&due=1          every hold (records officers, the DPO)
    POST /api/v1/recordings/{id}/holds         {"kind", "reference", "review_at"?, "note"?} → 201
    POST /api/v1/holds/{id}/release            {"reason"}

Placing and releasing are ``Action.PLACE_HOLD`` and ``Action.RELEASE_HOLD`` on the
hold's recording; listing every hold is ``Action.VIEW_HOLDS`` — records officers and
the DPO, who place and release them (a recording's own holds show in its detail, to
whoever may see its metadata).  Each is one gate decision and one audit entry, allowed
or refused, asked once the request is well formed (a malformed one is a 422 that writes
nothing); the hold's ``placed_by`` or ``released_by`` is the signed-in user.  Placing
and releasing also append their ``hold.place`` / ``hold.release`` entry with the hold.
"""

from __future__ import annotations

from aiohttp import web

from ...records.gate import Gate, require
from ...records.holds import Authorise, HoldDesk
from ...records.policy import Action, Actor
from ..body import json_object
from .auth import current_actor, current_user
from .params import query_values
from .query import switch, switch_parameter
from .routes import API, Routes, ok_json
from .statuses import answering, problems

HOLD = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "recording_id": {"type": "string"},
        "kind": {"type": "string"},
        "reference": {"type": "string"},
        "placed_by": {"type": "string"},
        "placed_at": {"type": "string", "format": "date-time"},
        "review_at": {"type": ["string", "null"], "format": "date"},
        "note": {"type": ["string", "null"]},
        "released_by": {"type": ["string", "null"]},
        "released_at": {"type": ["string", "null"], "format": "date-time"},
        "release_reason": {"type": ["string", "null"]},
        "due": {"type": "boolean", "description": "active and its review date has come"},
    },
}


class HoldRoutes:
    """The hold endpoints on ``desk``, each decided by ``gate``."""

    def __init__(self, gate: Gate, desk: HoldDesk) -> None:
        self._gate = gate
        self._desk = desk

    async def listing(self, request: web.Request) -> web.StreamResponse:
        values = query_values(request, ("active", "due"))
        due, active = switch(values, "due"), switch(values, "active")
        require(await self._gate.check(current_actor(request), Action.VIEW_HOLDS))
        holds = await self._desk.listing(due_only=due, active_only=active)
        return web.json_response({"holds": [self._desk.describe(h) for h in holds]})

    async def place(self, request: web.Request) -> web.StreamResponse:
        body = await json_object(request)
        hold = await self._desk.place(
            request.match_info["recording_id"],
            kind=body.get("kind"),
            reference=body.get("reference"),
            by=current_user(request).name,
            review=body.get("review_at"),
            note=body.get("note"),
            authorise=self._asking(request, Action.PLACE_HOLD, body.get("reference")),
        )
        return web.json_response(self._desk.describe(hold), status=201)

    async def release(self, request: web.Request) -> web.StreamResponse:
        body = await json_object(request)
        hold = await self._desk.release(
            request.match_info["hold_id"],
            by=current_user(request).name,
            reason=body.get("reason"),
            authorise=self._asking(request, Action.RELEASE_HOLD, body.get("reason")),
        )
        return web.json_response(self._desk.describe(hold))

    def _asking(self, request: web.Request, action: Action, reason: object) -> Authorise:
        return asking(self._gate, current_actor(request), action, reason)


def asking(gate: Gate, actor: Actor, action: Action, reason: object) -> Authorise:
    """The desk's ``authorise``: ``gate``'s decision on the hold's recording for
    ``actor`` (``AccessDenied`` when refused), with the reference or the release's
    reason as the audit entry's reason.  The API and the console's holds page both ask
    through here."""
    why = reason if isinstance(reason, str) else None

    async def authorise(recording_id: str) -> None:
        require(await gate.check(actor, action, recording_id=recording_id, reason=why))

    return authorise


def add_routes(routes: Routes, gate: Gate, desk: HoldDesk) -> None:
    """The hold endpoints (see the module)."""
    handlers = HoldRoutes(gate, desk)
    kinds = list(desk.kinds)
    routes.add(
        "GET",
        f"{API}/holds",
        answering(handlers.listing),
        summary="Every hold, in the order placed (records officers and the DPO: view_holds)",
        parameters=(
            switch_parameter("active", "only holds not yet released"),
            switch_parameter("due", "only active holds whose review date has come"),
        ),
        responses={
            "200": ok_json("The holds", {"type": "object", "properties": {
                "holds": {"type": "array", "items": HOLD}}}),
            **problems("403", "422"),
        },
    )  # fmt: skip
    routes.add(
        "POST",
        f"{API}/recordings/{{recording_id}}/holds",
        answering(handlers.place),
        summary="Hold a recording past its retention, as the signed-in user (place_hold)",
        request_body={
            "type": "object",
            "required": ["kind", "reference"],
            "properties": {
                "kind": {"type": "string", "enum": kinds, "description": "[holds] kinds"},
                "reference": {"type": "string", "description": "the complaint, case..."},
                "review_at": {"type": "string", "format": "date", "description": "YYYY-MM-DD"},
                "note": {"type": "string"},
            },
        },
        responses={
            "201": ok_json("The hold placed", HOLD),
            **problems("400", "403", "404", "409", "422"),
        },
    )
    routes.add(
        "POST",
        f"{API}/holds/{{hold_id}}/release",
        answering(handlers.release),
        summary="Release a hold, saying why, as the signed-in user (release_hold)",
        request_body={
            "type": "object",
            "required": ["reason"],
            "properties": {"reason": {"type": "string"}},
        },
        responses={
            "200": ok_json("The released hold", HOLD),
            **problems("400", "403", "404", "409", "422"),
        },
    )
