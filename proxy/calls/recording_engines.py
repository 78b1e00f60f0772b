"""Where a recording's audio is recorded and written: this process's recorder and writer
thread (:class:`LocalEngine`), or a media worker's (:class:`WorkerEngine`, issue 19
step 2).  :class:`~proxy.calls.recording.RecordingService` drives a recording through
the engine it started it on and hears from both the same way (a ``WriterListener``, and
a recorder failure), so the catalog interplay — rows before files, segments as sealed,
the end's one write — is one code path.

A worker's recording lives in the worker from its first block to its last: it is opened
there at the bridge, before it has audio, and the call process hands down the audio it
relays itself (before the relay moves to the worker, during a tone or a hold).  Nothing
of a recording ever changes process, so its files are what this process would write.

A worker that dies takes its writer with it: the recording ends ``interrupted``, and
what the writer left in the store — every complete chunk, found as start-up recovery
finds it (:func:`~proxy.calls.survived.scan_what_survived`) — is reported as the
writer would have reported it, so the end's write catalogues it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ..media.recorder import Recorder, RecordingChannelPair
from ..media.workers.recording_messages import Report
from ..media.workers.remote import RemotePair
from ..recording_state import RecordingState
from ..storage.store import SegmentStore
from ..storage.write_reports import RecordingKey, RecordingWritten, SegmentWritten
from ..storage.writer import RecordingWriter
from .survived import scan_what_survived

log = logging.getLogger(__name__)

Lost = Callable[[str], None]
COUNTERS_SECONDS = 0.5  # a worker answers ``counters`` at once, or it is dying


class Engine(Protocol):
    """What the service asks of a recording's recorder and writer."""

    pair: RecordingChannelPair

    def close(self) -> None:
        """The last block goes to the writer as final."""

    def commit(self) -> None:
        """The catalog row is committed: the files may exist."""

    def drop(self, reason: str) -> None:
        """No row will ever name it: record no more, write nothing of it."""

    def discard(self, directory: Path) -> None:
        """Record no more, and destroy what was written."""

    async def counters(self) -> None:
        """The pair's channel counters up to date (the call's summary reads them)."""


class Listener(Protocol):
    """The service's side: the writer's reports, and a recorder failure."""

    store: SegmentStore

    def segment_written(self, segment: SegmentWritten) -> None: ...

    def recording_written(self, recording: RecordingWritten) -> None: ...

    def audio_dropped(self, recording_id: RecordingKey, reason: str) -> None: ...

    def recorder_failed(self, recording_id: str, reason: str) -> None: ...


class RecordingWorkers(Protocol):
    """The media worker pool (:class:`~proxy.media.workers.WorkerPool`), when its
    workers record."""

    def open_recording(
        self,
        recording_id: str,
        public_key: bytes,
        codecs: tuple[str, str],
        *,
        encoding: str,
        segment_seconds: float,
        start_time_ms: int,
        on_report: Callable[[Report], None],
        lost: Lost,
    ) -> RemotePair | None: ...


class LocalEngine:
    """This process's recorder and writer thread."""

    def __init__(
        self, rid: str, pair: RecordingChannelPair, recorder: Recorder, writer: RecordingWriter
    ) -> None:
        self.rid = rid
        self.pair = pair
        self.recorder = recorder
        self.writer = writer

    def close(self) -> None:
        self.recorder.close(self.rid)

    def commit(self) -> None:
        self.writer.commit(self.rid)

    def drop(self, reason: str) -> None:
        self.recorder.close(self.rid)
        self.writer.drop(self.rid, reason)

    def discard(self, directory: Path) -> None:
        self.recorder.close(self.rid)
        self.writer.discard(self.rid, directory)

    async def counters(self) -> None:
        pass  # the pair is this process's recorder's own: always up to date


