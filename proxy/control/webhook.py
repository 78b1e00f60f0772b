"""The recording webhook: each recording's end (``RecordingClosed`` or ``RecordingFailed``
on the event bus) is POSTed as JSON to the configured URL.

Nothing is lost while the receiver is down: an event is written to an on-disk queue
(``WebhookQueue``, one owner-only file per event, written atomically) before it is sent,
and removed only when the receiver answered 2xx.  Events go out one at a time, oldest
first, so a receiver sees them in the order recordings ended.  A failed attempt is
retried after ``backoff_delay`` (doubling, capped).  A receiver that cannot be reached,
times out or answers 5xx/408/429 is retried for as long as it takes; an event it
refuses (another 4xx, or a redirect, which is not followed) is given up after
``webhook.max_attempts`` and counted ``failed``.  The queue holds at most
``webhook.queue_max`` events; past that the oldest are dropped, counted and logged.
The queue survives a restart and is drained at start.

Retries mean a receiver can see an event twice (an answer lost after it was handled):
each event carries an ``event_id`` for it to de-duplicate.  With a secret
(``RECPROXY_WEBHOOK_SECRET``) the body is signed with HMAC-SHA256 in the
``X-Recproxy-Signature: sha256=<hex>`` header.  What the body holds, and why no more,
is in ``docs/operations.md``: ids, state, reason and times; never numbers, audio or keys.

Queue files are read and written in a thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fcntl
import hashlib
import hmac
import json
import logging
import os
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from ..config import WebhookSettings
from ..events import EventBus, RecordingClosed, RecordingFailed

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Recproxy-Signature"
_SUFFIX = ".json"


# --- what is sent (pure) --------------------------------------------------------------


RecordingEnd = RecordingClosed | RecordingFailed


def event_body(event: RecordingEnd, event_id: str, occurred_at: datetime) -> bytes:
    """The JSON body for one event: ids, state, reason and times, nothing else.  Its
    ``type`` is ``recording.failed`` for a failed recording and ``recording.closed``
    otherwise (``complete`` or ``degraded``: the ``state`` field says which)."""
    state = event.state if isinstance(event, RecordingClosed) else "failed"
    duration = event.ended_at - event.started_at
    payload: dict[str, Any] = {
        "event_id": event_id,
        "type": "recording.failed" if state == "failed" else "recording.closed",
        "occurred_at": occurred_at.isoformat(),
        "recording_id": event.recording_id,
        "call_id": event.call_id,
        "state": state,
        "reason": event.reason,
        "started_at": event.started_at.isoformat(),
        "ended_at": event.ended_at.isoformat(),
        "duration_seconds": round(max(duration.total_seconds(), 0.0), 3),
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def signature(secret: bytes, body: bytes) -> str:
    """The ``X-Recproxy-Signature`` value: ``sha256=`` and the HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def backoff_delay(failed_attempts: int, first: float, cap: float) -> float:
    """Seconds to wait after ``failed_attempts`` (1, 2, ...) failures in a row."""
    return min(first * 2.0 ** min(failed_attempts - 1, 62), cap)


def redacted(url: str) -> str:
    """The URL as logged: scheme, host and port only (a path or query may hold a token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


# --- the on-disk queue (call from a thread) ---------------------------------------------


_OWNER_FILE = "owner.lock"  # flock'd by the process using the queue


class QueueInUseError(OSError):
    """Another process holds the webhook queue's folder."""


