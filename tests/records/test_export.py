"""The export use case, in process: what it refuses before touching the key or the access
log, that a completed export is logged and published as ``RecordingExported``, and that
an unreadable key is a one-line error naming the setting.  A real recording: written by
the RecordingWriter (AES-GCM segments) into a real SQLite catalog."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from proxy.config import AccessSettings
from proxy.events import RecordingExported
from proxy.media import g711
from proxy.media.g711 import wire_samples
from proxy.recording_state import RecordingState
from proxy.records.export import ExportError, ExportRequest, export_recording, private_key_file
from proxy.storage.catalog import CallDirection, NewCall, NewRecording, SqliteCatalog
from proxy.storage.crypto import generate_keypair, save_private_key
from proxy.storage.store import LocalDiskStore
from proxy.storage.writer import RecordingWriter
from tests.storage.conftest import dialogue_call


@dataclass(frozen=True)
class Stored:
    catalog: SqliteCatalog
    recordings: Path
    key: Path
    recording_id: str


@pytest.fixture
async def stored(tmp_path: Path) -> AsyncIterator[Stored]:
    private, public = generate_keypair()
    key = tmp_path / "recording.key"
    save_private_key(key, private, b"correct horse")
    rid = uuid.uuid4()
    codes = np.frombuffer(g711.encode(dialogue_call(1.0), "PCMU"), dtype=np.uint8)
    wire = wire_samples(codes.reshape(-1, 2), "PCMU")
    writer = RecordingWriter(LocalDiskStore(fsync="none"), chunk_seconds=1.0)
    try:
        writer.open(rid, tmp_path / "recordings", public, start_time_ms=1_700_000_000_000)
        for start in range(0, len(wire), 160):
            assert writer.submit(rid, wire[start : start + 160], start + 160 >= len(wire))
    finally:
        writer.stop(timeout=30)
    catalog = await SqliteCatalog(tmp_path / "catalog.sqlite3").open()
    now = datetime.now(UTC)
    call = await catalog.calls.create_call(
        NewCall(f"{rid}@test", "+441234567890", "+441234000000", CallDirection.INBOUND, now)
    )
    await catalog.recordings.create_recording(
        NewRecording(call.id, str(rid), "g711", 8000, 2, now, recording_id=str(rid))
    )
    yield Stored(catalog, tmp_path / "recordings", key, str(rid))
    await catalog.close()


def request(stored: Stored, out: Path) -> ExportRequest:
    return ExportRequest(
        recording_id=stored.recording_id, format="wav", channels="stereo", out=out,
        reason="complaint 2026-14", account="records", by="dr_smith", purpose="complaint",
    )  # fmt: skip


INSIDE = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)  # a Monday morning in London


def at(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


async def test_an_export_is_logged_then_published(stored: Stored, tmp_path: Path) -> None:
    await stored.catalog.recordings.set_recording_state(
        stored.recording_id, RecordingState.COMPLETE
    )
    published: list[object] = []
    done = await export_recording(
        stored.catalog,
        request(stored, tmp_path / "out.wav"),
        recordings_dir=stored.recordings,
        private_key=private_key_file(stored.key, b"correct horse"),
        access=AccessSettings(),
        now=at(INSIDE),
        publish=published.append,
    )
    assert done.out.is_file() and abs(done.duration_s - 1.0) < 0.05
    assert published == [
        RecordingExported(
            stored.recording_id, "records (by dr_smith)", "complaint 2026-14", "wav", "stereo"
        )
    ]
    (entry,) = await stored.catalog.access.access_log()
    assert (entry.actor, entry.action, entry.recording_id) == (
        "records (by dr_smith)",
        "custodian_export-wav",
        stored.recording_id,
    )
    (audited,) = await stored.catalog.audit.entries()  # one entry, committed with the access
    assert (audited.actor, audited.action, audited.object, audited.reason, audited.detail) == (
        "records (by dr_smith)",
        "custodian_export",
        f"recording:{stored.recording_id}",
        "complaint 2026-14",
        {
            "os_user": "records", "by": "dr_smith", "purpose": "complaint", "format": "wav",
            "channels": "stereo", "part": None,
            "sha256": hashlib.sha256(done.out.read_bytes()).hexdigest(),
        },
    )  # fmt: skip
    assert audited.at == entry.at == INSIDE
    assert done.sha256 == audited.detail["sha256"] and not done.flagged
    assert await stored.catalog.flags.flags() == []
    assert (await stored.catalog.audit.verify()).intact


@pytest.mark.parametrize("state", [RecordingState.RECORDING, RecordingState.STOPPED])
async def test_a_live_recording_is_refused_before_the_key_is_read(
    stored: Stored, tmp_path: Path, state: RecordingState
) -> None:
    if state is not RecordingState.RECORDING:
        await stored.catalog.recordings.set_recording_state(stored.recording_id, state)
    keys_read: list[int] = []

    def key() -> object:
        keys_read.append(1)
        raise AssertionError("the key must not be read")

    published: list[object] = []
    with pytest.raises(ExportError, match=f"still open \\({state.value}\\)"):
        await export_recording(
            stored.catalog,
            request(stored, tmp_path / "out.wav"),
            recordings_dir=stored.recordings,
            private_key=key,  # type: ignore[arg-type]
            access=AccessSettings(),
            publish=published.append,
        )
    assert keys_read == [] and published == []
    assert await stored.catalog.access.access_log() == []
    assert await stored.catalog.audit.entries(action="custodian_export") == []
    assert not (tmp_path / "out.wav").exists()


async def test_a_wrong_passphrase_names_the_setting_and_logs_nothing(
    stored: Stored, tmp_path: Path
) -> None:
    await stored.catalog.recordings.set_recording_state(
        stored.recording_id, RecordingState.COMPLETE
    )
    published: list[object] = []
    with pytest.raises(ExportError, match=f"recording.private_key {stored.key}"):
        await export_recording(
            stored.catalog,
            request(stored, tmp_path / "out.wav"),
            recordings_dir=stored.recordings,
            private_key=private_key_file(stored.key, b"wrong"),
            access=AccessSettings(),
            publish=published.append,
        )
    assert published == []
    assert await stored.catalog.access.access_log() == []
    assert await stored.catalog.audit.entries() == []  # refused before decrypting: no entry
    assert list(tmp_path.glob("out.wav*")) == []
