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


class ProtocolError(ValueError):
    """A control message that does not parse (one side has a bug); defined here, where
    the protocol's first module is, and exported by :mod:`.protocol`."""


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
        data, offset, end = self.data, 0, len(self.data)
        size = _FRAME.size
        while offset < end:
            if offset + size > end:
                raise ProtocolError("a frames record is cut short")
            number, channel, seq, ts, length = _FRAME.unpack_from(data, offset)
            offset += size
            if offset + length > end:
                raise ProtocolError("a payload is cut short")
            yield number, channel, seq, ts, data[offset : offset + length]
            offset += length


RecordingMessage = RecorderSetup | OpenRecording | RecordingCommand | FramesDown | Report


class FrameBatch:
    """Audio waiting to be handed down, as one ``D`` message."""

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data = bytearray(FRAMES)

    def add(self, number: int, channel: int, seq: int, ts: int, payload: bytes) -> int:
        """Append a payload; the message's size so far."""
        data = self._data
        data += _FRAME.pack(number, channel, seq, ts, len(payload))
        data += payload
        return len(data)

    def __bool__(self) -> bool:
        return len(self._data) > 1

    def take(self) -> bytes:
        message = bytes(self._data)
        del self._data[1:]
        return message


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
