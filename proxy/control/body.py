"""Reading a JSON request body safely, for every HTTP API of recproxy (the call
proxy's ``/api/...`` and the records service's ``/api/v1/...``): a body larger than
``MAX_BODY`` bytes or nested deeper than ``MAX_DEPTH`` is refused (400) before it is
parsed — Python's parser would recurse once per level — and one that is not a JSON
object is refused 422."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

MAX_BODY = 16 * 1024  # bytes of JSON a request may carry
MAX_DEPTH = 16  # nesting of arrays and objects


class BodyRefused(Exception):
    """A body refused before the use case sees it: too large or too deep to parse
    (400), not JSON or not a JSON object (422)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, read no further than ``MAX_BODY`` bytes and checked
    for depth before parsing."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise BodyRefused(400, f"the body is larger than {MAX_BODY} bytes")
    data = await request.content.read(MAX_BODY + 1)
    if len(data) > MAX_BODY:
        raise BodyRefused(400, f"the body is larger than {MAX_BODY} bytes")
    if json_depth(data) > MAX_DEPTH:
        raise BodyRefused(400, f"the JSON is nested deeper than {MAX_DEPTH} levels")
    try:
        body = json.loads(data)
    except ValueError:
        raise BodyRefused(422, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BodyRefused(422, "the body must be a JSON object")
    return body


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
