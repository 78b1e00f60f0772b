"""The app factory: every part of the running proxy built from the typed configuration,
in dependency order, on one event loop.

    catalog → config version → audit anchoring → webhook → writer thread + recorder +
    recording service → recovery → retention sweeper → media clock → SIP core, B2BUA,
    transport → HTTP

``open_server(config)`` is an async context manager: each resource is registered on one
``AsyncExitStack`` as it starts, so a start-up failure closes what was opened, and
leaving closes everything in reverse order after the calls are drained.  There is one
``EventBus``; metrics subscribe to it.  ``serve(config)`` runs until SIGTERM or SIGINT,
then shuts down gracefully: new calls get 503, active calls have
``shutdown.grace_seconds`` to finish, the rest are ended with BYE and their recordings
closed.  Tests build the same app with ``open_server``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from . import records_child
from .calls.b2bua import REFUSED_METHODS, B2bua, CallPhase, Prompt
from .calls.recording import RecordingService
from .catalog_setup import make_catalog
from .config import Config
from .config_version import version_of
from .control.api import add_routes
from .control.console.call_feed import CallFeed
from .control.console.calltaker_pages import CallTakerConsole, add_calltaker_console
from .control.console.ops_page import OpsSources
from .control.fastpath_metrics import FastPathMetrics
from .control.flag_metrics import FlagCounter
from .control.hold_metrics import HoldCounter
from .control.http import HttpServer, build_app
from .control.metrics import CallsSnapshot, Metrics, RecordingsSnapshot, event_loop_name
from .control.retention_metrics import RetentionMetrics
from .control.routing_metrics import RoutingMetrics
from .control.sar_metrics import SarCounter
from .control.tls_metrics import TlsMetrics
from .control.upload_metrics import UploadMetrics
from .control.webhook import WebhookSender
from .control.worker_metrics import WorkerMetrics
from .events import EventBus
from .media.announcer import PromptAudio, load_prompt
from .media.clock import MediaClock
from .media.fastpath import KernelPath, detect, remove_tables
from .media.recorder import Recorder
from .media.relay import PortAllocator
from .media.workers import WorkerPool
from .media.workers.recording_messages import RecorderSetup
from .node_claim import claim_node_name
from .records.accounts import Accounts
from .records.actor import os_account
from .records.audit import AuditAnchoring
from .records.custody import make_development_keys
from .records.keys import audit_key_generated
from .records.retention import RetentionSweeper, sweep_every
from .records_child import RecordsChild
from .segment_stores import segment_store
from .sip.core import ALLOWED_METHODS, CoreSettings, SipCore
from .sip.flood import FloodSettings
from .sip.tls import TlsContexts, TlsSettings, TlsSetupError, load_contexts
from .sip.transport import SipTransport, TcpLimits
from .startup import StartupError as StartupError
from .storage import crypto
from .storage.catalog import Catalog, SqlCatalog
from .storage.catalog.anchor import anchor_path
from .storage.catalog.values import utc_now
from .storage.s3_store import S3SegmentStore
from .storage.store import LocalDiskStore, SegmentStore
from .storage.writer import RecordingWriter

log = logging.getLogger("recproxy")

WEBHOOK_SECRET_ENV = "RECPROXY_WEBHOOK_SECRET"


def ensure_keys(config: Config) -> tuple[X25519PublicKey, bool]:
    """The public recording key, and whether it was made now: on first run with none, a
    development key pair is made next to it by a short-lived key-holder process, with a
    loud warning (in production the private key belongs elsewhere).  This process only
    ever reads the public key.  A key made now is audited once the catalog is open."""
    public = config.recording.public_key
    private = config.recording.private_key
    if public.exists():
        try:
            return crypto.load_public_key(public), False
        except crypto.StorageCryptoError as exc:
            raise StartupError(f"recording.public_key {public}: {exc}") from None
    if private.exists():
        raise StartupError(
            f"recording.public_key {public} is missing but a private key exists at {private}; "
            "restore the public key (recproxy keygen writes both)"
        )
    protected = make_development_keys(config)
    log.warning(
        "DEVELOPMENT KEY: no recording key was configured, so a new key pair was made: "
        "public %s, private %s (%s). Recordings can only ever be read with that private key. "
        "For production run `recproxy keygen` on a secure machine, keep the private key "
        "off this host and configure only recording.public_key. A development "
        "export-signing key is made beside it when none exists (export.signing_key; "
        "production: `recproxy keygen --signing`).",
        public,
        private,
        "passphrase-protected" if protected else "NOT passphrase-protected",
    )
    try:
        return crypto.load_public_key(public), True
    except crypto.StorageCryptoError as exc:
        raise StartupError(f"recording.public_key {public}: {exc}") from None


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
    return Prompt(PromptAudio(pcm), hashlib.sha256(data).hexdigest(), duration_ms, path.name)


def load_prompts(config: Config) -> tuple[Prompt, dict[Path, Prompt]]:
    """The notice, and every prompt the configuration names (by path, loaded once)."""
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
    return notice, prompts


class Health:
    """``GET /healthz``: ready (started, not draining) and the media clock ticking."""

    def __init__(self, config: Config, clock: MediaClock, b2bua: B2bua) -> None:
        self.ready = False
        self._config = config
        self._clock = clock
        self._b2bua = b2bua

    def __call__(self) -> dict[str, Any]:
        config, b2bua = self._config, self._b2bua
        stalled = self._clock.stalled(config.media.clock_stall_seconds)
        report: dict[str, Any] = {
            "ok": self.ready and stalled is None,
            "sip": {"port": b2bua.core.settings.port, "transports": list(config.sip.transports)},
            "rtp": {"ports": list(config.media.rtp_ports), "in_use": b2bua.allocator.in_use},
            "calls": len(b2bua.calls),
            "recording_sessions": len(b2bua.recording_sessions),  # SIPREC (docs/siprec.md)
            "accepting": b2bua.accepting,
        }
        if stalled is not None:
            report["reason"] = stalled  # the watchdog: ticks stopped or lag
        return report


@dataclass(frozen=True, eq=False)
class Server:
    """All the parts of one running proxy, as ``open_server`` built and started them.
    ``webhook`` is ``None`` when no ``webhook.url`` is configured."""

    config: Config
    bus: EventBus
    metrics: Metrics
    catalog: SqlCatalog
    writer: RecordingWriter
    recorder: Recorder
    recordings: RecordingService
    webhook: WebhookSender | None
    clock: MediaClock
    core: SipCore
    b2bua: B2bua
    transport: SipTransport
    health: Health
    http: HttpServer

    @property
    def sip_port(self) -> int:
        return self.core.settings.port

    async def drain(self) -> None:
        """Graceful: 503 for new calls, active calls get the grace period, then BYE."""
        self.health.ready = False
        await self.b2bua.shutdown(self.config.shutdown.grace_seconds)


def calls_snapshot(b2bua: B2bua) -> CallsSnapshot:
    """The calls for metrics: by phase, INVITEs refused before a call began, and the
    jitter-buffer drops of calls not yet ended (an ended call's are in its ``CallEnded``).
    Built here, where calls and metrics meet: neither layer knows the other."""
    phases = dict.fromkeys((phase.value for phase in CallPhase), 0)
    late = duplicates = 0
    for call in list(b2bua.calls.values()):
        phases[call.phase.value] += 1
        if call.phase is not CallPhase.ENDED and call.recording is not None:
            for direction in (call.recording.pair.caller, call.recording.pair.taker):
                late += direction.jitter.stats.late
                duplicates += direction.jitter.stats.duplicates
    return CallsSnapshot(phases, dict(b2bua.stats), late, duplicates)


def recordings_snapshot(service: RecordingService) -> RecordingsSnapshot:
    """The recording service for metrics (a ``RecordingService.snapshot()`` later)."""
    return RecordingsSnapshot(
        len(service.active),
        dict(service.failures),
        dict(service.degraded),
        service.journal.pending,
        service.journal.dropped,
    )


@contextlib.asynccontextmanager
async def open_server(config: Config, *, metrics: Metrics | None = None) -> AsyncIterator[Server]:
    """Build every part from ``config`` in dependency order and start it; on leaving,
    drain the calls and close everything in reverse order:

        calls drained → HTTP → flag, hold and subject access metrics tasks → SIP
        transport → media clock → retention sweeper → recorder, writer thread, catalog
        journal → webhook → audit anchoring → catalog

    Raises ``StartupError`` (after closing what was opened) when a part cannot start.
    ``metrics``: a fresh ``Metrics`` when none is given (never the global registry)."""
    async with contextlib.AsyncExitStack() as stack:
        server = await _build(config, stack, metrics if metrics is not None else Metrics())
        stack.push_async_callback(server.drain)
        server.health.ready = True
        yield server


async def _build(config: Config, stack: contextlib.AsyncExitStack, metrics: Metrics) -> Server:
    notice, prompts = load_prompts(config)
    public_key, key_made = ensure_keys(config)
    config.recording.dir.mkdir(parents=True, exist_ok=True)
    config.catalog.path.parent.mkdir(parents=True, exist_ok=True)
    loop = asyncio.get_running_loop()
    bus = EventBus()
    metrics.subscribe(bus)
    RetentionMetrics(metrics.registry).subscribe(bus)
    RoutingMetrics(metrics.registry).subscribe(bus)  # issue 18: call takers' health
    call_feed = CallFeed()  # the call takers' pages, live (issue 17)
    call_feed.subscribe(bus)

    catalog = await make_catalog(config.catalog).open()
    stack.push_async_callback(catalog.close)
    # issue 20: this node's name is its own while it runs (before start-up recovery)
    stack.callback((await asyncio.to_thread(claim_node_name, config)).release)
    config_version = await _record_config_version(config, catalog, prompts)
    if key_made:
        await audit_key_generated(catalog.audit, public_key, actor="recproxy serve")
    anchoring = AuditAnchoring(
        catalog.audit,
        anchor_path(config.catalog.path),
        config.audit.anchor_interval_seconds,
        clock=utc_now,
        publish=bus.publish,
    )
    anchoring.start()
    stack.push_async_callback(anchoring.stop)  # before the catalog closes
    webhook = await _start_webhook(config, stack) if config.webhook.url else None
    # issue 20: the disk, or a bucket through the spool (closed after the writer stops)
    store = stack.enter_context(segment_store(config, uploads=True))
    if isinstance(store, S3SegmentStore):
        UploadMetrics(metrics.registry, store.snapshot)
    writer, recorder, recordings = await stack.enter_async_context(
        _recording_pipeline(config, catalog, public_key, metrics, bus, loop, store)
    )
    interrupted = await recordings.recover()
    if interrupted:
        log.warning("%d recording(s) marked interrupted after a crash", len(interrupted))
    if isinstance(store, S3SegmentStore):  # recovery has seen the spool: upload it now
        log.info("segments: %d spooled file(s) queued for upload", store.resume())
    _start_sweeper(config, catalog, bus, stack, store)
    if webhook is not None:
        webhook.subscribe(bus)
    clock = MediaClock(recorder, on_lag=metrics.observe_loop_lag)
    clock.start()
    stack.callback(clock.stop)

    host, port = config.sip.listen
    core = SipCore(
        _core_settings(config, port),
        # the B2BUA (below) needs the core; the core asks it only once the transport
        # delivers requests, after both exist
        admission=lambda request, source: b2bua.admit(request, source),
    )
    allocator = PortAllocator(*config.media.rtp_ports)
    b2bua = B2bua(
        config,
        core,
        allocator,
        clock,
        catalog,
        recordings,
        notice,
        prompts,
        publish=bus.publish,
        # the transport delivers to the B2BUA, so it is built after it
        flush=lambda: transport.flush(),
        config_version=config_version,
    )
    if config.media.workers:  # issue 19: media worker processes, or the fast path
        b2bua.workers = _media_workers(config, loop, stack, metrics)
        if b2bua.workers.recording is not None:  # step 2: the workers record their calls
            recordings.workers = b2bua.workers
    else:
        b2bua.kernel = _kernel_path(config, loop, stack, metrics)
    limits = config.limits
    transport = SipTransport(
        core,
        b2bua.on_event,
        tcp_limits=TcpLimits(
            max_inbound=limits.tcp_max_connections,
            max_inbound_per_source=limits.tcp_max_connections_per_source,
            idle_seconds=limits.tcp_idle_seconds,
            header_seconds=limits.tcp_header_seconds,
        ),
    )
    tls = _tls_contexts(config)
    try:
        await transport.start(
            host,
            port,
            udp="udp" in config.sip.transports,
            tcp="tcp" in config.sip.transports,
            tls=tls,
            tls_listen=config.sip.tls_listen,
        )
    except OSError as exc:
        where = (
            f"{host}:{port} or sip.tls_listen {config.sip.tls_listen}" if tls else f"{host}:{port}"
        )
        raise StartupError(f"sip.listen {where}: {exc.strerror or exc}") from None
    stack.push_async_callback(_close_transport, transport)
    bound = transport.udp_address or transport.tcp_address
    if bound is not None and bound[1] != port:  # port 0: advertise the real one
        core.settings = replace(core.settings, port=bound[1])
    if transport.tls_address is not None:  # issue 18: TLS, in Via and Contact over TLS
        core.settings = replace(core.settings, tls_port=transport.tls_address[1])

    # issue 18: OPTIONS keepalives to the call takers (a no-op when the interval is 0)
    probing = asyncio.create_task(b2bua.prober.run(), name="call taker keepalives")
    stack.push_async_callback(_cancel, probing)

    hold_counter = HoldCounter(catalog.holds, config.holds.kinds)
    hold_counting = asyncio.create_task(hold_counter.run(), name="hold metrics")
    stack.push_async_callback(_cancel, hold_counting)
    flag_counter = FlagCounter(catalog.flags)
    flag_counting = asyncio.create_task(flag_counter.run(), name="flag metrics")
    stack.push_async_callback(_cancel, flag_counting)
    sar_counter = SarCounter(catalog.sar, config.sar.due_soon_days)
    sar_counting = asyncio.create_task(sar_counter.run(), name="subject access metrics")
    stack.push_async_callback(_cancel, sar_counting)
    metrics.attach(
        calls=lambda: calls_snapshot(b2bua),
        core=core.snapshot,
        ports=allocator.snapshot,
        clock=clock.snapshot,
        recorder=lambda: recorder.stats,
        writer=writer,
        recordings=lambda: recordings_snapshot(recordings),
        recordings_dir=config.recording.dir,
        loop_name=event_loop_name(),
        webhook=webhook,
        holds=hold_counter.snapshot,
        flags=flag_counter.snapshot,
        sar=sar_counter.snapshot,
        registrar=b2bua.registrar.snapshot,
    )
    TlsMetrics(metrics.registry, transport.tls_snapshot)  # issue 18
    health = Health(config, clock, b2bua)
    b2bua.available = lambda: bool(health()["ok"])  # OPTIONS probes (issue 20)
    http_app = build_app(health, metrics.render)
    add_routes(http_app, lambda: b2bua.calls, config.operators)
    add_calltaker_console(
        http_app,
        CallTakerConsole(
            Accounts(catalog.users, config.accounts),
            lambda: b2bua.calls,
            call_feed,
            team_of={operator.name: operator.team for operator in config.operators},
        ),
        OpsSources(
            health,
            metrics.registry,
            catalog.audit,
            config.recording.dir,
            config_dir=config.source.parent if config.source is not None else None,
            grafana_url=config.console.grafana_url,
        ),
    )
    http = HttpServer(http_app, *config.http.listen)
    try:
        await http.start()
    except OSError as exc:
        raise StartupError(f"http.listen {config.http.listen}: {exc.strerror or exc}") from None
    stack.push_async_callback(http.stop)
    log.info(
        "recproxy listening: SIP %s:%s (%s), RTP %s-%s, HTTP %s:%s; call taker %s",
        host,
        core.settings.port,
        "/".join(config.sip.transports),
        *config.media.rtp_ports,
        *(http.bound or config.http.listen),
        ", ".join(config.routing.hunt_group),
    )
    return Server(
        config,
        bus,
        metrics,
        catalog,
        writer,
        recorder,
        recordings,
        webhook,
        clock,
        core,
        b2bua,
        transport,
        health,
        http,
    )


async def _record_config_version(
    config: Config, catalog: Catalog, prompts: dict[Path, Prompt]
) -> str:
    """The version this start runs under (P22), recorded in the catalog: a change from
    the version seen last is an audit entry with the keys that changed."""
    effective = version_of(config, {path: prompt.sha256 for path, prompt in prompts.items()})
    change = await catalog.config_versions.record(
        effective.version, effective.settings, actor=os_account()
    )
    if change is None:
        log.info("config version %s", effective.short)
    else:
        log.info(
            "config version %s, changed from %s: %s",
            effective.short,
            change.old[: len(effective.short)],
            ", ".join(change.keys),
        )
    return effective.version


def tls_settings(config: Config) -> TlsSettings | None:
    """``[sip] tls_*`` as the transport takes them; None when TLS is off."""
    sip = config.sip
    if sip.tls_listen is None or sip.tls_cert is None or sip.tls_key is None:
        return None
    return TlsSettings(
        cert=sip.tls_cert,
        key=sip.tls_key,
        ca=sip.tls_ca,
        verify_clients=sip.tls_verify_clients,
        handshake_seconds=config.limits.tls_handshake_seconds,
    )


def _tls_contexts(config: Config) -> TlsContexts | None:
    """The TLS contexts when ``sip.tls_listen`` is set; a bad certificate, key or CA
    bundle stops start-up with the setting named."""
    settings = tls_settings(config)
    if settings is None:
        return None
    try:
        return load_contexts(settings)
    except TlsSetupError as exc:
        raise StartupError(str(exc)) from None


def _core_settings(config: Config, port: int) -> CoreSettings:
    limits = config.limits
    return CoreSettings(
        host=config.sip.advertise,
        port=port,
        user_agent=config.sip.user_agent,
        # REGISTER: allowed when the registrar is on, else refused by it with 403
        allowed_methods=ALLOWED_METHODS + (("REGISTER",) if config.registrar.enabled else ()),
        refused_by_tu=(*REFUSED_METHODS, *(() if config.registrar.enabled else ("REGISTER",))),
        # the option tags a Require may name (100rel is the core's own): SIPREC (RFC
        # 7866), whose sessions and multipart bodies reach the TU, which refuses them
        # with 403 when [siprec] is disabled; session timers (RFC 4028) when configured
        supported=("siprec", *(("timer",) if config.sip.session_expires else ())),
        accepted_content_types=("application/sdp", "multipart/mixed"),
        flood=FloodSettings(
            requests_per_second=limits.requests_per_second,
            request_burst=limits.request_burst,
            refusals_per_second=limits.refusals_per_second,
            refusal_burst=limits.refusal_burst,
            retry_after_seconds=limits.retry_after_seconds,
        ),
        max_server_transactions=limits.max_transactions,
        max_dialogs=limits.max_dialogs,
        min_se=config.sip.min_se if config.sip.session_expires else None,
    )


def _start_sweeper(
    config: Config,
    catalog: SqlCatalog,
    bus: EventBus,
    stack: contextlib.AsyncExitStack,
    store: SegmentStore,
) -> None:
    """The retention sweeper: a sweep now (it finishes deletions a crash cut short) and
    every ``retention.sweep_interval_seconds``; cancelled at shutdown before the catalog
    closes.  Its own local disk store (the writer's is the writer thread's); a bucket's
    store is shared, as its one uploader must hear of every deletion."""
    sweeper = RetentionSweeper(
        catalog.retention,
        catalog.audit,
        store
        if isinstance(store, S3SegmentStore)
        else LocalDiskStore(fsync=config.recording.fsync),  # type: ignore[arg-type]
        config.recording.dir,
        config.retention,
        publish=bus.publish,
    )
    task = asyncio.create_task(
        sweep_every(sweeper, config.retention.sweep_interval_seconds), name="retention-sweeper"
    )
    stack.push_async_callback(_cancel, task)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _start_webhook(config: Config, stack: contextlib.AsyncExitStack) -> WebhookSender:
    secret = os.environ.get(WEBHOOK_SECRET_ENV)
    webhook = WebhookSender(
        config.webhook, config.webhook_queue_dir, secret=secret.encode() if secret else None
    )
    try:
        await webhook.start()
    except OSError as exc:
        raise StartupError(
            f"webhook.queue_dir {config.webhook_queue_dir}: {exc.strerror or exc}"
        ) from None
    # stopped after the last recording ended (its event is queued by then)
    stack.push_async_callback(webhook.stop)
    return webhook


@contextlib.asynccontextmanager
async def _recording_pipeline(
    config: Config,
    catalog: SqlCatalog,
    public_key: X25519PublicKey,
    metrics: Metrics,
    bus: EventBus,
    loop: asyncio.AbstractEventLoop,
    store: SegmentStore,
) -> AsyncIterator[tuple[RecordingWriter, Recorder, RecordingService]]:
    """The recorder, the writer thread and the recording service, closed together in
    their own order: the recorder's last blocks to the writer, the writer thread's last
    states to the service, the service's last catalog writes out of its journal."""

    writer = RecordingWriter(
        store,
        loop=loop,
        on_write=metrics.observe_write_seconds,
        hold_seconds=config.recording.hold_seconds,
    )
    recorder = Recorder(
        writer.sink,
        pause_mode=config.recording.pause_mode,
        jitter_depth=max(1, config.media.jitter_ms // 20),
    )
    recordings = RecordingService(
        config.recording,
        catalog,
        recorder,
        writer,
        public_key,
        publish=bus.publish,
        retention=config.retention,
        node=config.node.name,
    )
    try:
        yield writer, recorder, recordings
    finally:
        recorder.close_all()
        await asyncio.to_thread(writer.stop)
        await recordings.journal.wait_empty(min(5.0, config.shutdown.grace_seconds))
        await recordings.journal.close()


def _kernel_path(
    config: Config,
    loop: asyncio.AbstractEventLoop,
    stack: contextlib.AsyncExitStack,
    metrics: Metrics,
) -> KernelPath | None:
    """The kernel fast path if ``[media] fast_path`` and the host allow it; which path
    forwards RTP, and why, is logged once."""
    detection = detect(config.media.fast_path, config.media.rtp_ports)
    path = detection.path
    FastPathMetrics(metrics.registry, path.snapshot if path is not None else None)
    if path is None:
        log.info("RTP forwarding: the userspace relay (no kernel fast path: %s)", detection.reason)
        return None
    log.info("RTP forwarding: the kernel fast path for bridged calls (%s)", detection.reason)
    path.start(loop)

    def close() -> None:
        path.close()
        remove_tables(path.nft)
        path.nft.close()
        path.ring.close()

    stack.callback(close)
    return path


def _media_workers(
    config: Config,
    loop: asyncio.AbstractEventLoop,
    stack: contextlib.AsyncExitStack,
    metrics: Metrics,
) -> WorkerPool:
    """``[media] workers`` processes relaying bridged calls (the kernel fast path is then
    not used: one of the two carries a call's packets)."""
    pool = WorkerPool(config.media.workers, recording=_worker_recording(config))
    WorkerMetrics(metrics.registry, pool.snapshot)
    FastPathMetrics(metrics.registry, None)
    pool.start(loop)
    log.info(
        "RTP forwarding: %d media worker process(es) for bridged calls (pids %s; the "
        "kernel fast path is not used with workers)",
        config.media.workers, ", ".join(str(pid) for pid in pool.pids()),
    )  # fmt: skip
    stack.callback(pool.close)
    return pool


def _worker_recording(config: Config) -> RecorderSetup | None:
    """How media workers write their calls' recordings: as the writer here does.  Not
    with a bucket: its uploads run in this process, from the spool it writes."""
    if config.recording.store != "local":
        return None
    return RecorderSetup(
        str(config.recording.dir),
        config.recording.fsync,
        config.recording.hold_seconds,
        config.recording.pause_mode,
        max(1, config.media.jitter_ms // 20),
    )


async def _close_transport(transport: SipTransport) -> None:
    await asyncio.sleep(0.1)  # let the last BYEs and their answers go out
    await transport.close()


async def serve(config: Config, *, ready: asyncio.Event | None = None) -> None:
    """Run the proxy until SIGTERM/SIGINT, then shut it down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with open_server(config) as server:
        # after the call proxy made the catalog (and the development key): the child
        # opens both
        child = RecordsChild(config) if records_child.wanted(config) else None
        if child is not None:
            await child.start()
        try:
            if ready is not None:
                ready.set()
            await stop.wait()
            log.info("shutting down: new calls refused, %d active", len(server.b2bua.calls))
        finally:
            if child is not None:
                await child.stop()
