"""A subject access case's answer: its released calls as one signed bundle (P17-P19).

The DPO's decisions in the case say what leaves: ``both`` parties (a stereo WAV, caller
left) or the ``caller`` only (a mono WAV of the caller's channel: the call taker's is
left out, not silenced, so nothing can be turned back up).  Each released call becomes
a folder of the bundle, numbered in the order the calls happened so a requester can
read it::

    README.txt                               what the bundle holds, in plain words
    calls/1-2026-12-01T093000Z/recording.wav
    calls/1-2026-12-01T093000Z/recording.mp3
    calls/1-2026-12-01T093000Z/transcript.txt  (Caller / Call taker, timestamps)
    calls/1-2026-12-01T093000Z/transcript.vtt
    ...

Everything that can be checked is checked before a byte is written or a recording is
touched: the case exists and is not closed, it releases something, every released call
still holds audio, the transcript model loads, and neither the folder nor the ZIP
exists.  Then each call's export is asked of the gate (``export_sar``: audited per
recording), written into a :class:`~proxy.records.bundle.BundleDraft` (audio streamed
from the playback renderer: decrypted in memory, never a plaintext file outside the
draft), the manifest is signed and the draft renamed into place, the ZIP made, and the
export recorded in the case (``sar.export``, marking it answered).  A failure anywhere
— a full disk included — leaves neither the folder nor the ZIP, and no export recorded.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..config import TranscriptsSettings
from ..recording_state import RecordingState
from ..storage.catalog import (
    Catalog,
    Release,
    SarCase,
    SarCaseError,
    SarExport,
    SarRecording,
    SarState,
)
from ..storage.export import ChannelChoice, EncodingError
from ..storage.output_file import OutputRefused
from ..storage.store import SegmentStore
from .bundle import (
    BundleDraft,
    BundleError,
    BundleInfo,
    BundleRecording,
    Gap,
    SealedBundle,
    in_worker,
    zip_bundle,
)
from .errors import (
    AccessRequestConflict,
    InvalidAccessRequest,
    RecordingActionError,
    RecordNotFound,
)
from .gate import Gate, require
from .playback import AudioFormat, Playable, Rendering, find_playable, render
from .policy import Action, Actor
from .sar import refuse_early
from .transcripts.engine import TranscriptionEngine, load_engine
from .transcripts.model import TranscriptionUnavailable
from .transcripts.transcribe import transcribe_playable

PURPOSE = "subject_access"
README = "README.txt"
STAGES = ("checking", "audio", "transcript", "sealing", "zip", "done")


@dataclass(frozen=True, slots=True)
class ExportProgress:
    """Where an export is: its ``stage`` (one of :data:`STAGES`), the calls finished
    so far of those released, and the recording being worked on."""

    stage: str
    done: int
    total: int
    recording_id: str | None = None


@dataclass(frozen=True, slots=True)
class SarExportResult:
    """The sealed bundle, its ZIP (if asked for) and the case's record of the export."""

    bundle: SealedBundle
    zip_path: Path | None
    export: SarExport


class SarExportError(Exception):
    """The bundle cannot be made here (no transcript model, a full disk, a name already
    taken): one line for the person; nothing was left behind."""


@dataclass(frozen=True, slots=True)
class _Call:
    """A released call, checked: its folder in the bundle and what it releases."""

    number: int
    attached: SarRecording
    playable: Playable

    @property
    def release(self) -> Release:
        assert self.attached.release is not None  # released calls only
        return self.attached.release

    @property
    def folder(self) -> str:
        started = self.playable.recording.started_at.astimezone(UTC)
        return f"calls/{self.number}-{started:%Y-%m-%dT%H%M%SZ}"

    @property
    def channels(self) -> ChannelChoice:
        return "stereo" if self.release is Release.BOTH else "caller"


@dataclass(frozen=True, slots=True)
class _Written:
    """A call in the bundle: the manifest's entry and how long its audio plays."""

    call: _Call
    recording: BundleRecording
    duration_s: float


Progress = Callable[[ExportProgress], None]


