"""Recording a bridged call: the recorder, the writer thread and the catalog together.

``start`` opens a recording (catalog row, writer, recorder channels) and returns the
two packet sinks the relay feeds; ``finish`` flushes the last block, waits for the
writer to seal the final chunk, and writes what is on disk into the catalog (segments,
their hashes, the duration).  ``recover`` does the same at start-up for recordings a
crash left behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from ..config import RecordingSettings
from ..media.recorder import Recorder, RecordingChannelPair
from ..storage import writer as storage_writer
from ..storage.catalog import Catalog, CatalogError, EventChannel, RecordingState
from ..storage.reader import recover as recover_directory
from ..storage.segment import KEY_FILE_NAME, RecordingCorrupt, scan_segment
from ..storage.writer import RecordingWriter, shred_recording

log = logging.getLogger(__name__)

PacketSink = Callable[[int, int, bytes], None]


@dataclass(eq=False)
class ActiveRecording:
    id: str
    call_id: str
    pair: RecordingChannelPair
    started_at: datetime
    done: asyncio.Future[tuple[storage_writer.RecordingState, str]] = field(repr=False)

    @property
    def caller_sink(self) -> PacketSink:
        return self.pair.caller.push

    @property
    def taker_sink(self) -> PacketSink:
        return self.pair.taker.push


class RecordingService:
    def __init__(
        self,
        settings: RecordingSettings,
        catalog: Catalog,
        recorder: Recorder,
        public_key: X25519PublicKey,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.recorder = recorder
        self.public_key = public_key
        self.writer: RecordingWriter | None = None
        self.active: dict[str, ActiveRecording] = {}
        self.failures: dict[str, int] = {}

    # -- the writer's state reports (on the event loop) ---------------------------------

    def on_writer_state(
        self, key: object, state: storage_writer.RecordingState, reason: str
    ) -> None:
        rid = str(key)
        active = self.active.get(rid)
        if state is storage_writer.RecordingState.DEGRADED:
            log.warning("recording %s degraded: %s", rid, reason)
            self.failures["degraded"] = self.failures.get("degraded", 0) + 1
            return
        if state is storage_writer.RecordingState.FAILED:
            log.error("recording %s failed: %s", rid, reason)
            self.failures["write_failed"] = self.failures.get("write_failed", 0) + 1
            self.recorder.close(rid)  # stop feeding a recording that cannot be written
        if (
            active is not None
            and not active.done.done()
            and state
            in (
                storage_writer.RecordingState.FAILED,
                storage_writer.RecordingState.COMPLETE,
            )
        ):
            active.done.set_result((state, reason))

    # -- a call's recording ---------------------------------------------------------------

    async def start(
        self, call_id: str, caller_codec: str, taker_codec: str
    ) -> ActiveRecording | None:
        """Open a recording for a bridged call.  None (and a log line) if it cannot be
        opened: the call goes on unrecorded rather than failing."""
        writer = self.writer
        if writer is None:
            raise RuntimeError("recording service has no writer")
        rid = str(uuid.uuid4())
        started = datetime.now(UTC)
        try:
            await self.catalog.create_recording(
                call_id,
                directory=rid,
                encoding=self.settings.encoding,
                sample_rate=8000,
                channels=2,
                started_at=started,
                recording_id=rid,
            )
        except CatalogError:
            log.exception("recording for call %s not created in the catalog", call_id)
            self.failures["catalog"] = self.failures.get("catalog", 0) + 1
            return None
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[storage_writer.RecordingState, str]] = loop.create_future()
        pair = self.recorder.add(rid, caller_codec, taker_codec)
        active = ActiveRecording(rid, call_id, pair, started, done)
        self.active[rid] = active
        writer.open(
            rid,
            self.settings.dir,
            self.public_key,
            encoding=self.settings.encoding,
            segment_seconds=self.settings.segment_seconds,
            start_time_ms=int(started.timestamp() * 1000),
        )
        return active

    async def finish(self, active: ActiveRecording, *, timeout: float = 15.0) -> None:
        """Flush and seal the recording, then record the result in the catalog."""
        self.recorder.close(active.id)  # the last block goes to the writer as final
        try:
            state, reason = await asyncio.wait_for(asyncio.shield(active.done), timeout)
        except TimeoutError:
            state, reason = storage_writer.RecordingState.FAILED, "writer did not finish in time"
        finally:
            self.active.pop(active.id, None)
        directory = self.settings.dir / active.id
        await self._catalog_files(active.id, directory)
        if state is storage_writer.RecordingState.COMPLETE:
            await self.catalog.set_recording_state(active.id, RecordingState.COMPLETE)
        else:
            await self.catalog.set_recording_state(
                active.id, RecordingState.FAILED, reason=reason or "write failed"
            )

    async def discard(
        self, active: ActiveRecording, *, actor: str, channel: EventChannel, reason: str
    ) -> None:
        """Destroy a recording (P14): nothing more is recorded, the writer deletes the
        wrapped key first and then the files, and the catalog keeps only the fact that
        a recording existed and was discarded, by whom, how and why."""
        writer = self.writer
        if writer is None:
            raise RuntimeError("recording service has no writer")
        self.recorder.close(active.id)
        self.active.pop(active.id, None)
        writer.discard(active.id, self.settings.dir)
        await self.catalog.set_recording_state(
            active.id, RecordingState.DISCARDED, actor=actor, channel=channel, reason=reason
        )

    async def recover(self) -> list[str]:
        """Start-up: recordings a crash left ``recording`` become ``interrupted``; what
        survived on disk (every complete chunk) goes into the catalog."""
        interrupted = await self.catalog.recover_interrupted()
        for rid in interrupted:
            directory = self.settings.dir / rid
            try:
                await self._catalog_files(rid, directory)
                # the catalog leaves ended_at to us: the audio kept says when it ends
                recording = await self.catalog.get_recording(rid)
                if recording is not None and recording.ended_at is None:
                    kept = timedelta(milliseconds=recording.duration_ms or 0)
                    await self.catalog.update_recording(rid, ended_at=recording.started_at + kept)
            except Exception:
                log.exception("recovering recording %s", rid)
            log.warning("recording %s was interrupted by a crash; complete chunks kept", rid)
        await self._finish_discards()
        calls = await self.catalog.recover_calls()
        if calls:
            log.warning("%d call(s) were in progress when the process ended", len(calls))
        return interrupted

    async def _finish_discards(self) -> None:
        """A crash between "discarded" in the catalog and the writer's shredding would
        leave a discarded recording readable: finish the job at start-up."""
        offset = 0
        while True:
            batch = await self.catalog.list_recordings(
                RecordingState.DISCARDED, limit=500, offset=offset
            )
            for row in batch:
                folder = self.settings.dir / row.id
                if folder.exists():
                    await asyncio.to_thread(shred_recording, folder)
                    log.warning(
                        "recording %s was discarded but its files remained: shredded", row.id
                    )
            if len(batch) < 500:
                return
            offset += 500

    async def _catalog_files(self, rid: str, directory: Path) -> None:
        """Duration, key hash and segment rows from the files (read in a thread)."""
        try:
            facts = await asyncio.to_thread(_scan, directory)
        except (OSError, RecordingCorrupt) as exc:
            log.error("recording %s: cannot read its files: %s", rid, exc)
            return
        if facts.key_sha256 is not None:
            current = await self.catalog.get_recording(rid)
            if current is not None and current.wrapped_key_sha256 is None:
                await self.catalog.update_recording(rid, wrapped_key_sha256=facts.key_sha256)
        existing = {s.segment_index for s in await self.catalog.segments(rid)}
        for seg in facts.segments:
            if seg.index not in existing:
                await self.catalog.add_segment(
                    rid, seg.index, file_name=seg.name, first_frame=seg.first_frame
                )
            await self.catalog.update_segment(
                rid,
                seg.index,
                chunks=seg.chunks,
                frames=seg.frames,
                size_bytes=seg.size,
                sha256=seg.sha256,
                closed=True,
            )
        await self.catalog.update_recording(rid, duration_ms=facts.frames * 1000 // 8000)


@dataclass(frozen=True)
class _SegmentFacts:
    index: int
    name: str
    first_frame: int
    chunks: int
    frames: int
    size: int
    sha256: str


@dataclass(frozen=True)
class _Facts:
    key_sha256: str | None
    frames: int
    segments: list[_SegmentFacts]


def _scan(directory: Path) -> _Facts:
    key = directory / KEY_FILE_NAME
    key_sha = hashlib.sha256(key.read_bytes()).hexdigest() if key.exists() else None
    report = recover_directory(directory)
    segments: list[_SegmentFacts] = []
    first_frame = 0
    files = sorted(p for p in directory.iterdir() if p.suffix == ".rec")
    for index, path in enumerate(files):
        data = path.read_bytes()
        scan = scan_segment(data, allow_truncated=True, name=path.name, expected_index=index)
        frames = scan.frames
        segments.append(
            _SegmentFacts(
                index,
                path.name,
                first_frame,
                len(scan.chunks),
                frames,
                len(data),
                hashlib.sha256(data).hexdigest(),
            )
        )
        first_frame += frames
    return _Facts(key_sha, report.frames, segments)
