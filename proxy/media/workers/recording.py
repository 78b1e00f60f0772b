"""The recordings a media worker runs (issue 19, step 2): its own recorder, ticked every
20 ms by its own media clock, and its own writer thread, for the calls the call process
gave it.

The audio comes from two places: the worker's relay, for the packets of a call it
relays (:meth:`WorkerRecordings.direction`, pushed straight into the jitter buffer), and
the call process, for the packets it relays itself (``D`` messages: before the relay
moves to a worker, during a tone or a hold).  The recording never moves: it is opened
here before it has any audio and ends here, so no jitter buffer, partial block or open
segment ever changes process, and the files are what the call process's own recorder and
writer would write.

What goes up is what the call process's :class:`~proxy.calls.recording.RecordingService`
hears from its own writer (a ``WriterListener``) and recorder (``on_failure``), as ``E``
reports; at the end, each channel's quality and counters, which the service reads from
the recorder's channels in the single-process path.  The catalog stays in the call
process: the writer holds a recording's audio until the call process says its row is
committed (``commit``), exactly as there.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from ...recording_state import RecordingState
from ...storage.store import FsyncPolicy, LocalDiskStore
from ...storage.write_reports import RecordingKey, RecordingWritten, SegmentWritten
from ...storage.writer import RecordingWriter
from ..clock import MediaClock
from ..recorder import PauseMode, Recorder, RecordingChannelPair, RecordingDirection
from .recording_messages import (
    FramesDown,
    OpenRecording,
    RecorderSetup,
    RecordingCommand,
    Report,
    encode_report,
)

log = logging.getLogger(__name__)

Send = Callable[[bytes], None]


def direction_counts(direction: RecordingDirection) -> dict[str, int]:
    """What the call process reads of a channel at the recording's end: its quality
    (``DirectionQuality``) and its summary counters (``channel_summary``)."""
    quality = direction.quality()
    jitter = direction.jitter.stats
    return {
        "frames": quality.frames,
        "lost": quality.lost,
        "late": quality.late,
        "missing": quality.missing,
        "longest_gap": quality.longest_gap,
        "classified_frames": direction.speech.frames,
        "speech_frames": direction.speech.speech_frames,
        "received": jitter.received,
        "duplicates": jitter.duplicates,
        "late_packets": jitter.late,
        "lost_frames": jitter.lost,
    }


class WorkerRecordings:
    """Every recording of one worker process (see the module docstring)."""

    def __init__(self, setup: RecorderSetup, send: Send) -> None:
        self.setup = setup
        self.directory = Path(setup.directory)
        self._send = send
        fsync: FsyncPolicy = setup.fsync  # type: ignore[assignment]
        self.writer = RecordingWriter(
            LocalDiskStore(fsync=fsync),
            loop=asyncio.get_running_loop(),  # its reports arrive on the worker's loop
            hold_seconds=setup.hold_seconds,
            name="worker-writer",
        )
        self.recorder = Recorder(
            self.writer.sink, pause_mode=setup.pause_mode, jitter_depth=setup.jitter_depth
        )
        self.recorder.on_failure = self._recorder_failed
        self.writer.listen(self)
        self.clock = MediaClock(self.recorder)
        self.clock.start()
        self._numbers: dict[str, int] = {}  # recording id → number, until written
        self._pairs: dict[int, RecordingChannelPair] = {}  # by number, until written

    def close(self) -> None:
        """The worker ends: every recording's last block to the writer, which finishes."""
        self.clock.stop()
        self.recorder.close_all()
        self.writer.stop(timeout=10)

    # -- the call process's messages ----------------------------------------------------

    def open(self, message: OpenRecording) -> None:
        rid = message.recording_id
        if message.number in self._pairs or rid in self._numbers:
            log.error("recording %s (%d): opened twice; the second open ignored", rid,
                      message.number)  # fmt: skip
            return
        pair = self.recorder.add(rid, message.caller_codec, message.taker_codec)
        self._numbers[rid] = message.number
        self._pairs[message.number] = pair
        self.writer.open(
            rid,
            self.directory,
            X25519PublicKey.from_public_bytes(bytes.fromhex(message.public_key)),
            encoding=message.encoding,
            segment_seconds=message.segment_seconds,
            start_time_ms=message.start_time_ms,
            hold=True,
        )

    def direction(self, number: int, channel: int) -> RecordingDirection | None:
        """The channel a packet of recording ``number`` goes to (None: it has ended)."""
        pair = self._pairs.get(number)
        if pair is None or not pair.active:
            return None
        return pair.taker if channel else pair.caller

    def frames(self, message: FramesDown) -> None:
        for number, channel, seq, ts, payload in message.records():
            direction = self.direction(number, channel)
            if direction is not None:
                direction.push(seq, ts, payload)

    def command(self, command: RecordingCommand) -> None:
        pair = self._pairs.get(command.number)
        if pair is None:
            return  # already written: a late command changes nothing
        rid = str(pair.call_key)
        action, argument = command.action, command.argument
        if action == "commit":
            self.writer.commit(rid)
        elif action == "drop":
            self.recorder.close(rid)
            self.writer.drop(rid, str(argument))
        elif action == "discard":
            self.recorder.close(rid)
            self.writer.discard(rid, self.directory)
        elif action == "close":
            self.recorder.close(rid)
        elif action == "counters":
            self._report(command.number, "counters", {"channels": _counts(pair)})
        elif not pair.active:
            return  # stopped or failed: pause, resume, hold and codec have no effect
        elif action == "pause":
            pair.pause(None if argument is None else PauseMode(argument))
        elif action == "resume":
            pair.resume()
        elif action == "stop":
            pair.stop()
        elif action == "held":
            channel, held = argument
            (pair.taker if channel else pair.caller).set_held(bool(held))
        elif action == "codec":
            channel, codec = argument
            (pair.taker if channel else pair.caller).set_codec(str(codec))

    # -- what the writer and the recorder say (a WriterListener, on the worker's loop) ---

    def segment_written(self, segment: SegmentWritten) -> None:
        number = self._numbers.get(str(segment.recording_id))
        if number is not None:
            body = dataclasses.asdict(segment)
            body["recording_id"], body["path"] = str(segment.recording_id), str(segment.path)
            self._report(number, "segment", body)

    def recording_written(self, recording: RecordingWritten) -> None:
        rid = str(recording.recording_id)
        number = self._numbers.pop(rid, None)
        if number is None:
            return
        pair = self._pairs.pop(number)
        if recording.state is RecordingState.FAILED:
            self.recorder.close(rid)  # stop feeding a recording that cannot be written
        body = dataclasses.asdict(recording)
        body["recording_id"], body["state"] = rid, recording.state.value
        body["channels"] = _counts(pair)
        self._report(number, "written", body)

    def audio_dropped(self, recording_id: RecordingKey, reason: str) -> None:
        number = self._numbers.get(str(recording_id))
        if number is not None:
            self._report(number, "dropped", {"reason": reason})

    def _recorder_failed(self, key: Hashable, error: BaseException) -> None:
        """The recorder dropped the recording: the writer seals what it has (its last
        word follows), and the call process fails the recording now."""
        number = self._numbers.get(str(key))
        if number is not None:
            self._report(number, "failed", {"reason": f"recorder error: {error!r}"})
            self.writer.close(str(key))

    def _report(self, number: int, kind: str, body: dict[str, Any]) -> None:
        self._send(encode_report(Report(number, kind, body)))


def _counts(pair: RecordingChannelPair) -> list[dict[str, int]]:
    return [direction_counts(pair.caller), direction_counts(pair.taker)]
