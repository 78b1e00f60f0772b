"""Recordings of different ages for the retention tests: real AES-GCM segment files
written by the RecordingWriter, catalogued in a real SQLite catalog, ended at a given
time, with or without a hold (a row in migration 7's ``holds`` table)."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from proxy.config import RetentionSettings
from proxy.media import g711
from proxy.media.g711 import wire_samples
from proxy.recording_state import RecordingState
from proxy.storage.catalog import (
    Attribution,
    CallDirection,
    Catalog,
    NewCall,
    NewRecording,
    NewSegment,
    SegmentFacts,
)
from proxy.storage.crypto import generate_keypair
from proxy.storage.segment import KEY_FILE_NAME
from proxy.storage.store import LocalDiskStore
from proxy.storage.writer import RecordingWriter
from tests.storage.conftest import dialogue_call

#: 30 days: short enough to travel past in a test.
POLICY = RetentionSettings(months=0, days=30, batch_size=2)


@dataclass(frozen=True)
class Planned:
    """A recording to make: its name in the test, when its audio ended, how it ended,
    whether expiry is stored (older catalogs had none) and whether a hold keeps it."""

    name: str
    ended: datetime
    state: RecordingState = RecordingState.COMPLETE
    stored_expiry: bool = True
    held: bool = False


def write_audio(root: Path, ids: Sequence[str], seconds: float = 0.3) -> None:
    """Each recording's wrapped key and a short sealed segment, as the proxy writes them."""
    _, public = generate_keypair()
    codes = np.frombuffer(g711.encode(dialogue_call(seconds), "PCMU"), dtype=np.uint8)
    wire = wire_samples(codes.reshape(-1, 2), "PCMU")
    writer = RecordingWriter(LocalDiskStore(fsync="none"), chunk_seconds=1.0)
    try:
        for rid in ids:
            writer.open(uuid.UUID(rid), root, public, start_time_ms=1_700_000_000_000)
            assert writer.submit(uuid.UUID(rid), wire, True)
    finally:
        writer.stop(timeout=30)


async def catalogue(
    catalog: Catalog, root: Path, plan: Planned, policy: RetentionSettings = POLICY
) -> str:
    """The call, the recording (ended as planned, with its segment rows) and its hold."""
    rid = str(uuid.uuid4())
    started = plan.ended - timedelta(minutes=5)
    call = await catalog.calls.create_call(
        NewCall(f"{rid}@test", "+441234567890", "+441234000000", CallDirection.INBOUND, started)
    )
    await catalog.recordings.create_recording(
        NewRecording(call.id, rid, "g711", 8000, 2, started, recording_id=rid)
    )
    write_audio(root, [rid])
    for index, name in enumerate(LocalDiskStore().segments(root / rid)):
        data = (root / rid / name).read_bytes()
        facts = SegmentFacts(1, 2400, len(data), "0" * 64, True)
        await catalog.recordings.add_segment(NewSegment(rid, index, name, 0, facts))
    expires = policy.expires if plan.stored_expiry else None
    by = Attribution(reason="test" if plan.state.value != "complete" else None, at=plan.ended)
    await catalog.recordings.set_recording_state(rid, plan.state, by, expires=expires)
    return rid


def place_hold(db: Path, recording_id: str, at: datetime) -> str:
    """A complaint hold, as the holds part stores it (raw SQL on migration 7's table)."""
    hold_id = str(uuid.uuid4())
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO holds (id, recording_id, kind, reference, placed_by, placed_at)"
            " VALUES (?, ?, 'complaint', 'C-1', 'tester', ?)",
            (hold_id, recording_id, int(at.timestamp() * 1000)),
        )
    conn.close()
    return hold_id


def release_hold(db: Path, hold_id: str, at: datetime) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE holds SET released_at = ?, released_by = 'tester', release_reason = 'done'"
            " WHERE id = ?",
            (int(at.timestamp() * 1000), hold_id),
        )
    conn.close()


def has_key(root: Path, recording_id: str) -> bool:
    return (root / recording_id / KEY_FILE_NAME).exists()


def has_files(root: Path, recording_id: str) -> bool:
    return (root / recording_id).exists()
