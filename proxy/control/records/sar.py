"""Subject access cases over HTTP (P8, P17-P19): the same steps as ``recproxy sar``.

    POST /api/v1/sar-cases                       {"requester", "identity_check", "number"
                                                  (text or list), "from", "to",
                                                  "operator"?, "contact"?, "received"?} → 201
    GET  /api/v1/sar-cases?state=                every case, soonest deadline first
    GET  /api/v1/sar-cases/{id}                  the case, each call's metadata, the deadline
    POST /api/v1/sar-cases/{id}/decisions        {"recording_id", "release", "reason"} (DPO)
    POST /api/v1/sar-cases/{id}/close            {"reason"}

The rules are :class:`proxy.records.sar.SarDesk`'s (records officers and the DPO open,
view and close; the DPO alone decides), each step one gate decision and one audit
entry; errors are the problem documents of :mod:`.statuses`.  A body naming a field the
endpoint does not know is a 422 that changes nothing: a misspelt ``operater`` would
otherwise widen the search silently.  Each case carries ``deadline``, the deadline said
for a person (``due ... (12 days left)``, ``OVERDUE by 3 days``, ``closed``).  The
export jobs are :mod:`.sar_exports`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

from aiohttp import web

from ...records.errors import InvalidAccessRequest
from ...records.sar import RELEASES, SarDesk, describe_deadline
from ...storage.catalog import SarCase, SarState
from ..body import json_object
from .auth import current_actor
from .params import query_parameter, query_values
from .routes import API, Routes, Schema, ok_json
from .statuses import answering, problems

CASES = f"{API}/sar-cases"
OPEN_FIELDS = (
    "requester", "identity_check", "number", "from", "to", "operator", "contact", "received",
)  # fmt: skip
STATES = [state.value for state in SarState]
_TIME = {"type": "string", "format": "date-time"}
_OPT_TEXT = {"type": ["string", "null"]}
CASE: Schema = {
    "type": "object",
    "required": ["id", "requester", "numbers", "state", "deadline_at", "deadline", "recordings"],
    "properties": {
        "id": {"type": "string", "description": "SAR-YYYY-NNNN"},
        "requester": {"type": "string"},
        "contact": _OPT_TEXT,
        "identity_check": {"type": "string"},
        "numbers": {"type": "array", "items": {"type": "string"}},
        "from": _TIME,
        "to": _TIME,
        "operator": _OPT_TEXT,
        "received_at": _TIME,
        "deadline_at": _TIME,
        "deadline": {"type": "string", "description": "the deadline said for a person"},
        "opened_by": {"type": "string"},
        "opened_at": _TIME,
        "state": {"enum": STATES},
        "recordings": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "recording_id": {"type": "string"},
                    "position": {"type": "integer"},
                    "release": {"enum": [*RELEASES, None]},
                    "decision_reason": _OPT_TEXT,
                    "decided_by": _OPT_TEXT,
                    "decided_at": {"type": ["string", "null"], "format": "date-time"},
                    "hold_id": _OPT_TEXT,
                    "call": {
                        "type": ["object", "null"],
                        "description": "the call's metadata (a search hit); shown by "
                        "GET /sar-cases/{id} and when the case is opened",
                    },
                },
            },
        },
        "exports": {"type": "array", "items": {"type": "object"}},
        "closed_by": _OPT_TEXT,
        "closed_at": {"type": ["string", "null"], "format": "date-time"},
        "close_reason": _OPT_TEXT,
    },
}
OPEN_SCHEMA: Schema = {
    "type": "object",
    "required": ["requester", "identity_check", "number", "from", "to"],
    "additionalProperties": False,
    "properties": {
        "requester": {"type": "string", "description": "the person asking"},
        "identity_check": {"type": "string", "description": "how their identity was checked"},
        "number": {
            "oneOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 10},
            ],
            "description": "the number or numbers they call from, in any form",
        },
        "from": {**_TIME, "description": "the window to search: its start"},
        "to": {**_TIME, "description": "its end (after from)"},
        "operator": {"type": "string", "description": "only calls this operator took"},
        "contact": {"type": "string", "description": "how to reach the requester"},
        "received": {**_TIME, "description": "when the request arrived (default: now)"},
    },
}
DECISION_SCHEMA: Schema = {
    "type": "object",
    "required": ["recording_id", "release", "reason"],
    "additionalProperties": False,
    "properties": {
        "recording_id": {"type": "string"},
        "release": {"enum": list(RELEASES), "description": "caller: the caller's channel only"},
        "reason": {"type": "string"},
    },
}
CLOSE_SCHEMA: Schema = {
    "type": "object",
    "required": ["reason"],
    "additionalProperties": False,
    "properties": {"reason": {"type": "string"}},
}


async def known_fields(request: web.Request, known: Collection[str]) -> dict[str, Any]:
    """The request's JSON object, no query parameters, no field but ``known`` ones."""
    query_values(request, ())
    body = await json_object(request)
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise InvalidAccessRequest(f"unknown field {unknown[0]!r} (known: {', '.join(known)})")
    return body


