"""The HTTP service (aiohttp): health now; the call-taker API and metrics build on it.

Errors are RFC 9457 problem documents (``application/problem+json``), including the
ones aiohttp raises before any handler runs: a request whose header section is too
large is answered 431, one it cannot parse 400, each logged in one line (rate-limited)
instead of aiohttp's traceback, and before any token is looked at.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from ..ratelog import RateLimitedLog
from .metrics import CONTENT_TYPE
from .problem import problem, problems

log = logging.getLogger(__name__)
_refused_log = RateLimitedLog(log)


HealthCheck = Callable[[], dict[str, Any]]

HEALTH_KEY: web.AppKey[HealthCheck] = web.AppKey("health")
METRICS_KEY: web.AppKey[Callable[[], bytes]] = web.AppKey("metrics")


def build_app(health: HealthCheck, metrics: Callable[[], bytes] | None = None) -> web.Application:
    """The application; ``health()`` returns a dict with at least ``ok: bool``;
    ``metrics()`` the Prometheus text exposition served at /metrics."""
    app = web.Application(middlewares=[problems])
    app[HEALTH_KEY] = health
    app.router.add_get("/healthz", healthz)
    if metrics is not None:
        app[METRICS_KEY] = metrics
        app.router.add_get("/metrics", _metrics)
    return app


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS_KEY](), headers={"Content-Type": CONTENT_TYPE})


async def healthz(request: web.Request) -> web.Response:
    report = request.app[HEALTH_KEY]()
    return web.json_response(report, status=200 if report.get("ok") else 503)


class _ProblemHandler(RequestHandler):
    """aiohttp's connection handler, answering requests it could not parse as above."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, BadHttpMessage):
            return super().handle_error(request, status, exc, message)
        too_large = isinstance(exc, LineTooLong) or "too many headers" in str(exc).lower()
        code = 431 if too_large else 400
        _refused_log.info(
            f"http-{code}", "HTTP request from %s refused %d: %s", request.remote, code, exc
        )
        detail = "the request's header section is too large" if too_large else str(exc)
        response = problem(code, detail)
        response.force_close()
        return response


class _ProblemServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _ProblemHandler(self, loop=self._loop, **self._kwargs)


class _Runner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # aiohttp builds its Server inside Application; only the connection handler
        # it makes differs here, so the class is swapped rather than the app rebuilt
        server.__class__ = _ProblemServer
        return server


class HttpServer:
    """Runs an application on one address beside the SIP and RTP endpoints."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self.bound: tuple[str, int] | None = None

    async def start(self) -> None:
        runner = _Runner(self.app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        await site.start()
        self._runner = runner
        server = site._server  # the bound port when 0 was asked for
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            name = sockets[0].getsockname()
            self.bound = (str(name[0]), int(name[1]))
        else:
            self.bound = (self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
