"""A media worker: relays the RTP of the calls handed to it and hands every packet up.

The worker owns nothing of a call but its RTP sockets, lent by the call process
(:meth:`~proxy.media.relay.RtpLeg.lend`).  For each packet from a leg's latched source
it does what the relay's hot path does for a bridged plain call (``rtp_received``):
drop what is not RTP, forward to the other party — renumbered by the other leg's stream
rewriter, if it has one — except the kept payload type (the call taker's
telephone-events), and add the packet to the batch for the call process, which counts
and records it (``RtpLeg.record_forwarded``) without touching a socket.  A batch goes
up ``FLUSH_SECONDS`` after its first packet, or at once when it is ``BATCH_BYTES``
long: the recorder's jitter buffer (60 ms by default) absorbs that much delay.

When the worker also records the call (step 2: the call process opened its recording
here, :mod:`.recording`), a leg handed over with ``recorded`` has its audio pushed
straight into the recording's jitter buffer and counted here; only the call taker's
telephone-events still go up.

A packet from another source gives the call back at once with the packet (the call
process's latching decides about it); ``G`` gives it back on request.  Either way the
batch goes up first, then ``R`` with what only the worker counted.  The worker exits
when the control socket closes (the call process is gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable
from typing import Any

from ..g711 import PAYLOAD_TYPES
from ..recorder import RecordingDirection
from ..relay import StreamRewriter, rtp_payload
from .protocol import (
    BATCH_BYTES,
    FLUSH_SECONDS,
    HELLO,
    Foreign,
    GiveBack,
    LegCounts,
    Recorded,
    Returned,
    Take,
    encode_returned,
    packet_batch,
    parse_message,
)
from .recording import WorkerRecordings
from .recording_messages import FramesDown, OpenRecording, RecorderSetup, RecordingCommand

log = logging.getLogger(__name__)

_SEND_ERRORS = (OSError, ValueError, TypeError)
_MAX_MESSAGE = 1 << 16
_BUFFER_BYTES = 4 << 20
_HEADER = struct.Struct("!BBHI")


class _Leg(asyncio.DatagramProtocol):
    """One lent RTP socket: the party's packets in, the other party's out."""

    def __init__(self, worker: Worker, call: int, index: int, source: tuple[str, int]) -> None:
        self.worker = worker
        self.call = call
        self.index = index
        self.source = source
        self.keep: int | None = None
        self.rewriter: StreamRewriter | None = None  # what is sent on this leg
        self.recorded: Recorded | None = None  # recorded here (step 2), not handed up
        self.packets_in = 0  # packets recorded here: the call process counts them
        self.bytes_in = 0
        self.peer: _Leg = self
        self.transport: asyncio.DatagramTransport | None = None
        self.packets_out = 0
        self.bytes_out = 0
        self.send_errors = 0
        self.malformed = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if addr != self.source and (len(addr) == 2 or (addr[0], addr[1]) != self.source):
            self.worker.foreign(self, data, (addr[0], addr[1]))
            return
        if len(data) < 12 or data[0] & 0xC0 != 0x80:
            self.malformed += 1
            return
        pt = data[1] & 0x7F
        if pt != self.keep:
            self.peer.send(data)
            recorded = self.recorded
            if recorded is not None:
                self.record(recorded, pt, data)
                return
        self.worker.hand_up(self.call, self.index, data)

    def record(self, recorded: Recorded, pt: int, data: bytes) -> None:
        """What ``RtpLeg.record_forwarded`` does with a packet, done here: counted, and
        the audio to the recording's channel (a G.711 law switch followed)."""
        self.packets_in += 1
        self.bytes_in += len(data)
        number, channel, audio = recorded
        if pt != audio:
            if pt not in PAYLOAD_TYPES:
                return
            self.recorded = (number, channel, pt)
        direction = self.worker.direction(number, channel)
        if direction is None:
            return
        if pt != audio:
            direction.set_codec(PAYLOAD_TYPES[pt])
        _, _, seq, ts = _HEADER.unpack_from(data)
        direction.push(seq, ts, rtp_payload(data))

    def send(self, data: bytes) -> None:
        transport = self.transport
        if transport is None:
            return
        rewriter = self.rewriter
        packet: bytes | bytearray = data if rewriter is None else rewriter.applied(data)
        try:
            transport.sendto(packet, self.source)
        except _SEND_ERRORS:
            self.send_errors += 1
            return
        self.packets_out += 1
        self.bytes_out += len(data)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP unreachable from a party that went away, as in the relay

    def counts(self) -> LegCounts:
        rewriter = None if self.rewriter is None else self.rewriter.state()
        return LegCounts(
            self.packets_out, self.bytes_out, self.send_errors, self.malformed, rewriter,
            self.packets_in, self.bytes_in,
        )  # fmt: skip


def _factory(leg: _Leg) -> Callable[[], _Leg]:
    return lambda: leg


