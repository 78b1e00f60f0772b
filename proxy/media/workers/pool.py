"""The call process's side of the media workers: N worker processes, the bridged calls
handed to them, and what happens when one dies.

``offer(a, b, lost)`` hands a call to the least busy worker once it can go — the calls
the kernel fast path would take (:func:`~proxy.media.fastpath.kernel_path.
not_forwardable`: bridged both ways, latched, plain RTP, nothing playing), whatever
address the sockets are bound to (a worker sends from them, so a wildcard address or
mixed families, which the kernel's rewrite cannot take, are fine), looked at again
every ``RETRY_SECONDS`` while the legs latch.  Its two RTP sockets are lent to the
worker (:meth:`~proxy.media.relay.RtpLeg.lend`), which relays them and hands every
packet up in batches (:mod:`.protocol`); each packet then goes to its leg's
``record_forwarded``, so the recorder's jitter buffer, the tick, the writer and the
catalog work as before, with no socket work per packet in this process.

A call comes back when the call flow asks (``withdraw``) — a tone, a transfer, a hold,
the end — or when the pool sees a leg change under it (looked at every
``CHECK_SECONDS``: a re-INVITE's new address, payload types or keys, a hold), or when
the worker met a packet from another source (then the relay's latching decides).  A
give-back never waits on the event loop: this process reads the sockets again at once,
and the worker's counts and stream numbering are settled when its ``R`` arrives (the
packets it handed up before come first); ``when_back`` runs what needs them after that.
A reply later than ``GIVE_BACK_SECONDS`` is logged and counted, not fatal.

With a recorder set-up (``recording``, step 2), ``open_recording`` starts a call's
recording in the least busy worker, which from then on is the only one its call is
handed to: the worker records the packets it relays itself, and the audio this
process relays (before the hand-over, during a tone or a hold) is handed down to it in
batches (``D``, ``FLUSH_SECONDS`` or ``BATCH_BYTES``); commands go down, reports come
up to the recording's ``on_report`` (:mod:`.recording_messages`).

A worker that dies (its control socket reads end-of-file; its exit status is collected
by a thread, never on the event loop) ends its calls only: each call's
``lost(reason)`` is called (the call flow marks its recording ``interrupted`` and
hangs up), and so is each recording's it ran; a new worker takes the dead one's place
(at most one restart a second per place).  Counted, logged, and shown in
:meth:`snapshot`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..fastpath.kernel_path import (
    PERMANENT,
    RETRY_FOR_SECONDS,
    RETRY_SECONDS,
    not_forwardable,
)
from ..relay import LegMode, RtpLeg
from .batch import RecordBatch
from .protocol import (
    BATCH_BYTES,
    FLUSH_SECONDS,
    GiveBack,
    Hello,
    LegHandOver,
    Packets,
    ProtocolError,
    Returned,
    Take,
    encode_give_back,
    encode_take,
    parse_message,
)
from .recording_messages import (
    FramesDown,
    OpenRecording,
    RecorderSetup,
    RecordingCommand,
    Report,
    encode_command,
    encode_open,
    encode_setup,
    frame_batch,
)
from .remote import ChannelDown, RemotePair

log = logging.getLogger(__name__)

GIVE_BACK_SECONDS = 0.5  # a give-back answered later than this is logged and counted
END_SECONDS = 2.0  # a worker whose socket we closed has this long to exit, then is killed
CHECK_SECONDS = 0.1  # how often handed calls' legs are compared with what was handed
RESTART_SECONDS = 1.0  # at most one restart a second per worker place
_MAX_MESSAGE = 1 << 16
_BUFFER_BYTES = 4 << 20
_READS = 64  # messages read per readiness event (bounded: the loop has other work)

Lost = Callable[[str], None]
Reports = Callable[[Report], None]


@dataclass(frozen=True, slots=True)
class WorkerSnapshot:
    """One worker place: its process now (and whether it said hello), calls it has,
    recordings it runs, packets it took from parties (handed up, or recorded itself:
    counted when the call comes back), and how often its process was restarted."""

    place: int
    pid: int | None
    ready: bool
    calls: int
    packets: int
    restarts: int
    recordings: int = 0
    slow_replies: int = 0


def _shape(leg: RtpLeg, peer: RtpLeg) -> tuple[object, ...]:
    """What a worker was told about ``leg``, or relies on: a change means the relay
    must take the call back."""
    return (
        leg.mode is LegMode.BRIDGED,
        leg.latched,
        leg.dtmf_payload_type if leg.dtmf_sink is not None else None,
        leg.peer is peer,
        leg.srtp is None,
        leg.muted,
        leg.closed,
    )


@dataclass(eq=False)
class _Call:
    id: int
    a: RtpLeg
    b: RtpLeg
    lost: Lost
    worker: _Worker | None = None  # the worker relaying it now
    shape: tuple[object, ...] = ()
    retry: asyncio.TimerHandle | None = None
    deadline: float = 0.0
    handed: tuple[object, ...] = ()  # the legs' stream rewriters' states when handed
    slow: asyncio.TimerHandle | None = None  # a give-back not yet answered
    then: list[Callable[[], None]] = field(default_factory=list)  # once it is answered

    def legs(self) -> tuple[RtpLeg, RtpLeg]:
        return self.a, self.b

    def current_shape(self) -> tuple[object, ...]:
        return _shape(self.a, self.b) + _shape(self.b, self.a)


@dataclass(eq=False)
class _Recording:
    """A recording a worker runs (step 2): its reports go to ``on_report``; ``lost``
    is called if the worker dies first."""

    number: int
    worker: _Worker
    on_report: Reports
    lost: Lost


@dataclass(eq=False)
class _Worker:
    place: int
    process: subprocess.Popen[bytes]
    control: socket.socket
    calls: dict[int, _Call] = field(default_factory=dict)
    returning: dict[int, _Call] = field(default_factory=dict)  # asked back, ``R`` awaited
    recordings: dict[int, _Recording] = field(default_factory=dict)
    started: float = 0.0
    ready: bool = False  # it said hello: calls may go to it
    down: RecordBatch = field(default_factory=frame_batch)  # audio waiting to go down
    flush: asyncio.TimerHandle | None = None

    @property
    def load(self) -> int:
        return len(self.calls) + len(self.recordings)


class WorkerPool:
    """``size`` media worker processes (see the module docstring)."""

    def __init__(
        self,
        size: int,
        *,
        command: Sequence[str] = (sys.executable, "-m", "proxy.media.workers.main"),
        clock: Callable[[], float] = time.monotonic,
        recording: RecorderSetup | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.size = size
        self.command = tuple(command)
        self.clock = clock
        self._places: list[_Worker | None] = [None] * size
        self._packets = [0] * size
        self._restarts = [0] * size
        self._slow = [0] * size
        self.recording = recording  # workers record their calls (step 2) when set
        self._recordings: dict[int, _Recording] = {}  # by number, until written
        self._calls: dict[int, _Call] = {}  # by id, handed or waiting to be
        self._by_leg: dict[RtpLeg, _Call] = {}
        self._returning: dict[RtpLeg, _Call] = {}  # legs whose give-back is not settled
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._check: asyncio.TimerHandle | None = None

    # -- the pool's life ----------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        for place in range(self.size):
            self._spawn(place)
        self._check = loop.call_later(CHECK_SECONDS, self._check_legs)

    def close(self) -> None:
        """Every call back to the relay, every worker ended (closing its socket ends it)."""
        for call in list(self._calls.values()):
            self._withdraw(call)
        if self._check is not None:
            self._check.cancel()
            self._check = None
        for place, worker in enumerate(self._places):
            if worker is not None:
                self._places[place] = None
                self._end(worker)
        self._loop = None

    def pids(self) -> list[int]:
        return [worker.process.pid for worker in self._places if worker is not None]

    def snapshot(self) -> list[WorkerSnapshot]:
        return [
            WorkerSnapshot(
                place,
                worker.process.pid if worker is not None else None,
                worker is not None and worker.ready,
                len(worker.calls) if worker is not None else 0,
                self._packets[place],
                self._restarts[place],
                len(worker.recordings) if worker is not None else 0,
                self._slow[place],
            )
            for place, worker in enumerate(self._places)
        ]

    def _spawn(self, place: int) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for sock in (ours, theirs):
            for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, option, _BUFFER_BYTES)
        try:
            process = subprocess.Popen(
                [*self.command, str(theirs.fileno())], pass_fds=(theirs.fileno(),)
            )
        finally:
            theirs.close()
        if self.recording is not None:  # before anything else it reads
            ours.send(encode_setup(self.recording))
        ours.setblocking(False)
        worker = _Worker(place, process, ours, started=self.clock())
        self._places[place] = worker
        assert self._loop is not None
        self._loop.add_reader(ours.fileno(), self._readable, worker)
        log.info("media worker %d started (pid %d)", place, process.pid)

    def _end(self, worker: _Worker, then: Callable[[], None] | None = None) -> None:
        """Close the worker's socket (a live worker exits on end-of-file) and collect its
        exit in a thread, killing it after ``END_SECONDS``; ``then`` runs on the loop
        once it has exited."""
        if worker.flush is not None:
            worker.flush.cancel()
            worker.flush = None
        if self._loop is not None:
            self._loop.remove_reader(worker.control.fileno())
        worker.control.close()
        for call in list(worker.returning.values()):  # no answer will come: as they are
            self._settle(worker, call, None)
        loop = self._loop
        threading.Thread(
            target=_reap, args=(worker.process, loop, then), name="media-worker-reaper",
            daemon=True,
        ).start()  # fmt: skip

    def _died(self, worker: _Worker, why: str) -> None:
        """The worker is gone (or broke the protocol): once its process has exited, its
        calls end (their recordings ``interrupted``), and a new one takes its place."""
        if self._places[worker.place] is not worker:
            return
        self._places[worker.place] = None
        if why != "exited":  # alive but failing us: ended here
            with contextlib.suppress(OSError):
                worker.process.kill()
        self._end(worker, lambda: self._ended(worker, why))

    def _ended(self, worker: _Worker, why: str) -> None:
        code = worker.process.returncode
        reason = f"media worker {worker.place} (pid {worker.process.pid}) {why}, exit {code}"
        log.error("%s: ending its %d call(s)", reason, len(worker.calls))
        for call in list(worker.calls.values()):
            self._forget(call)
            try:
                call.lost(reason)
            except Exception:
                log.exception("call %d: ending it after its media worker died failed", call.id)
        for recording in list(worker.recordings.values()):
            self._recordings.pop(recording.number, None)
            try:
                recording.lost(reason)
            except Exception:
                log.exception("recording %d: its media worker died; ending it failed",
                              recording.number)  # fmt: skip
        worker.recordings.clear()
        self._restarts[worker.place] += 1
        if self._loop is None:
            return
        wait = max(0.0, worker.started + RESTART_SECONDS - self.clock())
        self._loop.call_later(wait, self._respawn, worker.place)

    def _respawn(self, place: int) -> None:
        if self._loop is not None and self._places[place] is None:
            self._spawn(place)

    # -- the call flow's side -----------------------------------------------------------

    def offer(self, a: RtpLeg, b: RtpLeg, lost: Lost, *, now: bool = True) -> None:
        """Hand the call to a worker as soon as it can go (see the module docstring);
        nothing if a worker has it as it is."""
        call = self._by_leg.get(a)
        if call is not None and call.b is b:
            if call.retry is not None:
                return
            if call.worker is not None and call.current_shape() == call.shape:
                return
        if call is not None:
            self._withdraw(call)
        call = _Call(next(self._ids) & 0xFFFFFFFF, a, b, lost, deadline=self.clock())
        call.deadline += RETRY_FOR_SECONDS
        self._calls[call.id] = call
        self._by_leg[a] = self._by_leg[b] = call
        if now or self._loop is None:
            self._attempt(call)
        else:
            call.retry = self._loop.call_later(RETRY_SECONDS, self._attempt, call)

    def withdraw(self, leg: RtpLeg) -> None:
        """The call with ``leg`` back to the relay, now, and not offered again."""
        call = self._by_leg.get(leg)
        if call is not None:
            self._withdraw(call)

    def on_worker(self, leg: RtpLeg) -> bool:
        call = self._by_leg.get(leg)
        return call is not None and call.worker is not None

    def when_back(self, leg: RtpLeg, then: Callable[[], None]) -> None:
        """Run ``then`` once the call with ``leg`` is wholly back (its worker's counts and
        stream numbering settled: a tone numbered after the worker's last packet), now if
        it is."""
        call = self._returning.get(leg)
        if call is None:
            then()
        else:
            call.then.append(then)

    def _attempt(self, call: _Call) -> None:
        call.retry = None
        if self._calls.get(call.id) is not call:
            return
        reason = not_forwardable(call.a, call.b)  # a worker sends from the call's sockets
        if reason is None and any(leg in self._returning for leg in call.legs()):
            reason = "its last give-back is not answered yet"
        workers = [worker for worker in self._places if worker is not None and worker.ready]
        recorder = self._recorder(call)
        if recorder is not None:  # the worker recording the call relays it, or none
            workers = [worker for worker in workers if worker is recorder]
        if reason is None and workers:
            self._hand(call, min(workers, key=lambda worker: worker.load))
        elif reason in PERMANENT or self.clock() >= call.deadline or self._loop is None:
            log.debug("port %d: call stays on the relay: %s", call.a.port, reason)
            self._forget(call)
        else:
            call.retry = self._loop.call_later(RETRY_SECONDS, self._attempt, call)

    def _recorder(self, call: _Call) -> _Worker | None:
        """The worker recording the call, if one does."""
        for leg in call.legs():
            sink = leg.sink
            if isinstance(sink, ChannelDown):
                recording = self._recordings.get(sink.number)
                if recording is not None:
                    return recording.worker
        return None

    def _hand(self, call: _Call, worker: _Worker) -> None:
        legs = tuple(
            LegHandOver(
                leg.latched or ("", 0),
                leg.dtmf_payload_type if leg.dtmf_sink is not None else None,
                leg.rewriter.state() if leg.rewriter is not None else None,
                _recorded(leg, worker),
            )
            for leg in call.legs()
        )
        self._flush_down(worker)  # the audio the relay handed down goes before the call
        message = encode_take(Take(call.id, (legs[0], legs[1])))
        call.shape = call.current_shape()
        call.handed = tuple(_stream(leg) for leg in call.legs())
        fds = [leg.lend() for leg in call.legs()]
        call.worker = worker
        worker.calls[call.id] = call
        try:
            socket.send_fds(worker.control, [message], fds)
        except OSError as exc:
            log.warning("port %d: media worker %d refused the call: %s", call.a.port,
                        worker.place, exc)  # fmt: skip
            for leg in call.legs():
                leg.reclaim()
            self._forget(call)

    def _withdraw(self, call: _Call) -> None:
        if call.retry is not None:
            call.retry.cancel()
            call.retry = None
        worker = call.worker
        if worker is not None:
            self._give_back(worker, call)
        self._forget(call)

    def _forget(self, call: _Call) -> None:
        if self._calls.get(call.id) is call:
            del self._calls[call.id]
        for leg in call.legs():
            if self._by_leg.get(leg) is call:
                del self._by_leg[leg]
        if call.worker is not None:
            call.worker.calls.pop(call.id, None)
            call.worker = None

    def _give_back(self, worker: _Worker, call: _Call) -> None:
        """Ask for the call and read its sockets here again at once; the worker's answer
        settles its counts (:meth:`_settle`), and the packets it handed up meanwhile are
        recorded as they come."""
        for leg in call.legs():
            leg.reclaim()
        if self._places[worker.place] is not worker:  # died: nothing to ask
            return
        self._send(worker, encode_give_back(call.id))
        if self._places[worker.place] is not worker or self._loop is None:
            return
        worker.returning[call.id] = call
        for leg in call.legs():
            self._returning[leg] = call
        call.slow = self._loop.call_later(GIVE_BACK_SECONDS, self._slow_reply, worker, call)

    def _slow_reply(self, worker: _Worker, call: _Call) -> None:
        call.slow = None
        self._slow[worker.place] += 1
        log.warning("media worker %d (pid %d): call %d not given back in %s s; waiting",
                    worker.place, worker.process.pid, call.id, GIVE_BACK_SECONDS)  # fmt: skip

    def _check_legs(self) -> None:
        """Calls whose legs changed under their worker go back to the relay (and are
        offered again)."""
        for call in list(self._calls.values()):
            if call.worker is not None and call.current_shape() != call.shape:
                self._withdraw(call)
                if not (call.a.closed or call.b.closed):
                    self.offer(call.a, call.b, call.lost, now=False)
        if self._loop is not None:
            self._check = self._loop.call_later(CHECK_SECONDS, self._check_legs)

    # -- what the workers send ----------------------------------------------------------

    def _readable(self, worker: _Worker) -> None:
        for _ in range(_READS):
            try:
                data = worker.control.recv(_MAX_MESSAGE)
            except BlockingIOError:
                return
            except OSError as exc:
                self._died(worker, f"lost its control socket ({exc})")
                return
            if not data:
                self._died(worker, "exited")
                return
            try:
                message = parse_message(data)
            except ProtocolError as exc:
                self._died(worker, f"sent a bad message ({exc})")
                return
            if isinstance(message, Packets):
                self._packets[worker.place] += self._record(worker, message)
            elif isinstance(message, Report):
                self._report(worker, message)
            elif isinstance(message, Hello):
                worker.ready = True
            elif isinstance(message, Returned):
                self._returned(worker, message)
            elif isinstance(
                message, Take | GiveBack | RecorderSetup | OpenRecording | RecordingCommand
                | FramesDown,
            ):  # fmt: skip
                self._died(worker, f"sent a {type(message).__name__}")
                return

    @staticmethod
    def _record(worker: _Worker, message: Packets) -> int:
        """Each packet to its leg, as the relay would have given it (the hot path of
        this side: a dictionary look-up and a call per packet)."""
        calls, returning = worker.calls, worker.returning
        count = 0
        for call_id, index, packet in message.records():
            call = calls.get(call_id) or returning.get(call_id)
            if call is not None:
                (call.b if index else call.a).record_forwarded(packet)
                count += 1
        return count

    def _returned(self, worker: _Worker, message: Returned) -> None:
        """``R``: a call the worker gave back by itself (a stranger's packet, a bad
        take) comes back whole; one asked back (:meth:`_give_back`) is settled."""
        call = worker.calls.get(message.call)
        if call is not None:
            for leg in call.legs():
                leg.reclaim()
            self._forget(call)
            self._settle(worker, call, message)
            if message.foreign is not None and not (call.a.closed or call.b.closed):
                self.offer(call.a, call.b, call.lost, now=False)
            return
        call = worker.returning.get(message.call)
        if call is not None:
            self._settle(worker, call, message)

    def _settle(self, worker: _Worker, call: _Call, returned: Returned | None) -> None:
        """The worker's answer (None: none will come) for a call back here: its counts
        added, its stream numbering taken unless this process has sent on the leg since,
        a packet from another source given to the relay's latching, then ``when_back``."""
        worker.returning.pop(call.id, None)
        for leg in call.legs():
            if self._returning.get(leg) is call:
                del self._returning[leg]
        if call.slow is not None:
            call.slow.cancel()
            call.slow = None
        if returned is not None:
            # the packets it recorded itself are counted when the call is back
            self._packets[worker.place] += sum(leg.packets_in for leg in returned.legs)
            _add_counts(call, returned)
        then, call.then = call.then, []
        for run in then:
            try:
                run()
            except Exception:
                log.exception("call %d: what waited for its give-back failed", call.id)

    # -- recordings in the workers (step 2) ---------------------------------------------

    def open_recording(
        self,
        recording_id: str,
        public_key: bytes,
        codecs: tuple[str, str],
        *,
        encoding: str,
        segment_seconds: float,
        start_time_ms: int,
        on_report: Reports,
        lost: Lost,
    ) -> RemotePair | None:
        """Start a recording in the least busy worker that is up: its pair, whose
        directions' ``push`` hand audio down and whose changes go down as commands; its
        reports go to ``on_report``.  None when workers do not record (no set-up) or
        none is up: the call process records it."""
        workers = [worker for worker in self._places if worker is not None and worker.ready]
        if self.recording is None or not workers:
            return None
        worker = min(workers, key=lambda worker: worker.load)
        number = next(self._ids) & 0xFFFFFFFF
        message = OpenRecording(
            number, recording_id, public_key.hex(), codecs[0], codecs[1], encoding,
            segment_seconds, start_time_ms,
        )  # fmt: skip
        recording = _Recording(number, worker, on_report, lost)
        try:
            worker.control.send(encode_open(message))
        except OSError as exc:
            log.warning("recording %s: media worker %d refused it: %s", recording_id,
                        worker.place, exc)  # fmt: skip
            return None
        worker.recordings[number] = self._recordings[number] = recording
        return RemotePair(
            recording_id,
            codecs,
            number,
            lambda channel, seq, ts, payload: self._down(recording, channel, seq, ts, payload),
            lambda action, argument: self._command(recording, action, argument),
        )

    def _alive(self, recording: _Recording) -> bool:
        worker = recording.worker
        return self._places[worker.place] is worker and recording.number in worker.recordings

    def _down(self, recording: _Recording, channel: int, seq: int, ts: int, payload: bytes) -> None:
        """Audio the relay here received, to the recording's worker (batched)."""
        if not self._alive(recording):
            return
        worker = recording.worker
        size = worker.down.add(payload, recording.number, channel, seq, ts)
        if size >= BATCH_BYTES:
            self._flush_down(worker)
        elif worker.flush is None and self._loop is not None:
            worker.flush = self._loop.call_later(FLUSH_SECONDS, self._flush_down, worker)

    def _flush_down(self, worker: _Worker) -> None:
        if worker.flush is not None:
            worker.flush.cancel()
            worker.flush = None
        if worker.down:
            self._send(worker, worker.down.take())

    def _command(self, recording: _Recording, action: str, argument: object) -> None:
        """A command, after the audio handed down before it."""
        if self._alive(recording):
            self._flush_down(recording.worker)
            command = RecordingCommand(recording.number, action, argument)
            self._send(recording.worker, encode_command(command))

    def _send(self, worker: _Worker, message: bytes) -> None:
        try:
            worker.control.send(message)
        except BlockingIOError:  # the worker is not reading: it is stuck
            self._died(worker, "stopped reading its control socket")
        except OSError as exc:
            self._died(worker, f"lost its control socket ({exc})")

    def _report(self, worker: _Worker, report: Report) -> None:
        recording = worker.recordings.get(report.number)
        if recording is None:
            return
        if report.kind == "written":
            del worker.recordings[report.number]
            self._recordings.pop(report.number, None)
        try:
            recording.on_report(report)
        except Exception:
            log.exception("recording %d: its %s report failed", report.number, report.kind)


def _stream(leg: RtpLeg) -> object:
    return None if leg.rewriter is None else leg.rewriter.state()


def _add_counts(call: _Call, returned: Returned) -> None:
    """The worker's counts added to the legs'; its stream numbering taken where this
    process has not sent on the leg since the hand-over, else caught up with (this
    process renumbered with the same offsets, later packets, unless a new source or a
    tone started from the hand-over's numbering); a packet from another source given to
    the relay's latching."""
    for leg, counts, handed in zip(call.legs(), returned.legs, call.handed, strict=True):
        stats = leg.stats
        stats.packets_out += counts.packets_out
        stats.bytes_out += counts.bytes_out
        stats.send_errors += counts.send_errors
        stats.dropped_malformed += counts.dropped_malformed
        stats.packets_in += counts.packets_in
        stats.bytes_in += counts.bytes_in
        if counts.rewriter is not None and leg.rewriter is not None:
            if _stream(leg) == handed:
                leg.rewriter.load(counts.rewriter)
            else:
                leg.rewriter.catch_up(counts.rewriter)
    foreign = returned.foreign
    if foreign is not None:
        leg = call.legs()[foreign.leg]
        if not leg.closed:
            leg.rtp_received(foreign.packet, foreign.source)


def _reap(
    process: subprocess.Popen[bytes],
    loop: asyncio.AbstractEventLoop | None,
    then: Callable[[], None] | None,
) -> None:
    """In a thread: wait for a worker's exit (killing it after ``END_SECONDS``), then
    ``then`` on the loop."""
    try:
        process.wait(timeout=END_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if loop is not None and then is not None:
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(then)


def _recorded(leg: RtpLeg, worker: _Worker) -> tuple[int, int, int] | None:
    """(number, channel, payload type) when ``worker`` records ``leg``'s audio itself."""
    sink = leg.sink
    if (
        isinstance(sink, ChannelDown)
        and sink.number in worker.recordings
        and leg.audio_payload_type is not None
    ):
        return sink.number, sink.channel, leg.audio_payload_type
    return None
