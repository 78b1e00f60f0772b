"""Finding recordings and reading one's page: metadata only, never audio.

    GET /api/v1/recordings?number=&from=&to=&operator=&team=&state=&service=&direction=
                          &page=&size=
    GET /api/v1/recordings/{id}

A search shows what the signed-in person may see (staff their calls, managers their
teams', records officers and the DPO all, anyone a recording a live grant opens) and is
one audit entry; a recording's page is a ``view_metadata`` decision of the gate (403
naming the rule when refused).  The rules are :class:`~proxy.records.search.RecordSearch`'s.
"""

from __future__ import annotations

from aiohttp import web

from ...config import NumberSettings
from ...recording_state import RecordingState
from ...records.search import FILTERS, MAX_PAGE_SIZE, RecordSearch, parse_filters, parse_page
from ...storage.catalog import CallDirection
from .auth import current_actor
from .params import query_parameter, query_values
from .routes import API, Routes, ok_json
from .statuses import answering, problems

PART_SCHEMA = {
    "type": "object",
    "properties": {
        "part": {"type": "integer", "minimum": 1},
        "operator": {"type": ["string", "null"]},
        "team": {"type": ["string", "null"]},
        "started_at": {"type": "string", "format": "date-time"},
        "ended_at": {"type": ["string", "null"], "format": "date-time"},
    },
}
RECORDING_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "call_id": {"type": "string"},
        "caller": {"type": "string"},
        "callee": {"type": "string"},
        "direction": {"type": "string"},
        "service": {"type": ["string", "null"]},
        "call_started_at": {"type": "string", "format": "date-time"},
        "started_at": {"type": "string", "format": "date-time"},
        "ended_at": {"type": ["string", "null"], "format": "date-time"},
        "duration_ms": {"type": ["integer", "null"]},
        "state": {"enum": [state.value for state in RecordingState]},
        "expires_at": {"type": ["string", "null"], "format": "date-time"},
        "parts": {"type": "array", "items": PART_SCHEMA},
    },
}
PAGE_SCHEMA = {
    "type": "object",
    "required": ["recordings", "page", "size", "more"],
    "properties": {
        "recordings": {"type": "array", "items": RECORDING_SCHEMA},
        "page": {"type": "integer"},
        "size": {"type": "integer"},
        "more": {"type": "boolean", "description": "a next page exists"},
    },
}
DETAIL_SCHEMA = {
    "allOf": [
        RECORDING_SCHEMA,
        {
            "type": "object",
            "properties": {
                "holds": {"type": "array", "items": {"type": "object"}},
                "access": {
                    "type": "object",
                    "description": "Your access: for which purposes you may hear each "
                    "part now, whether you may place a hold, and your requests for it "
                    "(each with live: a grant in force)",
                    "properties": {
                        "listen": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "part": {"type": "integer"},
                                    "purposes": {"type": "array", "items": {"type": "string"}},
                                },
                            },
                        },
                        "may_place_hold": {"type": "boolean"},
                        "requests": {"type": "array", "items": {"type": "object"}},
                    },
                },
            },
        },
    ]
}
_TEXT = {"type": "string", "maxLength": 200}
_TIME = {"type": "string", "format": "date-time"}
SEARCH_PARAMETERS = (
    query_parameter("number", "The caller's or callee's number, as dialled or E.164", _TEXT),
    query_parameter("from", "Calls that started at or after this time (ISO 8601)", _TIME),
    query_parameter("to", "Calls that started before this time (after from)", _TIME),
    query_parameter("operator", "A part taken by this operator", _TEXT),
    query_parameter("team", "A part taken by this team", _TEXT),
    query_parameter("state", "The recording's state", {"enum": [s.value for s in RecordingState]}),
    query_parameter("service", "The call's service (as configured)", _TEXT),
    query_parameter(
        "direction", "The call's direction", {"enum": [d.value for d in CallDirection]}
    ),
    query_parameter("page", "Which page, from 1", {"type": "integer", "minimum": 1}),
    query_parameter(
        "size", "Rows a page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE}
    ),
)


def add_routes(routes: Routes, search: RecordSearch, numbers: NumberSettings) -> None:
    """Search and a recording's page, on ``search`` (``numbers`` normalises a number
    filter as the call proxy stored it)."""

    @answering
    async def find(request: web.Request) -> web.StreamResponse:
        raw = query_values(request, (*FILTERS, "page", "size"))
        page = parse_page(raw.pop("page", None), raw.pop("size", None))
        found = await search.search(current_actor(request), parse_filters(raw, numbers), page)
        return web.json_response(found.as_dict())

    @answering
    async def detail(request: web.Request) -> web.StreamResponse:
        query_values(request, ())
        actor = current_actor(request)
        shown = await search.recording_detail(actor, request.match_info["id"])
        return web.json_response(shown)

    routes.add(
        "GET",
        f"{API}/recordings",
        find,
        summary="Find recordings by metadata (never audio): the calls you may see, newest "
        "first; one audit entry per search",
        parameters=SEARCH_PARAMETERS,
        responses={
            "200": ok_json("A page of recordings", PAGE_SCHEMA),
            **problems("422"),
        },
    )
    routes.add(
        "GET",
        f"{API}/recordings/{{id}}",
        detail,
        summary="A recording's metadata, parts, holds and your access to it (a "
        "view_metadata decision, audited)",
        responses={
            "200": ok_json("The recording", DETAIL_SCHEMA),
            **problems("403", "404", "422"),
        },
    )
