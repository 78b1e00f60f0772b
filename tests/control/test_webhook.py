"""The recording webhook against a real receiver: an aiohttp server on 127.0.0.1 that is
stopped and restarted, a real on-disk queue, real HMAC signatures."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import stat
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from proxy.app import WEBHOOK_SECRET_ENV, StartupError, open_server
from proxy.config import (
    CatalogSettings,
    Config,
    HttpSettings,
    MediaSettings,
    NoticeSettings,
    RecordingSettings,
    RoutingSettings,
    ShutdownSettings,
    SipSettings,
    WebhookSettings,
)
from proxy.control.metrics import Metrics
from proxy.control.webhook import (
    SIGNATURE_HEADER,
    QueueInUseError,
    RecordingEnd,
    WebhookQueue,
    WebhookSender,
    backoff_delay,
    event_body,
    redacted,
    signature,
)
from proxy.events import RecordingClosed, RecordingFailed
from proxy.recording_state import RecordingState
from proxy.tools.uas import AnsweringUas
from tests.control.test_metrics import DIALOGUE, SipCaller, rtp, write_notice
from tests.e2e.proxy_process import reserve_ports

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SECRET = b"webhook-test-secret"
FIELDS = {
    "event_id", "type", "occurred_at", "recording_id", "call_id", "state", "reason",
    "started_at", "ended_at", "duration_seconds",
}  # fmt: skip


def ended(n: int, state: RecordingState = RecordingState.COMPLETE) -> RecordingEnd:
    """A recording's end as the recording service publishes it."""
    started = START + timedelta(minutes=n)
    stopped = started + timedelta(seconds=42)
    if state is RecordingState.FAILED:
        return RecordingFailed(f"rec-{n}", f"call-{n}", "disk full", started, stopped)
    return RecordingClosed(f"rec-{n}", f"call-{n}", state.value, 1, 2100, 33_600, started, stopped)


class Receiver:
    """A webhook receiver on 127.0.0.1: records each POST, answers ``status``; can be
    stopped and started again on the same port."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.arrived = 0
        self.status = 204
        self.delay = 0.0
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.arrived += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        self.posts.append((dict(request.headers), body))
        return web.Response(status=self.status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if not self.port:
            self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook?token=not-logged"

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.posts]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def settings(receiver: Receiver, **changes: Any) -> WebhookSettings:
    fast = WebhookSettings(
        url=receiver.url, timeout_seconds=1, backoff_seconds=0.05, max_backoff_seconds=0.2
    )
    return replace(fast, **changes)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


# --- pure parts ---------------------------------------------------------------------------


def test_backoff_doubles_from_the_first_wait_up_to_the_cap() -> None:
    assert [backoff_delay(n, 1.0, 10.0) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert backoff_delay(10_000, 0.5, 300.0) == 300.0


def test_the_body_holds_ids_state_and_times_and_nothing_else() -> None:
    event = ended(1, RecordingState.DEGRADED)
    body = json.loads(event_body(event, "evt-1", START))
    assert set(body) == FIELDS
    assert body["type"] == "recording.closed"
    assert (body["recording_id"], body["call_id"], body["state"]) == ("rec-1", "call-1", "degraded")
    assert body["started_at"] == "2026-03-02T09:01:00+00:00"
    assert body["duration_seconds"] == 42.0
    failed = json.loads(event_body(ended(2, RecordingState.FAILED), "evt-2", START))
    assert (failed["type"], failed["reason"]) == ("recording.failed", "disk full")


def test_the_signature_is_hmac_sha256_of_the_body_and_the_logged_url_hides_its_path() -> None:
    body = b'{"event_id":"x"}'
    expected = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    assert signature(SECRET, body) == f"sha256={expected}"
    assert redacted("https://user:pw@hooks.example.org:8443/x?token=s") == (
        "https://hooks.example.org:8443"
    )


# --- the on-disk queue ----------------------------------------------------------------------


def test_queue_files_are_owner_only_written_whole_and_kept_in_order(tmp_path: Path) -> None:
    folder = tmp_path / "queue"
    queue = WebhookQueue(folder, limit=100)
    queue.load()
    for n in range(12):  # past 9 → 10: order is numeric, not by name length
        assert queue.append(b"event %d" % n) == 0
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files = sorted(folder.glob("*.json"))
    assert len(files) == 12
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    (folder / ".0000000000000012.json.tmp").write_bytes(b"half an ev")  # a crash mid-write
    queue.close()  # the process ends
    again = WebhookQueue(folder, limit=100)
    again.load()
    assert not (folder / ".0000000000000012.json.tmp").exists()
    bodies = []
    while (head := again.head()) is not None:
        bodies.append(head[1])
        again.remove(head[0])
    assert bodies == [b"event %d" % n for n in range(12)]
    again.append(b"next")  # numbering goes on after a reload: never reuses a name
    assert [p.name for p in folder.glob("*.json")] == ["0000000000000012.json"]


def test_a_second_process_on_the_same_queue_is_refused_naming_the_key(tmp_path: Path) -> None:
    """Two nodes sharing one data folder would number events over each other's."""
    first = WebhookQueue(tmp_path / "queue", limit=10)
    first.load()
    first.append(b"first node's event")
    with pytest.raises(QueueInUseError, match=r"each node needs its own webhook\.queue_dir"):
        WebhookQueue(tmp_path / "queue", limit=10).load()
    first.close()
    second = WebhookQueue(tmp_path / "queue", limit=10)
    second.load()  # free once the first has stopped
    head = second.head()
    assert head is not None and head[1] == b"first node's event"
    second.close()


