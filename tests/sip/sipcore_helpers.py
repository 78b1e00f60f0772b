"""Helpers for driving ``SipCore`` without sockets or a real clock (the aioquic way).

* ``Network``: cores wired together by address.  ``transfer()`` moves every datagram a
  core wants to send to the core at its destination until nothing is in flight; a
  ``drop`` predicate injects loss; every packet is logged with the fake time it left.
* ``advance()`` moves the fake clock to the earliest ``get_timer()`` of all cores and
  fires it; ``run()`` alternates delivery, event dispatch to the transaction users and
  clock advances until a condition holds or no timer is left.
* ``raw_request`` / ``answer``: a fake peer that writes bytes by hand.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from proxy.sip.core import Outgoing, SipCore
from proxy.sip.events import Address, Event
from proxy.sip.message import Request, Response, make_response, parse_message

UAC_ADDR: Address = ("127.0.0.1", 5060)
UAS_ADDR: Address = ("127.0.0.2", 5060)
PEER_ADDR: Address = ("192.0.2.10", 5070)


@dataclass
class Packet:
    """One datagram as it left a core."""

    time: float
    source: Address
    destination: Address
    data: bytes
    transport: str
    dropped: bool = False

    @property
    def message(self) -> Request | Response:
        return parse_message(self.data, stream=self.transport != "UDP")

    @property
    def first_line(self) -> str:
        return self.data.split(b"\r\n", 1)[0].decode()

    def is_request(self, method: str) -> bool:
        return self.first_line.startswith(method + " ")

    def is_response(self, status: int, method: str | None = None) -> bool:
        if not self.first_line.startswith(f"SIP/2.0 {status} "):
            return False
        return method is None or self.message.cseq.method == method

    def __repr__(self) -> str:
        flag = " DROPPED" if self.dropped else ""
        return f"<Packet t={self.time} {self.source}->{self.destination} {self.first_line}{flag}>"


DropRule = Callable[[Packet], bool]


class DropFirst:
    """Drop the first ``count`` packets that match ``predicate``; ``dropped`` counts them."""

    def __init__(self, predicate: DropRule, count: int = 1) -> None:
        self.predicate = predicate
        self.count = count
        self.dropped = 0

    def __call__(self, packet: Packet) -> bool:
        if self.dropped < self.count and self.predicate(packet):
            self.dropped += 1
            return True
        return False


class RandomLoss:
    """Drop each packet with probability ``rate``, from a seeded generator."""

    def __init__(self, seed: int, rate: float) -> None:
        self.rng = random.Random(seed)
        self.rate = rate
        self.dropped = 0

    def __call__(self, packet: Packet) -> bool:
        if self.rng.random() < self.rate:
            self.dropped += 1
            return True
        return False


@dataclass
class Network:
    """Cores by network address, a fake clock, a loss rule and a packet log."""

    drop: DropRule = field(default=lambda packet: False)
    now: float = 0.0
    cores: dict[Address, SipCore] = field(default_factory=dict)
    log: list[Packet] = field(default_factory=list)
    undeliverable: list[Packet] = field(default_factory=list)

    def add(self, core: SipCore, address: Address | None = None) -> SipCore:
        """Attach a core; ``address`` is where packets from it seem to come from (a NAT
        may make it differ from the core's own host/port)."""
        self.cores[address or (core.settings.host, core.settings.port)] = core
        return core

    def transfer(self) -> int:
        """Deliver until nothing is in flight; the number of datagrams delivered."""
        delivered = 0
        while True:
            batch: list[tuple[Address, Outgoing]] = [
                (address, out)
                for address, core in self.cores.items()
                for out in core.datagrams_to_send()
            ]
            if not batch:
                return delivered
            for source, out in batch:
                packet = Packet(self.now, source, out.destination, out.data, out.transport)
                self.log.append(packet)
                if self.drop(packet):
                    packet.dropped = True
                    continue
                target = self.cores.get(out.destination)
                if target is None:
                    self.undeliverable.append(packet)
                    continue
                target.receive_datagram(out.data, source, self.now, out.transport)
                delivered += 1

    def next_timer(self) -> float | None:
        deadlines = [t for core in self.cores.values() if (t := core.get_timer()) is not None]
        return min(deadlines) if deadlines else None

    def advance(self) -> bool:
        """Move the clock to the next timer and fire it everywhere; False if none left."""
        deadline = self.next_timer()
        if deadline is None:
            return False
        assert deadline >= self.now, f"timer {deadline} in the past (now {self.now})"
        self.now = deadline
        for core in self.cores.values():
            core.handle_timer(deadline)
        return True

    def sent(self, predicate: DropRule) -> list[Packet]:
        return [p for p in self.log if predicate(p)]


Handler = Callable[[Event], None]


def run(
    net: Network,
    handlers: dict[SipCore, Handler],
    *,
    until: Callable[[], bool] | None = None,
    max_steps: int = 20_000,
) -> None:
    """Deliver, hand events to the TUs, and advance the clock when all is quiet.

    With ``until``: return as soon as it holds (fail if the timers run out first).
    Without: run until no core has a timer left.
    """
    for _ in range(max_steps):
        net.transfer()
        dispatched = False
        for core in net.cores.values():
            while (event := core.next_event()) is not None:
                dispatched = True
                handler = handlers.get(core)
                if handler is not None:
                    handler(event)
        if dispatched:
            continue
        if until is not None and until():
            return
        if not net.advance():
            if until is not None:
                raise AssertionError(f"no timer left at t={net.now} and the condition is false")
            return
    raise AssertionError("run() did not settle")


def drain_events(core: SipCore) -> list[Event]:
    out: list[Event] = []
    while (event := core.next_event()) is not None:
        out.append(event)
    return out


# ---------------------------------------------------------------------------------------
# A fake peer writing bytes by hand


def raw_request(
    method: str,
    *,
    uri: str = "sip:bob@127.0.0.2",
    via: str = "SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-peer-1",
    from_: str = "<sip:alice@192.0.2.10>;tag=peer-tag",
    to: str = "<sip:bob@127.0.0.2>",
    call_id: str = "call-1@192.0.2.10",
    cseq: int = 1,
    cseq_method: str | None = None,
    contact: str | None = "<sip:alice@192.0.2.10:5070>",
    max_forwards: int | None = 70,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> bytes:
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: {via}",
        f"From: {from_}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
    ]
    if max_forwards is not None:
        lines.append(f"Max-Forwards: {max_forwards}")
    if contact is not None:
        lines.append(f"Contact: {contact}")
    lines.extend(f"{name}: {value}" for name, value in headers)
    if body:
        lines.append(f"Content-Type: {content_type or 'application/sdp'}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def answer(
    request_bytes: bytes,
    status: int,
    *,
    to_tag: str | None = "peer-to-tag",
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> bytes:
    """A response to the request in ``request_bytes``, as a peer UAS would write it."""
    request = parse_message(request_bytes)
    assert isinstance(request, Request)
    return make_response(
        request, status, to_tag=to_tag, headers=list(headers), body=body
    ).serialize()
