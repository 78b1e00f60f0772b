"""Query parameters as the records endpoints read them: each named at most once, and
only those the endpoint knows — a repeated or unknown one is bad input (422), never
silently the first of several or ignored (a misspelt filter would widen a search)."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from aiohttp import web

from ...records.errors import InvalidAccessRequest
from .routes import Schema


def query_values(request: web.Request, known: Collection[str]) -> dict[str, str]:
    """The request's query parameters by name; ``InvalidAccessRequest`` naming the first
    unknown or repeated one."""
    values: dict[str, str] = {}
    for name, value in request.query.items():
        if name not in known:
            raise InvalidAccessRequest(
                f"unknown query parameter {name!r} (known: {', '.join(known)})"
            )
        if name in values:
            raise InvalidAccessRequest(f"the query parameter {name!r} is given more than once")
        values[name] = value
    return values


def query_parameter(name: str, description: str, schema: Mapping[str, object]) -> Schema:
    """The OpenAPI description of an optional query parameter."""
    return {"name": name, "in": "query", "description": description, "schema": dict(schema)}
