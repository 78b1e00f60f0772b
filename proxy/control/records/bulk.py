"""Bulk export over HTTP (P11, P21): ask, decide, list, withdraw, and the ZIP.

    POST /api/v1/bulk-requests                  {"recording_ids", "purpose", "reason"} → 201
    GET  /api/v1/bulk-requests?state=           yours, and (a DPO) those you may decide
    POST /api/v1/bulk-requests/{id}/decision    {"decision": "approve"|"refuse", "reason",
                                                 "days"?}  (a DPO, not the requester)
    POST /api/v1/bulk-requests/{id}/withdraw    the requester, while pending
    GET  /api/v1/bulk-requests/{id}/export?format=wav|mp3   → application/zip, streamed

The rules are :mod:`proxy.records.bulk`'s; errors are the problem documents of
:mod:`.statuses`.  The export answers once the request as a whole is allowed (403 with
the rule otherwise); the archive then streams with chunked transfer encoding, each
recording decided and audited before its audio.  Once the first byte is sent no problem
document can follow: an archive cut short by a recording failing verification mid-file
ends without its central directory, so no ZIP reader takes it as whole.
"""

from __future__ import annotations

import contextlib
import logging

from aiohttp import web

from ...records.bulk import BULK_FORMATS, MANIFEST, BulkDesk
from ...storage.catalog import RequestState
from ..body import json_object
from .auth import current_actor
from .params import query_parameter, query_values
from .routes import API, Routes, ok_json
from .statuses import answer, problems

log = logging.getLogger(__name__)

BULK_SCHEMA_STATES = tuple(state.value for state in RequestState)
BULK_SCHEMA = {
    "type": "object",
    "required": ["id", "requester", "purpose", "reason", "recording_ids", "state"],
    "properties": {
        "id": {"type": "string"},
        "requester": {"type": "string"},
        "purpose": {"type": "string"},
        "reason": {"type": "string"},
        "recording_ids": {"type": "array", "items": {"type": "string"}},
        "state": {"enum": list(BULK_SCHEMA_STATES)},
        "requested_at": {"type": "string", "format": "date-time"},
        "decided_by": {"type": ["string", "null"]},
        "decided_at": {"type": ["string", "null"], "format": "date-time"},
        "decision_reason": {"type": ["string", "null"]},
        "expires_at": {"type": ["string", "null"], "format": "date-time"},
    },
}
ASK_SCHEMA = {
    "type": "object",
    "required": ["recording_ids", "purpose", "reason"],
    "properties": {
        "recording_ids": {
            "type": "array",
            "items": {"type": "string"},
            "minItems": 1,
            "description": "at most [access] bulk_max_recordings, each once",
        },
        "purpose": {"type": "string", "description": "one of [access] purposes"},
        "reason": {"type": "string"},
    },
}
DECISION_SCHEMA = {
    "type": "object",
    "required": ["decision", "reason"],
    "properties": {
        "decision": {"enum": ["approve", "refuse"]},
        "reason": {"type": "string"},
        "days": {
            "type": "integer",
            "minimum": 1,
            "description": "an approval's length, 1 to [access] grant_days (the default)",
        },
    },
}
_DECISIONS = {"approve": True, "refuse": False}


