"""A running records service with real recordings to search, request and hear: one
``recproxy records serve`` process (``service.py``), its users made by ``recproxy users
add``, and recordings written by the real writer with the service's own public key and
catalogued as a transferred call (part 1 ``alice`` of ``reception``, part 2 ``bob`` of
``nurses``; see ``tests/records/playback_world.py``).

The service's ``TMPDIR`` is ``tmp/`` in its folder, so a test can see that nothing is
written there.  ``World`` signs everyone in at the start (a login is audited) with
bearer tokens, and reads the catalog back with ``sqlite3``: ``snapshot()`` is every
table a records endpoint could change but the audit log, ``audit_since(seq)`` the audit
entries written since."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from proxy.recording_state import RecordingState
from proxy.storage.catalog import SqliteCatalog
from proxy.storage.crypto import load_public_key
from proxy.storage.segment import segment_file_name
from tests.records.playback_world import catalogue, write_audio

from .service import PASSWORD, RecordsProcess, add_user, make_folder, with_passphrase

#: name → the options of ``recproxy users add``
USERS = {
    "alice": ("staff", "--team", "reception", "--operator", "alice"),
    "bob": ("staff", "--team", "nurses", "--operator", "bob"),
    "carl": ("staff", "--team", "reception", "--operator", "carl"),
    "mona": ("manager", "--team", "reception"),
    "nina": ("manager", "--team", "nurses"),
    "olive": ("records_officer",),
    "otto": ("records_officer",),
    "dora": ("dpo",),
    "max": ("maintenance",),
}
#: tables a records endpoint may change (sessions and login failures change at login)
WATCHED = (
    "access_requests",
    "access_flags",
    "holds",
    "recordings",
    "recording_parts",
    "calls",
    "access_log",
)
PLAY = {"purpose": "complaint", "reason": "case 17"}


@dataclass
class Recorded:
    id: str
    audio: np.ndarray  # (frames, 2) int16 as heard


@dataclass
class World:
    service: RecordsProcess
    folder: Path
    transferred: Recorded
    open_id: str  # still recording: no audio to play yet
    damaged_id: str  # complete, its first chunk altered on disk
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"{self.service.url}/api/v1"

    @property
    def catalog_path(self) -> Path:
        return self.folder / "data" / "catalog.sqlite3"

    async def token(self, http: aiohttp.ClientSession, name: str) -> str:
        if name not in self.tokens:
            body = {"username": name, "password": PASSWORD, "kind": "bearer"}
            async with http.post(f"{self.url}/login", json=body) as answer:
                assert answer.status == 200, await answer.text()
                self.tokens[name] = (await answer.json())["token"]
        return self.tokens[name]

    async def call(
        self,
        http: aiohttp.ClientSession,
        who: str,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        """``who`` calls ``path`` (under ``/api/v1``); the status, the JSON body (None if
        empty; the bytes if not JSON) and the response."""
        headers = {"Authorization": f"Bearer {await self.token(http, who)}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        async with http.request(
            method, f"{self.url}{path}", json=json_body, data=data, params=params, headers=headers
        ) as answer:
            data = await answer.read()
            if not answer.content_type.endswith("json"):
                return answer.status, data, answer
            return answer.status, (json.loads(data) if data else None), answer

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        with sqlite3.connect(self.catalog_path) as db:
            return {t: db.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in WATCHED}

    def last_seq(self) -> int:
        with sqlite3.connect(self.catalog_path) as db:
            (seq,) = db.execute("SELECT coalesce(max(seq), 0) FROM audit_log").fetchone()
        return int(seq)

    def audit_since(self, seq: int) -> list[dict[str, Any]]:
        with sqlite3.connect(self.catalog_path) as db:
            rows = db.execute(
                "SELECT seq, actor, action, object, reason, detail FROM audit_log "
                "WHERE seq > ? ORDER BY seq",
                (seq,),
            ).fetchall()
        return [
            {"seq": s, "actor": a, "action": act, "object": o, "reason": r, "detail": json.loads(d)}
            for s, a, act, o, r, d in rows
        ]


#: thresholds no test run reaches, so that only a test about flags raises one
QUIET = {"playbacks_per_hour": 100_000, "refusals_per_hour": 100_000}


@contextlib.contextmanager
def running_world(folder: Path, **access: int) -> Iterator[World]:
    """Start the service in ``folder`` (``access``: its ``[access]`` settings over
    :data:`QUIET`) and stop it after; the service's log must hold no traceback."""
    config = make_folder(folder)
    settings = "".join(f"{key} = {value}\n" for key, value in (QUIET | access).items())
    config.write_text(config.read_text() + f"[access]\n{settings}")
    for name, options in USERS.items():
        add_user(config, name, *options)
    public = load_public_key(folder / "data" / "keys" / "recording.pub")
    recordings = folder / "data" / "recordings"
    transferred, audio = write_audio(recordings, public)
    still_open, _ = write_audio(recordings, public)
    damaged, _ = write_audio(recordings, public)
    segment = recordings / damaged / segment_file_name(0)
    altered = bytearray(segment.read_bytes())
    altered[200] ^= 0x01  # inside the first chunk's ciphertext
    segment.write_bytes(bytes(altered))

    async def catalogue_both() -> None:
        catalog = await SqliteCatalog(folder / "data" / "catalog.sqlite3").open()
        try:
            await catalogue(catalog, transferred)
            await catalogue(catalog, still_open, RecordingState.RECORDING)
            await catalogue(catalog, damaged)
        finally:
            await catalog.close()

    asyncio.run(catalogue_both())
    (folder / "tmp").mkdir()
    service = RecordsProcess(config, env=with_passphrase() | {"TMPDIR": str(folder / "tmp")})
    world = World(service, folder, Recorded(transferred, audio), still_open, damaged)

    async def sign_in_everyone() -> None:  # a login is audited: done before the tests
        async with aiohttp.ClientSession() as http:
            for name in USERS:
                await world.token(http, name)

    try:
        asyncio.run(sign_in_everyone())
        yield world
    finally:
        assert service.stop() == 0
    assert "Traceback" not in service.log_text()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One running service for a test module (import it, with ``http``)."""
    with running_world(tmp_path_factory.mktemp("records-api")) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