class SarExporter:
    """Exports a case's released calls; see the module docstring.  The transcript engine
    is loaded on the first export that wants one and kept (a second or two, ~200 MB)."""

    def __init__(
        self,
        gate: Gate,
        catalog: Catalog,
        *,
        recordings_dir: Path,
        private_key: X25519PrivateKey,
        signing_key: Ed25519PrivateKey,
        transcripts: TranscriptsSettings,
        store: SegmentStore | None = None,
    ) -> None:
        self._gate = gate
        self._catalog = catalog
        self._recordings_dir = recordings_dir
        self._store = store
        self._private_key = private_key
        self._signing_key = signing_key
        self._transcripts = transcripts
        self._engine: TranscriptionEngine | None = None
        self._loading = asyncio.Lock()  # two exports at once load the model once

    async def export(
        self,
        actor: Actor,
        case_id: str,
        out: Path,
        *,
        make_zip: bool = False,
        transcripts: bool = True,
        progress: Progress | None = None,
    ) -> SarExportResult:
        """Write the bundle folder ``out`` (which must not exist), and ``OUT.zip`` beside
        it when ``make_zip``.  Errors: ``RecordNotFound`` (no such case), ``AccessDenied``,
        ``InvalidAccessRequest`` (nothing released), ``AccessRequestConflict`` (a closed
        case; a released call without audio), :class:`SarExportError`."""
        report = progress or _ignore
        await refuse_early(self._gate, actor, Action.VIEW_SAR, f"case {case_id}")
        case = await self._catalog.sar.get(case_id)  # unknown: 404, not audited (as show)
        if case is None:
            raise RecordNotFound(f"no subject access case {case_id}")
        require(await self._gate.check(actor, Action.VIEW_SAR, reason=f"case {case.id}"))
        released = _released(case)
        out = out.absolute()  # the case records where the bundle went
        if not out.name or out.name in (".", ".."):
            raise SarExportError(f"{out}: name the bundle's own folder, e.g. {out / case.id}")
        zip_path = out.with_name(f"{out.name}.zip") if make_zip else None
        for taken in (out, zip_path):
            if taken is not None and os.path.lexists(taken):
                raise SarExportError(f"{taken} exists; a bundle is never written over anything")
        if not out.parent.is_dir():
            raise SarExportError(f"{out}: folder {out.parent} does not exist")
        calls = await self._check(case, released, report)
        engine = await self._engine_for() if transcripts else None
        for call in calls:  # every call asked of the gate (and audited) before writing
            require(
                await self._gate.check(
                    actor,
                    Action.EXPORT_SAR,
                    recording_id=call.attached.recording_id,
                    purpose=PURPOSE,
                    reason=f"case {case.id}",
                )
            )
        try:
            return await self._write(actor, case, calls, out, zip_path, engine, report)
        except OSError as exc:
            raise SarExportError(_disk_error(out, exc)) from None
        except (BundleError, OutputRefused, EncodingError) as exc:
            raise SarExportError(str(exc)) from None

    async def _check(
        self, case: SarCase, released: Sequence[SarRecording], report: Progress
    ) -> list[_Call]:
        """Every released call, if each still holds its audio."""
        calls = []
        for number, attached in enumerate(released, start=1):
            report(ExportProgress("checking", 0, len(released), attached.recording_id))
            try:
                playable = await find_playable(self._catalog, attached.recording_id)
            except (RecordNotFound, RecordingActionError) as exc:
                raise AccessRequestConflict(
                    f"{exc}, but case {case.id} releases it: the DPO revises the decision "
                    f"(recproxy sar decide {case.id} {attached.recording_id} --release refuse)"
                ) from None
            calls.append(_Call(number, attached, playable))
        return calls

    async def _engine_for(self) -> TranscriptionEngine:
        async with self._loading:
            if self._engine is None:
                try:
                    self._engine = await asyncio.to_thread(load_engine, self._transcripts)
                except TranscriptionUnavailable as exc:
                    raise SarExportError(
                        f"{exc}; or export the audio alone (recproxy sar export --no-transcripts;"
                        ' over the API, "transcripts": false)'
                    ) from None
            return self._engine

    async def _write(
        self,
        actor: Actor,
        case: SarCase,
        calls: Sequence[_Call],
        out: Path,
        zip_path: Path | None,
        engine: TranscriptionEngine | None,
        report: Progress,
    ) -> SarExportResult:
        total = len(calls)
        written = []
        with BundleDraft(out) as draft:
            for call in calls:
                written.append(await self._write_call(draft, call, engine, report, total))
            text = _readme(case, written, engine is not None).encode()
            await in_worker(draft.add, README, [text])
            report(ExportProgress("sealing", total, total))
            info = BundleInfo(
                case_id=case.id,
                exported_by=actor.name,
                exported_at=self._gate.now(),
                purpose=PURPOSE,
                reason=f"subject access case {case.id} for {case.requester}",
                recordings=tuple(w.recording for w in written),
            )
            try:
                bundle = await in_worker(draft.seal, info, self._signing_key)
            except asyncio.CancelledError:  # sealed in the worker as the export was cancelled
                shutil.rmtree(out, ignore_errors=True)
                raise
        zipped = False
        try:
            if zip_path is not None:
                report(ExportProgress("zip", total, total))
                await asyncio.to_thread(zip_bundle, bundle.path, zip_path)
                zipped = True
            export = await self._catalog.sar.record_export(
                case.id,
                by=actor.name,
                bundle=str(bundle.path),
                manifest_sha256=bundle.manifest_sha256,
                releases={c.attached.recording_id: c.release for c in calls},
                at=info.exported_at,
            )
        except BaseException as exc:  # the sealed folder must not outlive a failed export
            shutil.rmtree(bundle.path, ignore_errors=True)
            if zip_path is not None and zipped:
                zip_path.unlink(missing_ok=True)
            if isinstance(exc, SarCaseError):  # closed while it was being written
                raise AccessRequestConflict(str(exc)) from None
            raise
        report(ExportProgress("done", total, total))
        return SarExportResult(bundle, zip_path, export)

    async def _write_call(
        self,
        draft: BundleDraft,
        call: _Call,
        engine: TranscriptionEngine | None,
        report: Progress,
        total: int,
    ) -> _Written:
        rid = call.attached.recording_id
        report(ExportProgress("audio", call.number - 1, total, rid))
        files = [f"{call.folder}/recording.wav", f"{call.folder}/recording.mp3"]
        wav = await self._render(call, "wav")
        await draft.add_stream(files[0], wav.chunks())
        mp3 = await self._render(call, "mp3")
        await draft.add_stream(files[1], mp3.chunks())
        if engine is not None:
            report(ExportProgress("transcript", call.number - 1, total, rid))
            transcript = await transcribe_playable(
                call.playable,
                engine,
                caller_only=call.release is Release.CALLER,
                recordings_dir=self._recordings_dir,
                private_key=self._private_key,
                store=self._store,
                vad_mode=self._transcripts.vad_mode,
            )
            files += [f"{call.folder}/transcript.txt", f"{call.folder}/transcript.vtt"]
            await in_worker(draft.add, files[2], [transcript.text().encode()])
            await in_worker(draft.add, files[3], [transcript.webvtt().encode()])
        recording = call.playable.recording
        entry = BundleRecording(
            recording_id=rid,
            parts=tuple(p.part for p in call.playable.parts),
            files=tuple(files),
            state=recording.state.value,
            gaps=await self._gaps(call, wav.duration_s),
        )
        return _Written(call, entry, wav.duration_s)

    async def _render(self, call: _Call, format: AudioFormat) -> Rendering:
        return await render(
            call.playable,
            format=format,
            channels=call.channels,
            recordings_dir=self._recordings_dir,
            private_key=self._private_key,
            store=self._store,
        )

    async def _gaps(self, call: _Call, audio_s: float) -> tuple[Gap, ...]:
        """An interrupted recording's missing end: from where its audio stops to where
        the call ended, if the catalog knows (else a gap of no length marks the stop)."""
        recording = call.playable.recording
        if recording.state is not RecordingState.INTERRUPTED:
            return ()
        start_ms = round(audio_s * 1000)
        placed = await self._catalog.calls.get_call(recording.call_id)
        ended = None if placed is None else placed.ended_at
        end_ms = start_ms
        if ended is not None:
            end_ms = max(start_ms, round((ended - recording.started_at).total_seconds() * 1000))
        return (Gap(start_ms, end_ms),)


