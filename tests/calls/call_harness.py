"""A B2BUA driven without sockets: the real sans-IO ``SipCore`` fed bytes, its output
captured instead of sent, RTP legs that bind nothing, a player whose prompts finish
when the test says so, a real SQLite catalog, and a recording service that records
what it was asked (the writer and its thread are not the call flow's business).

Peers write SIP by hand (``Peer``), the way ``tests/sip/sipcore_helpers.py`` does.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from proxy import events
from proxy.calls.b2bua import B2bua, Call, Prompt
from proxy.calls.recording import ActiveRecording, new_recording
from proxy.calls.resolver import Resolver
from proxy.config import (
    Config,
    MediaSettings,
    NoticeSettings,
    OperatorSettings,
    RecordingSettings,
    RegistrarSettings,
    RoutingSettings,
    SipSettings,
    SrtpSettings,
)
from proxy.events import EventBus
from proxy.media.announcer import PacketPacer, PromptAudio
from proxy.media.recorder import Recorder
from proxy.media.relay import MediaSession, PortAllocator, RtpLeg
from proxy.sip.core import CoreSettings, SipCore
from proxy.sip.events import Address
from proxy.sip.message import Request, Response, make_response, parse_message
from proxy.storage.catalog import (
    Attribution,
    CallBatch,
    RecordingAction,
    SqliteCatalog,
)

PROXY: Address = ("127.0.0.1", 5060)
CALLER: Address = ("127.0.0.1", 5062)
TAKER: Address = ("127.0.0.1", 5070)
NOTICE_MS = 400


def sdp(port: int, codec: str = "PCMU") -> bytes:
    pt = 0 if codec == "PCMU" else 8
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP {pt} 101\r\na=rtpmap:{pt} {codec}/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    ).encode()


class SocketlessSession(MediaSession):
    """A call's legs with ports but no sockets: nothing is sent or received."""

    ports = itertools.count(30000, 2)

    async def open_leg(self, name: str, *, sink: Any = None, host: str | None = None) -> RtpLeg:
        leg = RtpLeg(name, host or self.local_host, next(self.ports), sink=sink)
        if name == "caller":
            self.caller = leg
        elif name == "call_taker":
            self.call_taker = leg
        self._opened.append(leg)  # closed with the session, as the real one's are
        return leg


class ScriptedPlayer:
    """The media clock's part: what plays on which leg; a prompt ends on ``finish``."""

    def __init__(self) -> None:
        self.time = 1000.0
        self.playing: dict[RtpLeg, tuple[PacketPacer, asyncio.Future[None]]] = {}

    def now(self) -> float:
        return self.time

    def play(self, leg: RtpLeg, pacer: PacketPacer) -> asyncio.Future[None]:
        self.silence(leg)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.playing[leg] = (pacer, done)
        return done

    def silence(self, leg: RtpLeg) -> None:
        _, done = self.playing.pop(leg, (None, None))
        if done is not None and not done.done():
            done.cancel()

    def finish(self, leg: RtpLeg) -> int:
        """Send every packet of what plays on ``leg``; resolve its future; the packets."""
        pacer, done = self.playing.pop(leg)
        self.time += 3600
        sent = len(pacer.due(self.time))
        assert pacer.finished
        done.set_result(None)
        return sent


@dataclass
class Recordings:
    """The recording service's interface to the call: real catalog rows, a real
    recorder channel pair, no writer."""

    catalog: SqliteCatalog
    recorder: Recorder = field(default_factory=lambda: Recorder(lambda *args: None))
    finished: list[str] = field(default_factory=list)
    discarded: list[str] = field(default_factory=list)

    async def start(
        self,
        call_id: str,
        caller_codec: str,
        taker_codec: str,
        *,
        call: CallBatch | None = None,
        started: datetime | None = None,
        lost: Callable[[str], None] | None = None,  # no media workers here
    ) -> ActiveRecording:
        rid = str(uuid.uuid4())
        started = started or datetime.now(UTC)
        recording = new_recording(call_id, rid, RecordingSettings().encoding, started)
        # as the real service: the recorder first, then transaction 1 (there in a task)
        pair = self.recorder.add(rid, caller_codec, taker_codec)
        await self.write_call("", replace(call or CallBatch(call_id), recording=recording))
        return ActiveRecording(
            rid, call_id, pair, started, asyncio.get_running_loop().create_future()
        )

    async def write_call(self, what: str, batch: CallBatch) -> bool:
        await self.catalog.call_writes.write(batch)
        return True

    async def begin_part(
        self,
        active: ActiveRecording,
        *,
        operator: str | None,
        team: str | None,
        at: datetime,
        transfer: Attribution | None = None,
    ) -> None:
        await self.catalog.parts.begin(active.id, operator=operator, team=team, at=at)
        if transfer is not None:
            await self.catalog.events.add_recording_event(
                active.id, RecordingAction.TRANSFER, transfer
            )

    async def counters(self, active: ActiveRecording) -> None:
        pass  # the recorder here is this process's: its counters are live

    async def finish(self, active: ActiveRecording, call: CallBatch | None = None) -> None:
        self.recorder.close(active.id)
        self.finished.append(active.id)
        if call is not None:
            await self.write_call("", call)

    async def discard(self, active: ActiveRecording, by: Attribution) -> None:
        self.recorder.close(active.id)
        self.discarded.append(active.id)


