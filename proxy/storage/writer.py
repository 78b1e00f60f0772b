"""The recording writer: a thread that seals and writes, fed by a bounded queue.

The event loop never touches the disk.  It calls :meth:`RecordingWriter.open`,
:meth:`~RecordingWriter.submit` and :meth:`~RecordingWriter.close`, which only take a
short lock and append to a queue: they never block on I/O and never raise into the call
path.  ``submit(recording_id, block, final)`` is the recorder's sink.  A block is either
wire samples (uint16, see :mod:`proxy.storage.segment`: G.711 bytes tagged with their
law, stored as received) or linear int16 audio (stored as µ-law).  A ``pcm16`` recording
stores either as 16-bit samples.

The thread, per recording: opens it in the :class:`~proxy.storage.store.SegmentStore`
with its wrapped data key (durable before any audio), gathers submitted frames into
chunks of ``chunk_seconds``, seals each (:class:`~proxy.storage.segment.SegmentEncoder`),
appends it to the current segment, and starts a new segment every ``segment_seconds``.
How each step becomes durable (the fsync policy) is the store's business.

The writer reports what it wrote, so nobody reads it back: each finished segment as a
:class:`SegmentWritten` (index, frames, bytes, and the SHA-256 of the bytes, hashed as
they were appended), and each recording's end as a :class:`RecordingWritten` with the
totals.  Listeners (the recording service) hear them on the event loop.

A full queue drops the block (``submit`` returns False), counts it on the recording's
status and tells the listeners once; the dropped frames are written as silence, so what
follows stays aligned with the wall clock.  An ``OSError`` (disk full, permissions, I/O
error) fails the recording with the reason: a log line and a report, never an exception
in the caller, and the call goes on.

A recording opened with ``hold=True`` is not written until :meth:`RecordingWriter.commit`
says its catalog row is committed: its files never exist before that row (see
:mod:`proxy.storage.holding` for why, and for the bound after which it is written ahead).
"""

from __future__ import annotations

import asyncio
import collections
import errno
import hashlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from ..recording_state import RecordingState
from .crypto import new_data_key, wrap_key
from .holding import HoldingArea
from .segment import (
    DEFAULT_SAMPLE_RATE,
    Encoding,
    SegmentEncoder,
    recording_path,
    segment_file_name,
)
from .store import LocalDiskStore, SegmentStore
from .write_reports import RecordingKey, RecordingWritten, SegmentWritten, WriterListener
from .writer_state import Block, OpenRecording, OpenSegment

log = logging.getLogger(__name__)

_DONE_KEPT = 1024  # finished recordings whose state can still be asked for


@dataclass
class WriterMetrics:
    """Plain counters, written by the writer thread (and ``submit``), read by anyone."""

    blocks_submitted: int = 0
    blocks_dropped: int = 0  # queue full
    blocks_rejected: int = 0  # unknown, closed or failed recording, or not an (n, 2) int16
    frames_dropped: int = 0
    chunks_sealed: int = 0
    bytes_written: int = 0
    write_seconds_total: float = 0.0
    write_seconds_max: float = 0.0
    last_write_seconds: float = 0.0
    queue_high_water: int = 0
    recordings_opened: int = 0
    recordings_completed: int = 0
    recordings_failed: int = 0
    recordings_written_ahead: int = 0  # held past the bound: written before their row


@dataclass(frozen=True, slots=True)
class RecordingStatus:
    """``state`` is RECORDING until the writer is done (then COMPLETE, FAILED or
    DISCARDED); ``degraded`` says blocks were dropped while recording."""

    state: RecordingState
    reason: str
    blocks_dropped: int
    frames_dropped: int

    @property
    def degraded(self) -> bool:
        return self.blocks_dropped > 0


# --- queue items -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Open:
    rid: uuid.UUID
    directory: Path
    public_key: X25519PublicKey
    encoding: Encoding
    segment_chunks: int
    start_time_ms: int
    hold: bool = False  # held in memory until its catalog row is committed


@dataclass(frozen=True, slots=True)
class _Block:
    rid: uuid.UUID
    block: Block
    final: bool
    dropped_frames: int  # the recording's dropped-frame count when this block was queued


@dataclass(frozen=True, slots=True)
class _Close:
    rid: uuid.UUID
    dropped_frames: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class _Stop:
    pass


@dataclass(frozen=True, slots=True)
class _RowDone:
    """The loop's word on a held recording's catalog row: committed, or never."""

    rid: uuid.UUID
    committed: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class _Discard:
    rid: uuid.UUID
    directory: Path


