"""Recording a bridged call: the recorder, the writer thread and the catalog together.

``start`` opens a recording (catalog row, writer, recorder channels) and returns the
two packet sinks the relay feeds; ``finish`` flushes the last block, waits for the
writer to seal the final chunk, and writes what is on disk into the catalog (segments,
their hashes, the duration, what each channel lost) and how it ended.  ``recover`` does
the same at start-up for recordings a crash left behind.

How a recording ends, honestly:

* ``complete`` only when nothing went wrong beyond the limits;
* ``degraded`` when a channel lost or got late more than ``degraded_ratio`` of its
  frames, or a run of lost or late audio longer than ``degraded_gap_seconds``, or the
  writer had to drop audio (its queue was full) — with the reason, a recording event
  and ``degraded`` counted by reason;
* ``failed`` at once — not when the call ends — when the writer cannot write (disk
  full, I/O error) or the recorder fails the recording: what was sealed is kept and
  catalogued, the call goes on unrecorded.

Catalog writes go through a ``CatalogJournal``: when the catalog cannot take them they
are counted (``failures["catalog"]``) and retried in order.

When a recording has ended and its end is catalogued, a ``RecordingEnded`` event goes
to every subscriber (``RecordingService.subscribe``): the webhook, and whatever else
wants to know, without this module knowing who listens.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from ..config import RecordingSettings
from ..media.recorder import DirectionQuality, Recorder, RecordingChannelPair
from ..recording_state import RecordingState
from ..storage import writer as storage_writer
from ..storage.catalog import Catalog, CatalogError, CatalogJournal, ChannelQuality, EventChannel
from ..storage.reader import recover as recover_directory
from ..storage.segment import KEY_FILE_NAME, RecordingCorrupt, scan_segment
from ..storage.writer import RecordingWriter, shred_recording

log = logging.getLogger(__name__)

PacketSink = Callable[[int, int, bytes], None]

#: Why a recording ended degraded (the metric's label values).
DEGRADED_REASONS = ("loss", "gap", "writer")
_FRAME_MS = 20


def degradation(
    quality: Sequence[ChannelQuality], max_ratio: float, max_gap_ms: int
) -> tuple[str, str] | None:
    """(reason label, text) when a channel lost too much, None when the audio is whole
    enough.  Missing audio (nothing was sent) does not count: see ``ChannelQuality``."""
    for q in quality:
        if q.longest_gap_ms > max_gap_ms:
            return "gap", (
                f"{q.channel}: {q.longest_gap_ms} ms of audio lost or late in a row "
                f"(limit {max_gap_ms} ms)"
            )
    for q in quality:
        bad = q.lost_frames + q.late_frames
        if q.frames and bad / q.frames > max_ratio:
            return "loss", (
                f"{q.channel}: {bad} of {q.frames} frames lost or late "
                f"({bad / q.frames:.1%}, limit {max_ratio:.1%})"
            )
    return None


def _channel(name: str, quality: DirectionQuality) -> ChannelQuality:
    return ChannelQuality(
        name,
        quality.frames,
        quality.lost,
        quality.late,
        quality.missing,
        quality.longest_gap * _FRAME_MS,
    )


@dataclass(frozen=True)
class RecordingEnded:
    """A recording ended and its end is catalogued: ``complete``, ``degraded`` or
    ``failed`` (with why).  Ids and times only: no numbers, audio or keys."""

    recording_id: str
    call_id: str
    state: RecordingState
    reason: str | None
    started_at: datetime
    ended_at: datetime


RecordingSubscriber = Callable[[RecordingEnded], None]


@dataclass(eq=False)
class ActiveRecording:
    id: str
    call_id: str
    pair: RecordingChannelPair
    started_at: datetime
    done: asyncio.Future[tuple[storage_writer.RecordingState, str]] = field(repr=False)
    degraded: str | None = None  # the writer dropped audio (its queue was full)
    failure: str | None = None  # why it failed before the call ended
    ended: asyncio.Task[None] | None = field(default=None, repr=False)  # its end, catalogued

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
        self.degraded: dict[str, int] = dict.fromkeys(DEGRADED_REASONS, 0)
        self.journal = CatalogJournal()
        self._subscribers: list[RecordingSubscriber] = []
        recorder.on_failure = self.on_recorder_failure

    async def _catalog_write(self, what: str, write: Callable[[], Awaitable[object]]) -> bool:
        """A catalog write, journalled and retried if the catalog cannot take it now."""
        done = await self.journal.write(what, write)
        if not done:
            self._count("catalog")
        return done

    def _count(self, reason: str) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1

    def subscribe(self, subscriber: RecordingSubscriber) -> None:
        """Call ``subscriber`` (on the event loop; it must not block) with each
        ``RecordingEnded``."""
        self._subscribers.append(subscriber)

    def _publish(self, event: RecordingEnded) -> None:
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:  # a listener's bug never reaches the recording
                log.exception("recording %s: an end subscriber failed", event.recording_id)

    # -- the writer's state reports (on the event loop) ---------------------------------

    def on_writer_state(
        self, key: object, state: storage_writer.RecordingState, reason: str
    ) -> None:
        rid = str(key)
        active = self.active.get(rid)
        if state is storage_writer.RecordingState.DEGRADED:
            log.warning("recording %s degraded: %s", rid, reason)
            self._count("degraded")
            if active is not None:
                active.degraded = reason
            return
        if state is storage_writer.RecordingState.FAILED:
            log.error("recording %s failed: %s", rid, reason)
            self._count("write_failed")
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
        if active is not None and state is storage_writer.RecordingState.FAILED:
            self._end_now(active, reason)

    def on_recorder_failure(self, key: Hashable, error: BaseException) -> None:
        """``Recorder.on_failure``: the recorder dropped this recording.  The writer
        seals what it has; the recording is failed in the catalog now."""
        active = self.active.get(str(key))
        if active is None:
            return
        reason = f"recorder error: {error!r}"
        log.error("recording %s failed: %s", active.id, reason)
        self._count("recorder")
        if self.writer is not None:
            self.writer.close(active.id)
        self._end_now(active, reason)

    def _end_now(self, active: ActiveRecording, reason: str) -> None:
        """A failure during the call: catalogue the end now, not when the call ends."""
        if active.failure is None:
            active.failure = reason
        if active.ended is None:
            active.ended = asyncio.create_task(self._end(active), name=f"end-{active.id}")

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
            # journalled if the catalog cannot take it now: the call is recorded anyway
            await self._catalog_write(
                f"recording {rid}: create",
                lambda: self.catalog.recordings.create_recording(
                    call_id,
                    directory=rid,
                    encoding=self.settings.encoding,
                    sample_rate=8000,
                    channels=2,
                    started_at=started,
                    recording_id=rid,
                ),
            )
        except CatalogError:
            log.exception("recording for call %s not created in the catalog", call_id)
            self._count("catalog")
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

    async def finish(self, active: ActiveRecording) -> None:
        """Flush and seal the recording, then record the result in the catalog (at
        once if it already failed: that was catalogued when it happened)."""
        self.recorder.close(active.id)  # the last block goes to the writer as final
        if active.ended is None:
            active.ended = asyncio.create_task(self._end(active), name=f"end-{active.id}")
        await asyncio.shield(active.ended)

    async def _end(self, active: ActiveRecording, *, timeout: float = 15.0) -> None:
        """Wait for the writer's last word, then catalogue the files, what each channel
        lost, and the end state: failed, degraded or complete."""
        rid = active.id
        try:
            state, reason = await asyncio.wait_for(asyncio.shield(active.done), timeout)
        except TimeoutError:
            state, reason = storage_writer.RecordingState.FAILED, "writer did not finish in time"
        finally:
            self.active.pop(rid, None)
        ended = datetime.now(UTC)
        quality = [
            _channel("caller", active.pair.caller.quality()),
            _channel("call_taker", active.pair.taker.quality()),
        ]
        directory = self.settings.dir / rid
        await self._catalog_write(
            f"recording {rid}: segments", lambda: self._catalog_files(rid, directory)
        )
        await self._catalog_write(
            f"recording {rid}: quality",
            lambda: self.catalog.recordings.set_recording_quality(rid, quality),
        )
        complete = state is storage_writer.RecordingState.COMPLETE
        failure = active.failure or (None if complete else reason or "write failed")
        if failure is not None:
            target, why = RecordingState.FAILED, failure
        else:
            found = degradation(
                quality,
                self.settings.degraded_ratio,
                round(self.settings.degraded_gap_seconds * 1000),
            )
            if found is None and active.degraded is not None:
                found = ("writer", active.degraded)
            if found is None:
                target, why = RecordingState.COMPLETE, None
            else:
                label, why = found
                target = RecordingState.DEGRADED
                self.degraded[label] += 1
                log.warning("recording %s degraded: %s", rid, why)
        await self._catalog_write(
            f"recording {rid}: {target.value}",
            lambda: self.catalog.recordings.set_recording_state(rid, target, reason=why, at=ended),
        )
        self._publish(RecordingEnded(rid, active.call_id, target, why, active.started_at, ended))

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
        await self.catalog.recordings.set_recording_state(
            active.id, RecordingState.DISCARDED, actor=actor, channel=channel, reason=reason
        )

    async def recover(self) -> list[str]:
        """Start-up: recordings a crash left ``recording`` become ``interrupted``; what
        survived on disk (every complete chunk) goes into the catalog."""
        interrupted = await self.catalog.recordings.recover_interrupted()
        for rid in interrupted:
            directory = self.settings.dir / rid
            try:
                await self._catalog_files(rid, directory)
                # the catalog leaves ended_at to us: the audio kept says when it ends
                recording = await self.catalog.recordings.get_recording(rid)
                if recording is not None and recording.ended_at is None:
                    kept = timedelta(milliseconds=recording.duration_ms or 0)
                    await self.catalog.recordings.update_recording(
                        rid, ended_at=recording.started_at + kept
                    )
            except Exception:
                log.exception("recovering recording %s", rid)
            log.warning("recording %s was interrupted by a crash; complete chunks kept", rid)
        await self._finish_discards()
        calls = await self.catalog.calls.recover_calls()
        if calls:
            log.warning("%d call(s) were in progress when the process ended", len(calls))
        return interrupted

    async def _finish_discards(self) -> None:
        """A crash between "discarded" in the catalog and the writer's shredding would
        leave a discarded recording readable: finish the job at start-up."""
        offset = 0
        while True:
            batch = await self.catalog.recordings.list_recordings(
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
            current = await self.catalog.recordings.get_recording(rid)
            if current is not None and current.wrapped_key_sha256 is None:
                await self.catalog.recordings.update_recording(
                    rid, wrapped_key_sha256=facts.key_sha256
                )
        existing = {s.segment_index for s in await self.catalog.recordings.segments(rid)}
        for seg in facts.segments:
            if seg.index not in existing:
                await self.catalog.recordings.add_segment(
                    rid, seg.index, file_name=seg.name, first_frame=seg.first_frame
                )
            await self.catalog.recordings.update_segment(
                rid,
                seg.index,
                chunks=seg.chunks,
                frames=seg.frames,
                size_bytes=seg.size,
                sha256=seg.sha256,
                closed=True,
            )
        await self.catalog.recordings.update_recording(rid, duration_ms=facts.frames * 1000 // 8000)


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
