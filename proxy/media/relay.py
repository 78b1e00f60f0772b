"""The RTP relay: per-leg RTP/RTCP sockets on our address, latching, forwarding.

This is the hot path.  A packet arriving on one leg is checked against the leg's latched
source, forwarded to the other leg at once (no await, no logging, no parsing beyond the
fixed 12-byte header), and handed by reference to the leg's packet sink (the recorder).

Media is anchored on us: each call gets two legs (caller, call taker), each an even RTP
port and the next odd port for RTCP, from a configured range, released on every path.

Symmetric RTP with latching (``SourceLatch``): before the first packet a leg sends to
the address its peer's SDP named, and it latches at once to a packet from exactly that
address and port.  Another port of the same IP (the party behind a NAT) is accepted
only when nothing has come from the latched source — or, before any, from anywhere —
for ``nat_grace`` seconds; the exact SDP address takes the leg back as soon as it
appears.  So a sender on the party's IP that merely sends first does not own the leg
while the party itself is talking.  Anything else is dropped and counted — no RTP
injection, no "RTP bleed".  RTCP latches the same way (exact: the RTP port + 1).

A leg's sockets are bound in the family (IPv4 or IPv6) of the party it faces; SDP
addresses are normalised with ``ipaddress`` so that they compare equal to the source
addresses the kernel reports.  Sending never raises: a failed ``sendto`` (an address
the socket cannot reach; uvloop raises these synchronously) is counted in
``LegStats.send_errors`` and the socket stays usable.

Towards the caller the stream must look continuous across notice → ringback → bridge:
the announcer's packets and the call taker's relayed packets are sent with one SSRC and
continuing sequence numbers and timestamps (``StreamRewriter``).

A leg whose party agreed SRTP keys has ``srtp`` set (:mod:`.srtp`): what it receives is
authenticated and decrypted before anything else sees it (a packet that fails is
dropped and counted, and never latches the leg), and everything sent on it — relayed,
our own, RTCP — is protected last, after any rewriting; a packet it cannot protect (a
repeated sequence number, one SSRC too many) is not sent, and counted.  A plain leg
pays one attribute test per packet for this.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import os
import socket
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .srtp import Rejection, SrtpRejected, SrtpStreams

Address = tuple[str, int]
PacketSink = Callable[[int, int, bytes], None]  # sequence number, timestamp, payload
# sequence, timestamp, marker, payload, the whole packet (to pass on if it is not held)
EventSink = Callable[[int, int, bool, bytes, bytes], None]

log = logging.getLogger(__name__)

_HEADER = struct.Struct("!BBHII")
_SEQ_TS = struct.Struct("!HI")  # sequence number and timestamp, at offset 2
_SEQ_TS_SSRC = struct.Struct("!HII")  # and the SSRC: what the stream rewriter writes
_G711 = frozenset({0, 8})  # PCMU, PCMA
#: What a send to an unusable address raises (asyncio: OSError; uvloop also the others).
_SEND_ERRORS = (OSError, ValueError, TypeError)
DEFAULT_NAT_GRACE = 1.0


class NoPortsAvailable(RuntimeError):
    """The configured RTP port range has no free pair left."""


class PortAllocator:
    """Even RTP ports (RTCP on port + 1) from ``low``..``high`` inclusive, handed out
    round-robin so that a just-released port is not reused at once (late packets of the
    old call would land in the new one)."""

    def __init__(self, low: int, high: int) -> None:
        if low % 2:
            low += 1
        if not 0 < low < high <= 65535:
            raise ValueError(f"bad RTP port range {low}-{high}")
        self.low = low
        self.high = high
        self._free = list(range(low, high, 2))  # each needs port + 1 <= high
        self._used: set[int] = set()
        # for metrics: the legs open now, and the counters of every leg already closed
        self.open_legs: set[RtpLeg] = set()
        self.closed_totals = LegStats()
        self.closed_by_party = {"caller": LegStats(), "call_taker": LegStats()}

    @property
    def capacity(self) -> int:
        return len(self._free) + len(self._used)

    @property
    def in_use(self) -> int:
        return len(self._used)

    def allocate(self) -> int:
        if not self._free:
            raise NoPortsAvailable(f"no free RTP ports in {self.low}-{self.high}")
        port = self._free.pop(0)
        self._used.add(port)
        return port

    def release(self, port: int) -> None:
        if port in self._used:
            self._used.remove(port)
            self._free.append(port)

    def snapshot(self) -> PortsSnapshot:
        """Port pairs held and available, and the counters of every leg, open or closed,
        summed into a fresh ``LegStats``: for metrics at scrape time."""
        totals = LegStats()
        totals.add(self.closed_totals)
        by_party = {party: LegStats() for party in self.closed_by_party}
        for party, stats in self.closed_by_party.items():
            by_party[party].add(stats)
        for leg in list(self.open_legs):
            totals.add(leg.stats)
            by_party[leg.party].add(leg.stats)
        return PortsSnapshot(self.in_use, self.capacity, totals, by_party)


@dataclass
class LegStats:
    packets_in: int = 0
    bytes_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0
    dropped_unknown_source: int = 0
    dropped_malformed: int = 0
    rtcp_in: int = 0
    rtcp_out: int = 0
    send_errors: int = 0  # sendto failed (bad or unreachable address): nothing sent
    srtp_auth_failed: int = 0  # SRTP/SRTCP packets that failed authentication: dropped
    srtp_replayed: int = 0  # SRTP/SRTCP packets libsrtp's replay check refused: dropped
    # packets not sent on an SRTP leg: a sequence number its SSRC had sent (a duplicate
    # would reuse the keystream), or an SSRC past the session's MAX_OUTBOUND_SSRCS
    srtp_repeated: int = 0
    srtp_ssrc_limit: int = 0

    def add(self, other: LegStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True, slots=True)
class PortsSnapshot:
    """``PortAllocator.snapshot()``: port pairs in use, the range's capacity, and the
    relay's counters over all legs since start."""

    in_use: int
    capacity: int
    totals: LegStats
    # the same per party the legs face: "caller" (leg A), "call_taker" (leg B and
    # transfer targets), for the per-leg SRTP counters
    by_party: Mapping[str, LegStats] = field(default_factory=dict)


