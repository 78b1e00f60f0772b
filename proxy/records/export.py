"""The key custodian's export: verify, decrypt, audit, write one recording where asked.

``recproxy export`` is the tool of whoever holds the private key and its passphrase on
the records host (issue 15): not a user account, so no role decides; the operating
system's account does, and ``--by`` names the person it acts for.  It states a purpose
from ``[access] purposes`` and a reason, like every access, and may export one part of a
transferred call (``--part``) or one party (``--channels``).

The order is the safeguard.  The purpose, the reason and the recording's state are
checked before anything else; the output path is checked and claimed (a private
temporary file beside it) before the key is read; then the audio is rendered by
:mod:`proxy.records.playback` (the one decode path: an export and a playback give the
same bytes) and hashed, every chunk verified, before anything is logged, so a damaged
recording leaves no entry.  The access is logged — with its ``custodian_export`` audit
entry naming the OS account, ``--by``, purpose, format, part and the output's SHA-256 —
before any audio is written, so no audio ever leaves the store unlogged.  An export
outside ``[access]`` working hours then raises the DPO's ``outside_working_hours`` flag.
The audio goes into the temporary file and is renamed onto the final name only when
complete (and when it hashed as logged).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..config import AccessSettings
from ..events import Publish, RecordingExported, discard
from ..storage import crypto
from ..storage.catalog import Catalog
from ..storage.export import ChannelChoice, EncodingError
from ..storage.output_file import OutputRefused, claim_output
from ..storage.store import SegmentStore
from .actor import acting
from .errors import RecordingActionError, RecordingUnreadable, RecordNotFound
from .flagging import CUSTODIAN_EXPORT, Flagger
from .playback import AudioFormat, find_playable, render

#: What an export is for when ``--purpose`` is not given.
DEFAULT_PURPOSE = "accuracy"


class ExportError(Exception):
    """A refused or failed export, said in one line for the person who asked for it."""


class InvalidExportRequest(ExportError):
    """The request itself is malformed (an unknown purpose): bad usage, exit 2."""


@dataclass(frozen=True, slots=True)
class ExportRequest:
    recording_id: str
    format: AudioFormat
    channels: ChannelChoice
    out: Path
    reason: str
    account: str  # the operating system's account (proxy.records.actor.os_account)
    by: str | None = None  # the person the account acts for (--by)
    purpose: str = DEFAULT_PURPOSE
    part: int | None = None  # one part of a transferred call, numbered from 1
    force: bool = False

    @property
    def actor(self) -> str:
        """Who the access log and the audit chain name: ``account (by person)``."""
        return acting(self.account, self.by)


@dataclass(frozen=True, slots=True)
class Exported:
    out: Path
    duration_s: float
    sha256: str
    flagged: bool  # outside working hours: a flag was raised for the DPO


def private_key_file(path: Path, passphrase: bytes | None) -> Callable[[], X25519PrivateKey]:
    """The recording private key, loaded from ``path`` (protected by ``passphrase``, if
    any: see ``proxy.records.custody.key_passphrase``) only when called: after the output
    is claimed, so a refused export never touches the key.  A key that cannot be read or
    unlocked is an :class:`ExportError` naming the setting, never a traceback."""

    def load() -> X25519PrivateKey:
        try:
            return crypto.load_private_key(path, passphrase)
        except (OSError, crypto.StorageCryptoError) as exc:
            raise ExportError(f"recording.private_key {path}: {exc}") from None

    return load


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def export_recording(
    catalog: Catalog,
    request: ExportRequest,
    *,
    recordings_dir: Path,
    private_key: Callable[[], X25519PrivateKey],
    access: AccessSettings,
    store: SegmentStore | None = None,
    now: Callable[[], datetime] = _utc_now,
    publish: Publish = discard,
) -> Exported:
    """Export one recording (or one part of it).  ``private_key`` (see
    :func:`private_key_file`) is called only once the output is claimed; ``access`` gives
    the purposes and the working hours; ``now`` the time the export is logged at.
    ``publish`` gets a ``RecordingExported`` once the file is complete."""
    reason = request.reason.strip()
    if not reason:
        raise ExportError("--reason must say why the recording is needed")
    if request.purpose not in access.purposes:
        raise InvalidExportRequest(
            f"--purpose {request.purpose!r} is not one of [access] purposes: "
            f"{', '.join(access.purposes)}"
        )
    try:
        playable = await find_playable(catalog, request.recording_id, request.part)
    except (RecordNotFound, RecordingActionError) as exc:
        raise ExportError(str(exc)) from None
    recording = playable.recording
    out = request.out.absolute()
    try:
        with claim_output(out, force=request.force) as stream:
            rendering = await render(
                playable,
                format=request.format,
                channels=request.channels,
                recordings_dir=recordings_dir,
                private_key=private_key(),
                store=store,
            )
            sha256 = await rendering.sha256()  # every chunk verified before it is logged
            at = now()
            await catalog.access.log_access(
                actor=request.actor,
                action=f"{CUSTODIAN_EXPORT}-{request.format}",
                reason=reason,
                recording_id=recording.id,
                detail=f"channels={request.channels} out={out}",
                facts={
                    "os_user": request.account,
                    "by": request.by,
                    "purpose": request.purpose,
                    "format": request.format,
                    "channels": request.channels,
                    "part": request.part,
                    "sha256": sha256,
                },
                at=at,
            )
            flagged = await _flag(catalog, request.actor, at, access)
            written = hashlib.sha256()
            async for piece in rendering.chunks():
                written.update(piece)
                await asyncio.to_thread(stream.write, piece)
            if written.hexdigest() != sha256:
                raise ExportError(
                    f"recording {recording.id} read differently the second time; nothing written"
                )
    except (OutputRefused, EncodingError, RecordingUnreadable) as exc:
        raise ExportError(str(exc)) from None
    publish(
        RecordingExported(recording.id, request.actor, reason, request.format, request.channels)
    )
    return Exported(out, rendering.duration_s, sha256, flagged)


async def _flag(catalog: Catalog, actor: str, at: datetime, access: AccessSettings) -> bool:
    """Raise the DPO's flags the custodian export just logged earns (outside working
    hours), by the same rules and the same path as the records service's accesses."""
    logged = await catalog.audit.entries(since=at, actor=actor, action=CUSTODIAN_EXPORT)
    flagger = Flagger(catalog.audit, catalog.flags, access)
    return bool(await flagger.after(logged[-1]))
