"""A notice prompt, as the call plays it and its consent receipt names it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Prompt:
    """A notice prompt: 8 kHz PCM, and what identifies it in consent receipts."""

    pcm: object  # numpy int16 array (kept opaque here)
    sha256: str
    duration_ms: int
    name: str
