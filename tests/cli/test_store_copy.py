"""``recproxy store copy --to s3`` (issue 20), the real command against a real S3 server
(moto in server mode): local recordings copied to the object names the S3 store reads,
each read back and compared; a re-run copies nothing twice and repairs an object that
differs; ``--remove-local`` empties the disk; the copy then decrypts through the store."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from proxy.config import load_config
from proxy.segment_stores import open_s3_store, segment_store
from proxy.storage.crypto import generate_keypair
from proxy.storage.reader import RecordingReader
from proxy.storage.store import SERVE_LOCK, LocalDiskStore
from proxy.storage.writer import RecordingWriter
from tests.s3_server import ACCESS_KEY, SECRET_KEY, S3Server, admin, bucket_keys, make_bucket
from tests.storage.conftest import random_ulaw_audio

from .test_cli import recproxy

S3_ENV = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}


@pytest.fixture(scope="module")
def endpoint(s3_server: S3Server) -> str:
    return s3_server.endpoint


def test_store_copy_moves_the_recordings_verified_and_is_safe_to_run_again(
    tmp_path: Path, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = f"rec-{uuid.uuid4().hex[:10]}"
    make_bucket(endpoint, bucket)
    config_path = tmp_path / "recproxy.toml"
    config_path.write_text(
        f'[recording.s3]\nendpoint = "{endpoint}"\nbucket = "{bucket}"\nprefix = "old/"\n'
    )
    private_key, public_key = generate_keypair()
    root = tmp_path / "data" / "recordings"
    audio = random_ulaw_audio(12_000, seed=3)
    writer = RecordingWriter(LocalDiskStore(fsync="none"), chunk_seconds=0.5)
    ids = [uuid.uuid4(), uuid.uuid4()]
    try:
        for rid in ids:
            writer.open(rid, root, public_key, encoding="ulaw", segment_seconds=1, start_time_ms=0)
            for start in range(0, len(audio), 160):
                writer.submit(rid, audio[start : start + 160], start + 160 >= len(audio))
    finally:
        writer.stop(timeout=30)
    (root / "not-a-recording").mkdir()  # left alone

    first = recproxy(
        "store", "copy", "--to", "s3", "--config", str(config_path), cwd=tmp_path, env=S3_ENV
    )
    assert first.returncode == 0, first.stderr
    assert "2 recording(s): 6 object(s) copied" in first.stdout  # key + 2 segments each
    assert "0 already in the bucket" in first.stdout
    assert bucket_keys(endpoint, bucket) == sorted(
        f"old/{rid}/{name}" for rid in ids for name in ("key", "seg-000000.rec", "seg-000001.rec")
    )

    # an object altered in the bucket is found and copied again; the rest are left
    damaged = f"old/{ids[0]}/seg-000001.rec"
    admin(endpoint).put_object(Bucket=bucket, Key=damaged, Body=b"not the segment")
    again = recproxy(
        "store",
        "copy",
        "--to",
        "s3",
        "--remove-local",
        "--config",
        str(config_path),
        cwd=tmp_path,
        env=S3_ENV,
    )
    assert again.returncode == 0, again.stderr
    assert "2 recording(s): 1 object(s) copied" in again.stdout
    assert "5 already in the bucket" in again.stdout
    left = sorted(p.name for p in root.iterdir() if p.name != SERVE_LOCK)
    assert left == ["not-a-recording"]  # moved

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    config = load_config(config_path)
    store = open_s3_store(config, fsync="none", uploads=False)
    try:
        for rid in ids:
            played = RecordingReader(root / str(rid), private_key, store=store).read()
            assert np.array_equal(played.audio, audio)
    finally:
        store.close()


def test_store_copy_without_a_bucket_says_which_key_is_missing(tmp_path: Path) -> None:
    done = recproxy("store", "copy", "--to", "s3", cwd=tmp_path, env=S3_ENV)
    assert done.returncode == 1
    assert "recording.s3.endpoint: required to copy to S3" in done.stderr


def test_store_copy_refuses_while_serve_holds_the_recordings_folder(
    tmp_path: Path, endpoint: str
) -> None:
    """A call ``serve`` starts during the copy would be copied in part and, with
    ``--remove-local``, deleted under its writer: the copy does not begin."""
    bucket = f"rec-{uuid.uuid4().hex[:10]}"
    make_bucket(endpoint, bucket)
    config_path = tmp_path / "recproxy.toml"
    config_path.write_text(f'[recording.s3]\nendpoint = "{endpoint}"\nbucket = "{bucket}"\n')
    config = load_config(config_path)
    live = config.recording.dir / str(uuid.uuid4())
    live.mkdir(parents=True)
    (live / "key").write_bytes(b"wrapped key")
    (live / "seg-000000.rec").write_bytes(b"an open segment")
    with segment_store(config, uploads=True):  # what serve holds, on the local disk
        done = recproxy(
            "store", "copy", "--to", "s3", "--remove-local", "--config", str(config_path),
            cwd=tmp_path, env=S3_ENV,
        )  # fmt: skip
    assert done.returncode == 1
    assert f"recording.dir {config.recording.dir} is in use by a running recproxy serve" in (
        done.stderr
    )
    assert sorted(p.name for p in live.iterdir()) == ["key", "seg-000000.rec"]
    assert bucket_keys(endpoint, bucket) == []
