"""Access requests and their decisions: how a person gets a grant to hear a recording
that is not theirs, and how a records officer or the DPO decides.

    POST /api/v1/recordings/{id}/access-requests   {"purpose", "reason"}   → 201
    GET  /api/v1/access-requests?state=pending     the approvals queue
    GET  /api/v1/access-requests?mine=1[&state=]   your own requests
    POST /api/v1/access-requests/{id}/decision     {"decision": "approve"|"refuse",
                                                    "reason", "days"?}
    POST /api/v1/access-requests/{id}/withdraw     yours, while pending

A grant covers the whole recording for one purpose (a person who may hear only part of
it names the part when playing).  The queue holds the pending requests the signed-in
person may decide — every one but their own for a records officer or the DPO, none for
anyone else — so a listing never tells a person about others' requests they have no
business with; ``mine=1`` lists one's own, any state.  The rules and the audit are
:class:`~proxy.records.access.AccessDesk`'s.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from aiohttp import web

from ...records.access import AccessDesk
from ...records.errors import InvalidAccessRequest
from ...storage.catalog import RequestState
from ..body import json_object
from .auth import current_actor
from .params import query_parameter, query_values
from .query import switch, switch_parameter
from .routes import API, Routes, ok_json
from .statuses import answering, problems

REQUEST_SCHEMA = {
    "type": "object",
    "required": ["id", "recording_id", "requester", "purpose", "reason", "state"],
    "properties": {
        "id": {"type": "string"},
        "recording_id": {"type": "string"},
        "requester": {"type": "string"},
        "purpose": {"type": "string"},
        "reason": {"type": "string"},
        "state": {"enum": [state.value for state in RequestState]},
        "requested_at": {"type": "string", "format": "date-time"},
        "decided_by": {"type": ["string", "null"]},
        "decided_at": {"type": ["string", "null"], "format": "date-time"},
        "decision_reason": {"type": ["string", "null"]},
        "expires_at": {
            "type": ["string", "null"],
            "format": "date-time",
            "description": "an approved request is a grant until then",
        },
        "live": {"type": "boolean", "description": "(mine=1 only) a grant in force now"},
    },
}
ASK_SCHEMA = {
    "type": "object",
    "required": ["purpose", "reason"],
    "additionalProperties": False,
    "properties": {
        "purpose": {"type": "string", "description": "one of the configured purposes"},
        "reason": {"type": "string", "maxLength": 500},
    },
}
DECISION_SCHEMA = {
    "type": "object",
    "required": ["decision", "reason"],
    "additionalProperties": False,
    "properties": {
        "decision": {"enum": ["approve", "refuse"]},
        "reason": {"type": "string", "minLength": 1, "maxLength": 500},
        "days": {
            "type": "integer",
            "minimum": 1,
            "description": "how long the grant lasts (approve only); at most and by "
            "default [access] grant_days",
        },
    },
}
LIST_SCHEMA = {
    "type": "object",
    "required": ["access_requests"],
    "properties": {"access_requests": {"type": "array", "items": REQUEST_SCHEMA}},
}
_STATES = [state.value for state in RequestState]
_DECISIONS = {"approve": True, "refuse": False}


def members(body: dict[str, Any], known: Collection[str]) -> dict[str, Any]:
    """``body`` if it holds no member but ``known`` ones (a misspelt ``"days"`` is bad
    input, not a grant of the default length)."""
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise InvalidAccessRequest(f"unknown member {unknown[0]!r} (known: {', '.join(known)})")
    return body


def add_routes(routes: Routes, desk: AccessDesk) -> None:
    """Requests, the queue, decisions and withdrawals, on ``desk``."""

    @answering
    async def ask(request: web.Request) -> web.StreamResponse:
        query_values(request, ())
        body = members(await json_object(request), ("purpose", "reason"))
        made = await desk.request(
            current_actor(request),
            request.match_info["id"],
            body.get("purpose"),
            body.get("reason"),
        )
        return web.json_response(
            made.as_dict(),
            status=201,
            headers={"Location": f"{API}/access-requests/{made.id}"},
        )

    @answering
    async def listing(request: web.Request) -> web.StreamResponse:
        raw = query_values(request, ("state", "mine"))
        mine = switch(raw, "mine")
        state = raw.get("state", "pending" if not mine else None)
        if state is not None and state not in _STATES:
            raise InvalidAccessRequest(f"state must be one of {', '.join(_STATES)}")
        actor = current_actor(request)
        if mine:
            shown = [r for r in await desk.mine(actor) if state in (None, r["state"])]
        elif state != RequestState.PENDING:
            raise InvalidAccessRequest(
                "the approvals queue holds pending requests only (mine=1 lists yours)"
            )
        else:
            shown = [found.as_dict() for found in await desk.pending(actor)]
        return web.json_response({"access_requests": shown})

    @answering
    async def decide(request: web.Request) -> web.StreamResponse:
        query_values(request, ())
        body = members(await json_object(request), ("decision", "reason", "days"))
        given = body.get("decision")
        decided = await desk.decide(
            current_actor(request),
            request.match_info["id"],
            _DECISIONS.get(given) if isinstance(given, str) else None,
            body.get("reason", ""),  # absent: "a decision needs a reason"
            body.get("days"),
        )
        return web.json_response(decided.as_dict())

    @answering
    async def withdraw(request: web.Request) -> web.StreamResponse:
        query_values(request, ())
        withdrawn = await desk.withdraw(current_actor(request), request.match_info["id"])
        return web.json_response(withdrawn.as_dict())

    routes.add(
        "POST",
        f"{API}/recordings/{{id}}/access-requests",
        ask,
        summary="Ask for access to a recording for a purpose, with a reason (a records "
        "officer or the DPO decides); the request_access decision is audited",
        request_body=ASK_SCHEMA,
        responses={
            "201": ok_json("The request, pending", REQUEST_SCHEMA),
            **problems("400", "403", "404", "422"),
        },
    )
    routes.add(
        "GET",
        f"{API}/access-requests",
        listing,
        summary="The approvals queue (state=pending, the default: the pending requests "
        "you may decide — none unless you are a records officer or the DPO; audited), "
        "or with mine=1 your own requests, filtered by state if given",
        parameters=(
            query_parameter("state", "Only requests in this state", {"enum": _STATES}),
            switch_parameter("mine", "1: your own requests"),
        ),
        responses={"200": ok_json("The requests, oldest first", LIST_SCHEMA), **problems("422")},
    )
    routes.add(
        "POST",
        f"{API}/access-requests/{{id}}/decision",
        decide,
        summary="Approve (a grant for days, default [access] grant_days) or refuse a "
        "pending request, with a reason; records officers and the DPO, never their own",
        request_body=DECISION_SCHEMA,
        responses={
            "200": ok_json("The request, decided", REQUEST_SCHEMA),
            **problems("400", "403", "404", "409", "422"),
        },
    )
    routes.add(
        "POST",
        f"{API}/access-requests/{{id}}/withdraw",
        withdraw,
        summary="Withdraw your own pending request (another's is not found)",
        responses={
            "200": ok_json("The request, withdrawn", REQUEST_SCHEMA),
            **problems("404", "409", "422"),
        },
    )
