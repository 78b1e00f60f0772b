"""The recording messages of the worker control protocol (pure: bytes in, messages out).

Step 2 of the media workers (issue 19): a worker runs the recordings of the calls the
call process gives it — a :class:`~proxy.media.recorder.Recorder` ticked every 20 ms and
a :class:`~proxy.storage.writer.RecordingWriter` — and only reports go up.  A recording
is named by a number (``!I``) on the wire, so that a packet handed down costs 13 bytes
of header, not a 36-character id.

Call process → worker

``S`` set-up
    ``S`` + JSON :class:`RecorderSetup`: how every recording of this worker is written
    (the recordings root, fsync policy, hold bound, pause mode, jitter depth); sent
    once, before any ``O``.
``O`` open
    ``O`` + JSON :class:`OpenRecording`: a recording starts (its writer holds the audio
    until ``commit``).  Only the public key travels: the data key is made, wrapped and
    used in the worker, and the private key never leaves the records process.
``C`` command
    ``C`` + JSON ``{"number": n, "action": a, "argument": x}``: one of :data:`ACTIONS`.
``D`` frames down
    ``D`` + records of ``!IBHIH`` (number, channel 0 caller / 1 call taker, sequence
    number, timestamp, payload length) and the payload: the audio of a recorded call
    while the call process relays it (before a worker takes the relay, during a tone or
    a hold), for the worker's jitter buffer.

Worker → call process

``E`` report
    ``E`` + JSON ``{"number": n, "kind": k, ...}``: what the writer or the recorder says
    of the recording — ``segment`` (a sealed segment's facts), ``dropped`` (the queue
    was full), ``failed`` (the recorder dropped it), ``counters`` (each channel's
    quality and summary counters, asked for when the call ends) and, last, ``written``
    (the writer's last word, with the same counters, final).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from .batch import ProtocolError, RecordBatch, records

SETUP = b"S"
OPEN = b"O"
COMMAND = b"C"
FRAMES = b"D"
REPORT = b"E"
KINDS = (SETUP, OPEN, COMMAND, FRAMES, REPORT)

#: what a command may ask: the recorder's pause (argument: the mode or null), resume,
#: stop and close; the writer's commit, drop (argument: the reason) and discard; a
#: direction's hold (argument: [channel, held]) and codec (argument: [channel, name]);
#: and ``counters``, answered at once by a ``counters`` report
ACTIONS = frozenset(
    {"pause", "resume", "stop", "close", "commit", "drop", "discard", "held", "codec",
     "counters"}
)  # fmt: skip
REPORTS = frozenset({"segment", "dropped", "failed", "written", "counters"})

_FRAME = struct.Struct("!IBHIH")


@dataclass(frozen=True, slots=True)
class RecorderSetup:
    directory: str
    fsync: str
    hold_seconds: float
    pause_mode: str
    jitter_depth: int


@dataclass(frozen=True, slots=True)
class OpenRecording:
    number: int
    recording_id: str
    public_key: str  # the X25519 public key's 32 raw bytes, hex
    caller_codec: str
    taker_codec: str
    encoding: str
    segment_seconds: float
    start_time_ms: int


@dataclass(frozen=True, slots=True)
class RecordingCommand:
    number: int
    action: str
    argument: Any = None


@dataclass(frozen=True, slots=True)
class Report:
    number: int
    kind: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class FramesDown:
    data: bytes  # the records, parsed lazily by ``records``

    def records(self) -> Iterator[tuple[int, int, int, int, bytes]]:
        """(number, channel, sequence number, timestamp, payload) of each record."""
        return records(self.data, _FRAME)


RecordingMessage = RecorderSetup | OpenRecording | RecordingCommand | FramesDown | Report


def frame_batch() -> RecordBatch:
    """Audio waiting to be handed down, as one ``D`` message
    (``add(payload, number, channel, seq, ts)``)."""
    return RecordBatch(FRAMES, _FRAME)


def encode_setup(setup: RecorderSetup) -> bytes:
    return SETUP + json.dumps(asdict(setup)).encode()


def encode_open(message: OpenRecording) -> bytes:
    return OPEN + json.dumps(asdict(message)).encode()


def encode_command(command: RecordingCommand) -> bytes:
    if command.action not in ACTIONS:
        raise ValueError(f"unknown recording action {command.action!r}")
    return COMMAND + json.dumps(asdict(command)).encode()


def encode_report(report: Report) -> bytes:
    fields = {"number": report.number, "kind": report.kind, **report.body}
    return REPORT + json.dumps(fields).encode()


def parse_recording_message(data: bytes) -> RecordingMessage:
    """One recording message (:class:`ProtocolError` if it does not parse)."""
    kind, body = data[:1], data[1:]
    if kind == FRAMES:
        return FramesDown(body)
    try:
        fields = json.loads(body)
        if not isinstance(fields, dict):
            raise ValueError("not an object")
        if kind == SETUP:
            return RecorderSetup(
                str(fields["directory"]), str(fields["fsync"]), float(fields["hold_seconds"]),
                str(fields["pause_mode"]), int(fields["jitter_depth"]),
            )  # fmt: skip
        number = _number(fields.pop("number"))
        if kind == OPEN:
            return OpenRecording(
                number, str(fields["recording_id"]), str(fields["public_key"]),
                str(fields["caller_codec"]), str(fields["taker_codec"]),
                str(fields["encoding"]), float(fields["segment_seconds"]),
                int(fields["start_time_ms"]),
            )  # fmt: skip
        if kind == COMMAND:
            action = fields["action"]
            if action not in ACTIONS:
                raise ValueError(f"unknown action {action!r}")
            return RecordingCommand(number, action, fields.get("argument"))
        if kind == REPORT:
            report = fields.pop("kind")
            if report not in REPORTS:
                raise ValueError(f"unknown report {report!r}")
            return Report(number, report, fields)
    except (ValueError, KeyError, TypeError) as exc:
        raise ProtocolError(f"a {kind!r} message does not parse: {exc}") from exc
    raise ProtocolError(f"unknown message kind {kind!r}")


def _number(value: object) -> int:
    if not isinstance(value, int) or not 0 <= value < 2**32:
        raise ValueError(f"bad recording number {value!r}")
    return value
