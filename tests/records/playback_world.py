"""A real recording to play back: written by the RecordingWriter (AES-GCM segments of two
seconds, so ranges cross segment files), catalogued in a real SQLite catalog with two
parts, as a transferred call has: part 1 by ``alice`` (team ``reception``) until
``TRANSFER_S``, part 2 by ``bob`` (team ``nurses``) to the end."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from proxy.media import g711
from proxy.media.g711 import wire_decode, wire_samples
from proxy.recording_state import RecordingState
from proxy.storage.catalog import CallDirection, NewCall, NewRecording, SqliteCatalog
from proxy.storage.crypto import generate_keypair, save_private_key, save_public_key
from proxy.storage.store import LocalDiskStore
from proxy.storage.writer import RecordingWriter
from tests.storage.conftest import dialogue_call

SECONDS = 7.3  # four segments of 2 s, the last one short
TRANSFER_S = 3.25
RATE = 8000
START_MS = 1_700_000_000_000
STARTED = datetime.fromtimestamp(START_MS / 1000, UTC)
PASSPHRASE = "correct horse"


@dataclass(frozen=True)
class Written:
    folder: Path
    recordings: Path
    private_key: Path
    public_key: Path
    recording_id: str
    audio: np.ndarray  # (frames, 2) int16 as heard: caller left, call taker right


def write_recording(folder: Path, *, passphrase: str | None = PASSPHRASE) -> Written:
    """The key pair on disk and one µ-law recording of ``SECONDS`` in ``folder``."""
    private, public = generate_keypair()
    save_private_key(folder / "recording.key", private, passphrase.encode() if passphrase else None)
    save_public_key(folder / "recording.pub", public)
    recording_id, audio = write_audio(folder / "recordings", public)
    return Written(
        folder,
        folder / "recordings",
        folder / "recording.key",
        folder / "recording.pub",
        recording_id,
        audio,
    )


def write_audio(
    recordings: Path, public: X25519PublicKey, audio: np.ndarray | None = None
) -> tuple[str, np.ndarray]:
    """One µ-law recording in ``recordings`` of ``audio`` ((frames, 2) int16; default
    ``SECONDS`` of the dialogue call), for ``public``'s holder: its id and its audio as
    heard."""
    rid = uuid.uuid4()
    heard = dialogue_call(SECONDS) if audio is None else audio
    codes = np.frombuffer(g711.encode(heard, "PCMU"), dtype=np.uint8)
    wire = wire_samples(codes.reshape(-1, 2), "PCMU")
    writer = RecordingWriter(LocalDiskStore(fsync="none"), chunk_seconds=1.0)
    try:
        writer.open(rid, recordings, public, segment_seconds=2, start_time_ms=START_MS)
        for start in range(0, len(wire), 160):
            assert writer.submit(rid, wire[start : start + 160], start + 160 >= len(wire))
    finally:
        writer.stop(timeout=30)
    return str(rid), wire_decode(wire)


async def catalogue(
    catalog: SqliteCatalog,
    recording_id: str,
    state: RecordingState = RecordingState.COMPLETE,
    *,
    started: datetime = STARTED,
) -> None:
    """The call (from ``started``), its recording in ``state`` and its two parts."""
    call = await catalog.calls.create_call(
        NewCall(f"{recording_id}@test", "+441234567890", "+441234000000",
                CallDirection.INBOUND, started)
    )  # fmt: skip
    await catalog.recordings.create_recording(
        NewRecording(call.id, recording_id, "g711", RATE, 2, started, recording_id=recording_id)
    )
    await catalog.parts.begin(recording_id, operator="alice", team="reception", at=started)
    transfer = started + timedelta(seconds=TRANSFER_S)
    await catalog.parts.begin(recording_id, operator="bob", team="nurses", at=transfer)
    if state is not RecordingState.RECORDING:
        await catalog.recordings.set_recording_state(recording_id, state)


def part_slices() -> tuple[slice, slice]:
    """The frames of part 1 and part 2."""
    cut = round(TRANSFER_S * RATE)
    return slice(0, cut), slice(cut, None)


def decoded_seconds(mp3: bytes) -> float:
    """How long ``mp3`` plays, decoded by ffmpeg (8 kHz mono)."""
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "ffmpeg is needed for MP3"
    pcm = subprocess.run(
        [ffmpeg, "-v", "error", "-i", "pipe:0", "-f", "s16le", "-ac", "1", "-"],
        input=mp3,
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    return len(pcm) / 2 / 8000
