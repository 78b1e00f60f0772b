"""The retention sweeper inside ``open_server``: it sweeps at start (so a recording past
expiry, or a deletion a crash cut short, is dealt with without waiting an interval),
publishes what it did to the metrics, and is cancelled cleanly at shutdown."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from proxy.app import open_server
from proxy.config import RetentionSettings
from proxy.recording_state import RecordingState
from proxy.storage.catalog import SqliteCatalog
from tests.e2e.proxy_process import reserve_ports
from tests.records.retention_world import Planned, catalogue, has_files, has_key
from tests.test_app import config_for

POLICY = RetentionSettings(months=0, days=30, sweep_interval_seconds=3600)


async def test_serve_sweeps_at_start_counts_and_stops_cleanly(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    root = tmp_path / "recordings"
    async with SqliteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        old = await catalogue(catalog, root, Planned("old", now - timedelta(days=31)), POLICY)
        young = await catalogue(catalog, root, Planned("young", now - timedelta(days=3)), POLICY)
    ports = reserve_ports()
    try:
        config = replace(
            config_for(tmp_path, sip_port=0, http_port=0, rtp=ports.rtp_range), retention=POLICY
        )
        async with open_server(config) as server:
            deadline = time.monotonic() + 10
            text = b""
            while time.monotonic() < deadline:
                text = server.metrics.render()
                if b"recproxy_retention_sweep_seconds_count 1.0" in text:
                    break
                await asyncio.sleep(0.05)
            assert b"recproxy_recordings_deleted_total 1.0" in text
            assert b'recproxy_recordings_retention{state="deleted"} 1.0' in text
            assert b'recproxy_recordings_retention{state="retained"} 1.0' in text
            assert b'recproxy_recordings_retention{state="held"} 0.0' in text
            found = await server.catalog.recordings.get_recording(old)
            assert found is not None and found.state is RecordingState.DELETED
            sweeper = [t for t in asyncio.all_tasks() if t.get_name() == "retention-sweeper"]
            assert len(sweeper) == 1 and not sweeper[0].done()
        assert sweeper[0].cancelled()
        assert not has_key(root, old) and not has_files(root, old)
        assert has_key(root, young)
    finally:
        ports.release()
