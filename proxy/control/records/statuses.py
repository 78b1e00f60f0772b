"""The use cases' errors as RFC 9457 problem documents: one table for every route
module of the records service, so the same error is the same status everywhere.

A route module decorates its handler with :func:`answering` (or wraps a piece of work
in :func:`answer`)::

    @answering
    async def recording(request: web.Request) -> web.StreamResponse:
        found = await search.recording_detail(current_actor(request), request.match_info["id"])
        return web.json_response(found)

and any error listed here becomes its problem response; anything else is a bug and
reaches aiohttp's 500.  The statuses:

- ``AccessDenied`` 403, the body naming the policy's ``rule`` and its ``reason`` (the
  refusal is already in the audit chain: the gate wrote it);
- ``RecordNotFound`` 404;
- ``AccessRequestConflict``, ``RecordingActionError``, ``HoldRefused`` 409;
- ``InvalidAccessRequest``, ``InvalidHoldRequest``, ``InvalidRecordingRequest`` 422;
- ``ExportsBusy`` 429 (as many subject access exports as the host runs at once);
- ``SarExportError`` 503 (no transcript model, no signing key, a full disk: the host's
  state, one line naming what to do);
- ``BodyRefused`` its own status (400 too large or too deep, 422 not a JSON object);
- ``RangeNotSatisfiable`` 416 with ``Content-Range: bytes */N``;
- ``RecordingUnreadable`` 500 with a generic detail: the cause (which file, which
  check failed) is an integrity incident for the log, not for the person asking;
- ``EncodingError`` 500 likewise (ffmpeg missing or failing: the host's fault).

:data:`PROBLEMS` holds the OpenAPI response descriptions to cite in ``Routes.add``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from ...records.errors import (
    AccessDenied,
    AccessRequestConflict,
    HoldRefused,
    InvalidAccessRequest,
    InvalidHoldRequest,
    InvalidRecordingRequest,
    RangeNotSatisfiable,
    RecordingActionError,
    RecordingUnreadable,
    RecordNotFound,
)
from ...records.sar_export import SarExportError
from ...records.sar_jobs import ExportsBusy
from ...storage.export import EncodingError
from ..body import BodyRefused
from ..problem import problem
from .routes import PROBLEM, Handler, Schema

log = logging.getLogger(__name__)

UNREADABLE_DETAIL = "the recording's audio cannot be read; the operators have been told"
ENCODING_DETAIL = "the audio cannot be encoded in that format here; the operators have been told"

# errors whose message is the problem's detail, as statuses
_STATUS: dict[type[Exception], int] = {
    RecordNotFound: 404,
    AccessRequestConflict: 409,
    RecordingActionError: 409,
    HoldRefused: 409,
    InvalidAccessRequest: 422,
    InvalidHoldRequest: 422,
    InvalidRecordingRequest: 422,
    ExportsBusy: 429,
    SarExportError: 503,
}

DENIED: Schema = {
    "description": "Refused by the access policy; the body names the rule (``rule``) "
    "and why (``detail``); the refusal is in the audit log",
    "content": {
        "application/problem+json": {
            "schema": {
                "allOf": [
                    {"$ref": "#/components/schemas/Problem"},
                    {"type": "object", "properties": {"rule": {"type": "string"}}},
                ]
            }
        }
    },
}

PROBLEMS: dict[str, Schema] = {
    "400": {"description": "The body is too large or nested too deep", **PROBLEM},
    "403": DENIED,
    "404": {"description": "No such recording, part or access request", **PROBLEM},
    "409": {"description": "Not possible in the current state", **PROBLEM},
    "416": {"description": "The byte range lies outside the audio", **PROBLEM},
    "422": {"description": "A parameter or the body is malformed", **PROBLEM},
    "429": {"description": "As many exports as the host runs at once are running", **PROBLEM},
    "500": {"description": "The audio failed verification or could not be encoded", **PROBLEM},
    "503": {
        "description": "Not possible on this host now: no transcript model, no signing key "
        "or a full disk (the detail says which)",
        **PROBLEM,
    },
}


def problems(*statuses: str) -> dict[str, Schema]:
    """The response descriptions of ``statuses`` (keys of :data:`PROBLEMS`), for a
    route's ``responses``."""
    return {status: PROBLEMS[status] for status in statuses}


async def answer(work: Callable[[], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """``work``'s response, or the problem document of the use case's error."""
    try:
        return await work()
    except Exception as exc:
        refusal = problem_for(exc)
        if refusal is None:
            raise
        return refusal


def answering(handler: Handler) -> Handler:
    """``handler`` answering the use cases' errors with their problem documents."""

    @functools.wraps(handler)
    async def answered(request: web.Request) -> web.StreamResponse:
        return await answer(lambda: handler(request))

    return answered


def problem_for(exc: Exception) -> web.Response | None:
    """The problem response for ``exc``, or ``None`` if it is not a use case's error
    (a bug: let it reach the server's 500)."""
    if isinstance(exc, AccessDenied):
        decision = exc.decision
        return problem(403, decision.reason, extensions={"rule": decision.rule})
    if isinstance(exc, BodyRefused):
        return problem(exc.status, str(exc))
    if isinstance(exc, RangeNotSatisfiable):
        return problem(416, str(exc), headers={"Content-Range": f"bytes */{exc.length}"})
    if isinstance(exc, RecordingUnreadable):
        log.error("integrity: %s", exc)
        return problem(500, UNREADABLE_DETAIL)
    if isinstance(exc, EncodingError):
        log.error("encoding: %s", exc)
        return problem(500, ENCODING_DETAIL)
    for kind, status in _STATUS.items():
        if isinstance(exc, kind):
            return problem(status, str(exc))
    return None
