"""The call's mailbox: order, timeouts, waiting until a future, one reader, no tasks."""

from __future__ import annotations

import asyncio

import pytest

from proxy.calls.mailbox import Mailbox


async def test_items_come_out_in_order_without_suspending() -> None:
    box: Mailbox[int] = Mailbox()
    for n in range(3):
        box.put_nowait(n)
    assert len(box) == 3
    assert [await box.get(0), await box.get(), box.pop()] == [0, 1, 2]
    assert box.pop() is None


async def test_get_waits_for_a_writer_and_gives_none_after_the_timeout() -> None:
    box: Mailbox[str] = Mailbox()
    loop = asyncio.get_running_loop()
    loop.call_later(0.01, box.put_nowait, "late")
    assert await box.get(5.0) == "late"
    started = loop.time()
    assert await box.get(0.05) is None
    assert loop.time() - started >= 0.04


async def test_wait_returns_when_until_is_done_and_leaves_items_alone() -> None:
    box: Mailbox[str] = Mailbox()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    loop.call_later(0.01, done.set_result, None)
    await box.wait(until=done)
    assert done.done() and len(box) == 0
    box.put_nowait("kept")
    await box.wait(until=done)  # already done: returns at once
    assert box.pop() == "kept"


async def test_wait_creates_no_task_and_cleans_up_when_cancelled() -> None:
    box: Mailbox[int] = Mailbox()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    before = len(asyncio.all_tasks())
    reader = asyncio.ensure_future(box.wait(until=done, timeout=60))
    await asyncio.sleep(0)
    assert len(asyncio.all_tasks()) == before + 1  # the reader itself, nothing per wait
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    box.put_nowait(1)  # no stale waiter left to wake
    assert await box.get(0) == 1
    done.set_result(None)  # its done-callback was removed: nothing to run


async def test_a_second_reader_is_refused() -> None:
    box: Mailbox[int] = Mailbox()
    first = asyncio.ensure_future(box.get())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="one reader"):
        await box.get()
    box.put_nowait(7)
    assert await first == 7
