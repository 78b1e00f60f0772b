"""A transcript: cues with a speaker and times, and the gaps where no audio was
recorded; written as plain text or WebVTT.  Pure: no engine, no audio.

Speakers are ``Caller`` (the left channel) and ``Call taker`` (the right).  A gap — an
interrupted recording's missing end, say — is a cue of its own with no speaker, so a
reader sees that words may be missing there rather than a silent jump in time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Speaker = Literal["Caller", "Call taker"]
CALLER: Speaker = "Caller"
CALL_TAKER: Speaker = "Call taker"


@dataclass(frozen=True, slots=True)
class Cue:
    """What one speaker said from ``start`` to ``end`` (seconds into the recording)."""

    start: float
    end: float
    speaker: Speaker
    text: str


@dataclass(frozen=True, slots=True)
class Gap:
    """Seconds ``[start, end)`` of the recording with no audio, and why (one line).
    ``end`` None: the audio stops at ``start`` and how long the call went on is not
    known — an interrupted recording (a crash keeps every chunk but the one being
    filled, and the call's own end was never heard)."""

    start: float
    end: float | None = None
    reason: str = "recording interrupted"

    @property
    def text(self) -> str:
        return f"[no audio{'' if self.end is not None else ' from here'}: {self.reason}]"

    @property
    def stamp(self) -> str:
        """Its time in the plain text: the span, or where the audio stops."""
        end = "" if self.end is None else timestamp(self.end)
        return f"{timestamp(self.start)}-{end}"

    @property
    def shown_until(self) -> float:
        """The end of its WebVTT cue: the gap's end, or :data:`OPEN_GAP_SHOWN_S` on
        (a cue needs an end after its start; the text says the end is unknown)."""
        return self.start + OPEN_GAP_SHOWN_S if self.end is None else self.end


OPEN_GAP_SHOWN_S = 2.0


@dataclass(frozen=True, slots=True)
class _Entry:
    """A cue or a gap, as both formats write it."""

    start: float
    end: float
    stamp: str
    speaker: Speaker | None
    text: str


@dataclass(frozen=True, slots=True)
class Transcript:
    """Cues and gaps, each in time order; ``speakers`` are the channels transcribed."""

    cues: tuple[Cue, ...]
    gaps: tuple[Gap, ...] = ()
    speakers: tuple[Speaker, ...] = (CALLER, CALL_TAKER)

    def _entries(self) -> list[_Entry]:
        """Cues and gaps merged by start time."""
        entries = [_Entry(c.start, c.end, timestamp(c.start), c.speaker, c.text) for c in self.cues]
        entries += [_Entry(g.start, g.shown_until, g.stamp, None, g.text) for g in self.gaps]
        return sorted(entries, key=lambda entry: (entry.start, entry.end))

    def text(self) -> str:
        """One line an entry: ``[HH:MM:SS.mmm] Speaker: words``; a gap
        ``[start-end] [no audio: why]``."""
        lines = []
        for entry in self._entries():
            said = entry.text if entry.speaker is None else f"{entry.speaker}: {entry.text}"
            lines.append(f"[{entry.stamp}] {said}\n")
        return "".join(lines)

    def webvtt(self) -> str:
        """A WebVTT file: a cue an entry, the speaker as a voice span (``<v Caller>``)."""
        blocks = ["WEBVTT\n"]
        for entry in self._entries():
            body = _escape(entry.text)
            voiced = body if entry.speaker is None else f"<v {entry.speaker}>{body}"
            blocks.append(f"{timestamp(entry.start)} --> {timestamp(entry.end)}\n{voiced}\n")
        return "\n".join(blocks)


def timestamp(seconds: float) -> str:
    """``HH:MM:SS.mmm``, as WebVTT writes a cue time."""
    millis = max(round(seconds * 1000), 0)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}.{rest % 1000:03d}"


def _escape(text: str) -> str:
    """Cue text on one line (a blank line would end the cue) with WebVTT's markup
    characters escaped (so no ``-->`` either)."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return " ".join(escaped.split())
