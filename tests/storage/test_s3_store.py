"""The S3 segment store against a real S3 HTTP server (moto in server mode): recordings
written by the real writer through the spool, uploaded, verified, read back and
decrypted from the bucket; crypto-shredding every version; object lock headers; a
corrupted upload caught; an outage that loses nothing; a restart that resumes."""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from proxy.storage.bucket import Bucket, BucketSettings, LockMode
from proxy.storage.reader import RecordingReader
from proxy.storage.s3_store import SHRED_MARK, S3SegmentStore
from proxy.storage.segment import KEY_FILE_NAME
from proxy.storage.store import LocalDiskStore, shred_recording
from proxy.storage.writer import RecordingWriter
from tests.s3_server import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    S3Server,
    TcpGate,
    admin,
    bucket_keys,
    make_bucket,
)

from .conftest import random_ulaw_audio, wait_for

START_MS = int(time.time() * 1000)  # now: a lock from here on is still in force


@pytest.fixture(scope="module")
def endpoint(s3_server: S3Server) -> str:
    return s3_server.endpoint


@pytest.fixture(scope="module")
def ports(s3_server: S3Server) -> int:
    return s3_server.spare_port


@pytest.fixture
def bucket_name(endpoint: str) -> str:
    name = f"rec-{uuid.uuid4().hex[:12]}"
    make_bucket(endpoint, name)
    return name


def open_bucket(endpoint: str, name: str) -> Bucket:
    return Bucket(BucketSettings(endpoint, name, REGION, ACCESS_KEY, SECRET_KEY, 5.0))


MakeStore = Callable[..., S3SegmentStore]


@pytest.fixture
def make_store(tmp_path: Path, endpoint: str) -> Iterator[MakeStore]:
    made: list[S3SegmentStore] = []

    def make(
        name: str,
        *,
        at: str | None = None,
        lock: LockMode = "off",
        bucket: Bucket | None = None,
    ) -> S3SegmentStore:
        store = S3SegmentStore(
            bucket or open_bucket(at or endpoint, name),
            tmp_path / "recordings",
            prefix="site-a/",
            fsync="segment",
            lock=lock,
            retain_until=lambda started: started + timedelta(days=1),
        )
        store.start()
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def record(store: S3SegmentStore, public_key: X25519PublicKey, seconds: float = 2.5) -> Path:
    """A recording of ``seconds`` through the real writer, 1 s segments; its folder."""
    rid = uuid.uuid4()
    audio = random_ulaw_audio(round(seconds * 8000), seed=rid.int % 1000)
    writer = RecordingWriter(store, chunk_seconds=0.5)
    root = store.root
    try:
        writer.open(
            rid, root, public_key, encoding="ulaw", segment_seconds=1, start_time_ms=START_MS
        )
        for start in range(0, len(audio), 160):
            assert writer.submit(rid, audio[start : start + 160], start + 160 >= len(audio))
    finally:
        writer.stop(timeout=30)
    status = writer.status(rid)
    assert status is not None and status.state.value == "complete", status
    return root / str(rid)


def drained(store: S3SegmentStore, timeout: float = 15.0) -> None:
    wait_for(lambda: store.snapshot().pending == 0, timeout)


def test_a_recording_is_uploaded_verified_and_read_back_from_the_bucket(
    endpoint: str,
    bucket_name: str,
    make_store: MakeStore,
    public_key: X25519PublicKey,
    private_key: X25519PrivateKey,
) -> None:
    store = make_store(bucket_name)
    folder = record(store, public_key)
    drained(store)
    wait_for(lambda: not folder.exists())  # the spool let go of it
    keys = bucket_keys(endpoint, bucket_name)
    prefix = f"site-a/{folder.name}/"
    assert keys == [prefix + name for name in ("key", *(f"seg-{i:06d}.rec" for i in range(3)))]
    assert store.segments(folder) == [f"seg-{i:06d}.rec" for i in range(3)]
    assert store.has_key(folder)
    snapshot = store.snapshot()
    assert snapshot.uploaded == 4 and snapshot.failures == 0
    assert snapshot.bytes_uploaded == sum(len(store.read(folder, k.rsplit("/")[-1])) for k in keys)

    played = RecordingReader(folder, private_key, store=store).read()
    assert played.report.frames == 20_000 and played.report.final_seen
    assert played.audio.shape == (20_000, 2)
    rid = uuid.UUID(folder.name)
    assert np.array_equal(played.audio, random_ulaw_audio(20_000, seed=rid.int % 1000))


