"""The audit log in ``serve``'s app factory: the development key made at first start is
audited (once: a second start with the key adds nothing), and the anchoring task checks
the chain and anchors its head every ``audit.anchor_interval_seconds``, feeding the audit
metrics, until the server is left.  Real sockets on loopback, real SQLite."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from pathlib import Path

from proxy.app import open_server
from proxy.config import AuditSettings
from proxy.control.metrics import Metrics
from proxy.storage import crypto
from proxy.storage.catalog.anchor import anchor_path, read_anchors
from tests.e2e.proxy_process import reserve_ports
from tests.test_app import config_for


async def wait_until_anchored(path: Path, seq: int) -> None:
    async with asyncio.timeout(10):
        while not any(a.head.seq >= seq for a in read_anchors(path)):
            await asyncio.sleep(0.02)


async def test_serve_audits_its_development_key_and_anchors_the_chain(tmp_path: Path) -> None:
    ports = reserve_ports()
    try:
        await check_serve(tmp_path, ports.rtp_range)
    finally:
        ports.release()


async def check_serve(tmp_path: Path, rtp: tuple[int, int]) -> None:
    config = dataclasses.replace(
        config_for(tmp_path, sip_port=0, http_port=0, rtp=rtp),
        audit=AuditSettings(anchor_interval_seconds=0.05),
    )
    anchors = anchor_path(config.catalog.path)
    metrics = Metrics()
    async with open_server(config, metrics=metrics) as server:
        entries = await server.catalog.audit.entries()  # also the start-up retention sweep
        (made,) = [e for e in entries if e.action == "key.generate"]
        public = crypto.load_public_key(config.recording.public_key)
        digest = hashlib.sha256(crypto.public_key_bytes(public)).hexdigest()
        assert (made.actor, made.detail) == ("recproxy serve", {"public_key_sha256": digest})
        await wait_until_anchored(anchors, entries[-1].seq)
        search = await server.catalog.audit.append(actor="alice", action="search")
        await wait_until_anchored(anchors, search.seq)
        entries = await server.catalog.audit.entries()
        assert metrics.registry.get_sample_value("recproxy_audit_entries") == len(entries)
        assert metrics.registry.get_sample_value("recproxy_audit_verify_failures_total") == 0
    async with open_server(config, metrics=Metrics()) as server:  # the key exists now
        actions = [e.action for e in await server.catalog.audit.entries()]
        assert actions.count("key.generate") == 1 and actions.count("search") == 1
    lines = len(read_anchors(anchors))
    await asyncio.sleep(0.2)
    assert len(read_anchors(anchors)) == lines  # the anchoring stopped with the server
