"""The writer thread's own state of one open recording and its open segment (see
:mod:`proxy.storage.writer`): kept apart so the writer module stays about the queue and
the thread."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..media.g711 import CODEC_TAGS, WIRE_SILENCE, wire_decode, wire_samples
from .segment import Encoding, SegmentEncoder, ulaw_encode

#: What ``submit`` takes: ``(n, 2)`` wire samples (uint16) or linear audio (int16).
Block = npt.NDArray[np.integer[Any]]


@dataclass
class OpenRecording:
    """The thread side of one open recording."""

    rid: uuid.UUID
    path: Path
    data_key: bytes
    encoding: Encoding
    segment_chunks: int
    start_time_ms: int
    key_sha256: str
    encoder: SegmentEncoder | None = None  # the open segment's (None between segments)
    segment: OpenSegment | None = None
    segment_index: int = -1
    next_frame: int = 0  # frames sealed so far
    gap_filled: int = 0  # dropped frames already written as silence
    pending: list[Block] = field(default_factory=list)  # in the stored form (see _stored)
    pending_frames: int = 0
    codecs: tuple[int, int] = (CODEC_TAGS["PCMU"], CODEC_TAGS["PCMU"])  # the last chunk's
    segments: int = 0  # totals over finished segments
    frames: int = 0
    bytes: int = 0

    def stored(self, block: Block) -> Block:
        """A submitted block in the form this recording's encoder seals: wire samples for
        G711 (linear audio as µ-law), int16 for PCM16."""
        wire = block.dtype == np.uint16
        if self.encoding is Encoding.PCM16:
            return wire_decode(block.view(np.uint16)) if wire else block
        return block if wire else wire_samples(ulaw_encode(block.view(np.int16)), "PCMU")

    def silence(self, frames: int) -> Block:
        """``frames`` of filled silence in the stored form."""
        if self.encoding is Encoding.PCM16:
            return np.zeros((frames, 2), dtype=np.int16)
        return np.full((frames, 2), WIRE_SILENCE, dtype=np.uint16)


@dataclass
class OpenSegment:
    """The open segment: what has been wholly appended to it, hashed as it went."""

    name: str
    first_frame: int
    hash: Any = field(default_factory=hashlib.sha256)  # hashlib's type is private
    chunks: int = 0
    frames: int = 0
    bytes: int = 0
