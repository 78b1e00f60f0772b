"""A records host for the governance endpoints' tests: the key pair made by
``recproxy keygen``, users made by ``recproxy users add`` (one of each role), and real
recordings written by the real ``RecordingWriter`` under the host's public key, each
catalogued with its segments as the writer reported them (size, SHA-256) — then a real
``recproxy records serve`` over it, and helpers to call it as each user."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from proxy.media import g711
from proxy.media.g711 import wire_samples
from proxy.recording_state import RecordingState
from proxy.storage.catalog import (
    CallDirection,
    NewCall,
    NewRecording,
    NewSegment,
    SegmentFacts,
    SqliteCatalog,
)
from proxy.storage.crypto import load_public_key
from proxy.storage.store import LocalDiskStore
from proxy.storage.write_reports import RecordingKey, RecordingWritten, SegmentWritten
from proxy.storage.writer import RecordingWriter
from tests.storage.conftest import dialogue_call

from .service import PASSWORD, RecordsProcess, add_user, make_folder

SECONDS = 5.0  # three segments of 2 s
START_MS = 1_700_000_000_000
STARTED = datetime.fromtimestamp(START_MS / 1000, UTC)
#: name → (role, more ``users add`` options)
USERS = {
    "sam": ("staff", ("--team", "reception", "--operator", "alice")),
    "mia": ("manager", ("--team", "reception")),
    "olive": ("records_officer", ()),
    "oscar": ("records_officer", ()),
    "dee": ("dpo", ()),
    "ada": ("admin", ()),
    "max": ("maintenance", ()),
}
HOLD_KINDS = ("complaint", "training", "conduct")


@dataclass
class Reports:
    segments: list[SegmentWritten] = field(default_factory=list)

    def segment_written(self, segment: SegmentWritten) -> None:
        self.segments.append(segment)

    def recording_written(self, recording: RecordingWritten) -> None:
        pass

    def audio_dropped(self, recording_id: RecordingKey, reason: str) -> None:
        raise AssertionError(f"audio dropped: {reason}")


def write_recording(recordings: Path, public_key: Path) -> tuple[str, list[SegmentWritten]]:
    """One µ-law recording of ``SECONDS`` under ``recordings``, and its segments."""
    rid = uuid.uuid4()
    codes = np.frombuffer(g711.encode(dialogue_call(SECONDS), "PCMU"), dtype=np.uint8)
    wire = wire_samples(codes.reshape(-1, 2), "PCMU")
    reports = Reports()
    writer = RecordingWriter(LocalDiskStore(fsync="none"), chunk_seconds=1.0)
    writer.listen(reports)
    try:
        writer.open(
            rid, recordings, load_public_key(public_key), segment_seconds=2, start_time_ms=START_MS
        )
        for start in range(0, len(wire), 160):
            assert writer.submit(rid, wire[start : start + 160], start + 160 >= len(wire))
    finally:
        writer.stop(timeout=30)
    return str(rid), reports.segments


async def catalogue(
    catalog_path: Path,
    recording_id: str,
    segments: list[SegmentWritten],
    state: RecordingState = RecordingState.COMPLETE,
) -> None:
    """The call (taken by operator ``alice`` of team ``reception``), its recording in
    ``state``, its part and its segments as the writer reported them."""
    async with SqliteCatalog(catalog_path) as catalog:
        call = await catalog.calls.create_call(
            NewCall(f"{recording_id}@test", "+441234567890", "+441234000000",
                    CallDirection.INBOUND, STARTED)
        )  # fmt: skip
        await catalog.recordings.create_recording(
            NewRecording(call.id, recording_id, "g711", 8000, 2, STARTED, recording_id=recording_id)
        )
        await catalog.parts.begin(recording_id, operator="alice", team="reception", at=STARTED)
        for s in segments:
            facts = SegmentFacts(s.chunks, s.frames, s.bytes, s.sha256, closed=True)
            await catalog.recordings.add_segment(
                NewSegment(recording_id, s.index, s.name, s.first_frame, facts)
            )
        await catalog.recordings.set_recording_state(recording_id, state)


@dataclass
class World:
    folder: Path
    service: RecordsProcess
    recording: str  # complete, sound
    damaged: str  # complete, one byte of its second segment flipped after cataloguing
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def catalog_path(self) -> Path:
        return self.folder / "data" / "catalog.sqlite3"

    @property
    def recordings(self) -> Path:
        return self.folder / "data" / "recordings"

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.catalog_path) as db:
            return [tuple(row) for row in db.execute(sql, args)]

    def audit_seq(self) -> int:
        return int(self.rows("SELECT COALESCE(MAX(seq), 0) FROM audit_log")[0][0])

    def audit_after(self, seq: int) -> list[tuple[str, str, str | None, dict[str, Any]]]:
        """(actor, action, object, detail) of every entry after ``seq`` but the logins
        (a user signs in at their first request)."""
        return [
            (actor, action, obj, json.loads(detail))
            for actor, action, obj, detail in self.rows(
                "SELECT actor, action, object, detail FROM audit_log"
                " WHERE seq > ? AND action != 'login' ORDER BY seq",
                seq,
            )
        ]

    async def token(self, http: aiohttp.ClientSession, name: str) -> str:
        if name not in self.tokens:
            async with http.post(
                f"{self.service.url}/api/v1/login",
                json={"username": name, "password": PASSWORD, "kind": "bearer"},
            ) as answer:
                assert answer.status == 200, await answer.text()
                self.tokens[name] = (await answer.json())["token"]
        return self.tokens[name]

    async def call(
        self,
        http: aiohttp.ClientSession,
        name: str | None,
        method: str,
        path: str,
        body: Any = None,
    ) -> tuple[int, Any]:
        """``method path`` as ``name`` (a bearer token; None: not signed in): the status
        and the JSON body (problem documents checked to be ``application/problem+json``)."""
        headers = (
            {} if name is None else {"Authorization": f"Bearer {await self.token(http, name)}"}
        )
        async with http.request(
            method, self.service.url + path, json=body, headers=headers
        ) as answer:
            data = await answer.json(content_type=None)
            if answer.status >= 400:
                assert answer.content_type == "application/problem+json", data
            return answer.status, data


def make_world(folder: Path) -> World:
    holds = "[holds]\nkinds = [" + ", ".join(f'"{k}"' for k in HOLD_KINDS) + "]\n"
    config = make_folder(folder, records=holds)
    for name, (role, more) in USERS.items():
        add_user(config, name, role, *more)
    recordings = folder / "data" / "recordings"
    public = folder / "data" / "keys" / "recording.pub"
    sound, sound_segments = write_recording(recordings, public)
    damaged, damaged_segments = write_recording(recordings, public)
    catalog_path = folder / "data" / "catalog.sqlite3"
    asyncio.run(catalogue(catalog_path, sound, sound_segments))
    asyncio.run(catalogue(catalog_path, damaged, damaged_segments))
    victim = recordings / damaged / damaged_segments[1].name
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x40  # inside a chunk's ciphertext: only decrypting tells
    victim.write_bytes(bytes(data))
    return World(folder, RecordsProcess(config), sound, damaged)
