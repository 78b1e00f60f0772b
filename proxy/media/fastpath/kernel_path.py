"""Handing a bridged call's RTP forwarding to the kernel, and recording it from the ring.

``offer(a, b)`` hands a call over once both legs can go: bridged both ways, latched,
plain RTP, nothing playing to either party (see ``not_ready``).  From then on nftables
forwards each leg's packets to the other party (:mod:`.rules`), and the ring
(:mod:`.ring`) gives the reader a copy of each, which it hands to the leg exactly as
the relay would have (``RtpLeg.record_forwarded``): the recorder and its jitter buffer
cannot tell the two paths apart.

What the kernel does not forward reaches our sockets as before: RTCP, the call taker's
telephone-events (its recording codes are held back by the call flow), and packets
from any other source, which meet the relay's latching.

The bridged phase passes packets through unchanged.  The relay continued the caller's
stream across notice, ringback and bridge with one SSRC (``StreamRewriter``); the
kernel's stateless rewrite cannot renumber, so at the hand-over the caller's stream
becomes the call taker's own SSRC, sequence and timestamps — a new synchronisation
source, which RFC 3550 lets appear at any time (§8.2 (6.2.1) and A.1: a receiver takes a
new SSRC through probation and plays it), as on any transfer through a B2BUA that does
not rewrite.  The rewriters are dropped when a call is handed over, so the relay passes
the same stream unchanged if the call comes back to it.

A call comes back (its rules removed at once) when the call flow asks (``withdraw``: a
tone to play, a transfer, the end of the call), or when the reader sees a leg change
under it: a packet from another source (a re-latch), a re-INVITE's new address, a
hold, SRTP keys.  Frames are taken from the ring by arrival time, within the span the
call was in the kernel, so a frame the socket also received is never recorded twice
(one at the instant of a switch may be; the jitter buffer drops the duplicate).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..relay import LegMode, RtpLeg
from .nft import Nftables, NftError
from .ring import PacketRing
from .rules import LegRoute, add_commands, keep_commands, remove_commands

log = logging.getLogger(__name__)

RETRY_SECONDS = 0.1  # how often a call not yet ready is looked at again ...
RETRY_FOR_SECONDS = 10.0  # ... for at most this long after an offer
KEEP_SPANS_SECONDS = 2.0  # frames older than this after a span ended are not expected
#: reasons a call cannot go to the kernel that waiting will not change
PERMANENT = frozenset(
    {"srtp", "mixed address families", "wildcard address", "closed", "IPv6 not forwarded"}
)


@dataclass
class _Span:
    since: float
    until: float = math.inf


@dataclass
class _Route:
    """What the reader needs for one leg's port: whose packets, sent on to whom."""

    leg: RtpLeg
    peer: RtpLeg
    source: bytes  # packed, as in the IP header
    source_port: int
    latched: tuple[str, int]  # the same source, as the leg holds it
    destination: tuple[str, int]
    keep_payload_type: int | None
    spans: list[_Span] = field(default_factory=list)

    def span_of(self, moment: float) -> _Span | None:
        last = self.spans[-1]
        if last.since <= moment <= last.until:
            return last  # nearly always: the span now
        for span in self.spans:
            if span.since <= moment <= span.until:
                return span
        return None


@dataclass
class _Call:
    a: RtpLeg
    b: RtpLeg
    routes: tuple[LegRoute, LegRoute] | None = None  # in the kernel now
    retry: asyncio.TimerHandle | None = None
    deadline: float = 0.0


@dataclass(frozen=True)
class FastPathSnapshot:
    calls: int  # on the kernel path now
    handed: int  # hand-overs to the kernel, in total
    returned: int  # calls handed back to the relay, in total
    recorded: int  # packets read from the ring and given to the recorder
    drops: int  # packets the kernel could not put in the ring (its count)


def not_forwardable(a: RtpLeg, b: RtpLeg) -> str | None:
    """Why the call of legs ``a`` and ``b`` needs the relay's per-packet work now (None:
    it does not, and another forwarder — the kernel, or a media worker, which forwards
    through the call's own sockets — may carry it): the checks every forwarder shares."""
    if a.closed or b.closed:
        return "closed"
    if a.srtp is not None or b.srtp is not None:
        return "srtp"
    if a.peer is not b or b.peer is not a:
        return "not bridged"
    if a.mode is not LegMode.BRIDGED or b.mode is not LegMode.BRIDGED:
        return "held"
    if a.muted or b.muted:
        return "a tone plays"
    if a.latched is None or b.latched is None:
        return "not latched"
    return None