def test_a_full_queue_drops_its_oldest_events(tmp_path: Path) -> None:
    queue = WebhookQueue(tmp_path, limit=3)
    queue.load()
    dropped = [queue.append(b"%d" % n) for n in range(5)]
    assert dropped == [0, 0, 0, 1, 1]
    assert len(queue) == 3 and len(list(tmp_path.glob("*.json"))) == 3
    head = queue.head()
    assert head is not None and head[1] == b"2"


# --- delivery against a receiver that goes away -----------------------------------------------


async def test_events_while_the_receiver_is_down_arrive_after_it_returns_in_order_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    sender = WebhookSender(settings(receiver), tmp_path / "queue", secret=SECRET)
    await sender.start()
    try:
        sender.publish(ended(0))
        await until(lambda: len(receiver.posts) == 1)
        await receiver.stop()
        for n in (1, 2, 3):
            sender.publish(ended(n, RecordingState.FAILED if n == 2 else RecordingState.COMPLETE))
        await until(lambda: sender.stats.attempt_errors >= 2)  # retried while down
        assert sender.queue_length == 3
        assert len(list((tmp_path / "queue").glob("*.json"))) == 3  # on disk, not in memory
        await receiver.start()  # the same port again
        await until(lambda: sender.queue_length == 0)
    finally:
        await sender.stop()
    events = receiver.events()
    assert [e["recording_id"] for e in events] == ["rec-0", "rec-1", "rec-2", "rec-3"]
    assert [e["type"] for e in events][1:] == [
        "recording.closed",
        "recording.failed",
        "recording.closed",
    ]
    assert len({e["event_id"] for e in events}) == 4
    for headers, body in receiver.posts:
        assert headers[SIGNATURE_HEADER] == signature(SECRET, body)
        assert headers["Content-Type"] == "application/json"
        assert set(json.loads(body)) == FIELDS
    assert (sender.stats.delivered, sender.stats.failed, sender.stats.dropped) == (4, 0, 0)
    assert not list((tmp_path / "queue").glob("*.json"))


async def test_a_restarted_sender_delivers_what_an_earlier_run_queued(
    tmp_path: Path, receiver: Receiver
) -> None:
    await receiver.stop()
    first = WebhookSender(settings(receiver), tmp_path / "queue")
    await first.start()
    for n in range(3):
        first.publish(ended(n))
    await first.stop()  # recproxy stops while the receiver is down
    assert len(list((tmp_path / "queue").glob("*.json"))) == 3
    await receiver.start()
    second = WebhookSender(settings(receiver), tmp_path / "queue")
    await second.start()
    try:
        await until(lambda: len(receiver.posts) == 3)
        await until(lambda: second.queue_length == 0)
    finally:
        await second.stop()
    assert [e["recording_id"] for e in receiver.events()] == ["rec-0", "rec-1", "rec-2"]
    assert "X-Recproxy-Signature" not in receiver.posts[0][0]  # no secret, no signature


