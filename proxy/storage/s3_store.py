"""Recordings in an S3-compatible bucket, written through a local spool.

The crash-loss bound decides the shape.  The writer thread writes exactly as it does to
the local disk: :class:`S3SegmentStore` hands ``open_recording``/``append``/
``finish_segment`` to a :class:`~proxy.storage.store.LocalDiskStore` on the spool folder
(the ``[recording] dir``), with its fsync rules, so a crash of the process loses no more
than it does without S3.  An uploader (tasks on the bucket's loop thread,
:mod:`proxy.storage.bucket`) then sends each object the writer is done with — the wrapped
key at once, each segment when it is finished — reads it back, checks its length and
SHA-256 against what was spooled, and only then removes the spooled file.  A recording's
spool folder goes when it is empty and the writer holds it no longer (its final segment
is uploaded, or it was abandoned).  At start-up everything still in the spool is queued
again, so an outage, a restart or a crash mid-upload loses nothing: the spool drains when
the bucket answers.

Losing the whole machine loses what was not yet uploaded: each call's open segment (at
most ``[recording] segment_seconds``, 10 s by default) and the upload queue (the
``recproxy_s3_uploads_pending`` gauge; seconds at the bucket's pace when it is up).

A discard on request (the writer's ``discard``) never waits on the bucket: the spool's
files go at once, key first, and the bucket's deletion is queued for the uploader,
retried until it is done and resumed after a restart (a ``SHRED_MARK`` file in the
recording's spool folder says it is owed).

Reads (``segments``, ``read``, ``has_key``) serve a spooled file while it is there, else
the bucket, so recovery, playback, export and subject access read the same recording
whichever side of the upload it is on.  Object names are ``<prefix><folder relative to
the recordings root>/<file name>``, the same names as on the disk, so the catalog's
relative ``directory`` names a recording in both.

With object lock on, each segment is uploaded under retention until its own start plus
the retention period (never later than the recording's expiry, which runs from its end,
so the sweeper's deletions are never refused after expiry).  The wrapped key is never
locked: crypto-shredding deletes it first, and that is what makes the locked audio
unreadable.  Deleting a segment a lock still protects is logged, not an error.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .bucket import Bucket, BucketError, Deleted, LockMode
from .file_lock import HeldLock, claim
from .segment import KEY_FILE_NAME, RecordingCorrupt, parse_segment_file_name, scan_segment
from .store import SERVE_LOCK, FsyncPolicy, LocalDiskStore, recording_folders

log = logging.getLogger(__name__)

#: In a recording's spool folder: the recording was discarded, its objects in the bucket
#: are still to be deleted (the uploader's queued deletion; a restart resumes it).
SHRED_MARK = "shredding"
#: Uploads in flight at once: enough to hide a bucket's round trip (two per object).
UPLOAD_WORKERS = 4
#: Between retries while the bucket fails, doubling from the first to the last.
RETRY_SECONDS = (0.5, 5.0)

RetainUntil = Callable[[datetime], datetime]


@dataclass(frozen=True, slots=True)
class UploadSnapshot:
    """The uploader's counters, for metrics."""

    pending: int
    oldest_pending_seconds: float
    uploaded: int
    bytes_uploaded: int
    failures: int
    lock_refusals: int


@dataclass(slots=True)
class CopyCount:
    """What copying recordings into the bucket did: files copied (and their bytes), and
    files found there already, identical."""

    copied: int = 0
    present: int = 0
    bytes: int = 0

    def add(self, other: CopyCount) -> None:
        self.copied += other.copied
        self.present += other.present
        self.bytes += other.bytes


@dataclass(frozen=True, slots=True)
class _Shred:
    """On the uploader's queue: delete a discarded recording's objects."""

    recording: Path


class UploadMismatch(BucketError):
    """The object read back is not what was spooled."""