def add_routes(routes: Routes, desk: BulkDesk) -> None:
    """The bulk endpoints on ``routes``, served by ``desk``."""
    handlers = _Handlers(desk)
    path = f"{API}/bulk-requests"
    routes.add(
        "POST",
        path,
        handlers.ask,
        summary="Ask a DPO to approve a bulk export of recordings (records officers, the DPO)",
        request_body=ASK_SCHEMA,
        responses={
            "201": ok_json("The request, pending", BULK_SCHEMA),
            **problems("400", "403", "404", "422"),
        },
    )
    routes.add(
        "GET",
        path,
        handlers.listed,
        summary="Your bulk requests and, for a DPO, every one they may decide",
        parameters=(
            query_parameter(
                "state", "only those in this state", {"enum": list(BULK_SCHEMA_STATES)}
            ),
        ),
        responses={
            "200": ok_json(
                "The requests, in the order made",
                {"type": "object", "properties": {"bulk_requests": {"type": "array"}}},
            ),
            **problems("422"),
        },
    )
    routes.add(
        "POST",
        f"{path}/{{id}}/decision",
        handlers.decide,
        summary="Approve or refuse a pending bulk request (a DPO other than its requester)",
        request_body=DECISION_SCHEMA,
        responses={
            "200": ok_json("The request, decided", BULK_SCHEMA),
            **problems("400", "403", "404", "409", "422"),
        },
    )
    routes.add(
        "POST",
        f"{path}/{{id}}/withdraw",
        handlers.withdraw,
        summary="Withdraw your pending bulk request",
        responses={
            "200": ok_json("The request, withdrawn", BULK_SCHEMA),
            **problems("404", "409"),
        },
    )
    routes.add(
        "GET",
        f"{path}/{{id}}/export",
        handlers.export,
        summary="The approved bulk request as a ZIP, streamed: one file per recording "
        f"and {MANIFEST} (each file's SHA-256, who, when, why, and the recordings refused "
        "with their rule); its requester only, until the approval expires",
        parameters=(
            query_parameter(
                "format", "each file's format", {"enum": list(BULK_FORMATS), "default": "wav"}
            ),
        ),
        responses={
            "200": {
                "description": "A ZIP of stored entries, streamed (chunked)",
                "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
            },
            **problems("403", "404", "422"),
        },
    )


class _Handlers:
    """The endpoints' handlers, each a thin shell over :class:`BulkDesk`."""

    def __init__(self, desk: BulkDesk) -> None:
        self._desk = desk

    async def ask(self, request: web.Request) -> web.StreamResponse:
        async def work() -> web.StreamResponse:
            query_values(request, ())
            body = await json_object(request)
            made = await self._desk.request(
                current_actor(request),
                body.get("recording_ids"),
                body.get("purpose"),
                body.get("reason"),
            )
            return web.json_response(made.as_dict(), status=201)

        return await answer(work)

    async def listed(self, request: web.Request) -> web.StreamResponse:
        async def work() -> web.StreamResponse:
            state = query_values(request, ("state",)).get("state")
            shown = await self._desk.visible(current_actor(request), state)
            return web.json_response({"bulk_requests": [each.as_dict() for each in shown]})

        return await answer(work)

    async def decide(self, request: web.Request) -> web.StreamResponse:
        async def work() -> web.StreamResponse:
            query_values(request, ())
            body = await json_object(request)
            given = body.get("decision")
            decided = await self._desk.decide(
                current_actor(request),
                request.match_info["id"],
                _DECISIONS.get(given, given) if isinstance(given, str) else given,
                body.get("reason"),
                body.get("days"),
            )
            return web.json_response(decided.as_dict())

        return await answer(work)

    async def withdraw(self, request: web.Request) -> web.StreamResponse:
        async def work() -> web.StreamResponse:
            query_values(request, ())
            withdrawn = await self._desk.withdraw(current_actor(request), request.match_info["id"])
            return web.json_response(withdrawn.as_dict())

        return await answer(work)

    async def export(self, request: web.Request) -> web.StreamResponse:
        async def work() -> web.StreamResponse:
            given = query_values(request, ("format",))
            bulk = await self._desk.export(
                current_actor(request), request.match_info["id"], given.get("format", "wav")
            )
            response = web.StreamResponse(
                headers={
                    "Content-Type": bulk.content_type,
                    "Content-Disposition": f'attachment; filename="{bulk.filename}"',
                    "Cache-Control": "no-store",
                }
            )
            await response.prepare(request)
            try:
                async with contextlib.aclosing(bulk.stream()) as pieces:
                    async for piece in pieces:
                        if piece:
                            await response.write(piece)
            except ConnectionResetError:  # the client went away: no bulk.export entry
                log.info("bulk export %s: the client went away", bulk.request.id)
                return response
            except Exception as exc:  # too late for a problem document: cut it short
                log.error("bulk export %s cut short: %s", bulk.request.id, exc)
                raise RuntimeError(f"bulk export {bulk.request.id} cut short") from exc
            await response.write_eof()
            return response

        return await answer(work)
