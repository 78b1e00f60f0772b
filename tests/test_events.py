"""The event bus: delivery by exact type, in subscription order, and a failing
subscriber never reaches the publisher."""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime

import pytest

from proxy.events import CallEnded, CallStarted, EventBus, NoticeStarted, discard


def test_subscribers_get_their_type_in_order() -> None:
    bus = EventBus()
    seen: list[tuple[str, object]] = []
    bus.subscribe(CallStarted, lambda e: seen.append(("first", e)))
    bus.subscribe(CallStarted, lambda e: seen.append(("second", e)))
    bus.subscribe(NoticeStarted, lambda e: seen.append(("notice", e)))
    started = CallStarted("c1", datetime(2026, 12, 6, tzinfo=UTC), "inbound")
    bus.publish(started)
    bus.publish(CallEnded("c1", "completed", "caller"))  # nobody listens: fine
    assert seen == [("first", started), ("second", started)]


def test_a_failing_subscriber_is_logged_and_the_rest_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    seen: list[object] = []

    def broken(event: NoticeStarted) -> None:
        raise RuntimeError("boom")

    bus.subscribe(NoticeStarted, broken)
    bus.subscribe(NoticeStarted, seen.append)
    with caplog.at_level(logging.ERROR, logger="proxy.events"):
        bus.publish(NoticeStarted("c1", 4000))
    assert seen == [NoticeStarted("c1", 4000)]
    assert bus.failures == 1
    assert "boom" in caplog.text


def test_events_are_frozen() -> None:
    event = NoticeStarted("c1", 4000)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.duration_ms = 1  # type: ignore[misc]
    discard(event)  # the no-bus publisher accepts anything