class StreamRewriter:
    """Rewrites SSRC, sequence number and timestamp of packets sent on one leg so that
    every source (announcer, ringback, the relayed far end) continues one stream."""

    __slots__ = ("_seq_offset", "_source_ssrc", "_ts_offset", "last_seq", "last_ts", "ssrc")

    def __init__(self, ssrc: int, first_seq: int, first_ts: int) -> None:
        self.ssrc = ssrc
        self.last_seq = (first_seq - 1) & 0xFFFF
        self.last_ts = (first_ts - 160) & 0xFFFFFFFF
        self._source_ssrc: int | None = None
        self._seq_offset = 0
        self._ts_offset = 0

    def next_own(self, samples: int) -> tuple[int, int]:
        """Sequence and timestamp for a packet of our own (announcer / ringback)."""
        self.last_seq = (self.last_seq + 1) & 0xFFFF
        self.last_ts = (self.last_ts + samples) & 0xFFFFFFFF
        self._source_ssrc = None
        return self.last_seq, self.last_ts

    def continue_after(self, next_seq: int, next_ts: int) -> None:
        """Our own packets (a tone) were numbered elsewhere up to ``next_seq``/``next_ts``:
        relayed packets continue from there."""
        self.last_seq = (next_seq - 1) & 0xFFFF
        self.last_ts = (next_ts - 160) & 0xFFFFFFFF
        self._source_ssrc = None

    def rewrite(self, packet: bytearray, gap_samples: int = 160) -> None:
        """Rewrite a relayed packet in place (12-byte header already checked)."""
        _, _, seq, ts, ssrc = _HEADER.unpack_from(packet)
        if ssrc != self._source_ssrc:
            # a new source: continue from our last packet, one frame later
            self._source_ssrc = ssrc
            self._seq_offset = (self.last_seq + 1 - seq) & 0xFFFF
            self._ts_offset = (self.last_ts + gap_samples - ts) & 0xFFFFFFFF
            packet[1] |= 0x80  # marker: a new talk spurt for the receiver's jitter buffer
        new_seq = (seq + self._seq_offset) & 0xFFFF
        new_ts = (ts + self._ts_offset) & 0xFFFFFFFF
        _SEQ_TS_SSRC.pack_into(packet, 2, new_seq, new_ts, self.ssrc)
        if ((new_seq - self.last_seq) & 0xFFFF) < 0x8000:
            self.last_seq = new_seq
            self.last_ts = new_ts

    def applied(self, data: bytes) -> bytearray:
        """A rewritten copy of the relayed packet ``data`` (12-byte header checked)."""
        packet = bytearray(data)
        self.rewrite(packet)
        return packet

    def state(self) -> tuple[int, int, int, int, int, int]:
        """Everything the rewriter knows, as integers (-1: no source yet), so that a
        media worker continues the stream exactly, and gives it back (:meth:`load`)."""
        source = -1 if self._source_ssrc is None else self._source_ssrc
        return (self.ssrc, self.last_seq, self.last_ts, source, self._seq_offset, self._ts_offset)

    def catch_up(self, state: tuple[int, int, int, int, int, int]) -> None:
        """Another rewriter (a media worker's, giving the stream back late) numbered
        packets after this one's state was handed to it, and this one has numbered some
        since: go on after the later of the two.  If the other's are later, the next
        relayed packet starts a new spurt after them (numbers never go back twice)."""
        _, last_seq, last_ts, _, _, _ = state
        if last_seq != self.last_seq and ((last_seq - self.last_seq) & 0xFFFF) < 0x8000:
            self.last_seq, self.last_ts = last_seq, last_ts
            self._source_ssrc = None

    def load(self, state: tuple[int, int, int, int, int, int]) -> None:
        """Go on from the ``state`` another rewriter gave (:meth:`state`)."""
        ssrc, last_seq, last_ts, source, seq_offset, ts_offset = state
        self.ssrc, self.last_seq, self.last_ts = ssrc, last_seq, last_ts
        self._source_ssrc = None if source < 0 else source
        self._seq_offset, self._ts_offset = seq_offset, ts_offset