class S3SegmentStore:
    """A ``SegmentStore`` on a bucket, through a spool (see the module docstring).

    ``root`` is the recordings root the callers name folders under (``[recording]
    dir``); it is also the spool.  ``retain_until``: a segment's lock date from its start
    (used only when ``lock`` is not "off").  Call :meth:`start` once to queue what the
    spool holds and start the uploader, and :meth:`close` at the end."""

    def __init__(
        self,
        bucket: Bucket,
        root: Path,
        *,
        prefix: str = "",
        fsync: FsyncPolicy = "chunk",
        lock: LockMode = "off",
        retain_until: RetainUntil | None = None,
    ) -> None:
        if lock != "off" and retain_until is None:
            raise ValueError("an object lock needs a retention date")
        self.bucket = bucket
        self.root = Path(root)
        self.prefix = prefix
        self.lock: LockMode = lock
        self._retain_until = retain_until
        self._spool = LocalDiskStore(fsync=fsync)
        self._mutex = threading.Lock()  # what follows, between the writer and the loop
        self._pending: dict[Path, float] = {}  # spooled file -> when it was queued
        self._writing: set[Path] = set()  # recordings the writer still holds
        self._uploaded = 0
        self._bytes = 0
        self._failures = 0
        self._refusals = 0
        self._queue: asyncio.Queue[Path | _Shred] | None = None
        self._locks: dict[Path, asyncio.Lock] = {}  # per recording, on the loop only
        self._workers: list[concurrent.futures.Future[None]] = []
        self._owner: HeldLock | None = None  # the spool's lock, while uploading

    # --- life ---------------------------------------------------------------------------

    def start(self, *, uploads: bool = True, resume: bool = True) -> int:
        """Start the uploader and (``resume``) queue every file the spool holds: a
        restart resumes its uploads; returns how many were queued.  ``resume=False``
        leaves the spool as it is until :meth:`resume`: ``serve`` resumes after start-up
        recovery has looked at the spool (its uncatalogued folders, the discards a crash
        cut short), which the uploader would otherwise empty under it.  ``uploads=False``:
        a process that only reads and deletes (the records service, the command line)
        leaves the spool to the one that writes.

        The spool is this process's alone: a second uploader on it (another node given
        the same ``[recording] dir``) would upload, then delete, the files of
        recordings the first is still writing.  So the uploader first takes the spool's
        lock (``SERVE_LOCK``, exclusive), and ``InUseError`` says another process holds
        it."""
        if not uploads:
            return 0
        self.root.mkdir(parents=True, exist_ok=True)
        self._owner = claim(self.root / SERVE_LOCK)
        self.bucket.call(self._make_queue())
        self._workers = [self.bucket.spawn(self._work()) for _ in range(UPLOAD_WORKERS)]
        return self.resume() if resume else 0

    def resume(self) -> int:
        """Queue every file the spool holds for upload (once, after :meth:`start`);
        returns how many."""
        queued = 0
        for folder in recording_folders(self.root):
            if (folder / SHRED_MARK).exists():  # a discard the bucket has not seen yet
                self._shred_spool(folder)
                continue
            for entry in sorted(folder.iterdir()):
                if _uploadable(entry.name):
                    self._enqueue(entry)
                    queued += 1
            self._clean_if_done(folder)
        return queued

    async def _make_queue(self) -> None:
        self._queue = asyncio.Queue()

    def close(self) -> None:
        """Stop the uploader (what is pending stays in the spool for the next start)."""
        for worker in self._workers:
            worker.cancel()
        self._workers = []
        self.bucket.close()
        if self._owner is not None:
            self._owner.release()
            self._owner = None

    def snapshot(self) -> UploadSnapshot:
        with self._mutex:
            oldest = min(self._pending.values(), default=None)
            return UploadSnapshot(
                pending=len(self._pending),
                oldest_pending_seconds=0.0 if oldest is None else time.monotonic() - oldest,
                uploaded=self._uploaded,
                bytes_uploaded=self._bytes,
                failures=self._failures,
                lock_refusals=self._refusals,
            )

    # --- the SegmentStore seam: writing goes to the spool --------------------------------

    @property
    def fsyncs(self) -> int:
        return self._spool.fsyncs

    def open_recording(self, recording: Path, wrapped_key: bytes) -> None:
        with self._mutex:
            self._writing.add(recording)
        try:
            self._spool.open_recording(recording, wrapped_key)
        except BaseException:
            with self._mutex:
                self._writing.discard(recording)
            raise
        self._enqueue(recording / KEY_FILE_NAME)

    def append(self, recording: Path, segment: str, data: bytes) -> None:
        self._spool.append(recording, segment, data)

    def finish_segment(self, recording: Path, segment: str) -> None:
        self._spool.finish_segment(recording, segment)
        path = recording / segment
        if path.exists():
            self._enqueue(path)

    def abandon(self, recording: Path) -> None:
        """The writer lets go: what it wrote (the open segment as far as it got) is
        uploaded like the rest, and the spool folder goes after it."""
        self._spool.abandon(recording)
        with self._mutex:
            self._writing.discard(recording)
            queued = set(self._pending)
        if recording.is_dir():
            for entry in sorted(recording.iterdir()):
                if _uploadable(entry.name) and entry not in queued:
                    self._enqueue(entry)
        self.bucket.call_soon(self._clean_if_done, recording)

    # --- reading: the spool while a file is there, else the bucket -------------------------

    def segments(self, recording: Path) -> list[str]:
        # The spool first, then the bucket: a file the uploader moves in between is then
        # seen on one side or the other (it is verified in the bucket before it leaves
        # the spool), where the other order could miss it (start-up recovery reads while
        # the uploader drains the spool).
        names: set[str] = set()
        with contextlib.suppress(FileNotFoundError):  # the folder went: all uploaded
            names.update(entry.name for entry in recording.iterdir())
        names.update(self.bucket.call(self._bucket_names(recording)))
        indexed = sorted(
            (index, name) for name in names if (index := parse_segment_file_name(name)) is not None
        )
        return [name for _, name in indexed]

    async def _bucket_names(self, recording: Path) -> list[str]:
        prefix = self.object_key(recording, "")
        return [key[len(prefix) :] for key in await self.bucket.keys(prefix)]

    def read(self, recording: Path, name: str) -> bytes:
        with contextlib.suppress(FileNotFoundError):  # uploaded and removed meanwhile
            return (recording / name).read_bytes()
        return self.bucket.call(self.bucket.get(self.object_key(recording, name)))

    def has_key(self, recording: Path) -> bool:
        if (recording / KEY_FILE_NAME).exists():
            return True
        key = self.object_key(recording, KEY_FILE_NAME)
        return self.bucket.call(self.bucket.head(key)) is not None

    def destroy_key(self, recording: Path) -> None:
        """Every copy of the wrapped key goes: the bucket's (every version) and the
        spool's, durably; the pending upload of it is dropped first."""
        self.bucket.call(self._destroy_key(recording))

    async def _destroy_key(self, recording: Path) -> None:
        path = recording / KEY_FILE_NAME
        async with self._lock(recording):
            self._forget(path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                _fsync_dir(recording)
            deleted = await self.bucket.delete_all_versions(
                self.object_key(recording, KEY_FILE_NAME)
            )
        if deleted.refused:
            raise BucketError(
                errno.EACCES, "the bucket refused to delete the wrapped key", str(path)
            )

    def delete(self, recording: Path) -> None:
        """Whatever is left, in the spool and the bucket.  Segments an object lock still
        protects stay (logged): without their key nobody can read them."""
        self._spool.abandon(recording)
        self.bucket.call(self._delete(recording))

    async def _delete(self, recording: Path) -> None:
        async with self._lock(recording):
            with self._mutex:
                self._writing.discard(recording)
                for path in [p for p in self._pending if p.parent == recording]:
                    del self._pending[path]
            if recording.is_dir():
                for entry in recording.iterdir():
                    os.unlink(entry)
                os.rmdir(recording)
            deleted = await self.bucket.delete_all_versions(self.object_key(recording, ""))
        self._locks.pop(recording, None)
        self._note_refusals(recording, deleted)

    def discard(self, recording: Path) -> None:
        """See ``SegmentStore.discard``: on the writer thread, which must not wait on the
        bucket (up to two timeouts a request: every recording's audio would wait).

        The recording's pending uploads are dropped first, so from here on none of it is
        sent (an upload already under way finishes; the deletion queued behind it on
        the recording's lock removes it).  Then a mark (``SHRED_MARK``) is made durable
        in its spool folder, the spooled key is deleted (durably), then the segments,
        and the bucket's deletion is queued for the uploader, which retries it until the
        bucket answers; a restart finds the mark and queues it again."""
        self._spool.abandon(recording)
        with self._mutex:
            self._writing.discard(recording)
            for path in [p for p in self._pending if p.parent == recording]:
                del self._pending[path]
        recording.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(recording / SHRED_MARK, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_dir(recording)
        self._shred_spool(recording)

    def _shred_spool(self, recording: Path) -> None:
        """The spool's side of a discard (key first, durably), then the bucket's queued."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(recording / KEY_FILE_NAME)
            _fsync_dir(recording)
        for entry in recording.iterdir():
            if entry.name != SHRED_MARK:
                os.unlink(entry)
        queue = self._queue
        assert queue is not None, "start() the store first"
        self.bucket.call_soon(queue.put_nowait, _Shred(recording))

    async def _shred_bucket(self, recording: Path) -> None:
        """The bucket's side of a discard: every version of the key, then of the rest;
        then the mark and the spool folder go.  Raises ``BucketError`` (retried) while
        the bucket fails or refuses to delete the key."""
        async with self._lock(recording):
            key = await self.bucket.delete_all_versions(self.object_key(recording, KEY_FILE_NAME))
            if key.refused:
                raise BucketError(
                    errno.EACCES,
                    "the bucket refused to delete the wrapped key",
                    self.object_key(recording, KEY_FILE_NAME),
                )
            rest = await self.bucket.delete_all_versions(self.object_key(recording, ""))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(recording / SHRED_MARK)
            with contextlib.suppress(OSError):
                os.rmdir(recording)
        self._locks.pop(recording, None)
        self._note_refusals(recording, rest)

    def _note_refusals(self, recording: Path, deleted: Deleted) -> None:
        if deleted.refused:
            with self._mutex:
                self._refusals += deleted.refused
            log.warning(
                "recording %s: %d segment object(s) kept by the bucket's object lock until "
                "their retention ends (unreadable: the key is gone)",
                recording.name,
                deleted.refused,
            )

    def object_key(self, recording: Path, name: str) -> str:
        """The object name of ``name`` in ``recording`` ("" for the folder's prefix)."""
        relative = recording.relative_to(self.root).as_posix()
        return f"{self.prefix}{relative}/{name}"

    # --- the uploader, on the bucket's loop ----------------------------------------------

    def _enqueue(self, path: Path) -> None:
        with self._mutex:
            if path in self._pending:
                return
            self._pending[path] = time.monotonic()
        queue = self._queue
        assert queue is not None, "start() the store first"
        self.bucket.call_soon(queue.put_nowait, path)

    def _forget(self, path: Path) -> None:
        with self._mutex:
            self._pending.pop(path, None)

    def _lock(self, recording: Path) -> asyncio.Lock:
        lock = self._locks.get(recording)
        if lock is None:
            lock = self._locks[recording] = asyncio.Lock()
        return lock

    async def _work(self) -> None:
        queue = self._queue
        assert queue is not None
        delay = RETRY_SECONDS[0]
        while True:
            item = await queue.get()
            if isinstance(item, _Shred):
                job, what = self._shred_bucket(item.recording), f"deletion of {item.recording}"
            else:
                with self._mutex:
                    if item not in self._pending:  # deleted meanwhile
                        continue
                job, what = self.upload(item), f"upload of {item}"
            try:
                await job
            except Exception as exc:  # the bucket failed (or a bug): the spool keeps it
                with self._mutex:
                    self._failures += 1
                log.log(
                    logging.WARNING if isinstance(exc, OSError) else logging.ERROR,
                    "%s failed (retried in %.1f s): %s",
                    what,
                    delay,
                    exc,
                    exc_info=not isinstance(exc, OSError),
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_SECONDS[1])
                queue.put_nowait(item)
                continue
            delay = RETRY_SECONDS[0]

    async def upload(self, path: Path) -> None:
        """Upload one spooled file, verify it, then remove it from the spool."""
        recording = path.parent
        async with self._lock(recording):
            with self._mutex:
                if path not in self._pending:
                    return
            try:
                data = await asyncio.to_thread(path.read_bytes)
            except FileNotFoundError:  # deleted meanwhile
                self._forget(path)
                return
            key = self.object_key(recording, path.name)
            final, retain = self._segment_facts(path.name, data)
            await self.bucket.put(key, data, lock=self.lock, retain_until=retain)
            await self.verify(key, data)
            with self._mutex:
                self._pending.pop(path, None)
                self._uploaded += 1
                self._bytes += len(data)
                if final:
                    self._writing.discard(recording)
            with contextlib.suppress(FileNotFoundError):  # discarded meanwhile
                os.unlink(path)
            self._clean_if_done(recording)

    async def verify(self, key: str, data: bytes) -> None:
        """Read ``key`` back: its length and SHA-256 must be those of ``data``."""
        check_copy(key, data, await self.bucket.get(key))

    def copy_in(self, recording: Path, *, remove: bool) -> CopyCount:
        """``recproxy store copy --to s3``: put a local recording folder's files in the
        bucket, each read back and compared before it counts; an object already there
        with the same bytes is left as it is (a re-run copies nothing twice).  With
        ``remove``, each local file goes once its copy is verified, then the folder."""
        count = CopyCount()
        for entry in sorted(recording.iterdir()):
            if not _uploadable(entry.name):
                continue
            data = entry.read_bytes()
            copied = self.bucket.call(self._copy_object(recording, entry.name, data))
            count.copied += copied
            count.present += not copied
            count.bytes += len(data) if copied else 0
            if remove:
                os.unlink(entry)
        if remove:
            with contextlib.suppress(OSError):
                os.rmdir(recording)
        return count

    async def _copy_object(self, recording: Path, name: str, data: bytes) -> bool:
        key = self.object_key(recording, name)
        try:
            check_copy(key, data, await self.bucket.get(key))
            return False  # already there, the same bytes
        except (FileNotFoundError, UploadMismatch):
            pass
        _, retain = self._segment_facts(name, data)
        await self.bucket.put(key, data, lock=self.lock, retain_until=retain)
        await self.verify(key, data)
        return True

    def _segment_facts(self, name: str, data: bytes) -> tuple[bool, datetime | None]:
        """Whether the file is a segment holding the recording's final chunk, and its lock
        date (None when no lock applies)."""
        if parse_segment_file_name(name) is None:
            return False, None  # the wrapped key: never locked
        try:
            scan = scan_segment(data, allow_truncated=True, name=name)
        except RecordingCorrupt as exc:  # uploaded as it is: the bytes are what they are
            log.warning("uploading %s unscanned (not locked): %s", name, exc)
            return False, None
        retain = None
        if self.lock != "off" and self._retain_until is not None and scan.header is not None:
            started = datetime.fromtimestamp(scan.header.start_time_ms / 1000, UTC)
            retain = self._retain_until(started)
        return scan.final_seen, retain

    def _clean_if_done(self, recording: Path) -> None:
        """Remove the recording's spool folder once it is empty and not being written."""
        with self._mutex:
            if recording in self._writing:
                return
        with contextlib.suppress(FileNotFoundError, OSError):
            os.rmdir(recording)  # only when empty (ENOTEMPTY otherwise)
            self._locks.pop(recording, None)


def check_copy(key: str, spooled: bytes, stored: bytes) -> None:
    """Raise :class:`UploadMismatch` unless ``stored`` (read back from ``key``) has the
    length and SHA-256 of ``spooled``."""
    same_length = len(stored) == len(spooled)
    if same_length and hashlib.sha256(stored).digest() == hashlib.sha256(spooled).digest():
        return
    raise UploadMismatch(
        errno.EIO,
        f"read back {len(stored)} bytes (sha256 {hashlib.sha256(stored).hexdigest()[:16]}) "
        f"for {len(spooled)} spooled (sha256 {hashlib.sha256(spooled).hexdigest()[:16]})",
        key,
    )


def _uploadable(name: str) -> bool:
    return name == KEY_FILE_NAME or parse_segment_file_name(name) is not None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