class Worker:
    """The calls of one worker process, driven by its control socket."""

    def __init__(self, control: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.control = control
        self.loop = loop
        self.calls: dict[int, tuple[_Leg, _Leg]] = {}
        self.done: asyncio.Future[None] = loop.create_future()
        self._batch = packet_batch()
        self._flush: asyncio.TimerHandle | None = None
        self.recordings: WorkerRecordings | None = None  # once the call process sets them up
        self._opening: dict[int, asyncio.Task[None]] = {}  # takes whose sockets are set up
        self._deferred: dict[int, tuple[str, Foreign | None]] = {}  # give-backs waiting
        control.setblocking(False)
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            with contextlib.suppress(OSError):
                control.setsockopt(socket.SOL_SOCKET, option, _BUFFER_BYTES)
        loop.add_reader(control.fileno(), self._readable)
        self._send(HELLO)

    # -- the control socket -------------------------------------------------------------

    def _readable(self) -> None:
        for _ in range(64):  # bounded: packets are waiting too
            try:
                data, fds, _, _ = socket.recv_fds(self.control, _MAX_MESSAGE, 2)
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            if not data:
                self._stop()
                return
            message = parse_message(data)
            if isinstance(message, Take):
                self._take(message, fds)
            elif isinstance(message, GiveBack):
                self.give_back(message.call, "asked")
            elif isinstance(message, RecorderSetup) and self.recordings is None:
                self.recordings = WorkerRecordings(message, self._send)
            elif isinstance(message, FramesDown | OpenRecording | RecordingCommand):
                self._recording_message(message)
            else:
                raise RuntimeError(f"a worker does not take {type(message).__name__}")

    def _recording_message(self, message: FramesDown | OpenRecording | RecordingCommand) -> None:
        recordings = self.recordings
        if recordings is None:
            raise RuntimeError("a recording message before the recorder's set-up")
        if isinstance(message, FramesDown):
            recordings.frames(message)
        elif isinstance(message, OpenRecording):
            recordings.open(message)
        else:
            recordings.command(message)

    def direction(self, number: int, channel: int) -> RecordingDirection | None:
        return None if self.recordings is None else self.recordings.direction(number, channel)

    def _stop(self) -> None:
        self.loop.remove_reader(self.control.fileno())
        for call in list(self.calls):
            self._close(call)
        if self.recordings is not None:  # the call process is gone: every last block out
            self.recordings.close()
            self.recordings = None
        if not self.done.done():
            self.done.set_result(None)

    def _send(self, message: bytes) -> None:
        try:
            self.control.send(message)
        except BlockingIOError:
            # the call process is not reading: it is stuck, and will lose these packets'
            # audio; the relaying goes on
            log.warning("media worker: the call process is not reading; a batch dropped")
        except OSError:
            self._stop()

    # -- calls --------------------------------------------------------------------------

    def _take(self, take: Take, fds: list[int]) -> None:
        """Register the call at once, in the order its messages came: a ``G`` read in
        the same pass finds it.  Its sockets are set up by a task (``_open``)."""
        if len(fds) != 2 or take.call in self.calls:
            for fd in fds:
                socket.close(fd)
            log.error("call %d: a bad take (%d descriptors): refused", take.call, len(fds))
            self._send(encode_returned(Returned(take.call, "bad take", (LegCounts(), LegCounts()))))
            return
        legs = tuple(
            _Leg(self, take.call, index, hand.source) for index, hand in enumerate(take.legs)
        )
        first, second = legs
        first.peer, second.peer = second, first
        for leg, hand in zip(legs, take.legs, strict=True):
            leg.keep = hand.keep
            leg.recorded = hand.recorded
            if hand.rewriter is not None:
                leg.rewriter = StreamRewriter(0, 0, 0)
                leg.rewriter.load(hand.rewriter)
        self.calls[take.call] = (first, second)
        socks = [socket.socket(fileno=fd) for fd in fds]
        self._opening[take.call] = self.loop.create_task(self._open(take.call, legs, socks))

    async def _open(self, call: int, legs: tuple[_Leg, ...], socks: list[socket.socket]) -> None:
        """Read the call's sockets; a give-back asked meanwhile is answered once they
        are open, so ``R`` always means the worker holds them no longer."""
        opened = 0
        try:
            for leg, sock in zip(legs, socks, strict=True):
                sock.setblocking(False)
                leg.transport, _ = await self.loop.create_datagram_endpoint(
                    _factory(leg), sock=sock
                )
                opened += 1
        except OSError as exc:
            log.error("call %d: its sockets could not be read (%s): given back", call, exc)
            self._deferred.setdefault(call, ("its sockets could not be read", None))
        finally:
            del self._opening[call]
            for sock in socks[opened:]:  # not taken by a transport: ours to close
                sock.close()
        deferred = self._deferred.pop(call, None)
        if self.calls.get(call) is None:  # the worker stopped meanwhile
            for leg in legs:
                if leg.transport is not None:
                    leg.transport.close()
                    leg.transport = None
        elif deferred is not None:
            self.give_back(call, *deferred)

    def give_back(self, call: int, reason: str, foreign: Foreign | None = None) -> None:
        """Stop reading the call's sockets; its packets, then ``R``, go up.  While its
        take is being set up, after that (in order)."""
        if call in self._opening:
            self._deferred.setdefault(call, (reason, foreign))
            return
        legs = self._close(call)
        self.flush()
        counts = (legs[0].counts(), legs[1].counts()) if legs else (LegCounts(), LegCounts())
        self._send(encode_returned(Returned(call, reason, counts, foreign)))

    def _close(self, call: int) -> tuple[_Leg, _Leg] | None:
        legs = self.calls.pop(call, None)
        for leg in legs or ():
            if leg.transport is not None:
                leg.transport.close()  # our descriptor only: the call process has its own
                leg.transport = None
        return legs

    def foreign(self, leg: _Leg, data: bytes, source: tuple[str, int]) -> None:
        """A packet from another source: the call goes back to the call process's relay,
        whose latching decides about it."""
        if self.calls.get(leg.call) is not None:
            self.give_back(
                leg.call, "a packet from another source", Foreign(leg.index, source, data)
            )

    # -- the batch ----------------------------------------------------------------------

    def hand_up(self, call: int, index: int, packet: bytes) -> None:
        size = self._batch.add(packet, call, index)
        if size >= BATCH_BYTES:
            self.flush()
        elif self._flush is None:
            self._flush = self.loop.call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if self._batch:
            self._send(self._batch.take())
