"""The records service's composition root (issue 15): the one process that holds the
recording private key, serving search, playback and export to signed-in people.

    private key (passphrase) → catalog → accounts → HTTP (/api/v1/...)

The records endpoints are added by :func:`add_records_routes`, each route module's
``add_routes`` on one access gate (``proxy.records.gate``), before the listener starts.

``open_records_service(config)`` is an async context manager on one ``AsyncExitStack``,
like ``proxy.app.open_server``: a part that cannot start closes what was opened and
raises ``StartupError`` in one line naming the setting — a missing or unreadable key and
a wrong passphrase among them, checked once, before anything else.  It shares the
catalog (SQLite in WAL mode: both processes may open it) and the segment store with the
call proxy.  ``serve_records(config)`` runs it until SIGTERM or SIGINT (or, as
``recproxy serve``'s child, until its parent goes: see ``proxy.records_child``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .catalog_setup import catalog_missing, make_catalog
from .config import Config
from .control.console import dpo_pages, records_pages
from .control.http import HttpServer
from .control.records import (
    Routes,
    access,
    audio,
    audit,
    build_records_app,
    flags,
    holds,
    integrity,
    recordings,
    sar_exports,
)
from .control.records import bulk as bulk_routes
from .control.records import sar as sar_routes
from .records.access import AccessDesk
from .records.accounts import Accounts
from .records.audit_view import AuditView
from .records.bulk import BulkDesk
from .records.custody import load_private_key, load_signing_key
from .records.flags import FlagDesk
from .records.gate import Gate
from .records.holds import HoldDesk
from .records.sar import SarDesk
from .records.sar_export import SarExporter
from .records.sar_jobs import EXPORTS_FOLDER, SarExportJobs
from .records.search import RecordSearch
from .segment_stores import segment_store as _segment_store
from .startup import StartupError
from .storage.catalog import SqlCatalog
from .storage.catalog.anchor import anchor_path
from .storage.store import SegmentStore

log = logging.getLogger("recproxy.records")


@dataclass(frozen=True, eq=False)
class RecordsService:
    """The parts of one running records service.  ``private_key`` unwraps recordings'
    data keys; it never leaves this process (nor a repr)."""

    config: Config
    catalog: SqlCatalog
    accounts: Accounts
    routes: Routes
    http: HttpServer
    private_key: X25519PrivateKey = field(repr=False)

    @property
    def url(self) -> str:
        host, port = self.http.bound or self.config.records.http_listen
        return f"http://{host}:{port}"


def csrf_secret(private_key: X25519PrivateKey) -> bytes:
    """The key of browser sessions' CSRF tokens, derived from the private key: only the
    key holder can make one, it survives restarts, and nothing new is stored."""
    raw = private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return HKDF(hashes.SHA256(), 32, salt=None, info=b"recproxy records csrf").derive(raw)


@contextlib.asynccontextmanager
async def open_records_service(config: Config) -> AsyncIterator[RecordsService]:
    """Start the records service from ``config``; on leaving, stop HTTP, then close the
    catalog.  ``StartupError`` (after closing what was opened) when a part cannot start."""
    private_key = load_private_key(config)  # first: a wrong passphrase opens nothing
    async with contextlib.AsyncExitStack() as stack:
        if catalog_missing(config.catalog):
            raise StartupError(
                f"catalog.path {config.catalog.path}: no catalog (run recproxy serve, "
                "or make the first admin with recproxy users add)"
            )
        catalog = await make_catalog(config.catalog).open()
        stack.push_async_callback(catalog.close)
        accounts = Accounts(catalog.users, config.accounts)
        ready = False

        def health() -> dict[str, Any]:
            return {"ok": ready, "service": "records"}

        app, routes = build_records_app(accounts, csrf_secret(private_key), health)
        store = stack.enter_context(_segment_store(config))  # issue 20: disk or bucket
        jobs = add_records_routes(routes, config, catalog, private_key, store)
        jobs.open()
        stack.push_async_callback(jobs.close)
        http = HttpServer(app, *config.records.http_listen)
        try:
            await http.start()
        except OSError as exc:
            raise StartupError(
                f"records.http_listen {config.records.http_listen[0]}:"
                f"{config.records.http_listen[1]}: {exc.strerror or exc}"
            ) from None
        stack.push_async_callback(http.stop)
        service = RecordsService(config, catalog, accounts, routes, http, private_key)
        log.info("records service listening on %s/api/v1/", service.url)
        ready = True
        yield service


def add_records_routes(
    routes: Routes,
    config: Config,
    catalog: SqlCatalog,
    private_key: X25519PrivateKey,
    store: SegmentStore | None = None,
) -> SarExportJobs:
    """Every records endpoint, deciding through one gate (a route module is one more
    line here, before the service starts); the subject access export jobs, for the
    service to open and close.  Audio is read from ``store`` (the local disk when None)."""
    gate = Gate(catalog, config.access)
    recordings.add_routes(routes, RecordSearch(gate, catalog), config.numbers)
    access.add_routes(routes, AccessDesk(gate, catalog.access_requests))
    audio.add_routes(
        routes,
        gate,
        catalog,
        recordings_dir=config.recording.dir,
        private_key=private_key,
        store=store,
    )
    bulk_routes.add_routes(
        routes, BulkDesk(gate, catalog, config.recording.dir, private_key, store)
    )
    sar_desk = SarDesk(gate, catalog, config.numbers, config.sar)
    sar_routes.add_routes(routes, sar_desk, gate.now)
    jobs = sar_export_jobs(config, catalog, gate, private_key, store)
    sar_exports.add_routes(routes, jobs)
    add_governance_routes(routes, config, catalog, gate, private_key, store)
    dpo_pages.add_routes(routes.app, dpo_desks(config, catalog, gate, sar_desk, jobs))
    records_pages.add_routes(routes.app, config, gate, catalog, private_key, store)  # console
    return jobs


def dpo_desks(
    config: Config, catalog: SqlCatalog, gate: Gate, sar: SarDesk, jobs: SarExportJobs
) -> dpo_pages.DpoDesks:
    """The DPO pages' use cases: the API's case desk and export jobs themselves, and an
    audit view and flag desk like the API's (both stateless) on the same gate."""
    audit_view = AuditView(gate, catalog.audit, anchor_path(config.catalog.path))
    return dpo_pages.DpoDesks(gate, sar, jobs, audit_view, FlagDesk(catalog.flags))