async def test_a_post_cut_short_by_a_stop_is_sent_again_with_the_same_event_id(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.delay = 0.5  # it handles the event, but answers too late for the first run
    first = WebhookSender(settings(receiver), tmp_path / "queue")
    await first.start()
    first.publish(ended(0))
    await until(lambda: receiver.arrived == 1)
    await first.stop()
    await until(lambda: len(receiver.posts) == 1)
    receiver.delay = 0.0
    second = WebhookSender(settings(receiver), tmp_path / "queue")
    await second.start()
    try:
        await until(lambda: second.stats.delivered == 1)
    finally:
        await second.stop()
    once, again = receiver.events()
    assert once == again  # the receiver de-duplicates on event_id
    assert not list((tmp_path / "queue").glob("*.json"))


async def test_a_refused_event_is_given_up_after_max_attempts_and_the_next_goes_out(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.status = 400
    sender = WebhookSender(settings(receiver, max_attempts=3), tmp_path / "queue")
    metrics = Metrics()
    metrics.attach(webhook=sender)
    await sender.start()
    try:
        sender.publish(ended(0))
        await until(lambda: sender.stats.failed == 1)
        receiver.status = 200
        sender.publish(ended(1))
        await until(lambda: sender.stats.delivered == 1)
    finally:
        await sender.stop()
    assert [e["recording_id"] for e in receiver.events()] == ["rec-0"] * 3 + ["rec-1"]
    registry = metrics.registry
    assert registry.get_sample_value("recproxy_webhook_events_total", {"result": "failed"}) == 1
    assert registry.get_sample_value("recproxy_webhook_events_total", {"result": "delivered"}) == 1
    assert registry.get_sample_value("recproxy_webhook_attempt_errors_total") == 3
    assert registry.get_sample_value("recproxy_webhook_queue_length") == 0


async def test_a_receiver_slower_than_the_timeout_and_5xx_are_retried_not_given_up(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.delay = 0.5
    sender = WebhookSender(
        settings(receiver, timeout_seconds=0.1, max_attempts=1), tmp_path / "queue"
    )
    await sender.start()
    try:
        sender.publish(ended(0))
        await until(lambda: sender.stats.attempt_errors >= 2)
        receiver.delay = 0.0
        receiver.status = 503
        await until(lambda: sender.stats.attempt_errors >= 4)
        assert sender.stats.failed == 0 and sender.queue_length == 1
        receiver.status = 200
        await until(lambda: sender.stats.delivered == 1)
    finally:
        await sender.stop()
    assert sender.stats.failed == 0


async def test_past_queue_max_the_oldest_events_are_dropped_and_counted(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    await receiver.stop()
    sender = WebhookSender(settings(receiver, queue_max=2), tmp_path / "queue", secret=SECRET)
    metrics = Metrics()
    metrics.attach(webhook=sender)
    await sender.start()
    try:

        def on_disk(count: int) -> Callable[[], bool]:
            files = tmp_path / "queue"
            return lambda: sender.queue_length == len(list(files.glob("*.json"))) == count

        for n in range(5):  # each reaches the disk queue before the next comes
            sender.publish(ended(n))
            await until(on_disk(min(n + 1, 2)))
        await until(lambda: sender.stats.dropped == 3)
        assert metrics.registry.get_sample_value("recproxy_webhook_queue_length") == 2
        await receiver.start()
        await until(lambda: sender.stats.delivered == 2)
    finally:
        await sender.stop()
    assert [e["recording_id"] for e in receiver.events()] == ["rec-3", "rec-4"]
    assert (
        metrics.registry.get_sample_value("recproxy_webhook_events_total", {"result": "dropped"})
        == 3
    )
    assert "queue full" in caplog.text
    assert "not-logged" not in caplog.text and SECRET.decode() not in caplog.text


def test_a_sender_needs_a_url(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"webhook\.url"):
        WebhookSender(WebhookSettings(), tmp_path)


# --- a real recorded call through the in-process proxy ----------------------------------------


def proxy_config(
    tmp_path: Path, webhook: WebhookSettings, *, uas_port: int = 5070, rtp_ports: tuple[int, int]
) -> Config:
    """The in-process proxy's configuration: loopback, ports 0, data under tmp_path."""
    write_notice(tmp_path / "notice.wav", 0.4)
    return Config(
        sip=SipSettings(listen=("127.0.0.1", 0), transports=("udp",)),
        routing=RoutingSettings(call_taker=f"sip:calltaker@127.0.0.1:{uas_port}"),
        notice=NoticeSettings(prompt=tmp_path / "notice.wav"),
        media=MediaSettings(rtp_ports=rtp_ports),
        recording=RecordingSettings(
            dir=tmp_path / "recordings",
            public_key=tmp_path / "keys" / "recording.pub",
            private_key=tmp_path / "keys" / "recording.key",
            fsync="none",
        ),
        catalog=CatalogSettings(path=tmp_path / "data" / "catalog.sqlite3"),
        http=HttpSettings(listen=("127.0.0.1", 0)),
        shutdown=ShutdownSettings(grace_seconds=1),
        webhook=webhook,
    )


async def test_a_queue_dir_that_cannot_be_made_stops_start_up_naming_the_key(
    tmp_path: Path, receiver: Receiver
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    webhook = WebhookSettings(url=receiver.url, queue_dir=tmp_path / "a-file" / "queue")
    config = proxy_config(tmp_path, webhook, rtp_ports=(40000, 40099))  # never bound
    with pytest.raises(StartupError, match=r"^webhook\.queue_dir .*a-file/queue: "):
        async with open_server(config):
            pass


async def test_a_recorded_call_through_the_proxy_posts_one_recording_closed(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WEBHOOK_SECRET_ENV, SECRET.decode())
    ports = reserve_ports()
    uas = AnsweringUas()
    _, uas_port = await uas.start()
    webhook = WebhookSettings(url=receiver.url, backoff_seconds=0.05)
    config = proxy_config(tmp_path, webhook, uas_port=uas_port, rtp_ports=ports.rtp_range)
    try:
        async with open_server(config) as server:
            caller = SipCaller(server)
            try:
                await caller.start()
                dialog, proxy_port = await caller.call()
                await until(lambda: bool(server.recordings.active))
                loop = asyncio.get_running_loop()
                begin = loop.time()
                for seq in range(50):  # a second of speech from the caller, paced by the clock
                    caller.phone.send(rtp(seq, DIALOGUE[seq * 160 : (seq + 1) * 160]), proxy_port)
                    await asyncio.sleep(max(begin + (seq + 1) * 0.02 - loop.time(), 0))
                caller.hang_up(dialog)
                await until(lambda: len(receiver.posts) == 1, 10)
                (summary,) = await server.catalog.recordings.list_recordings()
                recording = await server.catalog.recordings.get_recording(summary.id)
            finally:
                await caller.close()
    finally:
        await uas.close()
        ports.release()
    assert recording is not None and recording.duration_ms is not None
    assert recording.duration_ms >= 900
    # complete; degraded when a loaded machine delayed our packets: the event says which
    assert recording.state in (RecordingState.COMPLETE, RecordingState.DEGRADED)
    headers, body = receiver.posts[0]
    event = json.loads(body)
    assert event["type"] == "recording.closed"
    assert (event["recording_id"], event["call_id"]) == (recording.id, recording.call_id)
    assert (event["state"], event["reason"]) == (recording.state.value, recording.degraded_reason)
    assert headers[SIGNATURE_HEADER] == signature(SECRET, body)
    assert "07700900123" not in body.decode()  # the caller's number never leaves
    queue = tmp_path / "data" / "webhook-queue"  # the default: beside the catalog
    assert stat.S_IMODE(queue.stat().st_mode) == 0o700 and not list(queue.glob("*.json"))
    assert len(receiver.posts) == 1
