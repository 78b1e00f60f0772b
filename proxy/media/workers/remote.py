"""A recording run by a media worker, as the call process sees it (issue 19, step 2).

:class:`RemotePair` stands where the call flow holds a
:class:`~proxy.media.recorder.RecordingChannelPair`: its directions' ``push`` hands the
packets the call process relays down to the worker (``D`` messages, batched), and
``pause``, ``resume``, ``stop``, ``set_held`` and ``set_codec`` become commands.  The
channels' counters the call flow reads at the end (quality, voice activity, the jitter
buffer's) arrive with the worker's last report (:meth:`RemotePair.settle`); until then
they read zero.  Subclasses, so that every reader of a pair — the recording switch, a
hold, the call's summary — works unchanged on either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...recording_state import RecordingState
from ..jitter import JitterBuffer
from ..recorder import DirectionQuality, PauseMode, RecordingChannelPair, RecordingDirection

#: ``command(action, argument)``: a recording command sent down (see recording_messages)
Command = Callable[[str, Any], None]
#: ``push(channel, sequence number, timestamp, payload)``: audio handed down
Down = Callable[[int, int, int, bytes], None]


class ChannelDown:
    """A remote channel's packet sink (``push``): the relay's sink of a leg, and how the
    pool knows that a leg's audio may be recorded by the worker it hands the leg to."""

    __slots__ = ("_down", "channel", "number")

    def __init__(self, number: int, channel: int, down: Down) -> None:
        self.number = number
        self.channel = channel
        self._down = down

    def __call__(self, seq: int, ts: int, payload: bytes) -> None:
        self._down(self.channel, seq, ts, payload)


class RemoteDirection(RecordingDirection):
    """One channel of a recording in a worker.  Its jitter buffer here holds nothing:
    it only carries the worker's counters once the recording has ended."""

    __slots__ = ("_channel", "_command", "_quality")

    def __init__(self, codec: str, sink: ChannelDown, command: Command) -> None:
        super().__init__(codec, JitterBuffer(), None)
        self._channel = sink.channel
        self._command = command
        self._quality = DirectionQuality(0, 0, 0, 0, 0)
        self.push = sink

    def set_held(self, held: bool) -> None:
        self.held = held
        self._command("held", [self._channel, held])

    def set_codec(self, codec: str) -> None:
        super().set_codec(codec)
        self._command("codec", [self._channel, self.codec])

    def quality(self) -> DirectionQuality:
        return self._quality

    def settle(self, counts: dict[str, int]) -> None:
        """The worker's counters of this channel, at the recording's end."""
        self._quality = DirectionQuality(
            counts["frames"], counts["lost"], counts["late"], counts["missing"],
            counts["longest_gap"],
        )  # fmt: skip
        self.frames = counts["frames"]
        self.speech.frames = counts["classified_frames"]
        self.speech.speech_frames = counts["speech_frames"]
        stats = self.jitter.stats
        stats.received = counts["received"]
        stats.duplicates = counts["duplicates"]
        stats.late = counts["late_packets"]
        stats.lost = counts["lost_frames"]


class RemotePair(RecordingChannelPair):
    """Both channels of a recording in a worker (see the module docstring)."""

    def __init__(
        self,
        call_key: str,
        codecs: tuple[str, str],
        number: int,
        down: Down,
        command: Command,
    ) -> None:
        self.command = command
        super().__init__(
            call_key,
            RemoteDirection(codecs[0], ChannelDown(number, 0, down), command),
            RemoteDirection(codecs[1], ChannelDown(number, 1, down), command),
            -1,  # no block of this process's recorder
        )

    def pause(self, mode: PauseMode | str | None = None) -> None:
        super().pause(mode)
        self.command("pause", None if self.pause_mode is None else self.pause_mode.value)

    def resume(self) -> None:
        super().resume()
        self.command("resume", None)

    def stop(self) -> None:
        if self.active:
            super().stop()
            self.command("stop", None)

    def settle(self, channels: list[dict[str, int]]) -> None:
        """The recording ended in the worker: its channels' counters, and no more
        commands or audio to send."""
        if self.state is not RecordingState.FAILED:
            self.state = RecordingState.STOPPED
        self.count(channels)

    def count(self, channels: list[dict[str, int]]) -> None:
        """The channels' counters, as the worker reported them."""
        for direction, counts in zip((self.caller, self.taker), channels, strict=False):
            assert isinstance(direction, RemoteDirection)
            direction.settle(counts)
