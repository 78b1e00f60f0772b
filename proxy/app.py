"""The running proxy: every part built from the configuration, started and stopped in
order, on one event loop.

    catalog → recovery → webhook → writer thread → recorder + media clock → SIP → HTTP

``serve(config)`` runs until SIGTERM or SIGINT, then shuts down gracefully: new calls
get 503, active calls have ``shutdown.grace_seconds`` to finish, the rest are ended with
BYE and their recordings closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from .calls.b2bua import REFUSED_METHODS, B2bua, Prompt
from .calls.recording import RecordingService
from .config import Config
from .control.api import add_routes
from .control.http import HttpServer, build_app
from .control.metrics import Metrics, event_loop_name
from .control.webhook import WebhookSender
from .events import EventBus, RecordingSwitched
from .media.announcer import load_prompt
from .media.clock import MediaClock
from .media.recorder import Recorder
from .media.relay import PortAllocator
from .sip.core import ALLOWED_METHODS, CoreSettings, SipCore
from .sip.flood import FloodSettings
from .sip.transport import SipTransport, TcpLimits
from .storage import crypto
from .storage.catalog import SqliteCatalog
from .storage.store import LocalDiskStore
from .storage.writer import RecordingWriter

log = logging.getLogger("recproxy")

PASSPHRASE_ENV = "RECPROXY_KEY_PASSPHRASE"
WEBHOOK_SECRET_ENV = "RECPROXY_WEBHOOK_SECRET"


class StartupError(RuntimeError):
    """The proxy cannot start (a missing key, a port in use...): the message says why."""


def ensure_keys(config: Config) -> X25519PublicKey:
    """The public recording key.  On first run with none, a development key pair is made
    next to it, with a loud warning: in production the private key belongs elsewhere."""
    public = config.recording.public_key
    private = config.recording.private_key
    if public.exists():
        try:
            return crypto.load_public_key(public)
        except crypto.StorageCryptoError as exc:
            raise StartupError(f"recording.public_key {public}: {exc}") from None
    if private.exists():
        raise StartupError(
            f"recording.public_key {public} is missing but a private key exists at {private}; "
            "restore the public key (recproxy keygen writes both)"
        )
    passphrase = os.environ.get(PASSPHRASE_ENV)
    private_key, public_key = crypto.generate_keypair()
    private.parent.mkdir(parents=True, exist_ok=True)
    public.parent.mkdir(parents=True, exist_ok=True)
    crypto.save_private_key(private, private_key, passphrase.encode() if passphrase else None)
    crypto.save_public_key(public, public_key)
    log.warning(
        "DEVELOPMENT KEY: no recording key was configured, so a new key pair was made: "
        "public %s, private %s (%s). Recordings can only ever be read with that private key. "
        "For production run `recproxy keygen` on a secure machine, keep the private key "
        "off this host and configure only recording.public_key.",
        public,
        private,
        "passphrase-protected" if passphrase else "NOT passphrase-protected",
    )
    return public_key


def load_notice(path: Path, key: str = "notice.prompt") -> Prompt:
    try:
        data = path.read_bytes()
        pcm = load_prompt(path)
    except OSError as exc:
        raise StartupError(f"{key} {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise StartupError(f"{key} {path}: {exc}") from None
    duration_ms = len(pcm) * 1000 // 8000
    if duration_ms < 200:
        raise StartupError(f"{key} {path}: only {duration_ms} ms of audio")
    return Prompt(pcm, hashlib.sha256(data).hexdigest(), duration_ms, path.name)


class Server:
    """All the parts of one proxy process."""

    def __init__(self, config: Config, *, metrics: Metrics | None = None) -> None:
        self.config = config
        self.catalog: SqliteCatalog | None = None
        self.writer: RecordingWriter | None = None
        self.recorder: Recorder | None = None
        self.clock: MediaClock | None = None
        self.recordings: RecordingService | None = None
        self.webhook: WebhookSender | None = None
        self.core: SipCore | None = None
        self.transport: SipTransport | None = None
        self.b2bua: B2bua | None = None
        self.http: HttpServer | None = None
        self.metrics = metrics or Metrics()  # its own registry, not the global one
        self.ready = False

    async def start(self) -> None:
        config = self.config
        notice = load_notice(config.notice.prompt)
        prompts = {config.notice.prompt: notice}
        others = [("notice.no_record_prompt", config.notice.no_record_prompt)] + [
            (f"services.{name}.prompt", service.prompt)
            for name, service in config.services.items()
            if service.prompt is not None
        ]
        for key, path in others:
            if path not in prompts:
                prompts[path] = load_notice(path, key)
        public_key = ensure_keys(config)
        config.recording.dir.mkdir(parents=True, exist_ok=True)
        config.catalog.path.parent.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()

        self.catalog = await SqliteCatalog(
            config.catalog.path,
            synchronous="FULL" if config.catalog.synchronous == "full" else "NORMAL",
        ).open()
        self.writer = RecordingWriter(
            LocalDiskStore(fsync=config.recording.fsync),  # type: ignore[arg-type]
            loop=loop,
            on_write=self.metrics.observe_write_seconds,
        )
        self.recorder = Recorder(
            self.writer.sink,
            pause_mode=config.recording.pause_mode,
            jitter_depth=max(1, config.media.jitter_ms // 20),
        )
        self.recordings = RecordingService(
            config.recording, self.catalog, self.recorder, self.writer, public_key
        )
        interrupted = await self.recordings.recover()
        if interrupted:
            log.warning("%d recording(s) marked interrupted after a crash", len(interrupted))
        if config.webhook.url:
            await self._start_webhook(self.recordings)
        self.clock = MediaClock(self.recorder, on_lag=self.metrics.observe_loop_lag)
        self.clock.start()

        host, port = config.sip.listen
        limits = config.limits
        self.core = SipCore(
            CoreSettings(
                host=config.sip.advertise,
                port=port,
                user_agent=config.sip.user_agent,
                allowed_methods=ALLOWED_METHODS,
                refused_by_tu=tuple(REFUSED_METHODS),
                flood=FloodSettings(
                    requests_per_second=limits.requests_per_second,
                    request_burst=limits.request_burst,
                    refusals_per_second=limits.refusals_per_second,
                    refusal_burst=limits.refusal_burst,
                    retry_after_seconds=limits.retry_after_seconds,
                ),
                max_server_transactions=limits.max_transactions,
                max_dialogs=limits.max_dialogs,
            )
        )
        allocator = PortAllocator(*config.media.rtp_ports)
        events = EventBus()  # the coordinator's app factory owns the bus (issue 13)
        metrics = self.metrics
        events.subscribe(RecordingSwitched, lambda e: metrics.recording_action(e.action, e.channel))
        self.b2bua = B2bua(
            config,
            self.core,
            allocator,
            self.clock,
            self.catalog,
            self.recordings,
            notice,
            prompts,
            publish=events.publish,
        )
        self.core.admission = self.b2bua.admit
        self.transport = SipTransport(
            self.core,
            self.b2bua.on_event,
            tcp_limits=TcpLimits(
                max_inbound=limits.tcp_max_connections,
                max_inbound_per_source=limits.tcp_max_connections_per_source,
                idle_seconds=limits.tcp_idle_seconds,
                header_seconds=limits.tcp_header_seconds,
            ),
        )
        self.b2bua.transport = self.transport
        try:
            await self.transport.start(
                host,
                port,
                udp="udp" in config.sip.transports,
                tcp="tcp" in config.sip.transports,
            )
        except OSError as exc:
            raise StartupError(f"sip.listen {host}:{port}: {exc.strerror or exc}") from None
        bound = self.transport.udp_address or self.transport.tcp_address
        if bound is not None and bound[1] != port:  # port 0: advertise the real one
            self.core.settings = replace(self.core.settings, port=bound[1])

        self.metrics.attach(
            b2bua=self.b2bua,
            core=self.core,
            allocator=allocator,
            clock=self.clock,
            recorder=self.recorder,
            writer=self.writer,
            recording_service=self.recordings,
            recordings_dir=config.recording.dir,
            loop_name=event_loop_name(),
            webhook=self.webhook,
        )
        http_app = build_app(self.health, self.metrics.render)
        b2bua = self.b2bua
        add_routes(http_app, lambda: b2bua.calls, config.operators)
        self.http = HttpServer(http_app, *config.http.listen)
        try:
            await self.http.start()
        except OSError as exc:
            raise StartupError(f"http.listen {config.http.listen}: {exc.strerror or exc}") from None
        self.ready = True
        log.info(
            "recproxy listening: SIP %s:%s (%s), RTP %s-%s, HTTP %s:%s; call taker %s",
            host,
            self.sip_port,
            "/".join(config.sip.transports),
            *config.media.rtp_ports,
            *(self.http.bound or config.http.listen),
            config.routing.call_taker,
        )

    async def _start_webhook(self, recordings: RecordingService) -> None:
        secret = os.environ.get(WEBHOOK_SECRET_ENV)
        self.webhook = WebhookSender(
            self.config.webhook,
            self.config.webhook_queue_dir,
            secret=secret.encode() if secret else None,
        )
        try:
            await self.webhook.start()
        except OSError as exc:
            self.webhook = None
            raise StartupError(
                f"webhook.queue_dir {self.config.webhook_queue_dir}: {exc.strerror or exc}"
            ) from None
        recordings.subscribe(self.webhook.publish)

    @property
    def sip_port(self) -> int:
        if self.core is None:
            return self.config.sip.listen[1]
        return self.core.settings.port

    def health(self) -> dict[str, Any]:
        ok = self.ready and self.transport is not None and self.clock is not None
        stalled = (
            self.clock.stalled(self.config.media.clock_stall_seconds)
            if self.clock is not None
            else None
        )
        b2bua = self.b2bua
        report: dict[str, Any] = {
            "ok": ok and stalled is None,
            "sip": {"port": self.sip_port, "transports": list(self.config.sip.transports)},
            "rtp": {
                "ports": list(self.config.media.rtp_ports),
                "in_use": b2bua.allocator.in_use if b2bua else 0,
            },
            "calls": len(b2bua.calls) if b2bua else 0,
            "accepting": bool(b2bua and b2bua.accepting),
        }
        if stalled is not None:
            report["reason"] = stalled  # the watchdog: ticks stopped or lag
        return report

    async def stop(self) -> None:
        """Graceful: 503 for new calls, active calls get the grace period, then BYE."""
        self.ready = False
        if self.b2bua is not None:
            await self.b2bua.shutdown(self.config.shutdown.grace_seconds)
        if self.http is not None:
            await self.http.stop()
        if self.transport is not None:
            await asyncio.sleep(0.1)  # let the last BYEs and their answers go out
            await self.transport.close()
        if self.clock is not None:
            self.clock.stop()
        if self.recorder is not None:
            self.recorder.close_all()
        if self.writer is not None:
            await asyncio.to_thread(self.writer.stop)
        if self.recordings is not None:
            await self.recordings.journal.wait_empty(min(5.0, self.config.shutdown.grace_seconds))
            await self.recordings.journal.close()
        if self.webhook is not None:  # after the last recording ended: its event is queued
            await self.webhook.stop()
        if self.catalog is not None:
            await self.catalog.close()


async def serve(config: Config, *, ready: asyncio.Event | None = None) -> None:
    """Run the proxy until SIGTERM/SIGINT."""
    server = Server(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info(
            "shutting down: new calls refused, %d active",
            len(server.b2bua.calls) if server.b2bua else 0,
        )
    finally:
        await server.stop()
