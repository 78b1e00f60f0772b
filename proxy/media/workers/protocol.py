"""The control protocol between the call process and a media worker (pure: bytes in,
messages out).

One ``AF_UNIX`` ``SOCK_SEQPACKET`` socket pair per worker: each message is one record,
so no framing is needed, and order is kept (a call's packets always arrive before the
message that gives the call back).  The first byte says what a message is:

Call process → worker

``T`` take
    ``T`` + JSON ``{"call": id, "legs": [leg, leg]}``, with the two legs' RTP sockets
    passed as file descriptors (``SCM_RIGHTS``, in the same order).  A leg is
    ``{"source": [host, port], "keep": pt | null, "rewriter": [6 ints] | null}``: the
    party's latched address (only its packets are taken; it is also where the other
    leg's packets are sent), the payload type not forwarded but only handed up (the
    call taker's telephone-events: the call flow decides what the caller hears), and
    the state of the stream rewriter applied to what is sent on the leg
    (:meth:`~proxy.media.relay.StreamRewriter.state`).
``G`` give back
    ``G`` + the call id (``!I``): stop reading, hand up what was read, answer ``R``.

Worker → call process

``H`` hello
    ``H`` alone, once the worker's loop runs: calls are handed only to a worker that has
    said it (one starting up would leave their packets waiting in the sockets).
``P`` packets
    ``P`` + records of ``!IBH`` (call id, leg index 0/1, length) and the RTP packet as
    received: every packet the worker took from a party, forwarded or not, for the call
    process to count and record (``RtpLeg.record_forwarded``) — batched, so the call
    process pays one receive for many packets and no socket work per packet.
``R`` returned
    ``R`` + JSON ``{"call": id, "reason": str, "legs": [counts, counts], "foreign":
    [leg, host, port, hex] | null}``: the answer to ``G``, or the worker giving a call
    back by itself because a packet came from another source (``foreign``: the relay's
    latching decides about it).  ``counts`` holds what the call process cannot see:
    ``packets_out``, ``bytes_out``, ``send_errors``, ``dropped_malformed`` and the
    leg's ``rewriter`` state.

With workers that record (step 2), a leg's ``recorded`` ([recording number, channel,
audio payload type]) says the worker records its audio itself: those packets are counted
(``packets_in``, ``bytes_in`` in ``R``) and not handed up.  The recording messages
(``S``, ``O``, ``C``, ``D``, ``E``) are :mod:`.recording_messages`.

A message that does not parse raises :class:`ProtocolError` (a bug on one side: the
pool then treats the worker as failed).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .batch import BATCH_BYTES as BATCH_BYTES
from .batch import FLUSH_SECONDS as FLUSH_SECONDS
from .batch import ProtocolError as ProtocolError
from .batch import RecordBatch, records
from .recording_messages import KINDS as RECORDING_KINDS
from .recording_messages import RecordingMessage, parse_recording_message

Address = tuple[str, int]
RewriterState = tuple[int, int, int, int, int, int]

TAKE = b"T"
GIVE_BACK = b"G"
HELLO = b"H"
PACKETS = b"P"
RETURNED = b"R"

_CALL = struct.Struct("!I")
_RECORD = struct.Struct("!IBH")


#: a leg whose packets the worker records itself (step 2): (recording number, channel
#: 0 caller / 1 call taker, the audio payload type recorded)
Recorded = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class LegHandOver:
    source: Address
    keep: int | None = None
    rewriter: RewriterState | None = None
    recorded: Recorded | None = None


@dataclass(frozen=True, slots=True)
class Take:
    call: int
    legs: tuple[LegHandOver, LegHandOver]


@dataclass(frozen=True, slots=True)
class GiveBack:
    call: int


@dataclass(frozen=True, slots=True)
class Hello:
    pass


@dataclass(frozen=True, slots=True)
class LegCounts:
    packets_out: int = 0
    bytes_out: int = 0
    send_errors: int = 0
    dropped_malformed: int = 0
    rewriter: RewriterState | None = None
    # packets the worker recorded itself (not handed up): the call process counts them
    packets_in: int = 0
    bytes_in: int = 0


@dataclass(frozen=True, slots=True)
class Foreign:
    """A packet from a source the leg is not latched to: the call process's relay
    decides whether it latches the leg."""

    leg: int
    source: Address
    packet: bytes


@dataclass(frozen=True, slots=True)
class Returned:
    call: int
    reason: str
    legs: tuple[LegCounts, LegCounts]
    foreign: Foreign | None = None


@dataclass(frozen=True, slots=True)
class Packets:
    data: bytes  # the records, parsed lazily by ``records``

    def records(self) -> Iterator[tuple[int, int, bytes]]:
        """(call id, leg index, packet) of each record."""
        return records(self.data, _RECORD)


Message = Take | GiveBack | Hello | Packets | Returned | RecordingMessage


def packet_batch() -> RecordBatch:
    """The worker's packets waiting to be handed up, as one ``P`` message
    (``add(packet, call, leg)``)."""
    return RecordBatch(PACKETS, _RECORD)


def encode_take(take: Take) -> bytes:
    legs = [
        {
            "source": list(leg.source),
            "keep": leg.keep,
            "rewriter": leg.rewriter,
            "recorded": leg.recorded,
        }
        for leg in take.legs
    ]
    return TAKE + json.dumps({"call": take.call, "legs": legs}).encode()


def encode_give_back(call: int) -> bytes:
    return GIVE_BACK + _CALL.pack(call)


def encode_returned(returned: Returned) -> bytes:
    foreign = returned.foreign
    body: dict[str, Any] = {
        "call": returned.call,
        "reason": returned.reason,
        "legs": [
            {
                "packets_out": counts.packets_out,
                "bytes_out": counts.bytes_out,
                "send_errors": counts.send_errors,
                "dropped_malformed": counts.dropped_malformed,
                "rewriter": counts.rewriter,
                "packets_in": counts.packets_in,
                "bytes_in": counts.bytes_in,
            }
            for counts in returned.legs
        ],
        "foreign": None
        if foreign is None
        else [foreign.leg, *foreign.source, foreign.packet.hex()],
    }
    return RETURNED + json.dumps(body).encode()


def parse_message(data: bytes) -> Message:
    """One control message (:class:`ProtocolError` if it does not parse)."""
    kind, body = data[:1], data[1:]
    if kind in RECORDING_KINDS:
        return parse_recording_message(data)
    try:
        if kind == PACKETS:
            return Packets(body)
        if kind == HELLO and not body:
            return Hello()
        if kind == GIVE_BACK:
            (call,) = _CALL.unpack(body)
            return GiveBack(call)
        if kind == TAKE:
            fields = json.loads(body)
            first, second = (_leg_hand_over(leg) for leg in fields["legs"])
            return Take(_call_id(fields["call"]), (first, second))
        if kind == RETURNED:
            fields = json.loads(body)
            a, b = (_leg_counts(counts) for counts in fields["legs"])
            return Returned(
                _call_id(fields["call"]), str(fields["reason"]), (a, b), _foreign(fields["foreign"])
            )
    except (ValueError, KeyError, TypeError, struct.error) as exc:
        raise ProtocolError(f"a {kind!r} message does not parse: {exc}") from exc
    raise ProtocolError(f"unknown message kind {kind!r}")


def _call_id(value: object) -> int:
    if not isinstance(value, int) or not 0 <= value < 2**32:
        raise ValueError(f"bad call id {value!r}")
    return value


def _address(value: Sequence[Any]) -> Address:
    host, port = value
    if not isinstance(host, str) or not isinstance(port, int):
        raise ValueError(f"bad address {value!r}")
    return host, port


def _rewriter(value: object) -> RewriterState | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 6:
        raise ValueError(f"bad rewriter state {value!r}")
    a, b, c, d, e, f = (int(item) for item in value)
    return a, b, c, d, e, f


def _leg_hand_over(fields: dict[str, Any]) -> LegHandOver:
    keep = fields["keep"]
    if keep is not None and not isinstance(keep, int):
        raise ValueError(f"bad payload type {keep!r}")
    recorded = fields.get("recorded")
    if recorded is not None:
        number, channel, payload_type = (int(item) for item in recorded)
        recorded = (_call_id(number), channel, payload_type)
    return LegHandOver(_address(fields["source"]), keep, _rewriter(fields["rewriter"]), recorded)


def _leg_counts(fields: dict[str, Any]) -> LegCounts:
    return LegCounts(
        int(fields["packets_out"]),
        int(fields["bytes_out"]),
        int(fields["send_errors"]),
        int(fields["dropped_malformed"]),
        _rewriter(fields["rewriter"]),
        int(fields.get("packets_in", 0)),
        int(fields.get("bytes_in", 0)),
    )


def _foreign(value: object) -> Foreign | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 4:
        raise ValueError(f"bad foreign packet {value!r}")
    leg, host, port, packet = value
    return Foreign(int(leg), _address((host, port)), bytes.fromhex(packet))
