"""``serve`` on an S3 store (issue 20) starting with what a crash left in its spool.

One recording folder there has no catalog row (written ahead of a row the catalog
refused, then cut off).  Start-up recovery must see it in the spool before the uploader
takes it away to the bucket: otherwise nobody would be told of audio that retention
never deletes.  The spool is uploaded once recovery is done.  Recovery here has work to
do first (discarded recordings to check in the bucket, as a site accumulates them),
which gives an uploader started with the store the time to empty the spool under it."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from proxy.app import open_server
from proxy.config import S3Settings
from proxy.recording_state import RecordingState
from proxy.storage.catalog import Attribution, SqliteCatalog
from tests.calls.test_recording_service import catalogued_recording
from tests.e2e.proxy_process import reserve_ports
from tests.s3_server import ACCESS_KEY, SECRET_KEY, S3Server, bucket_keys, make_bucket
from tests.test_app import config_for

DISCARDED = 40


async def test_an_uncatalogued_folder_in_the_spool_is_reported_before_it_is_uploaded(
    tmp_path: Path, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    bucket = f"rec-{uuid.uuid4().hex[:10]}"
    make_bucket(s3_server.endpoint, bucket)
    ports = reserve_ports()
    try:
        config = config_for(tmp_path, sip_port=0, http_port=0, rtp=ports.rtp_range)
        s3 = S3Settings(endpoint=s3_server.endpoint, bucket=bucket)
        config = replace(config, recording=replace(config.recording, store="s3", s3=s3))
        async with SqliteCatalog(config.catalog.path) as catalog:
            for _ in range(DISCARDED):
                rid = await catalogued_recording(catalog, str(uuid.uuid4()))
                await catalog.recordings.set_recording_state(
                    rid, RecordingState.DISCARDED, Attribution(actor="alice", reason="asked")
                )
        orphan = config.recording.dir / str(uuid.uuid4())
        orphan.mkdir(parents=True)
        (orphan / "key").write_bytes(b"a wrapped key no catalog row names")

        async with open_server(config) as server:
            assert server.recordings.uncatalogued == [orphan.name]
            deadline = time.monotonic() + 10
            while orphan.exists() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert not orphan.exists()  # uploaded, then let go of: the spool drains
        assert bucket_keys(s3_server.endpoint, bucket) == [f"{orphan.name}/key"]
    finally:
        ports.release()
