"""Anomaly flags in the records service (P11, P21): unusual access the DPO looks at.

    GET  /api/v1/flags?open=1              newest first (``open``: not yet cleared)
    POST /api/v1/flags/{id}/clear          {"reason"}

Both are ``Action.VIEW_FLAGS``, the DPO's alone (a person who may see a flag about
someone's access may also close it, saying why); each is a gate decision with its audit
entry, and clearing appends its ``flag.clear`` entry with the change.  The metric
``recproxy_access_flags_open`` is the call proxy's (``/metrics`` of ``serve``: it reads
the shared catalog), so the records service serves no ``/metrics`` of its own: one
scrape target, and nothing about recordings listens unauthenticated here.
"""

from __future__ import annotations

from aiohttp import web

from ...records.flags import FlagDesk
from ...records.gate import Gate, require, whole_number
from ...records.policy import Action
from ..body import json_object
from .auth import current_actor, current_user
from .params import query_parameter, query_values
from .query import switch, switch_parameter
from .routes import API, Routes, ok_json
from .statuses import answer, problems

DEFAULT_LIMIT, MAX_LIMIT = 100, 500
FLAG = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "raised_at": {"type": "string", "format": "date-time"},
        "kind": {"type": "string", "description": "the anomaly rule that raised it"},
        "user": {"type": "string", "description": "whose access raised it"},
        "recording_id": {"type": ["string", "null"]},
        "detail": {"type": "object"},
        "cleared_by": {"type": ["string", "null"]},
        "cleared_at": {"type": ["string", "null"], "format": "date-time"},
        "cleared_reason": {"type": ["string", "null"]},
    },
}


class FlagRoutes:
    def __init__(self, gate: Gate, desk: FlagDesk) -> None:
        self._gate = gate
        self._desk = desk

    async def listing(self, request: web.Request) -> web.StreamResponse:
        async def work() -> web.StreamResponse:
            values = query_values(request, ("open", "limit"))
            open_only = switch(values, "open")
            given = values.get("limit")
            limit = DEFAULT_LIMIT if given is None else whole_number("limit", given, MAX_LIMIT)
            require(await self._gate.check(current_actor(request), Action.VIEW_FLAGS))
            flags = await self._desk.listing(open_only=open_only, limit=limit)
            return web.json_response({"flags": [flag.as_dict() for flag in flags]})

        return await answer(work)

    async def clear(self, request: web.Request) -> web.StreamResponse:
        async def work() -> web.StreamResponse:
            body = await json_object(request)
            actor = current_actor(request)
            reason = body.get("reason")

            async def authorise() -> None:
                why = reason if isinstance(reason, str) else None
                require(await self._gate.check(actor, Action.VIEW_FLAGS, reason=why))

            flag = await self._desk.clear(
                request.match_info["flag_id"],
                by=current_user(request).name,
                reason=reason,
                authorise=authorise,
            )
            return web.json_response(flag.as_dict())

        return await answer(work)


def add_routes(routes: Routes, gate: Gate, desk: FlagDesk) -> None:
    """The flag endpoints (see the module)."""
    handlers = FlagRoutes(gate, desk)
    routes.add(
        "GET",
        f"{API}/flags",
        handlers.listing,
        summary="Anomaly flags, newest first (the DPO only: view_flags)",
        parameters=(
            switch_parameter("open", "only flags not yet cleared"),
            query_parameter("limit", f"at most this many (default {DEFAULT_LIMIT})",
                            {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
        ),
        responses={
            "200": ok_json("The flags", {"type": "object", "properties": {
                "flags": {"type": "array", "items": FLAG}}}),
            **problems("403", "422"),
        },
    )  # fmt: skip
    routes.add(
        "POST",
        f"{API}/flags/{{flag_id}}/clear",
        handlers.clear,
        summary="Clear a flag the DPO has looked at, saying why (view_flags)",
        request_body={
            "type": "object",
            "required": ["reason"],
            "properties": {"reason": {"type": "string"}},
        },
        responses={
            "200": ok_json("The cleared flag", FLAG),
            **problems("400", "403", "404", "409", "422"),
        },
    )
