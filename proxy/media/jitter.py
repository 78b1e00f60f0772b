"""A playout jitter buffer for one direction of a G.711 stream, without a clock.

``push(sequence_number, timestamp, payload)`` takes each RTP packet as it arrives;
``pop()`` is called once per tick (20 ms) and returns the next frame of
``frame_samples`` samples in timestamp order, or ``None`` when nothing of that frame
arrived in time (the caller fills silence).  G.711 has one byte per sample, so samples
and bytes are the same count here.

How it works:

* The first packet fixes a frame grid: frame k covers the timestamps
  ``origin + k * frame_samples`` onwards.  Playout starts ``depth`` frames before the
  first packet, so every packet has ``depth`` ticks to arrive (60 ms by default):
  reordering within that window is absorbed.
* Packets of any duration are cut along the grid and assembled, so 10 ms or 30 ms
  packets (80 or 240 samples) come out as 160-sample frames.  A frame of which only
  part arrived is completed with the ``fill`` byte (the codec's silence).
* A packet seen before (same sequence number and timestamp) is a duplicate; one whose
  samples have all been played is late.  Both are dropped and counted.
* Sequence numbers and timestamps are compared modulo 2**16 / 2**32, so wraparound is
  invisible.  A timestamp more than ``resync_frames`` away from the playout point
  (a new SSRC, a sender restart, a source switch) re-anchors the grid: the new
  stream is played after what is already buffered, without a gap.
* Clock skew: the buffer level (buffered samples ahead of the playout point) is
  averaged over windows of ``skew_window`` ticks.  When the average is a whole frame
  above its nominal value, the sender is faster than our tick and one frame is
  dropped; a whole frame below, it is slower and one silent frame is inserted (``pop``
  returns ``None`` without advancing).  Windows in which the buffer ran empty (loss,
  silence suppression, a pause) are not used: that is not skew.
* What was filled, and why (``fills``): each frame popped as ``None`` while the caller
  counts (``pop(count=True)``: recording, not on hold) is *lost* when a newer packet
  had already arrived (a hole in the stream), or *missing* when nothing newer had (the
  sender was silent: silence suppression, comfort noise, the start or end of the
  stream, or a stall that kept its packets in the kernel).  A newer packet whose
  timestamp jumps further than its sequence number (silence suppression: the sequence
  goes on where it stopped) shows a pause in sending: the frames of the pause are
  missing, and only the frames of the packets its sequence number skipped are lost.
  A packet that arrives after its frame was filled turns that frame into *late*; one
  whose sequence number jumps turns up to that many missing frames before it into
  *lost* (a burst loss longer than the playout delay).  Filled frames are settled
  once they are ``resync_frames`` behind the playout point (a packet older than that
  re-anchors the grid instead of being late): the longest run of consecutive lost or
  late frames is measured then, and by ``settle()`` at the end.
* A pause the caller knows of (a hold) ends with ``restart_counting()``: like the
  stream's first packet, the next one starts the count, so the frames before it (the
  sender not yet back, or back with a timestamp or sequence jump across the pause) are
  neither lost nor missing.  If that packet's timestamp is behind the playout point
  (the sender's clock stood still while it held), it re-anchors the grid as a new
  stream's does, rather than being dropped as late with all that follow it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["FillCounts", "JitterBuffer", "JitterStats"]

_TS_MASK = 0xFFFFFFFF
_NEVER = 2**62  # a frame index no stream reaches

# Why a frame was filled (see "What was filled" above).
_LOST = 0
_LATE = 1
_MISSING = 2


@dataclass(slots=True)
class JitterStats:
    """Counters of one jitter buffer; they only grow."""

    received: int = 0  # packets pushed
    duplicates: int = 0  # dropped: same sequence number and timestamp seen before
    late: int = 0  # dropped: all samples already played
    lost: int = 0  # frames popped as None after the stream began (silence-filled)
    partial: int = 0  # frames popped with some samples missing (filled)
    skew_dropped: int = 0  # frames dropped because the sender runs fast
    skew_inserted: int = 0  # silent frames inserted because the sender runs slow
    resyncs: int = 0  # timestamp jumps that re-anchored the grid

    @property
    def skew_adjustments(self) -> int:
        return self.skew_dropped + self.skew_inserted


@dataclass(slots=True)
class FillCounts:
    """Frames filled while counting, by cause; a late arrival moves a frame from lost
    or missing to late.  ``longest_gap`` is in frames, over settled frames."""

    lost: int = 0
    late: int = 0
    missing: int = 0
    longest_gap: int = 0  # the longest run of consecutive lost or late frames

    def add(self, kind: int, amount: int) -> None:
        if kind == _LOST:
            self.lost += amount
        elif kind == _LATE:
            self.late += amount
        else:
            self.missing += amount


class _Partial:
    """A frame being assembled from pieces of packets."""

    __slots__ = ("buffer", "covered")

    def __init__(self, fill: bytes) -> None:
        self.buffer = bytearray(fill)
        self.covered = 0

    def write(self, offset: int, piece: bytes) -> None:
        self.buffer[offset : offset + len(piece)] = piece
        self.covered += len(piece)


class JitterBuffer:
    """See the module docstring.  ``stats`` holds the counters."""

    def __init__(
        self,
        *,
        depth: int = 3,
        frame_samples: int = 160,
        fill: int = 0xFF,
        resync_frames: int = 50,
        skew_window: int = 50,
        remember: int = 128,
    ) -> None:
        if depth < 1:
            raise ValueError("depth must be at least one frame")
        if frame_samples < 1:
            raise ValueError("frame_samples must be positive")
        if resync_frames <= 2 * depth:
            raise ValueError("resync_frames must be more than twice the depth")
        if skew_window < 1:
            raise ValueError("skew_window must be at least one tick")
        self.depth = depth
        self.frame_samples = frame_samples
        self.stats = JitterStats()
        self.fills = FillCounts()
        self._fill = bytes([fill]) * frame_samples
        self._resync_samples = resync_frames * frame_samples
        self._window = skew_window
        self._remember = remember
        self._seen: set[int] = set()
        self._seen_order: deque[int] = deque()
        self._frames: dict[int, bytes | _Partial] = {}
        self._origin: int | None = None  # RTP timestamp of frame 0
        self._play = 0  # index of the next frame to pop
        self._count_from = 0  # frames before this index are prefill, not loss
        self._high_end = 0  # end (in samples from the origin) of the newest packet
        self._packet_samples = frame_samples  # duration of the last packet
        self._window_sum = 0
        self._window_count = 0
        self._window_bad = False
        self._baseline: float | None = None  # the level of the first clean window
        self._settle_after = resync_frames  # frames behind playout a fill is final
        self._filled: dict[int, int] = {}  # frame index -> cause, until settled
        self._run_end = -(2**62)  # index of the last settled lost or late frame
        self._run = 0
        self._high_seq = 0  # the newest sequence number seen
        self._restarting = False  # the next packet starts the count (restart_counting)
        self._pauses: deque[tuple[int, int]] = deque()  # frames [first, end) not sent

    @property
    def started(self) -> bool:
        """Whether a packet has arrived."""
        return self._origin is not None

    @property
    def buffered(self) -> int:
        """Frames held (complete or partial), waiting to be popped."""
        return len(self._frames)

    def push(self, sequence_number: int, timestamp: int, payload: bytes) -> None:
        """Take one packet (RTP sequence number, timestamp, G.711 payload)."""
        stats = self.stats
        stats.received += 1
        size = len(payload)
        if not size:
            return
        key = (sequence_number << 32) | timestamp
        seen = self._seen
        if key in seen:
            stats.duplicates += 1
            return
        seen.add(key)
        order = self._seen_order
        order.append(key)
        if len(order) > self._remember:
            seen.discard(order.popleft())

        frame = self.frame_samples
        if self._origin is None:
            self._origin = timestamp
            self._play = -self.depth
            self._count_from = 0
            self._high_seq = sequence_number
            position = 0
        else:
            play_position = self._play * frame
            # ts_diff(timestamp, origin + play_position), inline: this runs per packet
            relative = (
                (timestamp - self._origin - play_position + 0x80000000) & _TS_MASK
            ) - 0x80000000
            if (
                relative > self._resync_samples
                or relative < -self._resync_samples
                or (self._restarting and relative + size <= 0)  # its timeline paused too
            ):
                position = self._resync(timestamp)
                self._high_seq = sequence_number
            else:
                position = play_position + relative
                if position + size <= play_position:
                    stats.late += 1
                    if self._filled:
                        self._arrived_late(position, size)
                    return
        if self._restarting:
            self._restarting = False
            self._count_from = position // frame
            self._high_seq = sequence_number
        newer = ((sequence_number - self._high_seq + 0x8000) & 0xFFFF) - 0x8000  # seq_diff
        if newer > 0:
            if position > self._high_end:
                self._paused_until(position - (newer - 1) * self._packet_samples)
            if newer > 1 and self._filled:
                self._confirm_lost(newer - 1, position)
            self._high_seq = sequence_number
        end = position + size
        if end > self._high_end:
            self._high_end = end
        self._packet_samples = size

        if size == frame and position % frame == 0:  # the common case: one whole frame
            index = position // frame
            if index not in self._frames:
                self._frames[index] = payload
            return
        self._store_pieces(position, payload)

    def restart_counting(self) -> None:
        """The sender comes back from a pause that does not count (a hold): until its
        next packet nothing is counted, and that packet starts the count afresh, as the
        first one did — what precedes it is no hole in the stream."""
        self._count_from = _NEVER
        self._restarting = True
        self._pauses.clear()

    def _resync(self, timestamp: int) -> int:
        """Re-anchor the grid so that the packet at ``timestamp`` plays after what is
        buffered (at most ``depth`` frames of it), ``depth`` frames from now at least."""
        frame = self.frame_samples
        buffered_end = -(-self._high_end // frame)  # ceil
        start = self._play + self.depth
        if buffered_end > start:
            start = min(buffered_end, self._play + 2 * self.depth)
            for index in [i for i in self._frames if i >= start]:
                del self._frames[index]
        self._origin = (timestamp - start * frame) & _TS_MASK
        self._count_from = start
        self._high_end = start * frame
        self._window_bad = True
        self._baseline = None  # a new stream: measure its level afresh
        self._pauses.clear()
        self.stats.resyncs += 1
        return start * frame

    def _paused_until(self, end: int) -> None:
        """Nothing was sent from the newest packet's end to ``end`` (in samples): the
        whole frames in between that are still to be played are a pause, not a hole."""
        frame = self.frame_samples
        first = max(-(-self._high_end // frame), self._play)  # ceil; not those played
        last = end // frame
        if last > first:
            self._pauses.append((first, last))

    def _in_pause(self, index: int) -> bool:
        pauses = self._pauses
        while pauses and pauses[0][1] <= index:
            pauses.popleft()
        return bool(pauses) and pauses[0][0] <= index

    def _store_pieces(self, position: int, payload: bytes) -> None:
        frame = self.frame_samples
        frames = self._frames
        done = 0
        size = len(payload)
        while done < size:
            index, offset = divmod(position + done, frame)
            take = min(frame - offset, size - done)
            if index >= self._play:  # skip the part already played
                piece = payload[done : done + take]
                held = frames.get(index)
                if held is None:
                    if take == frame:
                        frames[index] = piece
                    else:
                        partial = _Partial(self._fill)
                        partial.write(offset, piece)
                        frames[index] = partial
                elif isinstance(held, _Partial):
                    held.write(offset, piece)
                    if held.covered >= frame:
                        frames[index] = bytes(held.buffer)
            done += take

    def _confirm_lost(self, packets: int, position: int) -> None:
        """A sequence gap of ``packets`` before the packet at ``position``: frames filled
        as missing since the last packet were lost on the way (at most the gap's worth:
        comfort-noise packets, which do not reach us, advance the sequence too)."""
        frame = self.frame_samples
        first, last = self._high_end // frame, position // frame
        budget = packets * max(1, self._packet_samples // frame)
        filled = self._filled
        for index in range(max(first, last - budget), last):
            if filled.get(index) == _MISSING:
                self.fills.missing -= 1
                self.fills.lost += 1
                filled[index] = _LOST

    def _arrived_late(self, position: int, size: int) -> None:
        """A late packet: the frames it covers that were filled become late."""
        frame = self.frame_samples
        filled = self._filled
        for index in range(position // frame, (position + size - 1) // frame + 1):
            kind = filled.get(index)
            if kind is not None and kind != _LATE:
                self.fills.add(kind, -1)
                self.fills.late += 1
                filled[index] = _LATE

    def pop(self, count: bool = True) -> bytes | None:
        """The next frame, or ``None`` (missing, before the stream, or a skew insert).
        ``count``: a ``None`` for a frame of the stream is counted in ``fills`` (the
        caller passes False for time that does not count: a hold, a pause)."""
        if self._origin is None:
            if count:
                self.fills.missing += 1
            return None
        index = self._play
        level = self._high_end - index * self.frame_samples
        self._window_sum += level
        self._window_count += 1
        if level <= 0:
            self._window_bad = True
        if self._window_count >= self._window:
            adjustment = self._skew_adjustment()
            if adjustment < 0:
                self.stats.skew_inserted += 1
                return None
            if adjustment > 0:
                self._frames.pop(index, None)
                index += 1
                self.stats.skew_dropped += 1
        held = self._frames.pop(index, None)
        self._play = index + 1
        if held is None:
            if index >= self._count_from:
                self.stats.lost += 1
                if count:
                    self._note_fill(index)
            return None
        if isinstance(held, _Partial):
            self.stats.partial += 1
            return bytes(held.buffer)
        return held

    def _note_fill(self, index: int) -> None:
        newer_arrived = self._high_end > index * self.frame_samples
        kind = _LOST if newer_arrived and not self._in_pause(index) else _MISSING
        self.fills.add(kind, 1)
        filled = self._filled
        filled[index] = kind
        oldest = next(iter(filled))
        if oldest < index - self._settle_after:
            self._settle(index - self._settle_after)

    def settle(self) -> None:
        """Make every fill final (the recording ended): ``fills.longest_gap`` is then
        the whole stream's."""
        self._settle(None)

    def _settle(self, before: int | None) -> None:
        """Settle the filled frames whose index is below ``before`` (all for None), in
        playout order, measuring runs of lost or late frames."""
        filled = self._filled
        fills = self.fills
        while filled:
            index = next(iter(filled))
            if before is not None and index >= before:
                return
            kind = filled.pop(index)
            if kind == _MISSING:
                continue
            self._run = self._run + 1 if index == self._run_end + 1 else 1
            self._run_end = index
            if self._run > fills.longest_gap:
                fills.longest_gap = self._run

    def _skew_adjustment(self) -> int:
        """At the end of a window: +1 to drop a frame, -1 to insert one, 0 to hold."""
        mean = self._window_sum / self._window_count
        bad = self._window_bad
        self._window_sum = 0
        self._window_count = 0
        self._window_bad = False
        if bad:
            return 0
        # Skew is a level that drifts, not one that is merely high or low: a stream
        # whose first packets arrived in a burst sits a frame above the nominal level
        # for good, and dropping a frame of speech for that would be wrong.  So the
        # first clean window sets the baseline and later windows are compared with it.
        frame = self.frame_samples
        if self._baseline is None:
            self._baseline = mean
            return 0
        nominal = self._baseline
        if mean >= nominal + frame:
            return 1
        if mean <= nominal - frame:
            return -1
        return 0