_Step = _Open | _Block | _Close | _Discard | _RowDone  # one step for one recording
_Item = _Step | _Stop


@dataclass
class _Handle:
    """The loop side's view of one recording (guarded by the writer's lock)."""

    key: RecordingKey
    state: RecordingState = RecordingState.RECORDING
    reason: str = ""
    dropped_blocks: int = 0
    dropped_frames: int = 0
    finished: bool = False  # the final block or close is queued


def _to_uuid(key: RecordingKey) -> uuid.UUID:
    if isinstance(key, uuid.UUID):
        return key
    if isinstance(key, str):
        return uuid.UUID(key)
    raise ValueError(f"a recording id is a UUID, not {type(key).__name__}")


def _describe(exc: OSError, path: Path | None) -> str:
    """``ENOSPC: No space left on device (<file>)``: the file the error names, else
    ``path`` (what the writer was working on)."""
    name = errno.errorcode.get(exc.errno or 0, "error") if exc.errno else type(exc).__name__
    if exc.filename is not None:
        path = Path(os.fsdecode(exc.filename))
    where = f" ({path})" if path is not None else ""
    return f"{name}: {exc.strerror or exc}{where}"


class RecordingWriter:
    """Writes every recording of the process from one thread, into ``store`` (by default
    a :class:`~proxy.storage.store.LocalDiskStore` with ``fsync="chunk"``).

    Listeners (:meth:`listen`) hear each finished segment, each recording's end and its
    first dropped block; with a ``loop`` they run there (``call_soon_threadsafe``),
    otherwise in the writer's thread.
    """

    def __init__(
        self,
        store: SegmentStore | None = None,
        *,
        max_queued_blocks: int = 4096,
        chunk_seconds: float = 1.0,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        loop: asyncio.AbstractEventLoop | None = None,
        name: str = "recording-writer",
        on_write: Callable[[float], None] | None = None,
        hold_seconds: float = 10.0,
    ) -> None:
        if max_queued_blocks < 1:
            raise ValueError("max_queued_blocks must be at least 1")
        self.chunk_frames = round(chunk_seconds * sample_rate)
        if self.chunk_frames < 1:
            raise ValueError(f"chunk_seconds {chunk_seconds} holds no frame")
        self.chunk_seconds = chunk_seconds
        self.sample_rate = sample_rate
        self.store: SegmentStore = store if store is not None else LocalDiskStore()
        self.max_queued_blocks = max_queued_blocks
        self.metrics = WriterMetrics()
        self._listeners: tuple[WriterListener, ...] = ()
        self._on_write = on_write
        self._loop = loop
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._queue: collections.deque[_Item] = collections.deque()
        self._queued_blocks = 0
        self._handles: dict[uuid.UUID, _Handle] = {}
        self._done: collections.OrderedDict[uuid.UUID, _Handle] = collections.OrderedDict()
        self._active: dict[uuid.UUID, OpenRecording] = {}  # the thread's alone
        self._held: HoldingArea[_Step] = HoldingArea(hold_seconds)  # the thread's alone
        self.hold_seconds = hold_seconds
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # --- the event loop's side: never blocks on I/O, never raises ----------------------------

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def listen(self, listener: WriterListener) -> None:
        """Tell ``listener`` what the writer does from now on (see :class:`WriterListener`)."""
        self._listeners = (*self._listeners, listener)

    def open(
        self,
        recording_id: RecordingKey,
        directory: str | os.PathLike[str],
        public_key: X25519PublicKey,
        *,
        encoding: Encoding | str = "g711",
        segment_seconds: float = 10,
        start_time_ms: int,
        hold: bool = False,
    ) -> None:
        """Start a recording in ``<directory>/<recording id>/`` (``directory`` is the
        recordings root).  The key and files are written by the thread; with ``hold``,
        only once :meth:`commit` says its catalog row is committed.  A problem is
        reported as the ``failed`` state, never raised."""
        try:
            self._open(
                recording_id, directory, public_key, encoding, segment_seconds, start_time_ms,
                hold,
            )  # fmt: skip
        except Exception:
            log.exception("open for recording %r failed", recording_id)
            self._refused(recording_id, "internal error while opening")

    def _open(
        self,
        recording_id: RecordingKey,
        directory: str | os.PathLike[str],
        public_key: X25519PublicKey,
        encoding: Encoding | str,
        segment_seconds: float,
        start_time_ms: int,
        hold: bool,
    ) -> None:
        try:
            rid = _to_uuid(recording_id)
        except ValueError:
            log.error("recording id %r is not a UUID: not recorded", recording_id)
            self._refused(recording_id, "recording id is not a UUID")
            return
        try:
            enc = Encoding.parse(encoding)
            segment_chunks = round(segment_seconds / self.chunk_seconds)
            if segment_chunks < 1:
                raise ValueError(f"segment_seconds {segment_seconds} is shorter than a chunk")
            if start_time_ms < 0:
                raise ValueError(f"start_time_ms {start_time_ms} is negative")
        except (ValueError, TypeError) as exc:
            log.error("recording %s not opened: %s", rid, exc)
            with self._lock:
                self._remember_done(rid, _Handle(recording_id, RecordingState.FAILED, str(exc)))
            self._refused(recording_id, str(exc))
            return
        item = _Open(rid, Path(directory), public_key, enc, segment_chunks, start_time_ms, hold)
        with self._lock:
            if self._stopping:
                reason = "the writer is stopped"
            elif rid in self._handles or rid in self._done:
                reason = "already opened: a recording is never reopened"
            else:
                self._handles[rid] = _Handle(recording_id)
                self._enqueue(item)
                return
        log.error("recording %s not opened: %s", rid, reason)
        self._refused(recording_id, reason)

    def submit(self, recording_id: RecordingKey, block: Block, final: bool) -> bool:
        """Queue an ``(n, 2)`` block (caller, call taker); ``final`` ends the recording.

        False when the block was not queued: the queue is full (the block is dropped,
        counted, written as silence, and listeners told once), or the recording
        is unknown, closed or failed.  Never blocks, never raises.
        """
        try:
            return self._submit(recording_id, block, final)
        except Exception:  # the call path must never see a recording fault
            log.exception("submit for recording %r failed", recording_id)
            return False

    def sink(self, call_key: RecordingKey, block: Block, final: bool) -> None:
        """:meth:`submit` as the recorder's ``Sink`` (which returns None): drops are
        counted here and reported through the recording's state."""
        self.submit(call_key, block, final)

    def _submit(self, recording_id: RecordingKey, block: Block, final: bool) -> bool:
        try:
            rid = _to_uuid(recording_id)
        except ValueError:
            self.metrics.blocks_rejected += 1
            return False
        if not (
            isinstance(block, np.ndarray)
            and block.ndim == 2
            and block.shape[1] == 2
            and block.dtype in (np.int16, np.uint16)
        ):
            self.metrics.blocks_rejected += 1
            log.error("recording %s: a block must be int16 or uint16 of shape (n, 2)", rid)
            return False
        frames = int(block.shape[0])
        first_drop = False
        with self._lock:
            handle = self._handles.get(rid)
            if handle is None or handle.finished or handle.state is RecordingState.FAILED:
                self.metrics.blocks_rejected += 1
                return False
            self.metrics.blocks_submitted += 1
            if final:
                handle.finished = True
            if self._queued_blocks < self.max_queued_blocks:
                copy = np.array(block, copy=True)
                self._queued_blocks += 1
                self._enqueue(_Block(rid, copy, final, handle.dropped_frames))
                return True
            first_drop = handle.dropped_blocks == 0
            handle.dropped_blocks += 1
            handle.dropped_frames += frames
            self.metrics.blocks_dropped += 1
            self.metrics.frames_dropped += frames
            if final:  # the end of the recording must get through even when audio cannot
                self._enqueue(_Close(rid, handle.dropped_frames))
            key = handle.key
        if first_drop:
            reason = "writer queue full: audio blocks dropped (written as silence)"
            log.warning("recording %s degraded: %s", rid, reason)
            self._tell(WriterListener.audio_dropped, key, reason)
        return False

    def close(self, recording_id: RecordingKey) -> None:
        """End a recording whose final block was not submitted (seals what is pending)."""
        try:
            rid = _to_uuid(recording_id)
            with self._lock:
                handle = self._handles.get(rid)
                if handle is None or handle.finished:
                    return
                handle.finished = True
                if handle.state is RecordingState.FAILED:
                    self._forget(rid)
                    return
                self._enqueue(_Close(rid, handle.dropped_frames))
        except Exception:
            log.exception("close for recording %r failed", recording_id)

    def commit(self, recording_id: RecordingKey) -> None:
        """A held recording's catalog row is committed: write what was held, and the
        rest as it comes.  Never raises."""
        self._row_done(recording_id, True, "")

    def drop(self, recording_id: RecordingKey, reason: str) -> None:
        """A held recording's row will never be committed: it ends ``failed`` with
        ``reason`` and nothing written (if it was already written ahead, it is closed and
        keeps what it wrote).  Never raises."""
        self._row_done(recording_id, False, reason)

    def _row_done(self, recording_id: RecordingKey, committed: bool, reason: str) -> None:
        try:
            rid = _to_uuid(recording_id)
            with self._lock:
                handle = self._handles.get(rid)
                if handle is None:
                    return
                if not committed:
                    handle.finished = True
                self._enqueue(_RowDone(rid, committed, reason))
        except Exception:
            log.exception("row news for recording %r failed", recording_id)

    def discard(self, recording_id: RecordingKey, directory: str | os.PathLike[str]) -> None:
        """Destroy a recording, open or finished (P14 "discard"): nothing more is written,
        the wrapped key is deleted first (crypto-shredding: the audio is unreadable from
        that moment), then the segment files and the folder.  ``directory`` is the
        recordings root.  The end (DISCARDED) is reported when done."""
        try:
            rid = _to_uuid(recording_id)
            with self._lock:
                handle = self._handles.get(rid)
                if handle is None:
                    handle = _Handle(recording_id)
                    self._handles[rid] = handle
                handle.finished = True
                self._enqueue(_Discard(rid, Path(directory)))
        except Exception:
            log.exception("discard for recording %r failed", recording_id)

    def status(self, recording_id: RecordingKey) -> RecordingStatus | None:
        """The state of an open or recently finished recording; None when unknown."""
        try:
            rid = _to_uuid(recording_id)
        except ValueError:
            return None
        with self._lock:
            handle = self._handles.get(rid) or self._done.get(rid)
            if handle is None:
                return None
            return RecordingStatus(
                handle.state, handle.reason, handle.dropped_blocks, handle.dropped_frames
            )

    def stop(self, timeout: float | None = None) -> None:
        """Write everything queued, end the recordings still open, and join the thread."""
        with self._lock:
            if not self._stopping:
                self._stopping = True
                self._enqueue(_Stop())
        self._thread.join(timeout)

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> RecordingWriter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    # --- shared helpers (caller holds the lock where noted) ----------------------------------

    def _enqueue(self, item: _Item) -> None:
        """Lock held."""
        self._queue.append(item)
        depth = len(self._queue)
        if depth > self.metrics.queue_high_water:
            self.metrics.queue_high_water = depth
        self._wakeup.notify()

    def _remember_done(self, rid: uuid.UUID, handle: _Handle) -> None:
        """Lock held."""
        self._done[rid] = handle
        while len(self._done) > _DONE_KEPT:
            self._done.popitem(last=False)

    def _forget(self, rid: uuid.UUID) -> None:
        """Lock held: a finished recording moves to the bounded list of done ones."""
        handle = self._handles.pop(rid, None)
        if handle is not None:
            self._remember_done(rid, handle)

    def _tell(self, method: Callable[..., None], *args: object) -> None:
        """Call ``method`` (a ``WriterListener`` method) on every listener, on the loop
        if there is one.  A listener's exception is logged, never raised here."""
        for listener in self._listeners:
            if self._loop is None:
                self._call(method, listener, *args)
                continue
            try:
                self._loop.call_soon_threadsafe(self._call, method, listener, *args)
            except RuntimeError:  # the loop is closed
                log.warning("writer report %s%r: the event loop is gone", method.__name__, args)

    @staticmethod
    def _call(method: Callable[..., None], listener: WriterListener, *args: object) -> None:
        try:
            getattr(listener, method.__name__)(*args)
        except Exception:
            log.exception("writer listener %r failed in %s", listener, method.__name__)

    def _refused(self, key: RecordingKey, reason: str) -> None:
        """A recording that was never opened: failed, with nothing written."""
        self._ended(RecordingWritten(key, RecordingState.FAILED, reason))

    def _ended(self, report: RecordingWritten) -> None:
        """Any thread: the writer is done with a recording (opened or refused)."""
        self._tell(WriterListener.recording_written, report)

    def _end(self, rid: uuid.UUID, report: RecordingWritten) -> None:
        """Thread side: record the end of an opened recording and report it."""
        with self._lock:
            handle = self._handles.get(rid)
            if handle is None:
                return
            handle.state = report.state
            handle.reason = report.reason
            report = replace(report, recording_id=handle.key, frames_dropped=handle.dropped_frames)
            self._forget(rid)
        self._ended(report)

    # --- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._wakeup.wait(self._held.timeout(time.monotonic()))
                item = self._queue.popleft() if self._queue else None
                if isinstance(item, _Block):
                    self._queued_blocks -= 1
            if not isinstance(item, _Stop):
                if item is not None:
                    self._process(item)
                for rid in self._held.expired(time.monotonic()):
                    self._write_ahead(rid, f"held {self._held.hold_seconds:.1f} s")
                continue
            for rid in self._held.held():
                self._write_ahead(rid, "the writer is stopping")
            for rid in list(self._active):
                with self._lock:
                    handle = self._handles.get(rid)
                    dropped = handle.dropped_frames if handle is not None else 0
                self._process(_Close(rid, dropped, "the writer stopped before the call ended"))
            return

    def _write_ahead(self, rid: uuid.UUID, why: str) -> None:
        """A held recording whose row has not come: written now (see ``holding``)."""
        self.metrics.recordings_written_ahead += 1
        log.warning("recording %s written ahead of its catalog row (%s)", rid, why)
        for item in self._held.release(rid) or ():
            self._process(item)

    def _process(self, item: _Step) -> None:
        """One step for one recording; any failure fails that recording only."""
        rid = item.rid
        try:
            if isinstance(item, _Open):
                if item.hold:
                    self._held.hold(rid, replace(item, hold=False), time.monotonic())
                else:
                    self._open_recording(item)
                return
            if isinstance(item, _RowDone):
                self._on_row(item)
                return
            if not isinstance(item, _Discard) and self._held.add(rid, item):
                return
            if isinstance(item, _Discard):
                self._discard(item)
                return
            active = self._active.get(rid)
            if active is None:  # failed earlier: its blocks are discarded
                return
            if isinstance(item, _Block):
                self._on_block(active, item)
            else:
                self._on_close(active, item)
        except OSError as exc:
            active = self._active.get(rid)
            if active is not None and active.segment is not None:
                where: Path | None = active.path / active.segment.name
            elif isinstance(item, (_Open, _Discard)):
                where = recording_path(item.directory, rid)
            else:
                where = None
            self._fail(rid, _describe(exc, where))
        except Exception as exc:  # a bug: fail the recording, keep the thread alive
            log.exception("recording %s: internal error in the writer", rid)
            self._fail(rid, f"internal error: {type(exc).__name__}: {exc}")

    def _fail(self, rid: uuid.UUID, reason: str) -> None:
        """What was wholly written stays, and is reported: the open segment as far as it
        got, and the totals."""
        active = self._active.pop(rid, None)
        report = RecordingWritten(rid, RecordingState.FAILED, reason)
        if active is not None:
            self.store.abandon(active.path)
            self._report_segment(active)
            report = self._totals(active, RecordingState.FAILED, reason)
        self.metrics.recordings_failed += 1
        log.error("recording %s failed: %s", rid, reason)
        self._end(rid, report)

    def _on_row(self, item: _RowDone) -> None:
        held = self._held.release(item.rid)
        if item.committed:
            for each in held or ():
                self._process(each)
        elif held is not None:  # nothing was written, and nothing will be
            self.metrics.recordings_failed += 1
            log.error("recording %s not written: %s", item.rid, item.reason)
            self._end(item.rid, RecordingWritten(item.rid, RecordingState.FAILED, item.reason))
        elif item.rid in self._active:  # written ahead: it keeps what it wrote
            with self._lock:
                handle = self._handles.get(item.rid)
                dropped = handle.dropped_frames if handle is not None else 0
            self._process(_Close(item.rid, dropped, item.reason))

    def _discard(self, item: _Discard) -> None:
        self._held.release(item.rid)  # held: nothing is on disk
        active = self._active.pop(item.rid, None)
        if active is not None:
            active.pending.clear()
            active.data_key = b""
        path = recording_path(item.directory, item.rid)
        self.store.abandon(path)
        self.store.discard(path)
        self._end(
            item.rid, RecordingWritten(item.rid, RecordingState.DISCARDED, "discarded on request")
        )

    def _open_recording(self, item: _Open) -> None:
        path = recording_path(item.directory, item.rid)
        data_key = new_data_key()
        blob = wrap_key(data_key, item.public_key, item.rid)
        self.store.open_recording(path, blob)
        self._active[item.rid] = OpenRecording(
            item.rid,
            path,
            data_key,
            item.encoding,
            item.segment_chunks,
            item.start_time_ms,
            hashlib.sha256(blob).hexdigest(),
        )
        self.metrics.recordings_opened += 1

    def _on_block(self, active: OpenRecording, item: _Block) -> None:
        gap = item.dropped_frames - active.gap_filled
        if gap > 0:
            active.gap_filled = item.dropped_frames
            self._append(active, active.silence(gap))
        self._append(active, active.stored(item.block))
        if item.final:
            self._finish(active, "")

    def _on_close(self, active: OpenRecording, item: _Close) -> None:
        gap = item.dropped_frames - active.gap_filled
        if gap > 0:
            active.gap_filled = item.dropped_frames
            self._append(active, active.silence(gap))
        self._finish(active, item.reason)

    def _append(self, active: OpenRecording, block: Block) -> None:
        if len(block) == 0:
            return
        active.pending.append(block)
        active.pending_frames += len(block)
        if active.pending_frames < self.chunk_frames:
            return
        buffered = np.concatenate(active.pending)
        start = 0
        while len(buffered) - start >= self.chunk_frames:
            self._seal(active, buffered[start : start + self.chunk_frames], final=False)
            start += self.chunk_frames
        rest = buffered[start:]
        active.pending = [rest] if len(rest) else []
        active.pending_frames = len(rest)

    def _finish(self, active: OpenRecording, reason: str) -> None:
        rest = np.concatenate(active.pending) if active.pending else active.silence(0)
        active.pending, active.pending_frames = [], 0
        self._seal(active, rest, final=True)
        self._close_segment(active)
        del self._active[active.rid]
        self.metrics.recordings_completed += 1
        self._end(active.rid, self._totals(active, RecordingState.COMPLETE, reason))

    def _seal(self, active: OpenRecording, block: Block, final: bool) -> None:
        prefix = b""
        if active.encoder is None:
            active.segment_index += 1
            active.encoder = SegmentEncoder(
                active.data_key,
                active.rid,
                active.segment_index,
                start_time_ms=active.start_time_ms + active.next_frame * 1000 // self.sample_rate,
                encoding=active.encoding,
                sample_rate=self.sample_rate,
                chunk_frames=self.chunk_frames,
                segment_chunks=active.segment_chunks,
                codecs=active.codecs,
            )
            active.segment = OpenSegment(segment_file_name(active.segment_index), active.next_frame)
            prefix = active.encoder.header  # header and first chunk in one write
        encoder, segment = active.encoder, active.segment
        assert segment is not None
        data = prefix + encoder.seal_chunk(
            encoder.next_chunk_index, active.next_frame, block, final
        )
        started = time.perf_counter()
        self.store.append(active.path, segment.name, data)
        elapsed = time.perf_counter() - started
        segment.hash.update(data)
        segment.chunks += 1
        segment.frames += len(block)
        segment.bytes += len(data)
        active.next_frame += len(block)
        active.codecs = encoder.codecs
        metrics = self.metrics
        metrics.chunks_sealed += 1
        metrics.bytes_written += len(data)
        metrics.last_write_seconds = elapsed
        metrics.write_seconds_total += elapsed
        metrics.write_seconds_max = max(metrics.write_seconds_max, elapsed)
        if self._on_write is not None:
            try:
                self._on_write(elapsed)  # a metrics histogram: thread-safe, cheap
            except Exception:
                log.exception("on_write hook failed")
        if encoder.finished and not final:
            self._close_segment(active)

    def _close_segment(self, active: OpenRecording) -> None:
        segment = active.segment
        active.encoder = None
        if segment is None:
            return
        self.store.finish_segment(active.path, segment.name)
        self._report_segment(active)

    def _report_segment(self, active: OpenRecording) -> None:
        """The open segment is done with: count it and tell the listeners."""
        segment, active.segment = active.segment, None
        if segment is None or not segment.chunks:  # a failure before its first chunk
            return
        active.segments += 1
        active.frames += segment.frames
        active.bytes += segment.bytes
        report = SegmentWritten(
            active.rid,
            active.segment_index,
            segment.name,
            active.path / segment.name,
            segment.first_frame,
            segment.chunks,
            segment.frames,
            segment.bytes,
            segment.hash.hexdigest(),
        )
        self._tell(WriterListener.segment_written, report)

    @staticmethod
    def _totals(active: OpenRecording, state: RecordingState, reason: str) -> RecordingWritten:
        return RecordingWritten(
            active.rid,
            state,
            reason,
            segments=active.segments,
            frames=active.frames,
            bytes=active.bytes,
            key_sha256=active.key_sha256,
        )
