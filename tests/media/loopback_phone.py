"""A party on loopback for tests that relay real packets (the kernel path, the media
workers): a UDP socket that sends RTP to one of our legs and keeps what it receives."""

from __future__ import annotations

import socket
import struct

from proxy.media.relay import RtpLeg


def rtp(seq: int, pt: int = 0, ssrc: int = 0xABCD) -> bytes:
    """An RTP packet of 160 payload bytes, each ``seq``'s low byte (to tell them apart)."""
    return struct.pack("!BBHII", 0x80, pt, seq, seq * 160, ssrc) + bytes([seq & 0xFF]) * 160


class Phone:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]
        self.received: list[tuple[bytes, tuple[str, int]]] = []

    def send(self, data: bytes, port: int) -> None:
        self.sock.sendto(data, ("127.0.0.1", port))

    def drain(self) -> None:
        """Everything waiting, into ``received`` (bounded)."""
        for _ in range(10_000):
            try:
                data, source = self.sock.recvfrom(2048)
            except BlockingIOError:
                return
            self.received.append((data, source))


class Parties:
    """A caller facing leg ``a`` and a call taker facing leg ``b``, each a ``Phone``; the
    legs expect them, record PCMU (the sequence numbers each leg recorded) and hand the
    call taker's telephone-events (payload type 101) to ``events``."""

    def __init__(self, a: RtpLeg, b: RtpLeg) -> None:
        self.a, self.b = a, b
        self.caller, self.taker = Phone(), Phone()
        self.recorded: dict[str, list[int]] = {"a": [], "b": []}
        self.events: list[int] = []
        a.set_remote("127.0.0.1", self.caller.port)
        b.set_remote("127.0.0.1", self.taker.port)
        a.audio_payload_type = b.audio_payload_type = 0
        a.sink = lambda seq, ts, payload: self.recorded["a"].append(seq)
        b.sink = lambda seq, ts, payload: self.recorded["b"].append(seq)
        b.dtmf_payload_type = 101
        b.dtmf_sink = lambda seq, ts, marker, payload, packet: self.events.append(seq)
