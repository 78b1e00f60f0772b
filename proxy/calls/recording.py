"""Recording a bridged call: the recorder, the writer thread and the catalog together.

``start`` opens a recording (catalog row, writer, recorder channels) and returns the
two packet sinks the relay feeds.  While the call goes on, each segment the writer
finishes is catalogued as the writer reports it (index, frames, bytes, SHA-256), so
``finish`` flushes the last block, waits for the writer's report of the end, and
catalogues the totals, what each channel lost, and how it ended: hang-up reads no
segment file.  ``recover`` at start-up is the one place that scans segments, for
recordings a crash left behind: there the disk is the truth.

What happens is published as domain events (:mod:`proxy.events`) through the
``publish`` callable: ``RecordingStarted``, ``SegmentSealed``, then one of
``RecordingClosed``, ``RecordingFailed`` or ``RecordingDiscarded``; and
``RecordingInterrupted`` from ``recover``.

How a recording ends, honestly:

* ``complete`` only when nothing went wrong beyond the limits;
* ``degraded`` when a channel lost or got late more than ``degraded_ratio`` of its
  frames, or a run of lost or late audio longer than ``degraded_gap_seconds``, or the
  writer had to drop audio (its queue was full) — with the reason, a recording event
  and ``degraded`` counted by reason;
* ``failed`` at once — not when the call ends — when the writer cannot write (disk
  full, I/O error) or the recorder fails the recording: what was sealed is kept and
  catalogued, the call goes on unrecorded.

The write that ends a recording that kept audio also dates its deletion: ``expires_at``
is its end plus the retention period (``RetentionSettings``); ``recover`` dates the
interrupted ones from the audio they kept.

Catalog writes go through a ``CatalogJournal``: when the catalog cannot take them they
are counted (``failures["catalog"]``) and retried in order.

What happens to a recording is published as domain events (``proxy.events``):
started, each segment sealed, and once its end is catalogued closed (complete or
degraded), failed or discarded; the webhook, metrics and whatever else wants to know
subscribe to the bus, without this module knowing who listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .. import events
from ..config import RecordingSettings, RetentionSettings
from ..media.recorder import DirectionQuality, Recorder, RecordingChannelPair
from ..recording_state import RecordingState
from ..storage.catalog import (
    Attribution,
    CallBatch,
    Catalog,
    CatalogError,
    CatalogJournal,
    CatalogUnavailableError,
    ChannelQuality,
    JournalFullError,
    NewRecording,
    NewSegment,
    RecordingAction,
    RecordingEnd,
    SegmentFacts,
)
from ..storage.segment import RecordingCorrupt
from ..storage.store import SegmentStore, recording_folders, shred_recording
from ..storage.write_reports import RecordingKey, RecordingWritten, SegmentWritten
from ..storage.writer import RecordingWriter
from .recording_engines import Engine, LocalEngine, RecordingWorkers, WorkerEngine
from .survived import scan_what_survived

log = logging.getLogger(__name__)

PacketSink = Callable[[int, int, bytes], None]

#: Why a recording ended degraded (the metric's label values).
DEGRADED_REASONS = ("loss", "gap", "writer")
_FRAME_MS = 20
DEFAULT_RETENTION = RetentionSettings()


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


@dataclass(eq=False)
class ActiveRecording:
    id: str
    call_id: str
    pair: RecordingChannelPair
    started_at: datetime
    done: asyncio.Future[RecordingWritten] = field(repr=False)  # the writer's last word
    degraded: str | None = None  # the writer dropped audio (its queue was full)
    failure: str | None = None  # why it failed before the call ended
    ended: asyncio.Task[None] | None = field(default=None, repr=False)  # its end, catalogued
    # catalogue writes of its sealed segments, awaited before its end is catalogued
    segment_writes: list[asyncio.Task[bool]] = field(default_factory=list, repr=False)
    # segments sealed once its end began: catalogued in the same write as the end
    last_segments: list[NewSegment] = field(default_factory=list, repr=False)
    # its catalogue write (transaction 1), awaited before any later write of it
    catalogued: asyncio.Task[None] | None = field(default=None, repr=False)
    # why its row will never be written (transaction 1 refused or dropped), if so
    refused: str | None = None
    # the call's set-up transaction 1 could not take (dropped): its end write carries it
    set_up: CallBatch | None = field(default=None, repr=False)
    # why its media ended before the call did (its media worker died), if so
    interrupted: str | None = None
    # its recorder and writer: this process's, or a media worker's (issue 19)
    engine: Engine | None = field(default=None, repr=False)

    async def row_written(self) -> None:
        """Wait until transaction 1 is over, however it ended (never raises: a later
        write of the recording finds out for itself whether the row is there)."""
        await _settled(*_started(self))

    @property
    def caller_sink(self) -> PacketSink:
        return self.pair.caller.push

    @property
    def taker_sink(self) -> PacketSink:
        return self.pair.taker.push


class RecordingService:
    """The recordings of bridged calls.  It listens to ``writer`` (a ``WriterListener``:
    segment and end reports arrive on the event loop) and feeds it through ``recorder``."""

    def __init__(
        self,
        settings: RecordingSettings,
        catalog: Catalog,
        recorder: Recorder,
        writer: RecordingWriter,
        public_key: X25519PublicKey,
        *,
        publish: events.Publish = events.discard,
        retention: RetentionSettings = DEFAULT_RETENTION,
        node: str | None = None,
        workers: RecordingWorkers | None = None,
    ) -> None:
        self.settings = settings
        self.workers = workers  # media workers that record, if any (issue 19)
        self.node = node  # named on its rows; recovery ends only its own (issue 20)
        self.retention = retention  # its period dates each recording's deletion
        self.catalog = catalog
        self.recorder = recorder
        self.writer = writer
        self.store: SegmentStore = writer.store
        self.public_key = public_key
        self.active: dict[str, ActiveRecording] = {}
        self.failures: dict[str, int] = {}
        self.degraded: dict[str, int] = dict.fromkeys(DEGRADED_REASONS, 0)
        self.journal = CatalogJournal()
        self.publish = publish
        self._late_writes: set[asyncio.Task[bool]] = set()  # segments of ended recordings
        self._discarding: set[str] = set()  # until the writer reports the discard done
        self.uncatalogued: list[str] = []  # folders no row names, found by ``recover``
        recorder.on_failure = self.on_recorder_failure
        writer.listen(self)

    async def _catalog_write(self, what: str, write: Callable[[], Awaitable[object]]) -> bool:
        """A catalog write, journalled and retried if the catalog cannot take it now."""
        done = await self.journal.write(what, write)
        if not done:
            self._count("catalog")
        return done

    async def write_call(self, what: str, batch: CallBatch) -> bool:
        """A call's batch of writes (one transaction), journalled like the recording's
        own, so that they land in the order they were made.  If the catalog refuses the
        batch outright, its recording end and the rest are each tried alone: one bad
        row does not lose the others.  Never raises: a call's ending must go on."""
        try:
            return await self._catalog_write(what, lambda: self.catalog.call_writes.write(batch))
        except JournalFullError:  # logged by the journal; its parts would be dropped too
            self._count("catalog")
            return False
        except Exception:
            parts = batch.split()
            if parts is None:
                log.exception("%s: not catalogued", what)
                self._count("catalog")
                return False
            log.exception("%s: refused as a whole; writing its parts one by one", what)
            written = [await self.write_call(f"{what} ({part})", piece) for part, piece in
                       zip(("recording end", "call"), parts, strict=True)]  # fmt: skip
            return all(written)

    def _count(self, reason: str) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1

    # -- the writer's reports (a WriterListener, on the event loop) -----------------------

    def audio_dropped(self, recording_id: RecordingKey, reason: str) -> None:
        rid = str(recording_id)
        log.warning("recording %s degraded: %s", rid, reason)
        self._count("degraded")
        active = self.active.get(rid)
        if active is not None:
            active.degraded = reason

    def segment_written(self, segment: SegmentWritten) -> None:
        """Catalogue a sealed segment now, from what the writer knew while writing it."""
        rid = str(segment.recording_id)
        if rid in self._discarding:
            return
        active = self.active.get(rid)
        if active is not None and active.ended is not None:  # folded into the end's write
            active.last_segments.append(_new_segment(rid, segment))
        else:  # a long call's earlier segments: each its own small write, as it is sealed
            task = asyncio.create_task(
                self._catalog_segment(rid, segment), name=f"segment-{rid}-{segment.index}"
            )
            if active is not None:
                active.segment_writes.append(task)
            else:
                self._late_writes.add(task)
                task.add_done_callback(self._late_writes.discard)
        self.publish(
            events.SegmentSealed(
                rid, segment.index, segment.frames, segment.bytes, segment.sha256, str(segment.path)
            )
        )

    async def _catalog_segment(self, rid: str, segment: SegmentWritten) -> bool:
        """A sealed segment's catalogue write (journalled if need be); a refusal is
        logged and counted here, so the recording's end is catalogued whatever happens."""
        try:
            return await self._catalog_write(
                f"recording {rid}: segment {segment.index}",
                lambda: self._add_segment(rid, segment),
            )
        except Exception:
            log.exception("recording %s: segment %d not catalogued", rid, segment.index)
            self._count("catalog")
            return False

    async def _add_segment(self, rid: str, segment: SegmentWritten, *, new: bool = True) -> None:
        """The segment's row with its facts, closed: one write for a ``new`` segment, or
        an update of the row an earlier write left open."""
        recordings = self.catalog.recordings
        if new:
            await recordings.add_segment(_new_segment(rid, segment))
        else:
            await recordings.update_segment(rid, segment.index, _facts(segment))

    def recording_written(self, recording: RecordingWritten) -> None:
        rid = str(recording.recording_id)
        if recording.state is RecordingState.DISCARDED:
            self._discarding.discard(rid)
            return
        active = self.active.get(rid)
        failed = recording.state is RecordingState.FAILED
        if failed:
            log.error("recording %s failed: %s", rid, recording.reason)
            self._count("write_failed")
            self.recorder.close(rid)  # stop feeding a recording that cannot be written
        if active is None:
            return
        if not active.done.done():
            active.done.set_result(recording)
        if failed:
            self._end_now(active, recording.reason)

    def on_recorder_failure(self, key: Hashable, error: BaseException) -> None:
        """``Recorder.on_failure``: the recorder dropped this recording.  The writer
        seals what it has; the recording is failed in the catalog now."""
        if str(key) in self.active:
            self.writer.close(str(key))
            self.recorder_failed(str(key), f"recorder error: {error!r}")

    def recorder_failed(self, recording_id: str, reason: str) -> None:
        """A recorder (this process's, or a media worker's) dropped the recording, and
        its writer seals what it has."""
        active = self.active.get(recording_id)
        if active is None:
            return
        log.error("recording %s failed: %s", active.id, reason)
        self._count("recorder")
        self._end_now(active, reason)

    def _end_now(self, active: ActiveRecording, reason: str) -> None:
        """A failure during the call: catalogue the end now, not when the call ends."""
        if active.failure is None:
            active.failure = reason
        if active.ended is None:
            active.ended = asyncio.create_task(self._end(active), name=f"end-{active.id}")

    # -- a call's recording ---------------------------------------------------------------

    async def start(
        self,
        call_id: str,
        caller_codec: str,
        taker_codec: str,
        *,
        call: CallBatch | None = None,
        started: datetime | None = None,
        lost: Callable[[str], None] | None = None,
    ) -> ActiveRecording:
        """Open a recording for a bridged call from ``started`` (now), at once, and
        catalogue it with ``call`` (the call's set-up: its row, receipt, bridge and part
        1) in one write that runs while the call goes on: neither the bridge nor the
        recording's first second waits for the catalog, so the recording's length is
        the bridged time.  The recording's later writes reach the catalog thread after
        that one: tasks started later submit later, and ``begin_part``, the end and a
        discard wait for it (``ActiveRecording.catalogued``).  The writer holds the
        audio in memory until that write commits (``hold``, then ``commit``), so the
        files never exist before their row (:mod:`proxy.storage.holding`).

        With media workers that record, the recording runs in one of them; ``lost``
        (the call's) is called if that worker dies (the recording ends ``interrupted``)."""
        rid = str(uuid.uuid4())
        started = started or datetime.now(UTC)
        recording = new_recording(call_id, rid, self.settings.encoding, started, self.node)
        batch = replace(call or CallBatch(call_id), recording=recording)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[RecordingWritten] = loop.create_future()
        engine = self._open(rid, caller_codec, taker_codec, started, lost)
        active = ActiveRecording(rid, call_id, engine.pair, started, done, engine=engine)
        self.active[rid] = active
        active.catalogued = asyncio.create_task(
            self._catalogue_start(active, batch, call), name=f"create-{rid}"
        )
        self.publish(events.RecordingStarted(rid, call_id))
        return active

    def _open(
        self,
        rid: str,
        caller_codec: str,
        taker_codec: str,
        started: datetime,
        lost: Callable[[str], None] | None,
    ) -> Engine:
        """The recording's recorder and writer: a media worker's if one takes it."""
        start_time_ms = int(started.timestamp() * 1000)
        settings = self.settings
        if self.workers is not None:
            engine = WorkerEngine(rid, self, settings.dir, lambda why: self._lost(rid, why, lost))
            public_key = self.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
            if engine.open(
                self.workers, public_key, (caller_codec, taker_codec),
                encoding=settings.encoding, segment_seconds=settings.segment_seconds,
                start_time_ms=start_time_ms,
            ):  # fmt: skip
                return engine
        pair = self.recorder.add(rid, caller_codec, taker_codec)
        try:
            self.writer.open(
                rid, settings.dir, self.public_key, encoding=settings.encoding,
                segment_seconds=settings.segment_seconds, start_time_ms=start_time_ms,
                hold=True,
            )  # fmt: skip
        except BaseException:  # nothing of it stays: the caller writes the call's failure
            self.recorder.close(rid)
            raise
        return LocalEngine(rid, pair, self.recorder, self.writer)

    def _lost(self, rid: str, reason: str, lost: Callable[[str], None] | None) -> None:
        """The media worker running the recording died: interrupted, and the call ends."""
        active = self.active.get(rid)
        if active is not None:
            active.interrupted = reason
        if lost is not None:
            lost(reason)

    async def _catalogue_start(
        self, active: ActiveRecording, batch: CallBatch, call: CallBatch | None
    ) -> None:
        """Transaction 1 (journalled if the catalog cannot take it now: the call is
        recorded anyway, and its audio held); once committed, the writer may create the
        recording's files.

        Refused outright — now, or when the journal retries it — the call is written
        without its recording in the same turn of the journal (so its end, queued
        later, finds it), and the recording is refused: the writer drops what it holds,
        nothing of it is catalogued, and it is published as failed.  The recording is
        not written on its own: its row goes only with its consent receipt (P13).
        Dropped because the journal is full, the recording is refused the same way and
        the call's set-up waits in ``active.set_up`` for the call's end write."""
        rid = active.id

        async def create() -> None:
            try:
                await self.catalog.call_writes.write(batch)
            except CatalogUnavailableError:
                raise  # the journal retries the whole
            except Exception as exc:  # CatalogError, or a bug: either way the call goes on
                log.exception("recording for call %s not created in the catalog", active.call_id)
                self._refuse(active, f"its catalog row was refused: {exc}")
                if call is not None:  # the call without its recording
                    await self.catalog.call_writes.write(replace(call, first_part=None))
                return
            _engine(active).commit()  # the row is committed: its files may exist now

        try:
            await self._catalog_write(f"recording {rid}: create", create)
        except JournalFullError:
            self._refuse(active, "its catalog row was dropped (catalog journal full)")
            active.set_up = None if call is None else replace(call, first_part=None)
        except Exception:  # the call was refused too: nothing of it can be kept
            log.exception("call %s: not catalogued", active.call_id)
            self._count("catalog")

    def _refuse(self, active: ActiveRecording, reason: str) -> None:
        """The recording's row will never be written: stop recording it, and let the
        writer drop what it holds (``writer.drop``)."""
        if active.refused is None:
            self._count("catalog")
            active.refused = reason
            _engine(active).drop(reason)

    async def begin_part(
        self,
        active: ActiveRecording,
        *,
        operator: str | None,
        team: str | None,
        at: datetime,
        transfer: Attribution | None = None,
    ) -> None:
        """A call taker takes the call (P9): the recording's next part begins at ``at``
        with their operator and team — part 1 at the bridge, another at each transfer,
        which is also a ``transfer`` event (``transfer`` says who and why).  Journalled
        like the recording's other writes, so a catalog outage does not end the call;
        any other refusal is logged, and the call goes on."""
        rid = active.id
        # after its row: a write made before the task of transaction 1 first ran would
        # reach the catalog thread ahead of it
        await active.row_written()
        if active.refused is not None:
            return
        try:
            await self._catalog_write(
                f"recording {rid}: part",
                lambda: self.catalog.parts.begin(rid, operator=operator, team=team, at=at),
            )
            if transfer is not None:
                await self._catalog_write(
                    f"recording {rid}: transfer",
                    lambda: self.catalog.events.add_recording_event(
                        rid, RecordingAction.TRANSFER, transfer
                    ),
                )
        except CatalogError:
            log.exception("recording %s: its part was not catalogued", rid)
            self._count("catalog")

    async def counters(self, active: ActiveRecording) -> None:
        """Its channels' counters up to date, for the call's summary (its media ended)."""
        await _engine(active).counters()

    async def finish(self, active: ActiveRecording, call: CallBatch | None = None) -> None:
        """Flush and seal the recording, then record the result in the catalog, with
        ``call`` (its call's end) in the same write — or, if the recording already
        failed (its end was catalogued when it happened), ``call`` alone.  The call's
        end is written whatever became of the recording."""
        _engine(active).close()  # the last block goes to the writer as final
        if active.ended is None:
            active.ended = asyncio.create_task(self._end(active, call), name=f"end-{active.id}")
            await asyncio.shield(active.ended)
            return
        await _settled(active.ended)  # ended earlier: its outcome is logged there
        if call is not None:
            await self.write_call(f"call {call.call_id}: end", self._with_set_up(active, call))

    def _with_set_up(self, active: ActiveRecording, call: CallBatch) -> CallBatch:
        """``call`` after the call's set-up transaction 1 could not take, if any (once)."""
        set_up, active.set_up = active.set_up, None
        return call if set_up is None else set_up.then(call)

    async def _end(
        self, active: ActiveRecording, call: CallBatch | None = None, *, timeout: float = 15.0
    ) -> None:
        """Wait for the writer's last word, then catalogue its last segments, totals,
        what each channel lost, and the end state (failed, degraded or complete) in one
        write with ``call``.  Reads no file: the writer reported every segment.  While
        the catalog refuses the recording's row, the writer holds its audio (up to its
        ``hold_seconds``), so its last word can come that much later.  However working
        out the end fails, ``call`` is written: the call's end is not the recording's
        to lose."""
        rid = active.id
        timeout += self.writer.hold_seconds
        try:
            closed = await self._closing(active, timeout)
        except Exception:
            log.exception("recording %s: working out its end failed", rid)
            self._count("catalog")
            closed = _Closing(
                RecordingWritten(rid, RecordingState.FAILED, "internal error"),
                RecordingEnd(rid, RecordingState.FAILED,
                             Attribution(reason="internal error", at=datetime.now(UTC)), ()),
            )  # fmt: skip
        if active.refused is not None:  # no row: the call's end only (when it is here)
            self._uncatalogued(active, closed.written)
            if call is not None:
                await self.write_call(f"call {call.call_id}: end", self._with_set_up(active, call))
        else:
            batch = replace(call or CallBatch(active.call_id), recording_end=closed.end)
            await self.write_call(f"recording {rid}: {closed.end.state.value}", batch)
        self._publish_end(active, closed)

    async def _closing(self, active: ActiveRecording, timeout: float) -> _Closing:
        """The writer's last word and the recording's end as it is to be catalogued."""
        rid = active.id
        try:
            written = await asyncio.wait_for(asyncio.shield(active.done), timeout)
        except TimeoutError:
            written = RecordingWritten(rid, RecordingState.FAILED, "writer did not finish in time")
        finally:
            self.active.pop(rid, None)
        # never raises: a cancelled or failed write there says nothing about this one
        await _settled(*active.segment_writes, *_started(active))
        ended = datetime.now(UTC)
        quality = [
            _channel("caller", active.pair.caller.quality()),
            _channel("call_taker", active.pair.taker.quality()),
        ]
        complete = written.state is RecordingState.COMPLETE
        failure = (  # a dead worker's writer never finishes: interrupted, not failed
            active.failure
            or active.refused
            or (None if complete or active.interrupted else written.reason or "write failed")
        )
        if failure is not None:
            target, why = RecordingState.FAILED, failure
        elif active.interrupted is not None:
            target, why = RecordingState.INTERRUPTED, active.interrupted
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
        opened = written.key_sha256 is not None  # the writer opened it: totals are known
        end = RecordingEnd(
            rid,
            target,
            Attribution(reason=why, at=ended),
            quality,
            duration_ms=written.frames * 1000 // 8000 if opened else None,
            wrapped_key_sha256=written.key_sha256,
            segments=tuple(active.last_segments),
            expires=self.retention.expires,
        )
        return _Closing(written, end)

    def _publish_end(self, active: ActiveRecording, closed: _Closing) -> None:
        end, written = closed.end, closed.written
        why, ended = end.by.reason, end.by.at or datetime.now(UTC)
        if end.state is RecordingState.FAILED:
            self.publish(
                events.RecordingFailed(
                    end.recording_id, active.call_id, why or "write failed", active.started_at,
                    ended,
                )
            )  # fmt: skip
        else:
            self.publish(
                events.RecordingClosed(
                    end.recording_id,
                    active.call_id,
                    end.state.value,
                    written.segments,
                    written.frames,
                    written.bytes,
                    active.started_at,
                    ended,
                    why,
                )
            )

    def _uncatalogued(self, active: ActiveRecording, written: RecordingWritten) -> None:
        """A refused recording the writer had written ahead of its row (held past its
        bound): its files stay, as start-up's report would find them."""
        if written.key_sha256 is None:
            return  # nothing was written: nothing is left without a row
        log.error(
            "recording folder %s has no catalog row (%s): kept, not catalogued",
            self.settings.dir / active.id,
            active.refused,
        )
        self._count("uncatalogued")
        self.uncatalogued.append(active.id)

    async def discard(self, active: ActiveRecording, by: Attribution) -> None:
        """Destroy a recording (P14): nothing more is recorded, the writer deletes the
        wrapped key first and then the files, and the catalog keeps only the fact that
        a recording existed and was discarded, by whom, how and why."""
        self.active.pop(active.id, None)
        self._discarding.add(active.id)  # segments it still seals are not catalogued
        _engine(active).discard(self.settings.dir)
        # its row, and the rows the discard then deletes (never raises)
        await _settled(*_started(active), *active.segment_writes)
        if active.refused is None:  # a refused one has no row to mark
            await self.catalog.recordings.set_recording_state(
                active.id, RecordingState.DISCARDED, by
            )
        assert by.actor is not None  # the catalog refuses a discard by no one
        self.publish(
            events.RecordingDiscarded(
                active.id, active.call_id, by.actor, by.channel.value, by.reason
            )
        )

    async def recover(self, node: str | None = None) -> list[str]:
        """Start-up: recordings a crash of ``node`` (this service's own by default; any
        node's for ``recproxy recover --node``) left ``recording`` become
        ``interrupted``; what survived in the store (every complete chunk) goes into
        the catalog."""
        node = node or self.node
        interrupted = await self.catalog.recordings.recover_interrupted(node=node)
        for rid in interrupted:
            try:
                await self._catalog_what_survived(rid, self.settings.dir / rid)
                # the catalog leaves ended_at to us: the audio kept says when it ends,
                # and its retention period runs from there
                recording = await self.catalog.recordings.get_recording(rid)
                if recording is not None:
                    kept = timedelta(milliseconds=recording.duration_ms or 0)
                    ended = recording.ended_at or recording.started_at + kept
                    await self.catalog.recordings.update_recording(
                        rid, ended_at=ended, expires_at=self.retention.expires(ended)
                    )
            except Exception:
                log.exception("recovering recording %s", rid)
            log.warning("recording %s was interrupted by a crash; complete chunks kept", rid)
            self.publish(events.RecordingInterrupted(rid))
        await self._finish_discards()
        self.uncatalogued = await self._report_uncatalogued()
        calls = await self.catalog.calls.recover_calls(node=node)
        if calls:
            log.warning("%d call(s) were in progress when the process ended", len(calls))
        return interrupted

    async def _report_uncatalogued(self) -> list[str]:
        """Recording folders no catalog row names: audio retention would never delete
        and nobody could find.  The writer holds a recording's files back until its row
        is committed, so only one written ahead of its row (held past the bound while the
        catalog refused writes) and then cut off by a crash leaves one.  Each is logged
        as an error and counted (``failures["uncatalogued"]``) for an operator to look
        at; none is deleted: it is audio, and only a person can say whose."""
        found = await asyncio.to_thread(recording_folders, self.settings.dir)
        folders = [folder.name for folder in found]
        named = await self.catalog.recordings.existing(folders)
        orphans = [rid for rid in folders if rid not in named]
        for rid in orphans:
            log.error(
                "recording folder %s has no catalog row: kept, not catalogued (an operator "
                "must decide what it is)",
                self.settings.dir / rid,
            )
            self._count("uncatalogued")
        return orphans

    async def _finish_discards(self) -> None:
        """A crash between "discarded" in the catalog and the writer's shredding would
        leave a discarded recording readable: finish the job at start-up."""
        offset = 0
        while True:
            batch = await self.catalog.recordings.list_recordings(
                RecordingState.DISCARDED,
                limit=500,
                offset=offset,
            )
            for row in batch:
                folder = self.settings.dir / row.id
                # another node's writer may be shredding it right now, and an S3 store
                # may hold it with no folder left in the spool (issue 20)
                with contextlib.suppress(FileNotFoundError):
                    if folder.exists() or await asyncio.to_thread(self.store.has_key, folder):
                        await asyncio.to_thread(shred_recording, self.store, folder)
                        log.warning(
                            "recording %s was discarded but its files remained: shredded",
                            row.id,
                        )
            if len(batch) < 500:
                return
            offset += 500

    async def _catalog_what_survived(self, rid: str, directory: Path) -> None:
        """Recovery only: duration, key hash and segment rows from what survived in the
        store (read in a thread)."""
        try:
            scan = await asyncio.to_thread(scan_what_survived, self.store, directory)
        except (OSError, RecordingCorrupt) as exc:
            log.error("recording %s: cannot read its files: %s", rid, exc)
            return
        key_sha256, segments = scan
        if key_sha256 is not None:
            current = await self.catalog.recordings.get_recording(rid)
            if current is not None and current.wrapped_key_sha256 is None:
                await self.catalog.recordings.update_recording(rid, wrapped_key_sha256=key_sha256)
        # segments catalogued as they were sealed are closed (immutable): the rest are added
        closed = {s.segment_index: s.closed for s in await self.catalog.recordings.segments(rid)}
        for segment in segments:
            if not closed.get(segment.index, False):
                await self._add_segment(rid, segment, new=segment.index not in closed)
        frames = sum(segment.frames for segment in segments)
        await self.catalog.recordings.update_recording(rid, duration_ms=frames * 1000 // 8000)


@dataclass(frozen=True, slots=True)
class _Closing:
    """How a recording ended: the writer's last word and the end to catalogue."""

    written: RecordingWritten
    end: RecordingEnd


def _engine(active: ActiveRecording) -> Engine:
    assert active.engine is not None  # ``start`` gives every recording one
    return active.engine


async def _settled(*tasks: asyncio.Task[Any]) -> None:
    """Wait for ``tasks`` however they end (cancelled too): never raises what they
    raised, so a cancelled transaction 1 at shutdown does not stop the end's write."""
    if tasks:
        await asyncio.wait(tasks)


def _started(active: ActiveRecording) -> tuple[asyncio.Task[None], ...]:
    """Its transaction 1, to wait for before another write of it."""
    return () if active.catalogued is None else (active.catalogued,)


def new_recording(
    call_id: str, rid: str, encoding: str, started: datetime, node: str | None = None
) -> NewRecording:
    """A bridged call's recording row: two channels at 8 kHz, in a folder named by its id."""
    return NewRecording(
        call_id,
        directory=rid,
        encoding=encoding,
        sample_rate=8000,
        channels=2,
        started_at=started,
        recording_id=rid,
        node=node,
    )


def _facts(segment: SegmentWritten) -> SegmentFacts:
    return SegmentFacts(segment.chunks, segment.frames, segment.bytes, segment.sha256, True)


def _new_segment(rid: str, segment: SegmentWritten) -> NewSegment:
    """A sealed segment's row, closed, from the writer's report."""
    return NewSegment(rid, segment.index, segment.name, segment.first_frame, _facts(segment))
