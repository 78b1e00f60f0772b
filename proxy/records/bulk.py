"""Bulk export (P11, P21): many recordings at once, only with a DPO's approval.

* A records officer or the DPO asks (policy ``request_bulk``), naming 1 to
  ``[access] bulk_max_recordings`` recordings, a configured purpose and a reason.
* A DPO other than the one who asked approves it for ``days`` (1 to ``[access]
  grant_days``, the default) or refuses it, with a reason (``approve_bulk``; a records
  officer decides single access requests, never bulk ones).
* The requester then exports it as one ZIP: the request as a whole is decided through
  the gate (``bulk_export`` with the DPO's approval), then each recording again, just
  before its audio, so each is audited on its own; one that cannot be exported (deleted,
  discarded, still open, being deleted, unreadable) is refused *for that row* and listed
  in the manifest, not fatal to the rest (an unreadable one's cause goes to the log).
  When the whole archive has been produced, one ``bulk.export`` audit entry names each
  file's SHA-256 and the manifest's.

The archive is built on the fly (:class:`BulkExport`): ``zipfile`` writes stored entries
into a small sink that the HTTP layer drains after every piece, so nothing decrypted
touches the disk and memory holds one piece of one recording at a time (a WAV segment;
an MP3 is one recording, encoded whole by :mod:`proxy.records.playback`).  The last
entry, ``manifest.json``, lists who exported what, when and why, with each file's
SHA-256 as streamed.

Values arrive as the person sent them and are checked before anything is asked or
written, so bad input changes nothing, not even the audit chain.  Errors are those of
:mod:`proxy.records.errors`, each one line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..storage.catalog import BulkRequest, Catalog, NewBulkRequest, RequestState, format_utc
from ..storage.export import EncodingError
from ..storage.store import SegmentStore
from .access import decision_terms, given_text, mapped
from .errors import (
    AccessRequestConflict,
    InvalidAccessRequest,
    RecordingActionError,
    RecordingUnreadable,
    RecordNotFound,
)
from .gate import Gate, require
from .playback import AudioFormat, Rendering, find_playable, render
from .policy import AccessQuery, Action, Actor, BulkApproval

log = logging.getLogger(__name__)

#: The formats a bulk export writes (one file per recording).
BULK_FORMATS: tuple[AudioFormat, ...] = ("wav", "mp3")
MANIFEST = "manifest.json"


def _recording_ids(value: object, highest: int) -> tuple[str, ...]:
    """The recording ids as sent: a list of 1 to ``highest`` texts, none twice."""
    if not isinstance(value, list) or not value:
        raise InvalidAccessRequest("recording_ids must be a list of one or more recording ids")
    if len(value) > highest:
        raise InvalidAccessRequest(
            f"recording_ids names {len(value)} recordings; at most {highest} "
            "([access] bulk_max_recordings)"
        )
    if not all(isinstance(each, str) and each.strip() for each in value):
        raise InvalidAccessRequest("each of recording_ids must be a recording id (text)")
    if len(set(value)) != len(value):
        raise InvalidAccessRequest("recording_ids names a recording more than once")
    return tuple(value)


class BulkDesk:
    """Bulk requests and their export; see the module docstring.  ``recordings_dir``
    and ``private_key`` open the audio (the records service's)."""

    def __init__(
        self,
        gate: Gate,
        catalog: Catalog,
        recordings_dir: Path,
        private_key: X25519PrivateKey,
        store: SegmentStore | None = None,
    ) -> None:
        self._gate = gate
        self._catalog = catalog
        self._audio = _Audio(catalog, recordings_dir, private_key, store)

    async def request(
        self, actor: Actor, recording_ids: object, purpose: object, reason: object
    ) -> BulkRequest:
        """Ask for a bulk export of ``recording_ids`` (pending until a DPO decides)."""
        ids = _recording_ids(recording_ids, self._gate.settings.bulk_max_recordings)
        what, why = given_text("purpose", purpose), given_text("reason", reason)
        purposes = self._gate.settings.purposes
        if what not in purposes:
            raise InvalidAccessRequest(f"purpose {what!r} is not one of {', '.join(purposes)}")
        if not why:
            raise InvalidAccessRequest("a bulk request needs a reason")
        asking = AccessQuery(actor, Action.REQUEST_BULK, self._gate.now(), purpose=what, reason=why)
        if self._gate.decide(asking).allowed:  # one who may not ask learns of no recording
            for each in ids:  # before the audit: an unknown id changes nothing
                if await self._catalog.recordings.get_recording(each) is None:
                    raise RecordNotFound(f"recording {each} does not exist")
        require(await self._gate.check(actor, Action.REQUEST_BULK, purpose=what, reason=why))
        new = NewBulkRequest(actor.name, what, why, ids)
        return await mapped(self._catalog.bulk.request(new, at=self._gate.now()))

    async def decide(
        self, actor: Actor, request_id: str, approve: object, reason: object, days: object = None
    ) -> BulkRequest:
        """Approve (for ``days``) or refuse a pending bulk request: a DPO, not its
        requester."""
        approve, why, length = decision_terms(approve, reason, days, self._gate.settings.grant_days)
        found = await self._get(request_id)
        decision = await self._gate.check(
            actor,
            Action.APPROVE_BULK,
            purpose=found.purpose,
            reason=why,
            requester=found.requester,
        )
        require(decision)
        if found.state is not RequestState.PENDING:
            raise AccessRequestConflict(f"bulk request {found.id} is {found.state.value}")
        now = self._gate.now()
        expires = None if length is None else now + timedelta(days=length)
        return await mapped(
            self._catalog.bulk.decide(
                found.id, approve=approve, by=actor.name, reason=why, expires_at=expires, at=now
            )
        )

    async def withdraw(self, actor: Actor, request_id: str) -> BulkRequest:
        """The requester withdraws their pending request; another's is not found."""
        found = await self._catalog.bulk.get(request_id)
        if found is None or found.requester != actor.name:
            raise RecordNotFound(f"no bulk request of yours has the id {request_id}")
        return await mapped(
            self._catalog.bulk.withdraw(found.id, by=actor.name, at=self._gate.now())
        )

    async def visible(self, actor: Actor, state: object = None) -> list[BulkRequest]:
        """The bulk requests ``actor`` made or may decide (a DPO: all), in the order
        made, of ``state`` if given; one audit entry for the listing."""
        wanted = None if state is None else _state(state)
        now = self._gate.now()
        shown = [
            found
            for found in await self._catalog.bulk.requests(state=wanted)
            if found.requester == actor.name
            or self._gate.decide(
                AccessQuery(actor, Action.APPROVE_BULK, now, requester=found.requester)
            ).allowed
        ]
        detail = {"state": None if wanted is None else wanted.value, "shown": len(shown)}
        await self._gate.record(actor, "bulk_requests.list", detail, at=now)
        return shown

    async def export(self, actor: Actor, request_id: str, format: object) -> BulkExport:
        """The approved request as a ZIP to stream (see :class:`BulkExport`), once the
        gate allows the request as a whole: its requester, with a DPO's unexpired
        approval.  Anyone else, or before approval, is refused ``bulk.no_approval`` (or
        ``bulk.not_permitted``), audited."""
        if format not in BULK_FORMATS:
            raise InvalidAccessRequest(f"format must be one of {', '.join(BULK_FORMATS)}")
        found = await self._get(request_id)
        approval = _approval(found) if found.requester == actor.name else None
        decision = await self._gate.check(
            actor,
            Action.BULK_EXPORT,
            purpose=found.purpose,
            reason=found.reason,
            bulk_approval=approval,
        )
        require(decision)
        assert approval is not None  # the policy allows no bulk export without one
        return BulkExport(self._gate, self._audio, actor, found, approval, format)

    async def _get(self, request_id: str) -> BulkRequest:
        found = await self._catalog.bulk.get(request_id)
        if found is None:
            raise RecordNotFound(f"bulk request {request_id} does not exist")
        return found


def _state(value: object) -> RequestState:
    for state in RequestState:
        if value == state.value:
            return state
    known = ", ".join(s.value for s in RequestState)
    raise InvalidAccessRequest(f"state must be one of {known}")


def _approval(found: BulkRequest) -> BulkApproval | None:
    """The DPO's approval of ``found``, if it was approved (expired or not: the policy
    tells)."""
    if found.state is not RequestState.APPROVED or found.expires_at is None:
        return None
    return BulkApproval(found.decided_by or "", found.expires_at)


@dataclass(frozen=True)
class _Audio:
    """Where a bulk export's audio comes from: the catalog, the files, the key."""

    catalog: Catalog
    recordings_dir: Path
    private_key: X25519PrivateKey = field(repr=False)
    store: SegmentStore | None = None

    async def rendering(self, recording_id: str, format: AudioFormat) -> Rendering:
        """The whole recording as ``format``; the errors of :mod:`.playback`."""
        playable = await find_playable(self.catalog, recording_id)
        return await render(
            playable,
            format=format,
            recordings_dir=self.recordings_dir,
            private_key=self.private_key,
            store=self.store,
        )


class _Sink:
    """What ``zipfile`` writes, kept until :meth:`take` hands it on: a writable with no
    ``tell`` or ``seek``, so ``zipfile`` streams (data descriptors after each entry)."""

    def __init__(self) -> None:
        self._pieces: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._pieces.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        """Nothing to flush: :meth:`take` hands the bytes on."""

    def close(self) -> None:
        """Nothing to close: the bytes live only until taken."""

    def take(self) -> bytes:
        data, self._pieces = b"".join(self._pieces), []
        return data


@dataclass(frozen=True, slots=True)
class _Exported:
    recording_id: str
    name: str
    size: int
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "recording_id": self.recording_id,
            "file": self.name,
            "bytes": self.size,
            "sha256": self.sha256,
        }


