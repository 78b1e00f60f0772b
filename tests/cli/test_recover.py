"""``recproxy recover --node NAME``, run as the real command on a real catalog and real
segment files: a dead node's recordings become ``interrupted`` with the audio it left
catalogued, the live node's stay ``recording``, the run is audited, and naming this
host's own node is refused."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path

from proxy.config import build_config
from proxy.node_claim import claim_node_name
from proxy.storage import crypto
from proxy.storage.catalog import CallDirection, NewCall, NewRecording, SqliteCatalog
from tests.cli.test_cli import recproxy
from tests.records.retention_world import write_audio

CONFIG = """
[node]
name = "node-a"

[recording]
dir = "recordings"
public_key = "recording.pub"

[catalog]
path = "catalog.sqlite3"
"""


async def running(catalog: SqliteCatalog, node: str) -> str:
    rid = str(uuid.uuid4())
    started = datetime.now(UTC)
    call = await catalog.calls.create_call(NewCall(
        f"{rid}@test", "+441234567890", "+441234000000", CallDirection.INBOUND, started,
        node=node,
    ))  # fmt: skip
    await catalog.recordings.create_recording(
        NewRecording(call.id, rid, "g711", 8000, 2, started, recording_id=rid, node=node)
    )
    return rid


def site(folder: Path) -> dict[str, str]:
    """Two nodes' running recordings in one catalog, each with audio in the store."""
    (folder / "recproxy.toml").write_text(CONFIG)
    crypto.save_public_key(folder / "recording.pub", crypto.generate_keypair()[1])

    async def make() -> dict[str, str]:
        async with SqliteCatalog(folder / "catalog.sqlite3") as catalog:
            return {node: await running(catalog, node) for node in ("node-a", "node-b")}

    ids = asyncio.run(make())
    write_audio(folder / "recordings", list(ids.values()))
    return ids


def test_a_dead_nodes_recordings_are_recovered_from_another_node(tmp_path: Path) -> None:
    ids = site(tmp_path)
    done = recproxy("recover", "--node", "node-b", "--config", "recproxy.toml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"node node-b: 1 recording(s) marked interrupted\n  {ids['node-b']}" in done.stdout
    with sqlite3.connect(tmp_path / "catalog.sqlite3") as conn:
        state = dict(conn.execute("SELECT node, state FROM recordings").fetchall())
        kept = conn.execute(
            "SELECT duration_ms, expires_at FROM recordings WHERE id = ?", (ids["node-b"],)
        ).fetchone()
        audited = conn.execute(
            "SELECT object FROM audit_log WHERE action = 'node.recover'"
        ).fetchall()
        open_calls = dict(conn.execute("SELECT node, outcome FROM calls").fetchall())
    assert state == {"node-a": "recording", "node-b": "interrupted"}
    assert kept[0] == 300 and kept[1] is not None  # its audio catalogued, its deletion dated
    assert open_calls == {"node-a": None, "node-b": "interrupted"}
    assert audited == [("node:node-b",)]


def test_this_hosts_own_node_is_refused(tmp_path: Path) -> None:
    site(tmp_path)
    done = recproxy("recover", "--node", "node-a", "--config", "recproxy.toml", cwd=tmp_path)
    assert done.returncode == 1
    assert "--node node-a is this host's own node.name" in done.stderr
    with sqlite3.connect(tmp_path / "catalog.sqlite3") as conn:
        states = {row[0] for row in conn.execute("SELECT state FROM recordings")}
    assert states == {"recording"}


def test_a_node_that_is_running_is_refused(tmp_path: Path) -> None:
    """node-b is alive (it holds its name): its live recording is not cut."""
    site(tmp_path)
    settings = {"node": {"name": "node-b"}, "catalog": {"path": "catalog.sqlite3"}}
    config = build_config(settings, base=tmp_path)
    alive = claim_node_name(config)  # what node-b's serve holds
    try:
        done = recproxy("recover", "--node", "node-b", "--config", "recproxy.toml", cwd=tmp_path)
    finally:
        alive.release()
    assert done.returncode == 1
    assert "--node node-b is running" in done.stderr
    with sqlite3.connect(tmp_path / "catalog.sqlite3") as conn:
        states = {row[0] for row in conn.execute("SELECT state FROM recordings")}
    assert states == {"recording"}
