"""A recording's waveform for the console's player: both channels drawn as an SVG made
on the server from the audio as it is decrypted, with a transferred call's parts marked.

Why on the server and as peaks: the browser never gets more than one minimum and one
maximum per pixel column (a few kilobytes however long the call), no audio is kept in
memory beyond one decoded segment, and nothing is written to disk.  The page shows it
with ``<img src=...svg>``, which the console's CSP allows (``img-src 'self'``) and in
which no script runs.

:class:`Peaks` is pure: 16-bit stereo PCM bytes in (in pieces of any size), per-column
minima and maxima out.  :func:`svg` draws them: the caller on top, the call taker
below, a labelled line where each later part begins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import numpy.typing as npt

COLUMNS = 600  # pixel columns of the drawing (its viewBox width)
_FRAME_BYTES = 4  # 16-bit PCM, two channels
_HALF = 60.0  # height of one channel's band
_LABEL = 16.0  # room above the bands for the parts' labels
CHANNELS = ("Caller", "Call taker")


@dataclass(frozen=True)
class Boundary:
    """Where a part of the call begins: its frame in the drawn audio, and its label."""

    frame: int
    label: str


class Peaks:
    """The minimum and maximum sample of each channel in each of ``columns`` columns of
    ``frames`` frames, fed with :meth:`feed`."""

    def __init__(self, frames: int, columns: int = COLUMNS) -> None:
        self.frames = frames
        self.columns = max(1, min(columns, frames)) if frames else 1
        self.low = np.zeros((self.columns, 2), dtype=np.int32)
        self.high = np.zeros((self.columns, 2), dtype=np.int32)
        self._seen = 0
        self._carry = b""

    def feed(self, data: bytes) -> None:
        """The next PCM bytes (a frame may be split between two calls)."""
        data = self._carry + data
        whole = len(data) - len(data) % _FRAME_BYTES
        self._carry = data[whole:]
        if not whole or self._seen >= self.frames:
            return
        samples = np.frombuffer(data[:whole], dtype="<i2").reshape(-1, 2)
        samples = samples[: self.frames - self._seen].astype(np.int32)
        index = np.arange(self._seen, self._seen + len(samples), dtype=np.int64)
        column = index * self.columns // self.frames
        starts = np.flatnonzero(np.diff(column, prepend=-1))
        where = column[starts]
        self.low[where] = np.minimum(self.low[where], np.minimum.reduceat(samples, starts))
        self.high[where] = np.maximum(self.high[where], np.maximum.reduceat(samples, starts))
        self._seen += len(samples)

    def x(self, frame: int) -> float:
        """The drawing's x of ``frame``."""
        return round(frame * self.columns / self.frames, 1) if self.frames else 0.0


def _band(low: npt.NDArray[np.int32], high: npt.NDArray[np.int32], middle: float) -> str:
    """One channel's path: a vertical stroke from minimum to maximum in each column."""
    scale = _HALF / 2 / 32768
    return " ".join(
        f"M{column + 0.5} {middle - top * scale:.1f}V{middle - bottom * scale + 0.5:.1f}"
        for column, (bottom, top) in enumerate(zip(low.tolist(), high.tolist(), strict=True))
    )


def svg(peaks: Peaks, boundaries: Sequence[Boundary], title: str) -> str:
    """The drawing of ``peaks``, with a labelled line at each of ``boundaries``."""
    width, height = peaks.columns, _LABEL + 2 * _HALF
    bands = "".join(
        f'<text x="2" y="{_LABEL + n * _HALF + 12:.0f}" font-size="11" fill="#4a5560">'
        f"{escape(name)}</text>"
        f'<path d="{_band(peaks.low[:, n], peaks.high[:, n], _LABEL + (n + 0.5) * _HALF)}" '
        f'stroke="{colour}" stroke-width="1" fill="none"/>'
        for n, (name, colour) in enumerate(zip(CHANNELS, ("#0b5cad", "#1d6b2f"), strict=True))
    )
    marks = "".join(
        f'<line x1="{peaks.x(b.frame)}" y1="0" x2="{peaks.x(b.frame)}" y2="{height}" '
        f'stroke="#a4161a" stroke-width="2"/>'
        f'<text x="{peaks.x(b.frame) + 3}" y="12" font-size="11" fill="#a4161a">'
        f"{escape(b.label)}</text>"
        for b in boundaries
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height:.0f}" '
        f'preserveAspectRatio="none" role="img" aria-label={quoteattr(title)}>'
        f"<title>{escape(title)}</title>"
        f'<rect width="{width}" height="{height:.0f}" fill="#ffffff"/>'
        f'<line x1="0" y1="{_LABEL + _HALF}" x2="{width}" y2="{_LABEL + _HALF}" '
        f'stroke="#8a949e" stroke-width="1"/>{bands}{marks}</svg>'
    )