def _ignore(_progress: ExportProgress) -> None:
    return None


def _released(case: SarCase) -> list[SarRecording]:
    """The case's released calls; :class:`AccessRequestConflict` for a closed case,
    :class:`InvalidAccessRequest` naming the counts when nothing is released."""
    if case.state is SarState.CLOSED:
        raise AccessRequestConflict(f"case {case.id} is closed; nothing more is exported")
    released = [r for r in case.recordings if r.released]
    if not released:
        refused = sum(r.release is Release.REFUSE for r in case.recordings)
        undecided = sum(r.release is None for r in case.recordings)
        raise InvalidAccessRequest(
            f"case {case.id} releases no call ({refused} refused, {undecided} undecided): "
            "nothing to export"
        )
    return released


def _disk_error(out: Path, exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return f"no space left on the disk writing {out}; nothing was kept (free space, then retry)"
    return f"cannot write {out}: {exc.strerror or exc}; nothing was kept"


def _readme(case: SarCase, written: Sequence[_Written], transcripts: bool) -> str:
    """The bundle's ``README.txt``: what it holds, in plain words, for the requester."""
    lines = [
        f"Copies of your calls: subject access case {case.id}",
        "",
        f"This folder holds the {len(written)} call(s) released to you. Each call has its",
        "own folder under calls/, numbered in the order the calls took place:",
        "  recording.wav   the recording (plays in any audio player)",
        "  recording.mp3   the same recording, smaller",
    ]
    if transcripts:
        lines += [
            "  transcript.txt  a machine transcript with times; 'Caller' is you,",
            "                  'Call taker' is the person who answered",
            "  transcript.vtt  the same transcript as WebVTT subtitles",
        ]
    lines += ["", "Calls (times in UTC):"]
    for w in written:
        started = w.call.playable.recording.started_at.astimezone(UTC)
        both = w.call.release is Release.BOTH
        who = "both parties" if both else "your voice only (the other party is removed)"
        lines.append(
            f"  {w.call.folder}: {started:%Y-%m-%d %H:%M:%S} UTC, {_duration(w.duration_s)}, {who}"
        )
        if w.recording.gaps:
            lines.append("      the recording was interrupted: its end is missing")
    lines += [
        "",
        "manifest.json lists every file with its SHA-256 checksum and is signed",
        "(manifest.sig) with the organisation's key (signing-key.pub). To check that",
        "nothing was changed: recproxy verify-bundle THIS-FOLDER --fingerprint <the",
        "key's SHA-256 the organisation publishes>, or follow docs/bundle-format.md",
        "with standard tools (sha256sum, openssl).",
        "",
    ]
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60} min {whole % 60:02d} s"