def test_reads_serve_the_spool_while_the_bucket_is_down_and_nothing_is_lost(
    endpoint: str,
    bucket_name: str,
    make_store: MakeStore,
    public_key: X25519PublicKey,
    private_key: X25519PrivateKey,
    ports: int,
) -> None:
    moto_port = int(endpoint.rsplit(":", 1)[1])
    gate = TcpGate(ports, ("127.0.0.1", moto_port))
    try:
        store = make_store(bucket_name, at=gate.endpoint)
        gate.close()  # an outage: refused, and the pooled connections cut
        folder = record(store, public_key)
        wait_for(lambda: store.snapshot().failures >= 1)
        pending = store.snapshot()
        assert pending.pending == 4 and pending.oldest_pending_seconds > 0
        assert sorted(p.name for p in folder.iterdir()) == [
            "key",
            *(f"seg-{i:06d}.rec" for i in range(3)),
        ]
        with pytest.raises(OSError):  # the listing needs the bucket: said, not guessed
            store.segments(folder)
        gate.open()
        drained(store, timeout=30)
        wait_for(lambda: not folder.exists())
        report = RecordingReader(folder, private_key, store=store).read().report
        assert report.frames == 20_000
    finally:
        gate.close()
    assert len(bucket_keys(endpoint, bucket_name)) == 4


def test_a_restart_resumes_the_uploads_left_in_the_spool(
    endpoint: str,
    bucket_name: str,
    make_store: MakeStore,
    public_key: X25519PublicKey,
    ports: int,
) -> None:
    moto_port = int(endpoint.rsplit(":", 1)[1])
    gate = TcpGate(ports + 1, ("127.0.0.1", moto_port))
    gate.close()
    try:
        first = make_store(bucket_name, at=gate.endpoint)
        folder = record(first, public_key)
        first.close()  # the process ends with four files queued
        assert bucket_keys(endpoint, bucket_name) == []
        again = make_store(bucket_name)  # the next start, with the bucket back
        assert again.snapshot().pending == 4
        drained(again)
        wait_for(lambda: not folder.exists())
    finally:
        gate.close()
    assert len(bucket_keys(endpoint, bucket_name)) == 4


class CorruptingBucket(Bucket):
    """A real bucket behind a gateway that alters the first ``times`` objects stored (one
    byte flipped): what the read-back check is for."""

    def __init__(self, settings: BucketSettings, times: int) -> None:
        super().__init__(settings)
        self.times = times

    async def put(self, key: str, data: bytes, **kwargs: object) -> None:  # type: ignore[override]
        if self.times and key.endswith(".rec"):
            self.times -= 1
            data = data[:-1] + bytes([data[-1] ^ 0x01])
        await super().put(key, data, **kwargs)  # type: ignore[arg-type]


def test_an_upload_that_reads_back_different_is_kept_in_the_spool_and_retried(
    endpoint: str,
    bucket_name: str,
    make_store: MakeStore,
    public_key: X25519PublicKey,
    private_key: X25519PrivateKey,
) -> None:
    settings = BucketSettings(endpoint, bucket_name, REGION, ACCESS_KEY, SECRET_KEY, 5.0)
    store = make_store(bucket_name, bucket=CorruptingBucket(settings, times=2))
    folder = record(store, public_key, seconds=0.5)  # one segment
    drained(store)
    snapshot = store.snapshot()
    assert snapshot.failures == 2  # read back different twice: kept, retried
    assert snapshot.uploaded == 2  # the key and the segment, each once
    played = RecordingReader(folder, private_key, store=store).read()
    assert played.report.frames == 4000


def test_shredding_deletes_every_version_key_first(
    endpoint: str,
    make_store: MakeStore,
    public_key: X25519PublicKey,
) -> None:
    name = f"rec-{uuid.uuid4().hex[:12]}"
    make_bucket(endpoint, name)
    admin(endpoint).put_bucket_versioning(
        Bucket=name, VersioningConfiguration={"Status": "Enabled"}
    )
    store = make_store(name)
    folder = record(store, public_key, seconds=1.5)
    drained(store)
    shred_recording(store, folder)
    assert not store.has_key(folder)
    assert store.segments(folder) == []
    versions = admin(endpoint).list_object_versions(Bucket=name)
    assert versions.get("Versions", []) == [] and versions.get("DeleteMarkers", []) == []
    with pytest.raises(FileNotFoundError):
        store.read(folder, KEY_FILE_NAME)


def test_an_object_lock_keeps_segments_until_their_start_plus_retention_but_never_the_key(
    endpoint: str,
    make_store: MakeStore,
    public_key: X25519PublicKey,
) -> None:
    name = f"rec-{uuid.uuid4().hex[:12]}"
    make_bucket(endpoint, name, object_lock=True)
    store = make_store(name, lock="governance")
    folder = record(store, public_key, seconds=1.5)
    drained(store)
    client = admin(endpoint)
    prefix = f"site-a/{folder.name}/"
    segment = client.head_object(Bucket=name, Key=prefix + "seg-000001.rec")
    assert segment["ObjectLockMode"] == "GOVERNANCE"
    started = datetime.fromtimestamp(START_MS / 1000, UTC) + timedelta(seconds=1)
    assert abs(segment["ObjectLockRetainUntilDate"] - (started + timedelta(days=1))) < timedelta(
        seconds=1
    )
    key = client.head_object(Bucket=name, Key=prefix + "key")
    assert "ObjectLockMode" not in key

    shred_recording(store, folder)  # the key goes; the locked segments are refused
    assert not store.has_key(folder)
    assert store.snapshot().lock_refusals == 2
    assert store.segments(folder) == ["seg-000000.rec", "seg-000001.rec"]