class Peer:
    """A SIP party writing its messages by hand."""

    def __init__(self, address: Address, user: str, call_id: str) -> None:
        self.address = address
        self.user = user
        self.call_id = call_id
        self.tag = f"{user}-tag"
        self.cseq = 1
        self.branches = itertools.count(1)

    def request(
        self, method: str, *, to: str, from_: str | None = None, uri: str | None = None,
        cseq: int | None = None, body: bytes = b"", branch: str | None = None,
        headers: tuple[tuple[str, str], ...] = (), content_type: str = "application/sdp",
    ) -> bytes:  # fmt: skip
        host, port = self.address
        lines = [
            f"{method} {uri or f'sip:{PROXY[0]}:{PROXY[1]}'} SIP/2.0",
            f"Via: SIP/2.0/UDP {host}:{port};branch={branch or self.branch()}",
            f"From: {from_ or f'<sip:{self.user}@{host}:{port}>;tag={self.tag}'}",
            f"To: {to}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq if cseq is not None else self.cseq} {method}",
            "Max-Forwards: 70",
            f"Contact: <sip:{self.user}@{host}:{port}>",
            *(f"{name}: {value}" for name, value in headers),
        ]
        if body:
            lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def branch(self) -> str:
        return f"z9hG4bK-{self.user}-{self.call_id}-{next(self.branches)}"

    def answer(self, request: Request, status: int, body: bytes = b"") -> bytes:
        host, port = self.address
        headers = [("Contact", f"<sip:{self.user}@{host}:{port}>")]
        if body:
            headers.append(("Content-Type", "application/sdp"))
        response = make_response(request, status, to_tag=self.tag, headers=headers, body=body)
        return response.serialize()


@dataclass
class Sent:
    destination: Address
    message: Request | Response
    server_name: str | None = None  # TLS: the name the peer's certificate must match

    def is_request(self, method: str) -> bool:
        return isinstance(self.message, Request) and self.message.method == method

    def is_response(self, status: int, method: str = "INVITE") -> bool:
        m = self.message
        return isinstance(m, Response) and m.status == status and m.cseq.method == method


class Harness:
    """One B2BUA, its SIP core and what they sent and published."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        notice: bool = True,
        early_media: bool = True,
        operators: tuple[OperatorSettings, ...] = (),
        routing: RoutingSettings | None = None,
        resolver: Resolver | None = None,
        sip: SipSettings | None = None,
        srtp: SrtpSettings | None = None,
        registrar: RegistrarSettings | None = None,
    ) -> None:
        self.config = Config(
            sip=sip or SipSettings(),
            operators=operators,
            media=MediaSettings(srtp=srtp or SrtpSettings()),
            recording=RecordingSettings(dir=tmp_path / "recordings"),
            notice=NoticeSettings(mode="early-media" if early_media else "answer"),
            routing=routing or RoutingSettings(call_taker=f"sip:taker@{TAKER[0]}:{TAKER[1]}"),
            registrar=registrar or RegistrarSettings(),
        )
        self.core = SipCore(CoreSettings(host=PROXY[0], port=PROXY[1]))
        self.catalog = SqliteCatalog(tmp_path / "catalog.sqlite3")
        self.recordings = Recordings(self.catalog)
        self.player = ScriptedPlayer()
        self.events: list[object] = []
        bus = EventBus()
        for kind in _EVENT_TYPES:
            bus.subscribe(kind, self.events.append)
        pcm = np.zeros(NOTICE_MS * 8, dtype=np.int16)
        digest = hashlib.sha256(pcm.tobytes()).hexdigest()
        prompt = Prompt(PromptAudio(pcm), digest, NOTICE_MS, "notice")
        config = self.config
        self.b2bua = B2bua(
            config, self.core, PortAllocator(30000, 30999), None,  # type: ignore[arg-type]
            self.catalog, self.recordings, prompt,  # type: ignore[arg-type]
            publish=bus.publish, player=self.player,
            sessions=lambda: SocketlessSession(PortAllocator(30000, 30999), config.sip.advertise),
            resolver=resolver,
        )  # fmt: skip
        if not notice:
            self.b2bua.prompt = lambda path: None  # type: ignore[assignment,method-assign,return-value]
        self.core.admission = self.b2bua.admit
        self.sent: list[Sent] = []

    async def __aenter__(self) -> Harness:
        await self.catalog.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for call in list(self.b2bua.calls.values()):
            call.hang_up("test over")
        await self.until(lambda: not self.b2bua.calls)
        await self.catalog.close()

    def feed(self, data: bytes, source: Address) -> None:
        self.core.receive_datagram(data, source, asyncio.get_running_loop().time())
        self.pump()

    def pump(self) -> None:
        while (event := self.core.next_event()) is not None:
            self.b2bua.on_event(event)
        for out in self.core.datagrams_to_send():
            self.sent.append(Sent(out.destination, parse_message(out.data), out.server_name))

    async def until(self, condition: Callable[[], object], seconds: float = 3.0) -> None:
        """Let the calls run (and the catalog's thread answer) until ``condition``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            self.pump()
            if condition():
                return
            if loop.time() > deadline:
                raise AssertionError(f"not reached in {seconds} s; sent: {self.sent_lines()}")
            await asyncio.sleep(0.001)

    def to(self, address: Address) -> list[Sent]:
        return [s for s in self.sent if s.destination == address]

    def sent_lines(self) -> list[str]:
        return [f"{s.destination[1]}: {_first_line(s.message)}" for s in self.sent]

    def published(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def call(self) -> Call:
        (call,) = self.b2bua.calls.values()
        return call


def _first_line(message: Request | Response) -> str:
    if isinstance(message, Request):
        return f"{message.method} {message.cseq.method}"
    return f"{message.status} {message.cseq.method}"


_EVENT_TYPES = [
    events.CallStarted, events.NoticeStarted, events.NoticeFinished, events.NoticeAbandoned,
    events.CallTakerInvited, events.CallBridged, events.CallEnded, events.RecordingSwitched,
    events.TransferRequested, events.CallTransferred, events.CallTakerFailedOver,
    events.CallTakerProbed, events.SessionTimerExpired,
]  # fmt: skip
