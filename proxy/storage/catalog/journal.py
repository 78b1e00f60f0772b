"""Catalog writes the catalog could not take now, kept in order and retried.

When the catalog does not answer (``CatalogUnavailableError``: locked past its busy
timeout, read-only, disk full), a recording's metadata is not lost: the write goes into
this journal, in memory, and one task retries the oldest entry every ``retry_seconds``
until the catalog takes it, then the rest in order.  While anything waits, new writes
queue behind it, so the writes about one recording land in the order they were made.

The journal is bounded (``limit`` entries).  On overflow the new write is dropped,
counted (``dropped``), logged as an error naming it, and ``write`` raises
``JournalFullError``, so the caller knows it was not queued (and can keep what it meant
to write, or give it up, itself).  A process that ends with entries waiting loses them;
start-up recovery catalogues what is on disk for every recording the catalog still
shows ``recording``, and reports recording folders no row names.

A journalled write that later fails for good (refused, not "unavailable") is logged and
skipped, and the rest go on; its caller has long returned, so a write that must not be
lost whole puts its own fallback inside ``write`` (the recording service's transaction
1 writes the call without its recording when the whole is refused).  What such a
failure loses is what that fallback could not write.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable

from .errors import CatalogError, CatalogUnavailableError

log = logging.getLogger(__name__)

Write = Callable[[], Awaitable[object]]


class JournalFullError(CatalogError):
    """The catalog could not take a write now and the journal was full: it was dropped,
    not queued."""


class CatalogJournal:
    """See the module docstring."""

    def __init__(self, *, limit: int = 1000, retry_seconds: float = 1.0) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.retry_seconds = retry_seconds
        self.failures = 0  # writes the catalog refused at least once
        self.dropped = 0  # writes lost because the journal was full
        self._queue: collections.deque[tuple[str, Write]] = collections.deque()
        self._drain: asyncio.Task[None] | None = None
        self._empty = asyncio.Event()
        self._empty.set()

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def write(self, what: str, write: Write) -> bool:
        """Make ``write`` now (True), or journal it to be retried (False).  ``what``
        names it in log lines.  Raises ``JournalFullError`` when it had to be journalled
        and the journal was full (dropped); other errors than an unavailable catalog
        propagate."""
        if not self._queue:
            try:
                await write()
                return True
            except CatalogUnavailableError as exc:
                log.warning("catalog write journalled (%s): %s", what, exc)
        self.failures += 1
        if len(self._queue) >= self.limit:
            self.dropped += 1
            log.error("catalog journal full (%d): dropped %s", self.limit, what)
            raise JournalFullError(f"catalog journal full ({self.limit}): dropped {what}")
        self._queue.append((what, write))
        self._empty.clear()
        if self._drain is None or self._drain.done():
            self._drain = asyncio.create_task(self._run(), name="catalog-journal")
        return False

    async def wait_empty(self, timeout: float) -> bool:
        """Wait until every journalled write has landed; False on timeout."""
        try:
            await asyncio.wait_for(self._empty.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Stop retrying (shutdown); what is left is logged and lost (see above)."""
        if self._drain is not None:
            self._drain.cancel()
            await asyncio.gather(self._drain, return_exceptions=True)
        if self._queue:
            log.error("catalog journal: %d write(s) never landed", len(self._queue))

    async def _run(self) -> None:
        queue = self._queue
        while queue:
            what, write = queue[0]
            try:
                await write()
            except CatalogUnavailableError:
                await asyncio.sleep(self.retry_seconds)
                continue
            except Exception:  # not retryable: say so and go on with the rest
                log.exception("catalog journal: %s failed for good", what)
            else:
                log.info("catalog journal: %s landed", what)
            queue.popleft()
        self._empty.set()
