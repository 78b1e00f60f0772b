"""Start-up recovery of the recording service against a real catalog and real files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from proxy.calls.recording import RecordingService
from proxy.config import RecordingSettings
from proxy.media.recorder import Recorder
from proxy.storage import crypto
from proxy.storage.catalog import CallDirection, RecordingState, SqliteCatalog


async def test_a_discarded_recording_left_on_disk_by_a_crash_is_shredded_at_start(
    tmp_path: Path,
) -> None:
    recordings = tmp_path / "recordings"
    _, public = crypto.generate_keypair()
    async with SqliteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        call = await catalog.create_call(
            sip_call_id="c", caller="+441234567890", callee="surgery",
            direction=CallDirection.INBOUND, started_at=datetime.now(UTC),
        )  # fmt: skip
        kept = await catalog.create_recording(
            call.id, directory="kept", encoding="ulaw", sample_rate=8000, channels=2,
            started_at=datetime.now(UTC), recording_id="11111111-1111-4111-8111-111111111111",
        )  # fmt: skip
        gone = await catalog.create_recording(
            call.id, directory="gone", encoding="ulaw", sample_rate=8000, channels=2,
            started_at=datetime.now(UTC), recording_id="22222222-2222-4222-8222-222222222222",
        )  # fmt: skip
        await catalog.set_recording_state(kept.id, RecordingState.COMPLETE)
        await catalog.set_recording_state(
            gone.id, RecordingState.DISCARDED, actor="alice", reason="caller distressed"
        )
        for rid in (kept.id, gone.id):  # as the crash left them
            folder = recordings / rid
            folder.mkdir(parents=True)
            (folder / "key").write_bytes(b"wrapped key")
            (folder / "seg-000000.rec").write_bytes(b"audio")
        service = RecordingService(
            RecordingSettings(dir=recordings), catalog, Recorder(lambda k, b, f: None), public
        )
        await service.recover()
        assert not (recordings / gone.id).exists()
        assert (recordings / kept.id / "key").exists()