def sar_export_jobs(
    config: Config,
    catalog: SqlCatalog,
    gate: Gate,
    private_key: X25519PrivateKey,
    store: SegmentStore | None = None,
) -> SarExportJobs:
    """The export jobs, under ``exports/NODE/`` beside the catalog: each node's records
    service clears its own folder at start, never the jobs another node sharing the
    catalog's folder is running (issue 20).  Without the export-signing key file the
    service still runs and exports are refused naming it (a key that is there but does
    not open is a ``StartupError``, as the recording key's is)."""
    root = config.catalog.path.parent / EXPORTS_FOLDER / config.node.name
    if not config.export.signing_key.exists():
        missing = (
            f"export.signing_key {config.export.signing_key}: no export-signing key "
            "(make one with recproxy keygen --signing)"
        )
        return SarExportJobs(gate, catalog.audit, catalog.sar, None, root, unavailable=missing)
    exporter = SarExporter(
        gate,
        catalog,
        recordings_dir=config.recording.dir,
        private_key=private_key,
        signing_key=load_signing_key(config),
        transcripts=config.transcripts,
        store=store,
    )
    return SarExportJobs(gate, catalog.audit, catalog.sar, exporter, root)


def add_governance_routes(
    routes: Routes,
    config: Config,
    catalog: SqlCatalog,
    gate: Gate,
    private_key: X25519PrivateKey,
    store: SegmentStore | None = None,
) -> None:
    """Holds, the audit log and its check, a recording's integrity check, and the
    anomaly flags (``proxy.control.records.holds``, ``.audit``, ``.integrity``,
    ``.flags``), each decided by ``gate``."""
    holds.add_routes(routes, gate, HoldDesk(catalog.holds, config.holds.kinds))
    audit.add_routes(routes, AuditView(gate, catalog.audit, anchor_path(config.catalog.path)))
    integrity.add_routes(routes, gate, catalog, config.recording.dir, private_key, store)
    flags.add_routes(routes, gate, FlagDesk(catalog.flags))


async def serve_records(config: Config, *, until_stdin_closes: bool = False) -> None:
    """Run the records service until SIGTERM or SIGINT — or, with
    ``until_stdin_closes`` (how ``recproxy serve`` starts its child), until stdin reaches
    its end: the parent has gone, even if it was killed and could not stop us."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with open_records_service(config):
        watcher = None
        if until_stdin_closes:
            watcher = asyncio.create_task(_until_eof(stop), name="parent watch")
        await stop.wait()
        log.info("records service stopping")
        if watcher is not None:
            watcher.cancel()


async def _until_eof(stop: asyncio.Event) -> None:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass
    stop.set()
