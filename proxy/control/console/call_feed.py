"""The call takers' live feed: the domain events a call taker's page shows (a call
started, bridged, transferred or ended, its recording switched, a code keyed on the
phone), fanned out to every open page.

The bus calls :meth:`CallFeed.publish` on the publisher's turn of the event loop (a
call's task, the recording switch), so it must never wait: each open page has its own
bounded queue and gets the change with ``put_nowait``.  A page whose queue is full is
not read fast enough (a stalled browser, a client that never reads): it is dropped —
taken off the feed and told to end — rather than letting changes pile up or slowing
the calls down.  Which changes a page may see (its user's calls only) is decided where
the page is served (:mod:`.calltaker_pages`), off the publisher's path.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ...events import (
    CallBridged,
    CallEnded,
    CallStarted,
    CallTransferred,
    EventBus,
    RecordingSwitched,
)

#: Changes a page may fall behind by before it is dropped.
QUEUE_SIZE = 64

_DONE = {"stop": "stopped", "discard": "stopped and deleted", "resume": "resumed"}


@dataclass(frozen=True, slots=True)
class Change:
    """One change to one call, as a page shows it: ``kind`` names the SSE event
    (started, bridged, transferred, ended, recording, dtmf); ``note`` says what
    happened in words, when there is more to say than the call's new state."""

    kind: str
    call_id: str
    note: str = ""


def change_of(event: object) -> Change | None:
    """The page's view of a domain event (``None``: not one a page shows)."""
    match event:
        case CallStarted(call_id=call_id):
            return Change("started", call_id)
        case CallBridged(call_id=call_id):
            return Change("bridged", call_id)
        case CallTransferred(call_id=call_id, outcome=outcome, target_operator=target):
            return Change("transferred", call_id, f"Transfer to {target} {outcome}.")
        case CallEnded(call_id=call_id):
            return Change("ended", call_id, "The call ended.")
        case RecordingSwitched(call_id=call_id, action=action, actor=actor, channel=channel):
            done = _DONE.get(action, action)
            if channel == "dtmf":
                return Change("dtmf", call_id, f"Code keyed on the phone: recording {done}.")
            reason = f": {event.reason}" if event.reason else ""
            return Change("recording", call_id, f"Recording {done} by {actor}{reason}")
    return None


class Subscription:
    """One open page's queue of changes; ``None`` in it means the page was dropped."""

    def __init__(self, size: int) -> None:
        self._queue: asyncio.Queue[Change | None] = asyncio.Queue(size + 1)
        self._size = size
        self.dropped = False

    def offer(self, change: Change) -> bool:
        """Queue ``change``; ``False`` (and the page is dropped) when the queue is full."""
        if self.dropped:
            return False
        if self._queue.qsize() >= self._size:
            self.end()
            return False
        self._queue.put_nowait(change)
        return True

    def end(self) -> None:
        """Tell the page to end (it fell behind, or the listener is closing)."""
        if not self.dropped:
            self.dropped = True
            self._queue.put_nowait(None)  # the one slot kept for this

    async def next(self) -> Change | None:
        """The next change, or ``None`` once the page was dropped."""
        return await self._queue.get()


class CallFeed:
    """The fan-out: :meth:`subscribe` it to the bus once, :meth:`open` one
    :class:`Subscription` per page and :meth:`close` it when the page goes."""

    def __init__(self, queue_size: int = QUEUE_SIZE) -> None:
        self._queue_size = queue_size
        self._pages: set[Subscription] = set()
        self.dropped = 0  # pages dropped for not keeping up

    def subscribe(self, bus: EventBus) -> None:
        for kind in (CallStarted, CallBridged, CallTransferred, CallEnded, RecordingSwitched):
            bus.subscribe(kind, self.publish)

    def publish(self, event: object) -> None:
        change = change_of(event)
        if change is None:
            return
        for page in list(self._pages):
            if not page.offer(change):
                self._pages.discard(page)
                self.dropped += 1

    def open(self) -> Subscription:
        page = Subscription(self._queue_size)
        self._pages.add(page)
        return page

    def close(self, page: Subscription) -> None:
        self._pages.discard(page)

    def end_all(self) -> None:
        """End every open page's stream (the listener is closing: none holds it open)."""
        for page in self._pages:
            page.end()
        self._pages.clear()

    @property
    def pages(self) -> int:
        return len(self._pages)
