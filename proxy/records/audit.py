"""Checking the audit chain and anchoring its head (P5, P20).

:func:`check_and_anchor` walks the chain, checks it against the anchor file (every
anchored head must still be in the chain, so cutting off the last rows is caught) and,
when the chain is intact and its head moved, appends the head to the anchor file.
``recproxy audit verify`` checks the whole chain against every anchor;
:class:`AuditAnchoring` does it in ``serve`` every ``audit.anchor_interval_seconds``,
walking only the entries after the last anchor (the anchored entry itself must still be
there, unchanged), and publishes an :class:`~proxy.events.AuditChecked` for metrics.

The anchor file is read and written in a thread: never file I/O on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..events import AuditChecked, Publish, discard
from ..storage.catalog.anchor import (
    Anchor,
    AnchorFileError,
    anchor_broken,
    append_anchor,
    read_anchors,
)
from ..storage.catalog.audit import AuditLog, ChainHead

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AuditCheck:
    """What a check found: the chain's length and head, the first broken sequence
    number and why (``None`` when intact), and whether the head was anchored now."""

    count: int
    head: ChainHead
    broken_at: int | None = None
    why: str | None = None
    anchored: bool = False

    @property
    def intact(self) -> bool:
        return self.broken_at is None


async def check_and_anchor(
    audit: AuditLog,
    anchors_file: Path,
    now: datetime,
    *,
    since_last_anchor: bool = False,
    anchor: bool = True,
) -> AuditCheck:
    """Check the chain against the anchor file and (unless not ``anchor``: the records
    service's check, which only reads) anchor an intact head that moved.
    ``since_last_anchor``: walk only past the last anchor (which must still be there).
    Raises :class:`AnchorFileError` when the anchor file cannot be read or written."""
    anchors = await asyncio.to_thread(read_anchors, anchors_file)
    last = anchors[-1] if anchors else None
    verdict = await audit.verify(last.head if since_last_anchor and last else None)
    if not verdict.intact:
        return AuditCheck(verdict.count, verdict.head, verdict.broken_at, verdict.why)
    checked = [] if since_last_anchor else anchors
    digests = await audit.digests(each.head.seq for each in checked)
    broken = anchor_broken(checked, verdict.count, digests)
    if broken is not None:
        return AuditCheck(verdict.count, verdict.head, *broken)
    moved = anchor and verdict.head.seq > 0 and (last is None or last.head != verdict.head)
    if moved:
        await asyncio.to_thread(append_anchor, anchors_file, Anchor(now, verdict.head))
    return AuditCheck(verdict.count, verdict.head, anchored=moved)


class AuditAnchoring:
    """``serve``'s periodic check: at start and then every ``interval`` seconds, check
    the entries since the last anchor and anchor the head.  A failed check (a break, or
    an anchor file it cannot use) is logged as an error and published, never raised; a
    catalog that cannot be read now gives no verdict and is tried again next time."""

    def __init__(
        self,
        audit: AuditLog,
        anchors_file: Path,
        interval: float,
        *,
        clock: Callable[[], datetime],
        publish: Publish = discard,
    ) -> None:
        self._audit = audit
        self._file = anchors_file
        self._interval = interval
        self._clock = clock
        self._publish = publish
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="audit-anchoring")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def check_once(self) -> AuditCheck | None:
        """One check; ``None`` when it could not run (logged, published as failed)."""
        try:
            check = await check_and_anchor(
                self._audit, self._file, self._clock(), since_last_anchor=True
            )
        except AnchorFileError as exc:
            log.error("audit anchoring failed: %s", exc)
            self._publish(AuditChecked(None, intact=False))
            return None
        if not check.intact:
            log.error("AUDIT CHAIN BROKEN at entry %s: %s", check.broken_at, check.why)
        self._publish(AuditChecked(check.count, check.intact, check.broken_at))
        return check

    async def _run(self) -> None:
        while True:
            try:
                await self.check_once()
            except Exception:  # the catalog busy or unavailable: no verdict, try next time
                log.exception("audit anchoring could not run")
            await asyncio.sleep(self._interval)