def normalise_host(host: str) -> str:
    """An IP literal as the kernel reports a source (``0:0::1`` → ``::1``); anything
    else as it is (it then matches no source)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


class SourceLatch:
    """Which source a leg's socket accepts besides the one it is latched to: the rare
    path, run only for a packet from somewhere else.

    ``exact`` (the SDP's address) is always taken.  Another port of the same IP is taken
    only once the current source has been quiet for ``grace`` seconds: quiet means the
    leg's packet counter (``activity``, passed in) has not moved since the last look, so
    the hot path never reads the clock.  (A packet counted just before a look counts as
    sent at that look: quiet time is never overestimated.)
    """

    __slots__ = ("_clock", "_quiet_since", "_seen", "exact", "grace")

    def __init__(self, grace: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.grace = grace
        self._clock = clock
        self.exact: Address | None = None
        self._quiet_since = 0.0
        self._seen = 0

    def expect(self, exact: Address, activity: int) -> None:
        """A new SDP address: nothing has come from it yet, so quiet starts now."""
        self.exact = exact
        self._quiet_since = self._clock()
        self._seen = activity

    def admit(self, source: Address, activity: int) -> bool:
        """Whether ``source`` (not the current one) becomes the latched source."""
        exact = self.exact
        if exact is None or source[0] != exact[0]:
            return False
        if source == exact:
            return True
        now = self._clock()
        if activity != self._seen:  # the current source sent since the last look
            self._seen = activity
            self._quiet_since = now
        return now - self._quiet_since >= self.grace


class LegMode(enum.Enum):
    HOLD = "hold"  # receive (and record), forward nothing: notice and ringing phases
    BRIDGED = "bridged"  # forward to the other leg


class RtpLeg:
    """Our media endpoint towards one party: an RTP socket and an RTCP socket."""

    def __init__(
        self,
        name: str,
        local_host: str,
        port: int,
        *,
        sink: PacketSink | None = None,
        nat_grace: float = DEFAULT_NAT_GRACE,
    ) -> None:
        self.name = name
        self.local_host = local_host
        self.port = port
        self.stats = LegStats()
        self.sink = sink
        self.peer: RtpLeg | None = None
        self.mode = LegMode.HOLD
        self.expected: Address | None = None  # from the peer's SDP
        self.latched: Address | None = None
        self.rtcp_latched: Address | None = None
        self._rtp_latch = SourceLatch(nat_grace)
        self._rtcp_latch = SourceLatch(nat_grace)
        self.rewriter: StreamRewriter | None = None  # set on the caller's leg
        self.muted = False  # relayed packets not sent (while we play a tone to this party)
        self.audio_payload_type: int | None = None  # what goes to ``sink`` (the recorder)
        # called when the party switches to the other static G.711 payload type (0 ↔ 8)
        self.on_codec_change: Callable[[int], None] | None = None
        self.dtmf_payload_type: int | None = None
        self.dtmf_sink: EventSink | None = None
        self.srtp: SrtpStreams | None = None  # the party's SRTP keys, once agreed
        self._rtp: asyncio.DatagramTransport | None = None
        self._rtcp: asyncio.DatagramTransport | None = None

    async def open(self) -> None:
        """Bind the RTP and RTCP sockets (``OSError`` when a port is taken).  The sockets
        are made and bound here, not by the loop from ``local_addr``: our address is an
        IP literal, so the loop's name resolution and option calls per socket are work
        for nothing at every call set-up."""
        loop = asyncio.get_running_loop()
        rtp_socket = _bound_socket(self.local_host, self.port)
        try:
            rtcp_socket = _bound_socket(self.local_host, self.port + 1)
        except OSError:
            rtp_socket.close()
            raise
        rtp, _ = await loop.create_datagram_endpoint(lambda: _RtpProtocol(self), sock=rtp_socket)
        rtcp, _ = await loop.create_datagram_endpoint(lambda: _RtcpProtocol(self), sock=rtcp_socket)
        self._rtp = rtp
        self._rtcp = rtcp

    def close(self) -> None:
        for transport in (self._rtp, self._rtcp):
            if transport is not None:
                transport.close()
        self._rtp = self._rtcp = None

    @property
    def closed(self) -> bool:
        return self._rtp is None

    @property
    def lent(self) -> bool:
        """Whether a media worker reads the RTP socket now (:meth:`lend`)."""
        return isinstance(self._rtp, _LentSocket)

    def lend(self) -> int:
        """Stop reading the RTP socket and return a descriptor of it for a media worker
        (:mod:`.workers`), which reads it until :meth:`reclaim`.  What the call process
        sends on the leg meanwhile (a telephone-event passed on) goes out of the same
        socket; RTCP stays here."""
        transport = self._rtp
        if transport is None or isinstance(transport, _LentSocket):
            raise RuntimeError(f"{self.name} leg on port {self.port} cannot be lent")
        own = transport.get_extra_info("socket")
        lent = socket.socket(own.family, own.type, fileno=os.dup(own.fileno()))
        transport.close()  # the reader stops; the socket lives on in ``lent``
        self._rtp = _LentSocket(lent)
        return lent.fileno()

    def reclaim(self) -> None:
        """Read the RTP socket here again (packets that arrived since the worker let go
        wait in the socket's buffer; the reader starts at the next loop iteration)."""
        lent = self._rtp
        if isinstance(lent, _LentSocket):
            asyncio.get_running_loop().create_task(self._read_again(lent))

    async def _read_again(self, lent: _LentSocket) -> None:
        if self._rtp is not lent:  # closed meanwhile
            return
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _RtpProtocol(self), sock=lent.sock
        )
        if self._rtp is lent:
            self._rtp = transport
        else:
            transport.close()

    @property
    def family(self) -> int:
        """4 or 6: the family of our sockets, so of the addresses they can reach."""
        return 6 if ":" in self.local_host else 4

    def set_remote(self, host: str, port: int) -> None:
        """The address the peer's SDP named.  A changed address (re-INVITE) re-latches."""
        address = (normalise_host(host), port)
        if address != self.expected:
            self.expected = address
            self.latched = None
            self.rtcp_latched = None
            self._rtp_latch.expect(address, self.stats.packets_in)
            self._rtcp_latch.expect((address[0], port + 1), self.stats.rtcp_in)

    @property
    def destination(self) -> Address | None:
        return self.latched or self.expected

    @property
    def party(self) -> str:
        """Whom the leg faces, for metrics: "caller" (leg A) or "call_taker"."""
        return "caller" if self.name == "caller" else "call_taker"

    def secure(self, suite: str | None, send_key: bytes = b"", receive_key: bytes = b"") -> None:
        """The keys of the leg's last completed exchange (``suite`` None: plain RTP)."""
        if suite is None:
            self.srtp = None
        elif self.srtp is None:
            self.srtp = SrtpStreams(suite, send_key, receive_key)
        else:
            self.srtp = self.srtp.rekey(suite, send_key, receive_key)

    # -- the hot path ---------------------------------------------------------------------

    def rtp_received(self, data: bytes, source: Address) -> None:
        srtp = self.srtp
        if source != self.latched:
            if not self._rtp_latch.admit(source, self.stats.packets_in):
                self.stats.dropped_unknown_source += 1
                return
            if srtp is None:
                self.latched = source
        if len(data) < 12 or data[0] & 0xC0 != 0x80:
            self.stats.dropped_malformed += 1
            return
        if srtp is not None:
            try:
                data = srtp.unprotect(data)
            except SrtpRejected as rejected:
                self._srtp_rejected(rejected)
                return
            self.latched = source  # only an authentic packet latches an SRTP leg
        stats = self.stats
        stats.packets_in += 1
        stats.bytes_in += len(data)
        pt = data[1] & 0x7F
        if pt == self.dtmf_payload_type and self.dtmf_sink is not None:
            # telephone-events go to the DTMF handler, which decides what is passed on
            # (a call taker's recording code never reaches the caller)
            _, second, seq, ts, _ = _HEADER.unpack_from(data)
            self.dtmf_sink(seq, ts, bool(second & 0x80), rtp_payload(data), data)
            return
        peer = self.peer
        if self.mode is LegMode.BRIDGED and peer is not None:
            peer.send_relayed(data)
        sink = self.sink
        if sink is not None and (
            pt == self.audio_payload_type or (pt in _G711 and self._codec_changed(pt))
        ):
            seq, ts = _SEQ_TS.unpack_from(data, 2)
            # no CSRC, extension or padding (the usual packet): the payload is the rest
            sink(seq, ts, data[12:] if not data[0] & 0x3F else rtp_payload(data))

    def record_forwarded(self, data: bytes) -> None:
        """A packet from our party that the kernel or a media worker forwarded to the
        peer (:mod:`.fastpath`, :mod:`.workers`; never SRTP): counted and recorded as
        ``rtp_received`` would, with nothing sent.  Telephone-events neither forwards
        (they are kept for us) go to ``dtmf_sink``, as ``rtp_received`` hands them."""
        if len(data) < 12 or data[0] & 0xC0 != 0x80:
            return  # the kernel passed it on; the relay would have dropped it
        stats = self.stats
        stats.packets_in += 1
        stats.bytes_in += len(data)
        pt = data[1] & 0x7F
        if pt == self.dtmf_payload_type and self.dtmf_sink is not None:
            _, second, seq, ts, _ = _HEADER.unpack_from(data)
            self.dtmf_sink(seq, ts, bool(second & 0x80), rtp_payload(data), data)
            return
        sink = self.sink
        if sink is not None and (
            pt == self.audio_payload_type or (pt in _G711 and self._codec_changed(pt))
        ):
            _, _, seq, ts, _ = _HEADER.unpack_from(data)
            sink(seq, ts, rtp_payload(data))

    def _srtp_rejected(self, rejected: SrtpRejected) -> None:
        """A packet libsrtp refused: counted by reason, dropped (the error path)."""
        reason = rejected.reason
        if reason is Rejection.AUTHENTICATION:
            self.stats.srtp_auth_failed += 1
        elif reason is Rejection.REPLAYED:
            self.stats.srtp_replayed += 1
        elif reason is Rejection.REPEATED:
            self.stats.srtp_repeated += 1
        elif reason is Rejection.SSRC_LIMIT:
            self.stats.srtp_ssrc_limit += 1
        else:
            self.stats.dropped_malformed += 1

    def _codec_changed(self, payload_type: int) -> bool:
        """A party sending PCMA where PCMU was agreed (or the reverse): both are static
        payload types, so the audio can still be recorded right (SIPp's canned pcaps
        do exactly this)."""
        if self.on_codec_change is None:
            return False
        self.audio_payload_type = payload_type
        self.on_codec_change(payload_type)
        return True

    def send_relayed(self, data: bytes) -> None:
        """A packet from the other leg, forwarded to our party."""
        destination = self.latched or self.expected
        transport = self._rtp
        if destination is None or transport is None or self.muted:
            return
        rewriter = self.rewriter
        packet: bytes | bytearray = data if rewriter is None else rewriter.applied(data)
        srtp = self.srtp
        if srtp is not None:
            try:
                packet = srtp.protect(bytes(packet))
            except SrtpRejected as rejected:
                self._srtp_rejected(rejected)
                return
        try:
            transport.sendto(packet, destination)
        except _SEND_ERRORS as exc:
            self._send_failed(destination, exc)
            return
        self.stats.packets_out += 1
        self.stats.bytes_out += len(data)

    def send_own(self, packet: bytes) -> None:
        """A packet we generated (announcer, ringback), already numbered by our rewriter."""
        destination = self.latched or self.expected
        if destination is None or self._rtp is None:
            return
        length = len(packet)
        if self.srtp is not None:
            try:
                packet = self.srtp.protect(packet)
            except SrtpRejected as rejected:
                self._srtp_rejected(rejected)
                return
        try:
            self._rtp.sendto(packet, destination)
        except _SEND_ERRORS as exc:
            self._send_failed(destination, exc)
            return
        self.stats.packets_out += 1
        self.stats.bytes_out += length

    def rtcp_received(self, data: bytes, source: Address) -> None:
        srtp = self.srtp
        if source != self.rtcp_latched:
            if not self._rtcp_latch.admit(source, self.stats.rtcp_in):
                self.stats.dropped_unknown_source += 1
                return
            if srtp is None:
                self.rtcp_latched = source
        if srtp is not None:
            try:
                data = srtp.unprotect_rtcp(data)
            except SrtpRejected as rejected:
                self._srtp_rejected(rejected)
                return
            self.rtcp_latched = source
        self.stats.rtcp_in += 1
        peer = self.peer
        if self.mode is LegMode.BRIDGED and peer is not None:
            peer.send_rtcp(data)

    def send_rtcp(self, data: bytes) -> None:
        destination = self.rtcp_latched
        if destination is None and self.expected is not None:
            destination = (self.expected[0], self.expected[1] + 1)
        if destination is None or self._rtcp is None:
            return
        if self.srtp is not None:
            try:
                data = self.srtp.protect_rtcp(data)
            except SrtpRejected as rejected:
                self._srtp_rejected(rejected)
                return
        try:
            self._rtcp.sendto(data, destination)
        except _SEND_ERRORS as exc:
            self._send_failed(destination, exc)
            return
        self.stats.rtcp_out += 1

    def _send_failed(self, destination: Address, exc: Exception) -> None:
        """Counted; logged once per leg (the error path, never the normal one)."""
        self.stats.send_errors += 1
        if self.stats.send_errors == 1:
            log.warning(
                "%s leg on port %d cannot send to %s:%s (%s); counted in "
                "recproxy_rtp_send_errors_total, the call goes on",
                self.name, self.port, destination[0], destination[1], exc,
            )  # fmt: skip


class _LentSocket(asyncio.DatagramTransport):
    """A leg's RTP socket while a media worker reads it: the call process only sends."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock

    def sendto(self, data: Any, addr: Any = None) -> None:
        self.sock.sendto(data, addr)  # what it raises, the leg counts as a send error

    def close(self) -> None:
        self.sock.close()

    def is_closing(self) -> bool:
        return self.sock.fileno() < 0


def rtp_payload(data: bytes) -> bytes:
    """The payload of an RTP packet: after CSRCs and extension, before padding."""
    first = data[0]
    offset = 12 + 4 * (first & 0x0F)
    if first & 0x10 and len(data) >= offset + 4:
        offset += 4 + 4 * int.from_bytes(data[offset + 2 : offset + 4], "big")
    end = len(data)
    if first & 0x20 and end > offset:
        end -= data[-1]
    return data[offset:end] if offset < end else b""


def _bound_socket(host: str, port: int) -> socket.socket:
    """A non-blocking UDP socket bound to ``host`` (an IP literal) and ``port``."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class _RtpProtocol(asyncio.DatagramProtocol):
    """A leg's RTP socket: each datagram to ``rtp_received``.  The source is passed on
    as the loop reports it when it is (host, port) — IPv4 — and cut to that otherwise
    (IPv6 adds flow info and scope), so an IPv4 packet costs no new tuple."""

    __slots__ = ("receive",)

    def __init__(self, leg: RtpLeg) -> None:
        self.receive = leg.rtp_received

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.receive(data, addr if len(addr) == 2 else (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        # ICMP unreachable from a party that went away: nothing to do on the hot path.
        pass


class _RtcpProtocol(_RtpProtocol):
    """A leg's RTCP socket: each datagram to ``rtcp_received``."""

    __slots__ = ()

    def __init__(self, leg: RtpLeg) -> None:
        self.receive = leg.rtcp_received


class MediaSession:
    """The two legs of one call, their ports, and their lifetime."""

    def __init__(
        self, allocator: PortAllocator, local_host: str, *, nat_grace: float = DEFAULT_NAT_GRACE
    ) -> None:
        self.allocator = allocator
        self.local_host = local_host
        self.nat_grace = nat_grace
        self.caller: RtpLeg | None = None
        self.call_taker: RtpLeg | None = None
        self._opened: list[RtpLeg] = []  # every leg, closed with the session

    async def open_leg(
        self, name: str, *, sink: PacketSink | None = None, host: str | None = None
    ) -> RtpLeg:
        """Allocate a port pair (skipping pairs another program holds) and bind it on
        ``host`` (default ``local_host``; an IPv6 address for a party reached over IPv6)."""
        attempts = self.allocator.capacity
        last_error: OSError | None = None
        for _ in range(max(attempts, 1)):
            port = self.allocator.allocate()
            leg = RtpLeg(name, host or self.local_host, port, sink=sink, nat_grace=self.nat_grace)
            try:
                await leg.open()
            except OSError as exc:
                self.allocator.release(port)
                last_error = exc
                continue
            if name == "caller":
                self.caller = leg
            elif name == "call_taker":
                self.call_taker = leg
            # any other name: a leg to a transfer target, the call taker's once it answers
            self._opened.append(leg)
            self.allocator.open_legs.add(leg)
            return leg
        raise NoPortsAvailable(f"could not bind an RTP port pair: {last_error}")

    def bridge(self) -> None:
        """Relay both ways from now on."""
        caller, taker = self.caller, self.call_taker
        if caller is None or taker is None:
            raise RuntimeError("bridge needs both legs")
        caller.peer, taker.peer = taker, caller
        caller.mode = taker.mode = LegMode.BRIDGED

    def unbridge(self) -> None:
        for leg in (self.caller, self.call_taker):
            if leg is not None:
                leg.mode = LegMode.HOLD

    def hand_over(self, leg: RtpLeg) -> None:
        """A transfer target answered on ``leg``: it is the call taker's leg from now on,
        bridged to the caller's if the call was; the first call taker's leg closes."""
        old, self.call_taker = self.call_taker, leg
        caller = self.caller
        if caller is not None and caller.peer is not None:
            caller.peer, leg.peer = leg, caller
            leg.mode = LegMode.BRIDGED
        if old is not None:
            self.close_leg(old)

    def close_leg(self, leg: RtpLeg) -> None:
        """Close one leg and give its ports back (idempotent)."""
        if leg.closed:
            return
        leg.close()
        self.allocator.release(leg.port)
        if leg in self.allocator.open_legs:
            self.allocator.open_legs.discard(leg)
            self.allocator.closed_totals.add(leg.stats)
            self.allocator.closed_by_party[leg.party].add(leg.stats)

    def close(self) -> None:
        """Close every leg and give their ports back (idempotent)."""
        for leg in self._opened:
            self.close_leg(leg)

    def totals(self) -> tuple[LegStats, LegStats]:
        """Per direction (caller's leg, call taker's leg) counters."""
        return (
            self.caller.stats if self.caller else LegStats(),
            self.call_taker.stats if self.call_taker else LegStats(),
        )
