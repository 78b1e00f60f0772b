"""The app factory records the configuration's version at each start (P22): a call's row
carries the version it ran under, and starting again under a changed configuration
writes exactly one ``config.change`` audit entry holding the diff.  The real app
(``open_server``), a real INVITE over loopback UDP, the real catalog."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import uuid
from pathlib import Path

from proxy.app import open_server
from proxy.config import Config, MediaSettings
from proxy.storage.catalog import SqliteCatalog
from tests.e2e.proxy_process import reserve_ports
from tests.e2e.sip_client import SDP_OFFER, SipSocket, ack_and_bye
from tests.test_app import config_for


def config_version_of_call(catalog: Path, sip_call_id: str) -> str | None:
    with sqlite3.connect(catalog) as conn:
        row = conn.execute(
            "SELECT config_version FROM calls WHERE sip_call_id = ?", (sip_call_id,)
        ).fetchone()
    return None if row is None else str(row[0])


async def call_once(config: Config) -> str | None:
    """Start the proxy, place one call, and return the version on the call's row."""
    async with open_server(config) as server:
        sock = SipSocket(("127.0.0.1", server.sip_port))
        try:
            call_id = f"version-{uuid.uuid4().hex}"
            sock.request("INVITE", call_id=call_id, body=SDP_OFFER.format(port=sock.port + 2))
            answer = await asyncio.to_thread(sock.final_response, call_id, 5.0)
            assert answer.status == 200, answer.text
            # a call never bridged writes its row when it ends (one transaction, issue 19)
            await asyncio.to_thread(ack_and_bye, sock, answer)
            for _ in range(200):
                version = config_version_of_call(config.catalog.path, call_id)
                if version is not None:
                    break
                await asyncio.sleep(0.01)
            assert server.b2bua.config_version == version
            return version
        finally:
            sock.close()


async def test_calls_carry_the_version_and_a_change_is_audited_once(tmp_path: Path) -> None:
    ports = reserve_ports()
    try:
        config = config_for(tmp_path, sip_port=0, http_port=0, rtp=ports.rtp_range)
        first = await call_once(config)
        assert await call_once(config) == first  # the same configuration: the same version
        changed = dataclasses.replace(config, media=dataclasses.replace(config.media, jitter_ms=80))
        second = await call_once(changed)
    finally:
        ports.release()
    assert first is not None and second is not None and first != second
    async with SqliteCatalog(config.catalog.path) as catalog:
        history = await catalog.config_versions.history()
        entries = await catalog.audit.entries(action="config.change")
    assert [v.version for v in history] == [first, second]
    assert history[0].settings["media.jitter_ms"] == MediaSettings().jitter_ms
    [entry] = entries
    assert entry.object == f"config:{second}"
    assert entry.detail == {
        "from": first,
        "to": second,
        "changed": {"media.jitter_ms": [60, 80]},
        "added": {},
        "removed": {},
    }
