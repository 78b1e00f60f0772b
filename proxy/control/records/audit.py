"""The audit log in the records service (P5, P10, P20).

    GET /api/v1/audit?since=&until=&actor=&action=&object=&after=&limit=   the DPO
    GET /api/v1/audit/verify                                               integrity checks

Reading entries is ``Action.VIEW_AUDIT`` (the DPO only); checking the chain is
``Action.VERIFY_INTEGRITY`` (maintenance, admins, records officers, the DPO) and shows
no entry, only whether the chain is intact, its length and head, and where it broke.
Both are gate decisions with their audit entry; the use case is
:class:`proxy.records.audit_view.AuditView`.  An anchor file that cannot be read is a
500 whose cause goes to the log.
"""

from __future__ import annotations

import logging

from aiohttp import web

from ...records.audit_view import DEFAULT_LIMIT, FILTERS, MAX_LIMIT, AuditView
from ...storage.catalog.anchor import AnchorFileError
from ..problem import problem
from .auth import current_actor
from .params import query_parameter, query_values
from .routes import API, PROBLEM, Routes, Schema, ok_json
from .statuses import answer, problems

log = logging.getLogger(__name__)

ENTRY = {
    "type": "object",
    "properties": {
        "seq": {"type": "integer"},
        "at": {"type": "string", "format": "date-time"},
        "actor": {"type": "string"},
        "action": {"type": "string"},
        "object": {"type": ["string", "null"]},
        "reason": {"type": ["string", "null"]},
        "detail": {"type": "object"},
        "prev": {"type": "string", "description": "SHA-256 of the entry before"},
        "sha256": {"type": "string", "description": "SHA-256 of this entry"},
    },
}
CHECK = {
    "type": "object",
    "properties": {
        "intact": {"type": "boolean"},
        "count": {"type": "integer", "description": "entries walked"},
        "head": {
            "type": "object",
            "properties": {"seq": {"type": "integer"}, "sha256": {"type": "string"}},
        },
        "broken_at": {"type": ["integer", "null"], "description": "first bad entry"},
        "why": {"type": ["string", "null"]},
    },
}


def _text(name: str, description: str) -> Schema:
    return query_parameter(name, description, {"type": "string"})


class AuditRoutes:
    def __init__(self, view: AuditView) -> None:
        self._view = view

    async def entries(self, request: web.Request) -> web.StreamResponse:
        async def work() -> web.StreamResponse:
            values = query_values(request, FILTERS)
            page = await self._view.entries(current_actor(request), values)
            return web.json_response(page.as_dict())

        return await answer(work)

    async def verify(self, request: web.Request) -> web.StreamResponse:
        async def work() -> web.StreamResponse:
            try:
                check = await self._view.verify(current_actor(request))
            except AnchorFileError as exc:
                log.error("audit check: the anchor file cannot be used: %s", exc)
                return problem(500, "the audit anchor file cannot be read; see the service's log")
            return web.json_response(
                {
                    "intact": check.intact,
                    "count": check.count,
                    "head": {"seq": check.head.seq, "sha256": check.head.sha256},
                    "broken_at": check.broken_at,
                    "why": check.why,
                }
            )

        return await answer(work)


def add_routes(routes: Routes, view: AuditView) -> None:
    """The audit endpoints (see the module)."""
    handlers = AuditRoutes(view)
    routes.add(
        "GET",
        f"{API}/audit",
        handlers.entries,
        summary="Audit entries, oldest first (the DPO only: view_audit)",
        parameters=(
            _text("since", "at or after this ISO 8601 time (UTC when no zone)"),
            _text("until", "before this ISO 8601 time"),
            _text("actor", "only this actor's entries"),
            _text("action", "only this action (access.allowed, hold.place, ...)"),
            _text("object", "only about this object (recording:ID, user:NAME, ...)"),
            query_parameter("after", "only entries after this seq (the next page)",
                            {"type": "integer", "minimum": 1}),
            query_parameter("limit", f"at most this many (default {DEFAULT_LIMIT})",
                            {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
        ),
        responses={
            "200": ok_json("A page of entries; more: another page follows (use after)",
                           {"type": "object", "properties": {
                               "entries": {"type": "array", "items": ENTRY},
                               "more": {"type": "boolean"}}}),
            **problems("403", "422"),
        },
    )  # fmt: skip
    routes.add(
        "GET",
        f"{API}/audit/verify",
        handlers.verify,
        summary="Check the audit chain against its anchors, without anchoring "
        "(verify_integrity: maintenance, admins, records officers, the DPO)",
        responses={
            "200": ok_json("Intact, or where it broke", CHECK),
            **problems("403"),
            "500": {"description": "The anchor file cannot be read", **PROBLEM},
        },
    )
