"""HTTP Range requests (RFC 9110 §14) for streamed audio: one byte range of a
``Range: bytes=...`` header, the only kind a media player needs.

``parse_range`` is pure and answers ``None`` whenever the whole content is to be sent
(RFC 9110 lets a server ignore Range): no header, another unit, a malformed or invalid
range set (``bytes=5-2``), or several ranges (a multipart answer buys a player nothing).
A range that is well formed but lies outside the content is *unsatisfiable* (416): that
is known only once the content's length is, in :meth:`ByteRange.bounds`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...records.errors import RangeNotSatisfiable

_ONE_RANGE = re.compile(r"bytes[ \t]*=[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)[ \t]*", re.IGNORECASE)


@dataclass(frozen=True)
class ByteRange:
    """``first-last`` (``last`` None: to the end), or with ``first`` None the last
    ``suffix`` bytes."""

    first: int | None
    last: int | None = None
    suffix: int | None = None

    @property
    def continuation(self) -> bool:
        """Whether the range starts past the first byte: a later request of a listening
        already begun (a player seeking, or reading on)."""
        return self.first != 0

    def bounds(self, length: int) -> tuple[int, int | None]:
        """``(start, end)`` for :meth:`~proxy.records.playback.Rendering.chunks` in
        content of ``length`` bytes; a suffix of none is unsatisfiable (416)."""
        if self.first is not None:
            return self.first, self.last
        if not self.suffix:
            raise RangeNotSatisfiable("a range of the last 0 bytes is empty", length)
        return max(0, length - self.suffix), None


def parse_range(header: str | None) -> ByteRange | None:
    """The one byte range ``header`` asks for, or ``None``: send the whole content."""
    if header is None:
        return None
    found = _ONE_RANGE.fullmatch(header.strip())
    if found is None:
        return None
    first, last = found.groups()
    if not first:
        return ByteRange(None, suffix=int(last)) if last else None
    if last and int(last) < int(first):
        return None
    return ByteRange(int(first), int(last) if last else None)
