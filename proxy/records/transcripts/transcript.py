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
    """Seconds ``[start, end)`` of the recording with no audio, and why (one line)."""

    start: float
    end: float
    reason: str = "recording interrupted"

    @property
    def text(self) -> str:
        return f"[no audio: {self.reason}]"


@dataclass(frozen=True, slots=True)
class Transcript:
    """Cues and gaps, each in time order; ``speakers`` are the channels transcribed."""

    cues: tuple[Cue, ...]
    gaps: tuple[Gap, ...] = ()
    speakers: tuple[Speaker, ...] = (CALLER, CALL_TAKER)

    def entries(self) -> list[tuple[float, float, str | None, str]]:
        """Cues and gaps merged by start time: ``(start, end, speaker or None, text)``."""
        rows: list[tuple[float, float, str | None, str]] = [
            (cue.start, cue.end, cue.speaker, cue.text) for cue in self.cues
        ]
        rows += [(gap.start, gap.end, None, gap.text) for gap in self.gaps]
        return sorted(rows, key=lambda row: (row[0], row[1]))

    def text(self) -> str:
        """One line an entry: ``[HH:MM:SS.mmm] Speaker: words``."""
        lines = []
        for start, end, speaker, words in self.entries():
            said = words if speaker is None else f"{speaker}: {words}"
            stamp = timestamp(start) if speaker else f"{timestamp(start)}-{timestamp(end)}"
            lines.append(f"[{stamp}] {said}")
        return "".join(f"{line}\n" for line in lines)

    def webvtt(self) -> str:
        """A WebVTT file: a cue an entry, the speaker as a voice span (``<v Caller>``)."""
        blocks = ["WEBVTT\n"]
        for start, end, speaker, words in self.entries():
            body = _escape(words) if speaker is None else f"<v {speaker}>{_escape(words)}"
            blocks.append(f"{timestamp(start)} --> {timestamp(end)}\n{body}\n")
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
