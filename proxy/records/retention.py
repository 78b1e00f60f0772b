"""Deleting recordings whose retention period is over (P15), by crypto-shredding.

One recording is deleted in four steps, in this order, each safe to run again:

1. the catalog marks it ``deleting`` (one transaction that checks, again, that it is
   due and no hold is active): from here on it is never readable;
2. the store destroys its wrapped key and makes that durable: the audio is now
   unreadable for good, whatever happens next;
3. the store removes its segment files;
4. the catalog marks it ``deleted`` with when and why, and appends the
   ``recording.delete`` audit entry, in one transaction.

A process killed between any two steps leaves a row in ``deleting``; the next sweep
finds it due and resumes at step 2.  So there is never a row that looks readable over
missing files, and never files without a row.

A sweep takes the due recordings in bounded batches (``batch_size``) from the catalog,
does the store's work in a thread (``asyncio.to_thread``) so the event loop that relays
RTP is never blocked, and ends with one ``retention.sweep`` audit entry holding its
counts.  ``dry_run`` lists what would go and changes nothing.  The time is injected
(``as_of``, ``clock``), so tests travel in time without sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..config import RetentionSettings
from ..events import Publish, RecordingDeleted, RetentionSwept, discard
from ..recording_state import RecordingState
from ..storage.catalog import CatalogError, Due, Expired, RetentionCounts, format_utc
from ..storage.catalog.audit import AuditLog
from ..storage.catalog.retention import RetentionRepository
from ..storage.catalog.values import utc_now
from ..storage.store import SegmentStore, shred_key

log = logging.getLogger(__name__)

#: The actor of the sweeper that runs inside ``serve``.
SWEEPER_ACTOR = "retention"
SWEEP_ACTION = "retention.sweep"

#: ``after_step(step, recording_id)``: called after each of the four steps.
StepHook = Callable[[int, str], None]
#: ``progress(done, total)``: called after each recording of a sweep.
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class SweepReport:
    """What a sweep did (or, ``dry_run``, would do), and where every recording stands
    after it."""

    as_of: datetime
    dry_run: bool
    deleted: tuple[str, ...]  # ids deleted, or that would be
    failed: tuple[str, ...]  # ids left for the next sweep (logged)
    standing: RetentionCounts
    seconds: float

    def summary(self) -> str:
        """One line: ``deleted 3, kept 1 held, 5 not yet expired (as of ...)``."""
        verb = "would delete" if self.dry_run else "deleted"
        line = (
            f"{verb} {len(self.deleted)}, kept {self.standing.held} held, "
            f"{self.standing.retained} not yet expired"
        )
        if self.failed:
            line += f", {len(self.failed)} failed (the next sweep retries)"
        return f"{line} (as of {format_utc(self.as_of)}, {self.seconds:.2f} s)"


@dataclass(frozen=True)
class RetentionSweeper:
    """Sweeps one catalog and one segment store (see the module docstring).  ``actor``
    is who the audit entries name: ``retention`` in ``serve``, the account on the
    command line.  ``after_step`` is for tests that stop the process between steps."""

    recordings: RetentionRepository
    audit: AuditLog
    store: SegmentStore
    recordings_dir: Path
    policy: RetentionSettings
    actor: str = SWEEPER_ACTOR
    publish: Publish = discard
    clock: Callable[[], datetime] = utc_now
    after_step: StepHook | None = field(default=None, repr=False)

    def due_at(self, as_of: datetime) -> Due:
        return Due(as_of, self.policy.ended_by(as_of))

    async def sweep(
        self,
        as_of: datetime | None = None,
        *,
        dry_run: bool = False,
        progress: Progress | None = None,
    ) -> SweepReport:
        """Delete every recording due at ``as_of`` (now by default) that no hold keeps."""
        started = time.monotonic()
        due = self.due_at(self.clock() if as_of is None else as_of)
        before = await self.recordings.counts(due)
        total = before.expired + before.deleting
        deleted: list[str] = []
        failed: list[str] = []
        after: str | None = None
        visited = 0
        while True:
            batch = await self.recordings.due(due, after=after, limit=self.policy.batch_size)
            for item in batch:
                outcome = True if dry_run else await self._delete(item, due)
                if outcome is not None:
                    (deleted if outcome else failed).append(item.recording_id)
                visited += 1
                if progress is not None:
                    progress(visited, max(total, visited))
            if len(batch) < self.policy.batch_size:
                break
            after = batch[-1].recording_id
        standing = before if dry_run else await self.recordings.counts(due)
        seconds = time.monotonic() - started
        report = SweepReport(due.as_of, dry_run, tuple(deleted), tuple(failed), standing, seconds)
        if not dry_run:
            await self.audit.append(
                actor=self.actor,
                action=SWEEP_ACTION,
                detail={
                    "as_of": format_utc(due.as_of),
                    "deleted": len(deleted),
                    "failed": len(failed),
                    "held": standing.held,
                    "not_expired": standing.retained,
                },
            )
            self.publish(RetentionSwept(len(deleted), len(failed), seconds, standing.as_dict()))
        return report

    async def _delete(self, item: Expired, due: Due) -> bool | None:
        """The four steps for one recording: True once deleted, False (logged) if a step
        failed, None if a hold or another sweep got there first.  Another node's sweep
        on the shared catalog and store (issue 20) may run the same steps at the same
        time: a file it removed first, or a deletion it finished first, is its, not a
        failure of ours."""
        rid = item.recording_id
        folder = self.recordings_dir / item.directory
        try:
            resumed = item.state is RecordingState.DELETING  # an earlier sweep began it
            if not resumed and not await self.recordings.begin_deletion(rid, due):
                return None
            self._step(1, rid)
            await asyncio.to_thread(shred_key, self.store, folder)
            self._step(2, rid)
            await asyncio.to_thread(self.store.delete, folder)
            self._step(3, rid)
            reason = f"retention: expired {item.expires_at:%Y-%m-%d}"
            if not await self.recordings.finish_deletion(
                rid, at=self.clock(), actor=self.actor, reason=reason
            ):
                return None  # another sweep finished it (and audited it) first
            self._step(4, rid)
        except FileNotFoundError as exc:
            log.info("recording %s: another sweep is deleting it (%s)", rid, exc)
            return None
        except (OSError, CatalogError) as exc:
            log.error("recording %s not deleted (the next sweep retries): %s", rid, exc)
            return False
        self.publish(RecordingDeleted(rid, self.actor, reason))
        return True

    def _step(self, step: int, recording_id: str) -> None:
        if self.after_step is not None:
            self.after_step(step, recording_id)


async def sweep_every(sweeper: RetentionSweeper, interval_seconds: float) -> None:
    """``serve``'s sweeper task: a sweep at start and then every ``interval_seconds``,
    until cancelled.  A sweep that fails is logged; the next one tries again."""
    while True:
        try:
            report = await sweeper.sweep()
        except Exception:  # the task must outlive a bad sweep: the next one retries
            log.exception("retention sweep failed (the next one retries)")
        else:
            if report.deleted or report.failed:
                log.info("retention sweep: %s", report.summary())
        await asyncio.sleep(interval_seconds)
