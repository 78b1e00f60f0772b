"""A call's mailbox: the events the TU routes to one call, awaited without a task.

An ``asyncio.Queue`` read through ``asyncio.wait_for`` (Python 3.11 wraps the read in a
new task) or through ``asyncio.wait`` on ``ensure_future(queue.get())`` costs a task,
its wake-ups and a cancellation for every event a call waits for.  The call flow has one
reader, so one future at a time is enough: ``put_nowait`` resolves it, a deadline is one
``call_later`` handle, and waiting "until an event or ``done``" is a done-callback on
``done``.  An event already in the box is taken without suspending at all.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Mailbox(Generic[T]):
    """First in, first out, unbounded; one reader (the call's task), any writers."""

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        _wake(self._waiter)

    def pop(self) -> T | None:
        """The oldest item, or None if the box is empty."""
        return self._items.popleft() if self._items else None

    async def get(self, timeout: float | None = None) -> T | None:
        """The oldest item, waiting up to ``timeout`` seconds (None: for ever) for one;
        None if the time passed first."""
        if not self._items:
            await self.wait(timeout=timeout)
        return self.pop()

    async def wait(
        self, *, until: asyncio.Future[Any] | None = None, timeout: float | None = None
    ) -> None:
        """Return once an item is in the box, ``until`` is done or ``timeout`` passed."""
        if self._items or (until is not None and until.done()):
            return
        if self._waiter is not None:
            raise RuntimeError("a mailbox has one reader")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        timer = loop.call_later(timeout, _wake, waiter) if timeout is not None else None

        def on_done(_: asyncio.Future[Any]) -> None:
            _wake(waiter)

        if until is not None:
            until.add_done_callback(on_done)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
            if until is not None:
                until.remove_done_callback(on_done)


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