def not_ready(a: RtpLeg, b: RtpLeg, *, ipv6: bool = True) -> str | None:
    """Why the call of legs ``a`` and ``b`` cannot be forwarded by the kernel now (None:
    it can); ``ipv6``: whether the host forwards IPv6.  Beyond :func:`not_forwardable`,
    the kernel rewrites addresses itself, so it needs one address family and concrete
    local addresses."""
    reason = not_forwardable(a, b)
    if reason is not None:
        return reason
    assert a.latched is not None and b.latched is not None  # not_forwardable checked
    hosts = (a.latched[0], b.latched[0], a.local_host, b.local_host)
    versions = {ipaddress.ip_address(host).version for host in hosts}
    if len(versions) != 1:
        return "mixed address families"
    if versions == {6} and not ipv6:
        return "IPv6 not forwarded"
    if any(ipaddress.ip_address(host).is_unspecified for host in hosts[2:]):
        return "wildcard address"
    return None


def routes_of(a: RtpLeg, b: RtpLeg) -> tuple[LegRoute, LegRoute]:
    """Both directions of a ready call (``not_ready`` is None)."""
    assert a.latched is not None and b.latched is not None

    def route(leg: RtpLeg, peer: RtpLeg) -> LegRoute:
        assert leg.latched is not None and peer.latched is not None
        keep = leg.dtmf_payload_type if leg.dtmf_sink is not None else None
        return LegRoute(leg.port, leg.latched, (peer.local_host, peer.port), peer.latched, keep)

    return route(a, b), route(b, a)