class BulkExport:
    """One export of an approved bulk request, as ZIP bytes: iterate :meth:`stream`
    once.  ``refused`` and ``exported`` fill in as it goes."""

    content_type = "application/zip"

    def __init__(
        self,
        gate: Gate,
        audio: _Audio,
        actor: Actor,
        request: BulkRequest,
        approval: BulkApproval,
        format: AudioFormat,
    ) -> None:
        self._gate = gate
        self._audio = audio
        self.actor = actor
        self.request = request
        self.approval = approval
        self.format = format
        self.at = gate.now()
        self.exported: list[_Exported] = []
        self.refused: list[dict[str, str]] = []

    @property
    def filename(self) -> str:
        return f"bulk-{self.request.id}.zip"

    async def stream(self) -> AsyncGenerator[bytes, None]:
        """The ZIP, piece by piece: each recording decided (and audited) just before its
        audio, the manifest last, then the ``bulk.export`` audit entry (with the files' and
        the manifest's SHA-256)."""
        sink = _Sink()
        at = self.at
        stamp = (at.year, at.month, at.day, at.hour, at.minute, at.second)
        with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as archive:
            for recording_id in self.request.recording_ids:
                async for piece in self._entry(archive, sink, recording_id, stamp):
                    yield piece
            manifest = json.dumps(self.manifest(), indent=2, sort_keys=True).encode()
            archive.writestr(zipfile.ZipInfo(MANIFEST, date_time=stamp), manifest)
        yield sink.take()
        files = [{"recording_id": e.recording_id, "sha256": e.sha256} for e in self.exported]
        await self._gate.record(
            self.actor,
            "bulk.export",
            {
                "request": self.request.id,
                "format": self.format,
                "files": files,
                "refused": self.refused,
                "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
            },
        )

    async def _entry(
        self,
        archive: zipfile.ZipFile,
        sink: _Sink,
        recording_id: str,
        stamp: tuple[int, int, int, int, int, int],
    ) -> AsyncIterator[bytes]:
        """One recording's file, or its row in ``refused``."""
        decision = await self._gate.check(
            self.actor,
            Action.BULK_EXPORT,
            recording_id=recording_id,
            purpose=self.request.purpose,
            reason=self.request.reason,
            bulk_approval=self.approval,
        )
        if not decision.allowed:
            self._refuse(recording_id, decision.rule, decision.reason)
            return
        try:
            rendering = await self._audio.rendering(recording_id, self.format)
        except (RecordNotFound, RecordingActionError) as exc:  # still open, being deleted
            self._refuse(recording_id, "unavailable", str(exc))
            return
        except (RecordingUnreadable, EncodingError) as exc:  # the cause is for the log
            log.error("integrity: bulk export %s: %s", self.request.id, exc)
            self._refuse(recording_id, "unreadable", "the audio cannot be read or encoded")
            return
        name = f"{recording_id}.{self.format}"
        digest, size = hashlib.sha256(), 0
        info = zipfile.ZipInfo(name, date_time=stamp)
        with archive.open(info, "w") as entry:
            async for piece in rendering.chunks():
                entry.write(piece)
                digest.update(piece)
                size += len(piece)
                yield sink.take()
        yield sink.take()
        self.exported.append(_Exported(recording_id, name, size, digest.hexdigest()))

    def _refuse(self, recording_id: str, rule: str, detail: str) -> None:
        self.refused.append({"recording_id": recording_id, "rule": rule, "detail": detail})

    def manifest(self) -> dict[str, Any]:
        """Who exported what, when and why, and each file's SHA-256."""
        request = self.request
        return {
            "bulk_request": request.id,
            "exported_by": self.actor.name,
            "exported_at": format_utc(self.at),
            "requester": request.requester,
            "purpose": request.purpose,
            "reason": request.reason,
            "approved_by": self.approval.approved_by,
            "approved_at": None if request.decided_at is None else format_utc(request.decided_at),
            "expires_at": format_utc(self.approval.expires_at),
            "format": self.format,
            "recording_ids": list(request.recording_ids),
            "files": [e.as_dict() for e in self.exported],
            "refused": self.refused,
        }
