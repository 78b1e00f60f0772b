"""A call takers' page that never reads its event stream (issue 17), on the call proxy's
real console routes served on loopback: the stream's queue of changes really fills (the
socket's buffers first, then the page's 64 changes), the page is dropped, and the calls
go on — the publisher (a call's task) is never held up and another page gets every
change.  The accounts are the real SQLite ones; the calls view is a stand-in (the real
call is exercised end to end in test_calltaker_page.py)."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from argon2 import PasswordHasher
from prometheus_client import CollectorRegistry

from proxy.config import AccountsSettings
from proxy.control.console.call_feed import QUEUE_SIZE, CallFeed
from proxy.control.console.calltaker_pages import (
    WRITE_SECONDS,
    CallTakerConsole,
    add_calltaker_console,
)
from proxy.control.console.ops_page import OpsSources
from proxy.control.http import HttpServer
from proxy.control.records.auth import COOKIE
from proxy.events import EventBus, RecordingSwitched
from proxy.records.accounts import Accounts, LoginSession
from proxy.storage.catalog import SqliteCatalog

CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)  # real argon2id, fast
PASSWORD = "a long enough password"
MAX_CHANGES = 20_000  # bounds the loop: far more than the buffers and the queue hold
MAX_SECONDS = 60.0
PACE = 0.002  # seconds between changes: a page that reads keeps up with them


class StandInCall:
    """ann's call as the console sees it; a long caller name makes each change's row
    big, so the socket's buffers fill in fewer changes."""

    operator = "ann"

    def describe(self) -> dict[str, Any]:
        return {
            "id": "c1", "caller": "+44 " + "1" * 8000, "callee": "surgery",
            "direction": "inbound", "service": "", "recording": "recording",
            "started_at": "2026-12-07T07:00:00Z", "operator": "ann",
        }  # fmt: skip

    async def recording_action(
        self, action: str, *, actor: str, channel: str, reason: str
    ) -> dict[str, Any]:
        raise AssertionError("nothing is switched here")


async def test_an_event_stream_nobody_reads_is_dropped_and_the_calls_go_on(
    tmp_path: Path,
) -> None:
    loop = asyncio.get_running_loop()
    async with SqliteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        accounts = Accounts(catalog.users, AccountsSettings(), hasher=CHEAP)
        await accounts.add_user(
            "sam", role_name="staff", password=PASSWORD, by="test", operator="ann"
        )
        session = await accounts.login("sam", PASSWORD, source="127.0.0.1")
        assert isinstance(session, LoginSession)
        bus, feed = EventBus(), CallFeed()
        feed.subscribe(bus)
        calls = {"c1": StandInCall()}
        app = web.Application()
        sources = OpsSources(lambda: {"ok": True}, CollectorRegistry(), catalog.audit, tmp_path)
        add_calltaker_console(app, CallTakerConsole(accounts, lambda: calls, feed), sources)
        server = HttpServer(app, "127.0.0.1", 0)
        await server.start()
        assert server.bound is not None
        # a reader that never reads: a small receive buffer, the stream asked for, left
        reader = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.setblocking(False)
        try:
            await loop.sock_connect(reader, server.bound)
            asked = (
                f"GET /console/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Cookie: {COOKIE}={session.token}\r\n\r\n"
            )
            await loop.sock_sendall(reader, asked.encode())
            deadline = time.monotonic() + 10
            while feed.pages == 0:  # the stream is open on the feed
                assert time.monotonic() < deadline, "the stream never opened"
                await asyncio.sleep(0.01)
            other = feed.open()  # another page, read as fast as changes come

            published, started = 0, time.monotonic()
            while not feed.dropped:
                assert published < MAX_CHANGES, "the unread stream was never dropped"
                assert time.monotonic() - started < MAX_SECONDS, "not dropped in time"
                action = "stop" if published % 2 == 0 else "resume"
                bus.publish(RecordingSwitched("rec-1", "c1", action, "sam", "api", str(published)))
                published += 1
                assert bus.failures == 0  # the publisher never saw a thing
                change = await other.next()  # the other page got it at once
                assert change is not None and change.note.endswith(f": {published - 1}")
                await asyncio.sleep(PACE)  # time for the stream's handler to write it
            assert feed.dropped == 1 and feed.pages == 1  # the other page is still on
            assert bus.failures == 0  # the publisher never saw a thing

            # the calls go on: later changes reach the other page, none the dropped one
            for n in range(QUEUE_SIZE * 2):
                bus.publish(RecordingSwitched("rec-1", "c1", "stop", "sam", "api", f"after {n}"))
                assert await other.next() is not None
            assert bus.failures == 0 and feed.dropped == 1

            # the stream ends: its last write times out and the connection is closed; the
            # reader, reading at last, finds the call as it was on connecting and every
            # change taken off the queue before the buffers filled — not the 64 left in
            # the queue, nor the one that found it full — then the end
            await asyncio.sleep(WRITE_SECONDS + 1)
            received = await _read_to_end(loop, reader, WRITE_SECONDS + 10)
            changes = received.count(b"\nevent: recording\n") - 1  # less the snapshot's
            assert changes == published - QUEUE_SIZE - 1, (changes, published)
            assert changes > QUEUE_SIZE  # the socket's buffers held many before the queue
        finally:
            reader.close()
            await server.stop()


async def _read_to_end(
    loop: asyncio.AbstractEventLoop, reader: socket.socket, seconds: float
) -> bytes:
    """Everything the server sent until it closed the connection (bounded in time)."""
    received = bytearray()
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        assert left > 0, "the server never closed the unread stream"
        try:
            piece = await asyncio.wait_for(loop.sock_recv(reader, 65536), left)
        except ConnectionResetError:
            return bytes(received)
        if not piece:
            return bytes(received)
        received += piece
