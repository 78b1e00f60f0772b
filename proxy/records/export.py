"""Exporting one recording: verify, decrypt, log the access, write it where asked.

The order is the safeguard.  The output path is checked and claimed (a private
temporary file beside it) before anything is decrypted or logged, so a refused path
leaves no access entry.  The access is logged before any audio is written, so no audio
ever leaves the store unlogged.  The audio goes from memory into the temporary file
(through a pipe when ffmpeg encodes it) and is renamed onto the final name only when
complete.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..events import Publish, RecordingExported, discard
from ..recording_state import RecordingState
from ..storage import crypto
from ..storage.catalog import Catalog
from ..storage.export import ChannelChoice, EncodingError, encoder_for
from ..storage.output_file import OutputRefused, claim_output
from ..storage.reader import RecordingReader
from ..storage.segment import RecordingCorrupt


class ExportError(Exception):
    """A refused or failed export, said in one line for the person who asked for it."""


@dataclass(frozen=True, slots=True)
class ExportRequest:
    recording_id: str
    format: str  # one of proxy.storage.export.FORMATS
    channels: ChannelChoice
    out: Path
    reason: str
    actor: str
    force: bool = False


@dataclass(frozen=True, slots=True)
class Exported:
    out: Path
    duration_s: float


def private_key_file(path: Path, passphrase: str | None) -> Callable[[], X25519PrivateKey]:
    """The recording private key, loaded from ``path`` (protected by ``passphrase``, if
    any) only when called: after the output is claimed, so a refused export never
    touches the key.  A key that cannot be read or unlocked is an :class:`ExportError`
    naming the setting, never a traceback."""

    def load() -> X25519PrivateKey:
        try:
            return crypto.load_private_key(path, passphrase.encode() if passphrase else None)
        except (OSError, crypto.StorageCryptoError) as exc:
            raise ExportError(f"recording.private_key {path}: {exc}") from None

    return load


async def export_recording(
    catalog: Catalog,
    request: ExportRequest,
    *,
    recordings_dir: Path,
    private_key: Callable[[], X25519PrivateKey],
    publish: Publish = discard,
) -> Exported:
    """Export one recording.  ``private_key`` (see :func:`private_key_file`) is called
    only once the output is claimed; it raises :class:`ExportError` when it cannot.
    ``publish`` gets a ``RecordingExported`` once the file is complete."""
    reason = request.reason.strip()
    if not reason:
        raise ExportError("--reason must say why the recording is needed")
    recording = await catalog.recordings.get_recording(request.recording_id)
    if recording is None:
        raise ExportError(f"no recording {request.recording_id}")
    if recording.state is RecordingState.DISCARDED:
        raise ExportError(f"recording {recording.id} was discarded; no audio exists")
    if recording.state is RecordingState.DELETED:
        raise ExportError(
            f"recording {recording.id} was deleted {recording.deleted_at:%Y-%m-%d} "
            f"({recording.deleted_reason}); no audio exists"
        )
    if recording.state is RecordingState.DELETING:
        raise ExportError(
            f"recording {recording.id} is being deleted (its retention period is over)"
        )
    if recording.state.live:  # recording, paused or stopped: its call goes on
        raise ExportError(f"recording {recording.id} is still open ({recording.state.value})")
    out = request.out.absolute()
    try:
        with claim_output(out, force=request.force) as stream:
            reader = RecordingReader(recordings_dir / recording.directory, private_key())
            read = reader.recover if recording.state is RecordingState.INTERRUPTED else reader.read
            try:
                result = await asyncio.to_thread(read)
            except RecordingCorrupt as exc:
                raise ExportError(f"recording {recording.id} failed verification: {exc}") from None
            encode = encoder_for(result, request.format, request.channels)
            await catalog.access.log_access(
                actor=request.actor,
                action=f"export-{request.format}",
                reason=reason,
                recording_id=recording.id,
                detail=f"channels={request.channels} out={out}",
                facts={"format": request.format, "channels": request.channels},
            )
            await asyncio.to_thread(encode, stream)
    except (OutputRefused, EncodingError) as exc:
        raise ExportError(str(exc)) from None
    publish(
        RecordingExported(recording.id, request.actor, reason, request.format, request.channels)
    )
    return Exported(out, result.report.duration_s)