class KernelPath:
    """The fast path of this process: its nftables context and its ring."""

    def __init__(
        self,
        nft: Nftables,
        ring: PacketRing,
        *,
        ipv6: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.nft = nft
        self.ipv6 = ipv6
        self.ring = ring
        self.clock = clock
        self._calls: dict[int, _Call] = {}  # by leg A's port
        self._keeps: set[tuple[str, int]] = set()  # the keep_<pt> sets made, by family
        self._routes: dict[int, _Route] = {}  # by our leg's port, while a span may come
        self._handed = 0
        self._returned = 0
        self._recorded = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self.ring.fileno(), self.read)

    def close(self) -> None:
        """Every call back to the relay, the reader stopped (the tables go with
        :func:`.probe.remove_tables`)."""
        for call in list(self._calls.values()):
            self._withdraw(call, "stopping")
        if self._loop is not None:
            self._loop.remove_reader(self.ring.fileno())
            self._loop = None

    # -- the call flow's side -----------------------------------------------------------

    def offer(self, a: RtpLeg, b: RtpLeg, *, now: bool = True) -> None:
        """Hand the call to the kernel as soon as it is ready (looked at again every
        ``RETRY_SECONDS`` for ``RETRY_FOR_SECONDS``; with ``now`` False, first after
        ``RETRY_SECONDS``); nothing if it is there already."""
        call = self._calls.get(a.port)
        if call is not None and call.b is b:
            if call.retry is not None:
                return
            ready = call.routes is not None and not_ready(a, b, ipv6=self.ipv6) is None
            if ready and routes_of(a, b) == call.routes:
                return  # in the kernel, as it would be handed now
        if call is not None:
            self._withdraw(call, "new legs")
        call = _Call(a, b, deadline=self.clock() + RETRY_FOR_SECONDS)
        self._calls[a.port] = call
        if now or self._loop is None:
            self._attempt(call)
        else:
            call.retry = self._loop.call_later(RETRY_SECONDS, self._attempt, call)

    def withdraw(self, leg: RtpLeg) -> None:
        """The call with ``leg`` back to the relay, now, and not offered again."""
        call = self._call_of(leg)
        if call is not None:
            self._withdraw(call, "asked")

    def on_kernel(self, leg: RtpLeg) -> bool:
        call = self._call_of(leg)
        return call is not None and call.routes is not None

    def snapshot(self) -> FastPathSnapshot:
        calls = sum(1 for call in self._calls.values() if call.routes is not None)
        drops = self.ring.count_drops()
        return FastPathSnapshot(calls, self._handed, self._returned, self._recorded, drops)

    def _attempt(self, call: _Call) -> None:
        call.retry = None
        if self._calls.get(call.a.port) is not call:
            return
        reason = not_ready(call.a, call.b, ipv6=self.ipv6)
        if reason is None:
            self._hand(call)
        elif reason in PERMANENT or self.clock() >= call.deadline or self._loop is None:
            log.debug("port %d: call stays on the relay: %s", call.a.port, reason)
            del self._calls[call.a.port]
        else:
            call.retry = self._loop.call_later(RETRY_SECONDS, self._attempt, call)

    def _hand(self, call: _Call) -> None:
        routes = routes_of(call.a, call.b)
        keeps = {
            (route.family, route.keep_payload_type)
            for route in routes
            if route.keep_payload_type is not None
        } - self._keeps
        batch = "".join(keep_commands(*keep) for keep in sorted(keeps))
        batch += "".join(add_commands(route) for route in routes)
        since = self.clock()
        try:
            self.nft.run(batch)
            self._keeps |= keeps
        except NftError as exc:
            log.warning("port %d: the kernel path refused the call: %s", call.a.port, exc)
            del self._calls[call.a.port]
            return
        call.routes = routes
        call.a.rewriter = call.b.rewriter = None  # the kernel passes packets unchanged
        for route, leg, peer in ((routes[0], call.a, call.b), (routes[1], call.b, call.a)):
            entry = self._routes.get(route.port)
            if entry is None or entry.leg is not leg:
                entry = _Route(
                    leg, peer, b"", 0, route.source, route.destination, route.keep_payload_type
                )
                self._routes[route.port] = entry
            entry.peer = peer
            entry.source = ipaddress.ip_address(route.source[0]).packed
            entry.source_port = route.source[1]
            entry.latched = route.source
            entry.destination = route.destination
            entry.keep_payload_type = route.keep_payload_type
            entry.spans.append(_Span(since))
        self._handed += 1

    def _withdraw(self, call: _Call, reason: str, *, offer_again: bool = False) -> None:
        if call.retry is not None:
            call.retry.cancel()
            call.retry = None
        if self._calls.get(call.a.port) is call:
            del self._calls[call.a.port]
        routes, call.routes = call.routes, None
        if routes is None:
            return
        try:
            self.nft.run("".join(remove_commands(route) for route in routes))
        except NftError:  # the elements are gone already (the table was removed)
            log.exception("port %d: removing the kernel path's elements failed", call.a.port)
        until = self.clock()
        for route in routes:
            entry = self._routes.get(route.port)
            if entry is not None and entry.spans:
                entry.spans[-1].until = until
        self._returned += 1
        log.debug("port %d: call back on the relay: %s", call.a.port, reason)
        if offer_again and not (call.a.closed or call.b.closed):
            self.offer(call.a, call.b, now=False)  # at most ten hand-overs a second
        if self._loop is not None:
            self._loop.call_later(KEEP_SPANS_SECONDS, self._forget, until)

    def _forget(self, until: float) -> None:
        """Spans that ended by ``until`` have had all their frames read."""
        for port, entry in list(self._routes.items()):
            entry.spans = [span for span in entry.spans if span.until > until]
            if not entry.spans:
                del self._routes[port]

    # -- the reader ---------------------------------------------------------------------

    def read(self) -> None:
        """Every frame handed over by the kernel: to its leg's recorder, if it was
        forwarded by the kernel."""
        routes = self._routes
        changed: list[RtpLeg] = []
        for moment, source, source_port, port, payload in self.ring.read():
            route = routes.get(port)
            if route is None:
                continue
            span = route.span_of(moment)
            if span is None:
                continue
            if source != route.source or source_port != route.source_port:
                if span.until == math.inf and route.leg.latched != route.latched:
                    changed.append(route.leg)  # the relay latched to it (a re-latch)
                continue  # not forwarded: the socket has it
            keep = route.keep_payload_type
            if keep is not None and len(payload) > 1 and payload[1] & 0x7F == keep:
                continue  # left to the socket
            leg = route.leg
            leg.record_forwarded(payload)
            self._recorded += 1
            if span.until == math.inf and not self._unchanged(route):
                changed.append(leg)
        for leg in changed:
            call = self._call_of(leg)
            if call is not None and call.routes is not None:
                self._withdraw(call, "a leg changed", offer_again=True)

    @staticmethod
    def _unchanged(route: _Route) -> bool:
        """The legs are as they were handed over (a re-INVITE — address, hold, payload
        types, SRTP keys — or a tone changes them; then the relay must forward)."""
        leg, peer = route.leg, route.peer
        return (
            leg.mode is LegMode.BRIDGED
            and leg.latched == route.latched
            and (leg.dtmf_payload_type if leg.dtmf_sink else None) == route.keep_payload_type
            and leg.peer is peer
            and leg.srtp is None
            and peer.srtp is None
            and not peer.muted
            and peer.rewriter is None
            and peer.latched == route.destination
            and not peer.closed
        )

    def _call_of(self, leg: RtpLeg) -> _Call | None:
        """The call of ``leg``: at once for leg A (what the call flow passes)."""
        call = self._calls.get(leg.port)
        if call is not None and call.a is leg:
            return call
        return next((c for c in self._calls.values() if c.b is leg), None)
