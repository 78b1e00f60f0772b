"""Rate-limited log lines: the first of a kind at once, the rest counted and summarised."""

from __future__ import annotations

import asyncio
import logging

import pytest

from proxy.ratelog import RateLimitedLog


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def test_a_flood_of_one_event_logs_one_line_then_a_summary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    limited = RateLimitedLog(logging.getLogger("test.ratelog"), window=10, clock=clock)
    caplog.set_level(logging.INFO)
    for i in range(1235):
        clock.now = i * 0.005
        limited.warning("untrusted", "INVITE from untrusted %s refused", f"10.0.0.{i % 200}")
    assert messages(caplog) == ["INVITE from untrusted 10.0.0.0 refused"]
    clock.now = 11.0  # the next one after the window writes the count, then itself
    limited.warning("untrusted", "INVITE from untrusted %s refused", "10.0.0.9")
    assert messages(caplog)[1:] == [
        "… and 1,234 more like this in the last 10 s "
        "(last: INVITE from untrusted 10.0.0.34 refused)",
        "INVITE from untrusted 10.0.0.9 refused",
    ]
    assert {r.levelno for r in caplog.records} == {logging.WARNING}


def test_keys_are_limited_apart(caplog: pytest.LogCaptureFixture) -> None:
    limited = RateLimitedLog(logging.getLogger("test.ratelog"), clock=FakeClock())
    caplog.set_level(logging.INFO)
    for _ in range(5):
        limited.info("a", "A")
        limited.info("b", "B")
    assert messages(caplog) == ["A", "B"]


async def test_on_a_loop_the_summary_comes_when_the_window_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limited = RateLimitedLog(logging.getLogger("test.ratelog"), window=0.1)
    caplog.set_level(logging.INFO)
    for _ in range(3):
        limited.error("ports", "no RTP ports left")
    await asyncio.sleep(0.3)  # no further occurrence: the timer writes the summary
    assert messages(caplog) == [
        "no RTP ports left",
        "… and 2 more like this in the last 0.1 s (last: no RTP ports left)",
    ]
