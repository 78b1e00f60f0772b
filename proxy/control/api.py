"""The call takers' HTTP API (P14): see your active calls, switch their recording.

    GET  /api/calls                      your active calls
    POST /api/calls/{id}/recording       {"action": "stop"|"discard"|"resume", "reason": "..."}

Holds are not here: they are decisions about recordings, made by signed-in records
officers and the DPO in the records service (``/api/v1/holds``, issue 15).

Every request carries ``Authorization: Bearer <token>``; the token's SHA-256 is matched
against ``[[operators]] token_sha256`` in the configuration (the token itself is never
stored).  The policy — a call taker sees and acts on their own calls only, the actions,
the reason — is the use case's (``proxy.records.live``); this module authenticates, reads
the request and maps the use case's errors to statuses: 401 without a valid token, 403
for someone else's call, 404 for a call that is not active, 422 for a missing reason or
an unknown action, 409 when the recording cannot take that action now.
Errors are problem documents (``application/problem+json``); a JSON body larger than
``MAX_BODY`` bytes or nested deeper than ``MAX_DEPTH`` is refused 400 before it is
parsed (Python's parser would recurse once per level).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from ..config import OperatorSettings
from ..records.errors import (
    CallNotFound,
    InvalidRecordingRequest,
    NotYourCall,
    RecordingActionError,
)
from ..records.live import LiveCall, control_recording, own_call, own_calls
from .body import MAX_BODY as MAX_BODY
from .body import BodyRefused, json_object
from .problem import problem

# the use case's errors, as statuses
ERROR_STATUS: dict[type[Exception], int] = {
    CallNotFound: 404,
    NotYourCall: 403,
    InvalidRecordingRequest: 422,
    RecordingActionError: 409,
}


class ControllableCall(LiveCall, Protocol):
    """What the API needs of an active call (``proxy.calls.b2bua.Call``): what the use
    case needs, and the view it lists."""

    def describe(self) -> dict[str, Any]: ...


CallsView = Callable[[], Mapping[str, ControllableCall]]

OPERATORS_KEY: web.AppKey[Sequence[OperatorSettings]] = web.AppKey("operators")
CALLS_KEY: web.AppKey[CallsView] = web.AppKey("calls")


def error_status(exc: Exception) -> int:
    """The status of one of the use case's errors (``ERROR_STATUS``); the console's
    recording forms answer with the same."""
    return next(code for kind, code in ERROR_STATUS.items() if isinstance(exc, kind))


@dataclass(frozen=True)
class Operator:
    name: str
    team: str | None


def add_routes(
    app: web.Application, calls: CallsView, operators: Sequence[OperatorSettings]
) -> None:
    """The call routes."""
    app[OPERATORS_KEY] = tuple(operators)
    app[CALLS_KEY] = calls
    app.router.add_get("/api/calls", _authenticated(_list_calls))
    app.router.add_post("/api/calls/{call_id}/recording", _authenticated(_recording_action))


Handler = Callable[[web.Request, Operator], Awaitable[web.StreamResponse]]


def _authenticated(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def wrapper(request: web.Request) -> web.StreamResponse:
        operator = _operator(request)
        if operator is None:
            return _error(401, "a valid operator token is required", www_authenticate=True)
        return await handler(request, operator)

    return wrapper


def _operator(request: web.Request) -> Operator | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    digest = hashlib.sha256(token.strip().encode()).hexdigest()
    found: Operator | None = None
    for entry in request.app[OPERATORS_KEY]:
        # compare every entry in constant time: no timing hint about which tokens exist
        if hmac.compare_digest(digest, entry.token_sha256):
            found = Operator(entry.name, entry.team)
    return found


async def _list_calls(request: web.Request, operator: Operator) -> web.StreamResponse:
    mine = own_calls(request.app[CALLS_KEY](), operator.name)
    return web.json_response({"calls": [call.describe() for call in mine]})


async def _recording_action(request: web.Request, operator: Operator) -> web.StreamResponse:
    calls, call_id = request.app[CALLS_KEY](), request.match_info["call_id"]

    async def act() -> web.StreamResponse:
        own_call(calls, call_id, operator.name)  # someone else's request is never read
        body = await json_object(request)
        result = await control_recording(
            calls, call_id, operator.name, body.get("action"), body.get("reason"), channel="api"
        )
        return web.json_response(result)

    return await _answer(act)


async def _answer(work: Callable[[], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """``work``'s response, or the problem document for a use case's error or a refused
    body."""
    try:
        return await work()
    except tuple(ERROR_STATUS) as exc:
        return _error(error_status(exc), str(exc))
    except BodyRefused as exc:
        return _error(exc.status, str(exc))


def _error(status: int, message: str, *, www_authenticate: bool = False) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="recproxy"'} if www_authenticate else None
    return problem(status, message, headers=headers)


def token_hash(token: str) -> str:
    """What goes into ``[[operators]] token_sha256`` for a token."""
    return hashlib.sha256(token.encode()).hexdigest()