class WorkerEngine:
    """A media worker's recorder and writer (see the module docstring).  Built before
    the pair, which :meth:`open` gets from the pool."""

    def __init__(self, rid: str, listener: Listener, directory: Path, lost: Lost) -> None:
        self.rid = rid
        self.listener = listener
        self.directory = directory
        self.lost = lost  # the recording is interrupted (and the call ends)
        self.sealed: set[int] = set()  # segments the worker reported
        self.ended: asyncio.Task[None] | None = None  # after the worker died
        self.pair: RecordingChannelPair
        self._counted: asyncio.Future[None] | None = None  # a ``counters`` asked for

    def open(
        self,
        workers: RecordingWorkers,
        public_key: bytes,
        codecs: tuple[str, str],
        *,
        encoding: str,
        segment_seconds: float,
        start_time_ms: int,
    ) -> bool:
        """Start the recording in a worker; False when none can take it."""
        pair = workers.open_recording(
            self.rid, public_key, codecs, encoding=encoding, segment_seconds=segment_seconds,
            start_time_ms=start_time_ms, on_report=self.report, lost=self.worker_died,
        )  # fmt: skip
        if pair is None:
            return False
        self.pair = pair
        return True

    def _command(self, action: str, argument: object = None) -> None:
        assert isinstance(self.pair, RemotePair)
        self.pair.command(action, argument)

    def close(self) -> None:
        self._command("close")

    def commit(self) -> None:
        self._command("commit")

    def drop(self, reason: str) -> None:
        self._command("drop", reason)

    def discard(self, directory: Path) -> None:
        self._command("discard")

    async def counters(self) -> None:
        """Asked of the worker, which answers at once; a worker that does not (it died,
        the recording ended) leaves the counters as they are.  The call's media is
        released when they are asked for, so the recording's last block is cut first:
        waiting for the answer must not lengthen the recording past the call."""
        if self._counted is None or self._counted.done():
            self._counted = asyncio.get_running_loop().create_future()
            self._command("close")
            self._command("counters")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._counted), COUNTERS_SECONDS)

    # -- what the worker says -----------------------------------------------------------

    def report(self, report: Report) -> None:
        body, listener = report.body, self.listener
        if report.kind == "segment":
            self.sealed.add(int(body["index"]))
            listener.segment_written(
                SegmentWritten(
                    self.rid, int(body["index"]), str(body["name"]), Path(body["path"]),
                    int(body["first_frame"]), int(body["chunks"]), int(body["frames"]),
                    int(body["bytes"]), str(body["sha256"]),
                )
            )  # fmt: skip
        elif report.kind == "dropped":
            listener.audio_dropped(self.rid, str(body["reason"]))
        elif report.kind == "failed":
            listener.recorder_failed(self.rid, str(body["reason"]))
        elif report.kind == "counters":
            if isinstance(self.pair, RemotePair):
                self.pair.count(body["channels"])
            self._answered()
        else:
            if isinstance(self.pair, RemotePair):
                self.pair.settle(body["channels"])
            listener.recording_written(
                RecordingWritten(
                    self.rid, RecordingState(body["state"]), str(body["reason"]),
                    int(body["segments"]), int(body["frames"]), int(body["bytes"]),
                    body["key_sha256"], int(body["frames_dropped"]),
                )
            )  # fmt: skip
            self._answered()

    def _answered(self) -> None:
        if self._counted is not None and not self._counted.done():
            self._counted.set_result(None)

    def worker_died(self, reason: str) -> None:
        """The worker and its writer are gone: the recording is interrupted, and what
        the writer left is found and reported."""
        self._answered()
        self.lost(reason)
        self.ended = asyncio.get_running_loop().create_task(
            self._what_survived(reason), name=f"survived-{self.rid}"
        )

    async def _what_survived(self, reason: str) -> None:
        key_sha256: str | None = None
        segments: list[SegmentWritten] = []
        try:
            key_sha256, segments = await asyncio.to_thread(
                scan_what_survived, self.listener.store, self.directory / self.rid
            )
        except FileNotFoundError:
            pass  # its row was not committed yet: nothing was written
        except Exception:
            log.exception("recording %s: reading what its dead worker left failed", self.rid)
        for segment in segments:
            if segment.index not in self.sealed:
                self.listener.segment_written(segment)
        self.listener.recording_written(
            RecordingWritten(
                self.rid,
                RecordingState.INTERRUPTED,
                reason,
                len(segments),
                sum(segment.frames for segment in segments),
                sum(segment.bytes for segment in segments),
                key_sha256,
            )
        )