def test_a_missing_object_is_file_not_found_naming_it(
    bucket_name: str, make_store: MakeStore, tmp_path: Path
) -> None:
    store = make_store(bucket_name)
    folder = tmp_path / "recordings" / str(uuid.uuid4())
    with pytest.raises(FileNotFoundError) as missing:
        store.read(folder, "seg-000000.rec")
    assert missing.value.errno == errno.ENOENT
    assert missing.value.filename == f"site-a/{folder.name}/seg-000000.rec"
    assert not store.has_key(folder) and store.segments(folder) == []


class UploadedMeanwhileBucket(Bucket):
    """A real bucket whose listing is overtaken by the uploader: once the bucket has
    answered, every file spooled under ``spool`` is uploaded and removed from the spool
    (as the uploader does, verified first), before the caller looks at the spool."""

    def __init__(self, settings: BucketSettings, spool: Path, prefix: str) -> None:
        super().__init__(settings)
        self.spool = spool
        self.prefix = prefix

    async def keys(self, prefix: str) -> list[str]:
        answer = await super().keys(prefix)
        folder = self.spool / prefix[len(self.prefix) :].rstrip("/")
        for path in sorted(folder.iterdir()) if folder.is_dir() else ():
            await self.put(f"{prefix}{path.name}", path.read_bytes())
            path.unlink()
        return answer


def test_listing_a_recording_the_uploader_moves_meanwhile_misses_no_segment(
    endpoint: str,
    bucket_name: str,
    tmp_path: Path,
    public_key: X25519PublicKey,
    private_key: X25519PrivateKey,
) -> None:
    """Start-up recovery lists a crashed recording's segments while the uploader drains
    the spool: a segment uploaded and unspooled between the two looks is still found."""
    root = tmp_path / "recordings"
    spooled = S3SegmentStore(open_bucket(endpoint, bucket_name), root, prefix="site-a/")
    spooled.start(uploads=False)
    try:
        # what a crash leaves in the spool: written through the spool, never uploaded
        folder = root / str(uuid.uuid4())
        writer = RecordingWriter(LocalDiskStore(fsync="segment"), chunk_seconds=0.5)
        try:
            writer.open(
                uuid.UUID(folder.name), root, public_key, encoding="ulaw", segment_seconds=1,
                start_time_ms=START_MS,
            )  # fmt: skip
            audio = random_ulaw_audio(12_000, seed=7)
            for start in range(0, len(audio), 160):
                writer.submit(uuid.UUID(folder.name), audio[start : start + 160], False)
        finally:
            writer.stop(timeout=30)
    finally:
        spooled.close()
    settings = BucketSettings(endpoint, bucket_name, REGION, ACCESS_KEY, SECRET_KEY, 5.0)
    store = S3SegmentStore(
        UploadedMeanwhileBucket(settings, root, "site-a/"), root, prefix="site-a/"
    )
    store.start(uploads=False)
    try:
        assert store.segments(folder) == ["seg-000000.rec", "seg-000001.rec"]
        assert not any(folder.iterdir())  # every file is in the bucket now
        report = RecordingReader(folder, private_key, store=store).read().report
        assert report.frames == 12_000
    finally:
        store.close()


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A bucket that takes connections and never answers (a hung gateway)."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set() and len(held) < 100:
            with contextlib.suppress(TimeoutError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    listener.close()


def test_a_discard_never_waits_on_the_bucket_and_its_deletion_survives_a_restart(
    endpoint: str, bucket_name: str, make_store: MakeStore, silent_endpoint: str
) -> None:
    """The writer thread discards while the bucket hangs: it returns without a bucket
    request (each may wait two timeouts), nothing of the recording is uploaded after,
    and the bucket's deletion, owed, is done by the next start."""
    hung = make_store(bucket_name, at=silent_endpoint)
    folder = hung.root / str(uuid.uuid4())
    client = admin(endpoint)
    for name in ("key", "seg-000000.rec"):  # uploaded before the outage
        client.put_object(Bucket=bucket_name, Key=f"site-a/{folder.name}/{name}", Body=b"x")
    hung.open_recording(folder, b"wrapped key")  # its upload hangs on the bucket
    hung.append(folder, "seg-000001.rec", b"audio")
    started = time.monotonic()
    hung.abandon(folder)
    hung.discard(folder)
    assert time.monotonic() - started < hung.bucket.settings.timeout_seconds
    assert [p.name for p in folder.iterdir()] == [SHRED_MARK]  # the key gone at once
    assert hung.snapshot().pending == 0  # nothing of it will be uploaded
    hung.close()  # the process stops before the bucket answered
    assert len(bucket_keys(endpoint, bucket_name, f"site-a/{folder.name}/")) == 2

    make_store(bucket_name)  # the next start, the bucket back: the deletion resumes
    wait_for(lambda: not bucket_keys(endpoint, bucket_name, f"site-a/{folder.name}/"), 15)
    wait_for(lambda: not folder.exists())
