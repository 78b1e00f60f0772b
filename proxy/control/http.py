"""The HTTP service (aiohttp): health now; the call-taker API and metrics build on it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from .metrics import CONTENT_TYPE

HealthCheck = Callable[[], dict[str, Any]]

HEALTH_KEY: web.AppKey[HealthCheck] = web.AppKey("health")
METRICS_KEY: web.AppKey[Callable[[], bytes]] = web.AppKey("metrics")


def build_app(health: HealthCheck, metrics: Callable[[], bytes] | None = None) -> web.Application:
    """The application; ``health()`` returns a dict with at least ``ok: bool``;
    ``metrics()`` the Prometheus text exposition served at /metrics."""
    app = web.Application()
    app[HEALTH_KEY] = health
    app.router.add_get("/healthz", _healthz)
    if metrics is not None:
        app[METRICS_KEY] = metrics
        app.router.add_get("/metrics", _metrics)
    return app


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS_KEY](), headers={"Content-Type": CONTENT_TYPE})


async def _healthz(request: web.Request) -> web.Response:
    report = request.app[HEALTH_KEY]()
    return web.json_response(report, status=200 if report.get("ok") else 503)


class HttpServer:
    """Runs an application on one address beside the SIP and RTP endpoints."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self.bound: tuple[str, int] | None = None

    async def start(self) -> None:
        runner = web.AppRunner(self.app, access_log=None)
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
