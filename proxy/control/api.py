"""The call takers' HTTP API (P14): see your active calls, switch their recording.

    GET  /api/calls                      your active calls
    POST /api/calls/{id}/recording       {"action": "stop"|"discard"|"resume", "reason": "..."}

Every request carries ``Authorization: Bearer <token>``; the token's SHA-256 is matched
against ``[[operators]] token_sha256`` in the configuration (the token itself is never
stored).  A call taker sees and acts on their own calls only: 401 without a valid token,
403 for someone else's call, 404 for a call that is not active, 422 for a missing
reason or an unknown action, 409 when the recording cannot take that action now.
Errors are problem documents (``application/problem+json``); a JSON body larger than
``MAX_BODY`` bytes or nested deeper than ``MAX_DEPTH`` is refused 400 before it is
parsed (Python's parser would recurse once per level).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from ..config import OperatorSettings
from ..records.errors import RecordingActionError
from .problem import problem

ACTIONS = ("stop", "discard", "resume")
MAX_REASON = 500
MAX_BODY = 16 * 1024  # bytes of JSON a request may carry
MAX_DEPTH = 16  # nesting of arrays and objects


class BodyRefused(Exception):
    """A JSON body too large or too deep to parse (HTTP 400)."""


class ControllableCall(Protocol):
    """What the API needs of an active call (``proxy.calls.b2bua.Call``)."""

    id: str
    caller: str
    callee: str

    @property
    def operator(self) -> str | None: ...

    def describe(self) -> dict[str, Any]: ...

    async def recording_action(
        self, action: str, *, actor: str, channel: str, reason: str
    ) -> dict[str, Any]: ...


CallsView = Callable[[], Mapping[str, ControllableCall]]

OPERATORS_KEY: web.AppKey[Sequence[OperatorSettings]] = web.AppKey("operators")
CALLS_KEY: web.AppKey[CallsView] = web.AppKey("calls")


@dataclass(frozen=True)
class Operator:
    name: str
    team: str | None


def add_routes(
    app: web.Application, calls: CallsView, operators: Sequence[OperatorSettings]
) -> None:
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
    calls = request.app[CALLS_KEY]()
    mine = [call.describe() for call in calls.values() if call.operator == operator.name]
    return web.json_response({"calls": mine})


async def _recording_action(request: web.Request, operator: Operator) -> web.StreamResponse:
    call = request.app[CALLS_KEY]().get(request.match_info["call_id"])
    if call is None:
        return _error(404, "no such active call")
    if call.operator != operator.name:
        return _error(403, "this call is not yours")
    try:
        body = await _json_body(request)
    except BodyRefused as exc:
        return _error(400, str(exc))
    except ValueError:
        return _error(422, 'the body must be JSON: {"action": ..., "reason": ...}')
    if not isinstance(body, dict):
        return _error(422, "the body must be a JSON object")
    action = body.get("action")
    reason = body.get("reason")
    if action not in ACTIONS:
        return _error(422, f"action must be one of {', '.join(ACTIONS)}")
    if not isinstance(reason, str) or not reason.strip():
        return _error(422, "a reason is required")
    if len(reason) > MAX_REASON:
        return _error(422, f"the reason is longer than {MAX_REASON} characters")
    try:
        result = await call.recording_action(
            action, actor=operator.name, channel="api", reason=reason.strip()
        )
    except RecordingActionError as exc:
        return _error(409, str(exc))
    return web.json_response(result)


async def _json_body(request: web.Request) -> Any:
    """The request's JSON, read no further than ``MAX_BODY`` bytes and checked for depth
    before parsing."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise BodyRefused(f"the body is larger than {MAX_BODY} bytes")
    data = await request.content.read(MAX_BODY + 1)
    if len(data) > MAX_BODY:
        raise BodyRefused(f"the body is larger than {MAX_BODY} bytes")
    if json_depth(data) > MAX_DEPTH:
        raise BodyRefused(f"the JSON is nested deeper than {MAX_DEPTH} levels")
    return json.loads(data)


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in JSON text, strings skipped (one
    linear pass; the text need not be valid)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def _error(status: int, message: str, *, www_authenticate: bool = False) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="recproxy"'} if www_authenticate else None
    return problem(status, message, headers=headers)


def token_hash(token: str) -> str:
    """What goes into ``[[operators]] token_sha256`` for a token."""
    return hashlib.sha256(token.encode()).hexdigest()
