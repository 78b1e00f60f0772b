"""DTMF digits from RFC 4733 telephone-event packets.

A sender reports one key press as a run of packets that share one RTP timestamp (the
event's start): the first with the marker bit, then updates with a growing duration,
then the end packet (E bit) sent three times.  Packets can be lost, duplicated or
reordered, so ``DtmfDetector`` keys each event on (RTP timestamp, event code) and
reports every event exactly once:

* when its first end packet arrives (``ended=True``, the final duration);
* when its end packets were all lost: as soon as a packet of a later event arrives, or
  on ``flush()`` (``ended=False``, the longest duration seen).

Packets of an event already reported, and packets older than the current event, are
ignored.  Events other than the 16 DTMF keys and flash (tones, line events) are
ignored too.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from typing import Final

from .rtp import ts_diff

__all__ = [
    "DIGITS",
    "FLASH",
    "DigitDetected",
    "DtmfDetector",
    "DtmfError",
    "TelephoneEvent",
]

#: The character reported for event 16, hook flash.
FLASH: Final = "!"
#: Event code → digit, for events 0..16 (RFC 4733 section 3.2).
DIGITS: Final = "0123456789*#ABCD" + FLASH

_EVENT = struct.Struct("!BBH")
_REMEMBERED = 16  # events remembered as reported, against late retransmissions


class DtmfError(ValueError):
    """A telephone-event payload is malformed (the peer's fault)."""


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """The first (or only) event block of a telephone-event payload."""

    event: int
    end: bool
    volume: int  # 0..63, in -dBm0
    duration: int  # in RTP timestamp units

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        if len(payload) < 4:
            raise DtmfError(
                f"telephone-event payload too short: {len(payload)} bytes, an event needs 4"
            )
        event, flags, duration = _EVENT.unpack_from(payload)
        return cls(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)

    def serialize(self) -> bytes:
        return _EVENT.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)

    @property
    def digit(self) -> str | None:
        """The DTMF key (or ``FLASH``) this event is, or ``None`` for other events."""
        return DIGITS[self.event] if self.event < len(DIGITS) else None


@dataclass(frozen=True, slots=True)
class DigitDetected:
    """A key press: ``start_timestamp`` is the event's RTP timestamp, ``duration`` in
    timestamp units; ``ended`` is False when no end packet arrived."""

    digit: str
    start_timestamp: int
    duration: int
    ended: bool


# RFC 3550 A.1: how far a sequence number may fall behind (reordering) or run ahead
# (loss) of the newest before it means the sender restarted its stream.
_MAX_MISORDER = 100
_MAX_DROPOUT = 3000


class DtmfDetector:
    """Turns telephone-event packets of one stream into one ``DigitDetected`` per key
    press.  Feed every telephone-event packet with ``feed(timestamp, marker, payload)``.
    ``pending`` tells whether an event is open (started, not yet reported), for an
    adapter that wants to ``flush()`` it after a quiet while."""

    def __init__(self) -> None:
        self._newest_packet: tuple[int, int, int] | None = None  # SSRC, sequence, timestamp
        self._current: tuple[int, int] | None = None  # (timestamp, event) being collected
        self._current_duration = 0
        self._newest_ts: int | None = None
        self._reported: deque[tuple[int, int]] = deque(maxlen=_REMEMBERED)
        self.ignored = 0  # packets of other events, stale or malformed

    @property
    def pending(self) -> bool:
        return self._current is not None

    def feed(
        self,
        timestamp: int,
        marker: bool,
        payload: bytes,
        *,
        sequence: int | None = None,
        ssrc: int | None = None,
    ) -> list[DigitDetected]:
        """One telephone-event packet; return the digits it completes (zero, one, or
        two when it also closes an earlier event whose end was lost).  ``marker`` is
        not needed: the first packet of an event is often lost or reordered, so events
        are told apart by (timestamp, code) alone.

        With the packet's ``sequence`` and ``ssrc``, a restarted stream (another SSRC,
        or a sequence number that jumped past RFC 3550 A.1's limits, or a timestamp
        behind the newest on a sequence number ahead of it — a sender restarted, a
        capture replayed) starts afresh instead of its events being taken for stale
        reordered ones."""
        flushed: list[DigitDetected] = []
        if sequence is not None and ssrc is not None and self._restarted(ssrc, sequence, timestamp):
            flushed = self.flush()
            self._newest_ts = None
            self._reported.clear()
        return flushed + self._feed(timestamp, payload)

    def _restarted(self, ssrc: int, sequence: int, timestamp: int) -> bool:
        newest = self._newest_packet
        if newest is None or ssrc != newest[0]:
            self._newest_packet = (ssrc, sequence, timestamp)
            return newest is not None
        _, newest_sequence, newest_timestamp = newest
        ahead = (sequence - newest_sequence) & 0xFFFF
        if ahead == 0 or ahead >= 0x10000 - _MAX_MISORDER:
            return False  # a retransmission (a repeated end packet) or a reordered one
        self._newest_packet = (ssrc, sequence, timestamp)
        return ahead >= _MAX_DROPOUT or ts_diff(timestamp, newest_timestamp) < 0

    def _feed(self, timestamp: int, payload: bytes) -> list[DigitDetected]:
        try:
            event = TelephoneEvent.parse(payload)
        except DtmfError:
            self.ignored += 1
            return []
        digit = event.digit
        if digit is None:
            self.ignored += 1
            return []
        key = (timestamp, event.event)
        if key in self._reported:
            return []  # a retransmitted end packet, or a straggler of a finished event
        detected: list[DigitDetected] = []
        if key != self._current:
            if self._newest_ts is not None and ts_diff(timestamp, self._newest_ts) < 0:
                self.ignored += 1  # an older event reordered behind a newer one
                return []
            detected.extend(self.flush())
            self._current = key
            self._current_duration = 0
            self._newest_ts = timestamp
        self._current_duration = max(self._current_duration, event.duration)
        if event.end:
            detected.append(DigitDetected(digit, timestamp, event.duration, ended=True))
            self._reported.append(key)
            self._current = None
        return detected

    def flush(self) -> list[DigitDetected]:
        """Report the open event, if any, as not ended (its end packets were lost)."""
        if self._current is None:
            return []
        timestamp, code = self._current
        self._reported.append(self._current)
        self._current = None
        return [DigitDetected(DIGITS[code], timestamp, self._current_duration, ended=False)]
