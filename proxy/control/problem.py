"""RFC 9457 problem documents: the body of every HTTP error the service sends."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

from aiohttp import web

PROBLEM_JSON = "application/problem+json"


def problem(
    status: int,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> web.Response:
    """What went wrong, for a person (``detail``) and a program (``status``, and any
    RFC 9457 extension members such as the access policy's ``rule``)."""
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status}
    return web.json_response(
        {**body, "detail": detail, **(extensions or {})},
        status=status,
        headers=headers,
        content_type=PROBLEM_JSON,
    )


@web.middleware
async def problems(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """aiohttp's own errors (unknown path, wrong method, ...) as problem documents, so a
    client of either service reads every error the same way."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return problem(exc.status, exc.reason, headers=headers)
