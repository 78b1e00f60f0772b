"""Recordings the writer has accepted but not yet written: held in memory until their
catalog row is committed.

Why: a recording's files must never exist on disk before the catalog row that names
them.  Files without a row are audio that retention never deletes and nobody can find;
a process killed between the files and the row would leave exactly that.  So the writer
keeps a recording's opening and its queued blocks here (not on disk) until the loop says
the row is committed, and only then creates the folder, the wrapped key and the segments
and writes what it held.  The bridge and the recording's first seconds wait for nothing.

The bound, ``hold_seconds`` of wall time per recording (blocks arrive in real time, so
that is about as many seconds of audio: 32 kB/s of ``(n, 2)`` uint16 samples, 320 kB at
the default 10 s): when the row has not come by then (the catalog is locked or down and
the journal is retrying), the recording is **written ahead of its row** — logged and
counted (``WriterMetrics.recordings_written_ahead``).  Holding on would lose the audio
for certain if the catalog stays down past the call, or if the process dies (memory is
not durable); writing ahead risks only files without a row if the process dies before
the row lands, and start-up recovery reports exactly those (a folder no row names), so an
operator learns of them.  A certain loss is worse than a reported, possible orphan.

A sans-IO core: it takes ``now`` and holds opaque queue items; the writer thread owns it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")


@dataclass
class _Held(Generic[Item]):
    opening: Item
    deadline: float
    items: list[Item] = field(default_factory=list)


class HoldingArea(Generic[Item]):
    """The held recordings by id, each with its opening item, its later items in order,
    and the moment it is written ahead of its row."""

    def __init__(self, hold_seconds: float) -> None:
        if hold_seconds < 0:
            raise ValueError("hold_seconds must not be negative")
        self.hold_seconds = hold_seconds
        self._held: dict[uuid.UUID, _Held[Item]] = {}

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, rid: uuid.UUID) -> bool:
        return rid in self._held

    def hold(self, rid: uuid.UUID, opening: Item, now: float) -> None:
        """Start holding a recording from ``now``."""
        self._held[rid] = _Held(opening, now + self.hold_seconds)

    def add(self, rid: uuid.UUID, item: Item) -> bool:
        """Keep ``item`` after the others of its recording; False if it is not held."""
        held = self._held.get(rid)
        if held is None:
            return False
        held.items.append(item)
        return True

    def release(self, rid: uuid.UUID) -> list[Item] | None:
        """Stop holding: the opening then every held item, in order (None if not held)."""
        held = self._held.pop(rid, None)
        return None if held is None else [held.opening, *held.items]

    def expired(self, now: float) -> list[uuid.UUID]:
        """The recordings held until ``now`` or longer, oldest first."""
        return [rid for rid, held in self._held.items() if held.deadline <= now]

    def held(self) -> list[uuid.UUID]:
        return list(self._held)

    def timeout(self, now: float) -> float | None:
        """Seconds until the next recording is due to be written ahead (None if none)."""
        if not self._held:
            return None
        return max(0.0, min(held.deadline for held in self._held.values()) - now)
