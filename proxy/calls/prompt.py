"""A notice prompt, as the call plays it and its consent receipt names it."""

from __future__ import annotations

from dataclasses import dataclass

from ..media.announcer import PromptAudio


@dataclass(frozen=True)
class Prompt:
    """A notice prompt: its audio (encoded once, when the configuration is loaded, and
    shared by every call), and what identifies it in consent receipts."""

    audio: PromptAudio
    sha256: str
    duration_ms: int
    name: str