class WebhookQueue:
    """Events waiting to be delivered: one file each, named by a rising sequence number,
    owner-only, written to a temporary name and renamed into place so a crash never
    leaves half an event.  At most ``limit`` events; ``append`` drops the oldest past it.

    Called from worker threads; a lock keeps calls one at a time (a call the sender's
    task stopped waiting for may still be finishing when the next begins)."""

    def __init__(self, directory: Path, limit: int) -> None:
        if limit < 1:
            raise ValueError("a webhook queue holds at least one event")
        self.directory = directory
        self.limit = limit
        self._names: deque[str] = deque()
        self._next = 0
        self._lock = threading.Lock()
        self._owner: int | None = None  # the locked owner file's descriptor

    def load(self) -> None:
        """Create the folder (owner-only) or read what an earlier run left in it.  The
        folder is this process's alone while it runs: a second one (another recproxy
        node sharing the data folder, issue 20) would number its events over ours and
        send them twice, so it gets ``QueueInUseError`` instead."""
        with self._lock:
            self._load()

    def close(self) -> None:
        """Let another process use the folder (at stop)."""
        with self._lock:
            if self._owner is not None:
                os.close(self._owner)  # releases the flock
                self._owner = None

    def _claim(self) -> None:
        fd = os.open(self.directory / _OWNER_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise QueueInUseError(
                f"{self.directory} is in use by another recproxy process (each node "
                "needs its own webhook.queue_dir)"
            ) from None
        self._owner = fd

    def _load(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory.chmod(0o700)
        if self._owner is None:
            self._claim()
        names: list[str] = []
        for path in self.directory.iterdir():
            if path.name.startswith("."):  # a write a crash interrupted
                path.unlink(missing_ok=True)
            elif path.suffix == _SUFFIX and path.stem.isdigit():
                names.append(path.name)
        names.sort(key=lambda name: int(name.removesuffix(_SUFFIX)))
        self._names = deque(names)
        self._next = int(names[-1].removesuffix(_SUFFIX)) + 1 if names else 0

    def __len__(self) -> int:
        return len(self._names)

    def append(self, body: bytes) -> int:
        """Store one event (fsynced); the number of oldest events dropped to make room."""
        with self._lock:
            return self._append(body)

    def _append(self, body: bytes) -> int:
        name = f"{self._next:016d}{_SUFFIX}"
        temporary = self.directory / f".{name}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.directory / name)
        self._next += 1
        self._names.append(name)
        dropped = 0
        while len(self._names) > self.limit:
            self._remove(self._names[0])
            dropped += 1
        return dropped

    def head(self) -> tuple[str, bytes] | None:
        """The oldest event: (its name, its body); None when the queue is empty."""
        with self._lock:
            return self._head()

    def _head(self) -> tuple[str, bytes] | None:
        while self._names:
            name = self._names[0]
            try:
                return name, (self.directory / name).read_bytes()
            except FileNotFoundError:  # removed by hand: skip it
                self._names.popleft()
        return None

    def remove(self, name: str) -> None:
        with self._lock:
            self._remove(name)

    def _remove(self, name: str) -> None:
        (self.directory / name).unlink(missing_ok=True)
        with contextlib.suppress(ValueError):
            self._names.remove(name)


# --- the sender ---------------------------------------------------------------------------


class _Answer(enum.Enum):
    DELIVERED = "delivered"
    REFUSED = "refused"  # the receiver said no: retried max_attempts times
    UNAVAILABLE = "unavailable"  # unreachable, timed out, 5xx, 408, 429: retried always


@dataclass
class WebhookStats:
    """Counted since start; read by the metrics at scrape time."""

    delivered: int = 0
    failed: int = 0  # refused by the receiver max_attempts times: given up
    dropped: int = 0  # pushed out of a full queue
    attempt_errors: int = 0  # attempts that did not deliver


class WebhookSender:
    """Subscribe ``publish`` to the recording service; ``start`` and ``stop`` it with the
    proxy.  Runs one task that persists new events, then delivers the queue in order."""

    def __init__(
        self, settings: WebhookSettings, queue_dir: Path, *, secret: bytes | None = None
    ) -> None:
        if not settings.url:
            raise ValueError("webhook.url is empty: no webhook to send to")
        self.settings = settings
        self.stats = WebhookStats()
        self._queue = WebhookQueue(queue_dir, settings.queue_max)
        self._secret = secret
        self._pending: list[bytes] = []  # published, not yet on disk
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def queue_length(self) -> int:
        """Events not yet delivered (on disk, or about to be)."""
        return len(self._queue) + len(self._pending)

    def subscribe(self, bus: EventBus) -> None:
        """Send every recording's end published on ``bus`` from now on."""
        bus.subscribe(RecordingClosed, self.publish)
        bus.subscribe(RecordingFailed, self.publish)

    def publish(self, event: RecordingEnd) -> None:
        """Queue the event (on the event loop; no I/O)."""
        now = datetime.now(UTC)
        self._pending.append(event_body(event, str(uuid.uuid4()), now))
        if len(self._pending) > self.settings.queue_max:  # the disk has not kept up
            del self._pending[0]
            self._count_dropped(1)
        self._wake.set()

    async def start(self) -> None:
        """Open the queue left by the last run (raises ``OSError``), and start delivering."""
        await asyncio.to_thread(self._queue.load)
        if len(self._queue):
            log.info("webhook: %d event(s) queued from before; delivering", len(self._queue))
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout_seconds)
        )
        self._task = asyncio.create_task(self._run(), name="webhook")

    async def stop(self) -> None:
        """Stop delivering; what is not delivered stays queued on disk for the next start
        (an interrupted POST is sent again then: receivers de-duplicate by event_id)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(OSError):
            await self._persist()
        if self._pending:
            log.error("webhook: %d event(s) could not be queued on disk", len(self._pending))
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._queue.close()

    async def _run(self) -> None:
        failures = 0  # failed attempts of the event at the head of the queue
        disk_errors = 0  # queue reads and writes failed in a row
        while True:
            self._wake.clear()
            try:
                failures = await self._deliver_head(failures)
                disk_errors = 0
            except OSError as exc:  # the queue's disk: try again later, keep what we have
                disk_errors += 1
                log.error("webhook: queue %s: %s", self._queue.directory, exc)
                await self._pause(self._backoff(disk_errors))

    async def _deliver_head(self, failures: int) -> int:
        """Persist what was published, then try the oldest event once (or wait for one).
        Returns the head's failed attempts so far; raises ``OSError`` from the queue."""
        await self._persist()
        head = await asyncio.to_thread(self._queue.head)
        if head is None:
            await self._wake.wait()
            return failures
        name, body = head
        answer = await self._post(body)
        if answer is _Answer.DELIVERED:
            if failures:
                log.info("webhook: delivering again after %d failed attempt(s)", failures)
            self.stats.delivered += 1
            await asyncio.to_thread(self._queue.remove, name)
            return 0
        self.stats.attempt_errors += 1
        failures += 1
        if answer is _Answer.REFUSED and failures >= self.settings.max_attempts:
            log.error("webhook: event %s refused %d times; given up", name, failures)
            self.stats.failed += 1
            await asyncio.to_thread(self._queue.remove, name)
            return 0
        await self._pause(self._backoff(failures))
        return failures

    def _backoff(self, failures: int) -> float:
        settings = self.settings
        return backoff_delay(failures, settings.backoff_seconds, settings.max_backoff_seconds)

    async def _persist(self) -> None:
        """Move published events to the disk queue, in order (raises ``OSError``)."""
        while self._pending:
            body = self._pending.pop(0)
            try:
                dropped = await asyncio.to_thread(self._queue.append, body)
            except OSError:
                self._pending.insert(0, body)
                raise
            if dropped:
                self._count_dropped(dropped)

    async def _pause(self, seconds: float) -> None:
        """Wait before the next attempt, persisting events published meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)
            self._wake.clear()
            with contextlib.suppress(OSError):  # reported by _run's next pass
                await self._persist()

    async def _post(self, body: bytes) -> _Answer:
        assert self._session is not None
        headers = {"Content-Type": "application/json", "User-Agent": "recproxy"}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = signature(self._secret, body)
        where = redacted(self.settings.url)
        try:
            async with self._session.post(
                self.settings.url, data=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("webhook: %s not reachable: %s", where, type(exc).__name__)
            return _Answer.UNAVAILABLE
        if 200 <= status < 300:
            return _Answer.DELIVERED
        log.warning("webhook: %s answered %d", where, status)
        if status >= 500 or status in (408, 429):
            return _Answer.UNAVAILABLE
        return _Answer.REFUSED

    def _count_dropped(self, count: int) -> None:
        self.stats.dropped += count
        log.error(
            "webhook: queue full (webhook.queue_max %d): %d oldest event(s) dropped",
            self.settings.queue_max,
            count,
        )
