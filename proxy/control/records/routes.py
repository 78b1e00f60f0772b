"""Routes of the records service, each with its OpenAPI description, in one registry.

A route module adds its endpoints where it defines them::

    def add_routes(routes: Routes) -> None:
        routes.add("GET", "/api/v1/recordings/{id}", recording,
                   summary="A recording's metadata, parts, holds and your access",
                   responses={"200": ok_json("The recording"), "404": PROBLEM})

and every handler so added runs only for a signed-in user (``public=True`` for the few
that do not: login, health, the OpenAPI document itself); inside it,
``current_user(request)`` and ``current_actor(request)`` (``.auth``) say who.  The
OpenAPI 3.1 document served at ``GET /api/v1/openapi.json`` is built from this registry,
so a route cannot exist undescribed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from .auth import COOKIE, CSRF_HEADER, require_user

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Schema = Mapping[str, Any]

API = "/api/v1"
OPENAPI_PATH = f"{API}/openapi.json"
PROBLEM: Schema = {
    "description": "An RFC 9457 problem document",
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}
UNAUTHORISED = {"description": "Not signed in, or the session ended", **PROBLEM}


def ok_json(description: str, schema: Schema | None = None) -> Schema:
    """A 200 (or other) response description with a JSON body."""
    return {
        "description": description,
        "content": {"application/json": {"schema": dict(schema or {"type": "object"})}},
    }


class Routes:
    """The application's routes and their OpenAPI operations, added together."""

    def __init__(self, app: web.Application, *, title: str, version: str) -> None:
        self.app = app
        self._title = title
        self._version = version
        self._paths: dict[str, dict[str, dict[str, Any]]] = {}
        self.add(
            "GET",
            OPENAPI_PATH,
            self._serve_document,
            summary="This OpenAPI document",
            public=True,
            responses={"200": ok_json("The OpenAPI 3.1 document")},
        )

    def add(
        self,
        method: str,
        path: str,
        handler: Handler,
        *,
        summary: str,
        responses: Mapping[str, Schema],
        public: bool = False,
        request_body: Schema | None = None,
        parameters: tuple[Schema, ...] = (),
    ) -> None:
        """Route ``method path`` to ``handler`` and describe it.  Unless ``public``, the
        handler runs only for a signed-in user (401 otherwise; 403 for a cookie session's
        unsafe request without its CSRF token)."""
        self.app.router.add_route(method, path, handler if public else require_user(handler))
        operation: dict[str, Any] = {"summary": summary, "responses": dict(responses)}
        if not public:
            operation["security"] = [{"bearer": []}, {"cookie": [], "csrf": []}]
            operation["responses"].setdefault("401", UNAUTHORISED)
        if request_body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": dict(request_body)}},
            }
        placeholders = [part[1:-1] for part in path.split("/") if part.startswith("{")]
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in placeholders
        ] + [dict(p) for p in parameters]
        if params:
            operation["parameters"] = params
        self._paths.setdefault(path, {})[method.lower()] = operation

    def document(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document of every route added so far."""
        return {
            "openapi": "3.1.0",
            "info": {"title": self._title, "version": self._version},
            "paths": {path: dict(ops) for path, ops in sorted(self._paths.items())},
            "components": {
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer"},
                    "cookie": {"type": "apiKey", "in": "cookie", "name": COOKIE},
                    "csrf": {"type": "apiKey", "in": "header", "name": CSRF_HEADER},
                },
                "schemas": {
                    "Problem": {
                        "type": "object",
                        "required": ["type", "title", "status"],
                        "properties": {
                            "type": {"type": "string"},
                            "title": {"type": "string"},
                            "status": {"type": "integer"},
                            "detail": {"type": "string"},
                        },
                    }
                },
            },
        }

    async def _serve_document(self, request: web.Request) -> web.Response:
        return web.json_response(self.document())