class SarRoutes:
    """The case endpoints, each a thin shell over :class:`SarDesk`."""

    def __init__(self, desk: SarDesk, now: Callable[[], datetime]) -> None:
        self._desk = desk
        self._now = now

    def _case(self, case: SarCase, document: dict[str, Any] | None = None) -> dict[str, Any]:
        """The case's document with its deadline said for a person."""
        shown = case.as_dict() if document is None else document
        return shown | {"deadline": describe_deadline(case, self._now())}

    async def open(self, request: web.Request) -> web.StreamResponse:
        body = await known_fields(request, OPEN_FIELDS)
        view = await self._desk.open(
            current_actor(request),
            requester=body.get("requester"),
            identity_check=body.get("identity_check"),
            number=body.get("number"),
            window_from=body.get("from"),
            window_to=body.get("to"),
            operator=body.get("operator"),
            contact=body.get("contact"),
            received=body.get("received"),
        )
        return web.json_response(
            self._case(view.case, view.as_dict()),
            status=201,
            headers={"Location": f"{CASES}/{view.case.id}"},
        )

    async def listing(self, request: web.Request) -> web.StreamResponse:
        state = query_values(request, ("state",)).get("state")
        cases = await self._desk.cases(current_actor(request), state)
        return web.json_response({"cases": [self._case(case) for case in cases]})

    async def show(self, request: web.Request) -> web.StreamResponse:
        query_values(request, ())
        view = await self._desk.show(current_actor(request), request.match_info["id"])
        return web.json_response(self._case(view.case, view.as_dict()))

    async def decide(self, request: web.Request) -> web.StreamResponse:
        body = await known_fields(request, ("recording_id", "release", "reason"))
        recording_id = body.get("recording_id")
        if not isinstance(recording_id, str) or not recording_id.strip():
            raise InvalidAccessRequest("recording_id: name a recording of the case")
        case = await self._desk.decide(
            current_actor(request),
            request.match_info["id"],
            recording_id.strip(),
            body.get("release"),
            body.get("reason"),
        )
        return web.json_response(self._case(case))

    async def close(self, request: web.Request) -> web.StreamResponse:
        body = await known_fields(request, ("reason",))
        case = await self._desk.close(
            current_actor(request), request.match_info["id"], body.get("reason")
        )
        return web.json_response(self._case(case))


def add_routes(routes: Routes, desk: SarDesk, now: Callable[[], datetime]) -> None:
    """The case endpoints (see the module); ``now`` (the gate's clock) says how near
    each deadline is."""
    handlers = SarRoutes(desk, now)
    routes.add(
        "POST",
        CASES,
        answering(handlers.open),
        summary="Open a subject access case: the calls its search finds are attached and "
        "held (records officers, the DPO: open_sar)",
        request_body=OPEN_SCHEMA,
        responses={
            "201": ok_json("The case, with each attached call's metadata", CASE),
            **problems("400", "403", "422"),
        },
    )
    routes.add(
        "GET",
        CASES,
        answering(handlers.listing),
        summary="Every subject access case, soonest deadline first (view_sar)",
        parameters=(query_parameter("state", "only cases in this state", {"enum": STATES}),),
        responses={
            "200": ok_json("The cases", {"type": "object", "properties": {
                "cases": {"type": "array", "items": CASE}}}),
            **problems("403", "422"),
        },
    )  # fmt: skip
    routes.add(
        "GET",
        f"{CASES}/{{id}}",
        answering(handlers.show),
        summary="A subject access case, each call's metadata and its deadline (view_sar)",
        responses={"200": ok_json("The case", CASE), **problems("403", "404", "422")},
    )
    routes.add(
        "POST",
        f"{CASES}/{{id}}/decisions",
        answering(handlers.decide),
        summary="Release a call of the case (both parties or the caller only) or refuse "
        "it, with a reason; revisable until the case is closed (the DPO: decide_sar)",
        request_body=DECISION_SCHEMA,
        responses={
            "200": ok_json("The case", CASE),
            **problems("400", "403", "404", "409", "422"),
        },
    )
    routes.add(
        "POST",
        f"{CASES}/{{id}}/close",
        answering(handlers.close),
        summary="Close the case for good, saying why; its holds are released (close_sar)",
        request_body=CLOSE_SCHEMA,
        responses={
            "200": ok_json("The case, closed", CASE),
            **problems("400", "403", "404", "409", "422"),
        },
    )
