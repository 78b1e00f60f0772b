"""The call takers' live feed (issue 17) without a browser: which domain events a page
sees and in what words, and that a page which falls behind is dropped instead of
holding the publisher (the call) up or growing without bound."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from proxy.control.console.call_feed import CallFeed, Change, change_of
from proxy.events import (
    CallEnded,
    CallStarted,
    EventBus,
    RecordingSwitched,
    SegmentSealed,
)


def switched(channel: str, action: str = "stop", reason: str | None = "asked") -> object:
    return RecordingSwitched("rec-1", "call-1", action, "sam", channel, reason)


def test_the_changes_a_page_shows_say_what_happened() -> None:
    assert change_of(CallStarted("call-1", datetime.now(UTC), "inbound")) == Change(
        "started", "call-1"
    )
    assert change_of(switched("api")) == Change(
        "recording", "call-1", "Recording stopped by sam: asked"
    )
    assert change_of(switched("api", "discard")) == Change(
        "recording", "call-1", "Recording stopped and deleted by sam: asked"
    )
    assert change_of(switched("dtmf", "resume")) == Change(
        "dtmf", "call-1", "Code keyed on the phone: recording resumed."
    )
    assert change_of(CallEnded("call-1", "completed", "caller")).kind == "ended"  # type: ignore[union-attr]
    assert change_of(SegmentSealed("rec-1", 0, 1, 1, "00", "/x")) is None


def test_each_open_page_gets_every_change_in_order() -> None:
    async def run() -> list[list[Change | None]]:
        bus, feed = EventBus(), CallFeed(queue_size=4)
        feed.subscribe(bus)
        pages = [feed.open(), feed.open()]
        bus.publish(switched("api"))
        bus.publish(CallEnded("call-1", "completed", "caller"))
        return [[await page.next(), await page.next()] for page in pages]

    for got in asyncio.run(run()):
        assert [change.kind if change else None for change in got] == ["recording", "ended"]


def test_a_page_that_falls_behind_is_dropped_and_the_others_go_on() -> None:
    async def run() -> None:
        bus, feed = EventBus(), CallFeed(queue_size=3)
        feed.subscribe(bus)
        slow, quick = feed.open(), feed.open()
        for index in range(10):
            bus.publish(switched("api", reason=str(index)))
            assert await quick.next() is not None
        assert slow.dropped and not quick.dropped
        assert feed.dropped == 1 and feed.pages == 1
        assert bus.failures == 0  # the publisher never saw a thing
        kept = [await slow.next() for _ in range(4)]
        assert [change.note[-1] if change else None for change in kept] == ["0", "1", "2", None]

    asyncio.run(run())


def test_closing_the_listener_ends_every_open_stream() -> None:
    async def run() -> None:
        feed = CallFeed()
        pages = [feed.open(), feed.open()]
        feed.end_all()
        assert [await page.next() for page in pages] == [None, None]
        assert feed.pages == 0

    asyncio.run(run())
