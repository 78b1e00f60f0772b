"""Building the configured segment store (issue 20) against a real S3 server (moto):
the disk by default; a bucket store that uploads; start-up refused, naming the setting,
for a wrong endpoint, a missing bucket, an object lock the bucket cannot give, or
credentials that are not there."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from proxy.config import Config, build_config
from proxy.segment_stores import credentials, segment_store
from proxy.startup import StartupError
from proxy.storage.bucket import Bucket, BucketSettings
from proxy.storage.s3_store import S3SegmentStore
from proxy.storage.store import LocalDiskStore
from tests.s3_server import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    S3Server,
    admin,
    bucket_keys,
    make_bucket,
)
from tests.storage.conftest import wait_for


@pytest.fixture(scope="module")
def endpoint(s3_server: S3Server) -> str:
    return s3_server.endpoint


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)


def s3_config(tmp_path: Path, **s3: object) -> Config:
    return build_config({"recording": {"store": "s3", "s3": s3}}, base=tmp_path)


def test_the_default_is_the_local_disk(tmp_path: Path) -> None:
    with segment_store(build_config({}, base=tmp_path), uploads=True) as store:
        assert isinstance(store, LocalDiskStore)


def test_a_bucket_store_uploads_what_the_spool_held_at_start_once_resumed(
    tmp_path: Path, endpoint: str
) -> None:
    bucket = f"rec-{uuid.uuid4().hex[:10]}"
    make_bucket(endpoint, bucket)
    config = s3_config(tmp_path, endpoint=endpoint, bucket=bucket)
    left = config.recording.dir / str(uuid.uuid4())  # a crash left a key in the spool
    left.mkdir(parents=True)
    (left / "key").write_bytes(b"wrapped key")
    with segment_store(config, uploads=True) as store:
        assert isinstance(store, S3SegmentStore)
        time.sleep(0.5)
        assert left.exists() and store.snapshot().pending == 0  # serve's recovery looks
        assert store.resume() == 1
        wait_for(lambda: store.snapshot().uploaded == 1, 10)
        assert store.snapshot().pending == 0
    assert bucket_keys(endpoint, bucket) == [f"{left.name}/key"]
    assert not left.exists()


def test_two_nodes_cannot_share_an_s3_spool_but_can_share_a_local_folder(
    tmp_path: Path, endpoint: str
) -> None:
    """A second uploader on one spool would upload and delete the first one's open
    segment: its start-up fails naming ``recording.dir``, and the file stays."""
    bucket = f"rec-{uuid.uuid4().hex[:10]}"
    make_bucket(endpoint, bucket)
    config = s3_config(tmp_path, endpoint=endpoint, bucket=bucket)
    local = build_config({}, base=tmp_path)
    assert local.recording.dir == config.recording.dir  # the same folder, either store
    with segment_store(config, uploads=True) as first:
        assert isinstance(first, S3SegmentStore)
        live = config.recording.dir / str(uuid.uuid4())
        first.open_recording(live, b"wrapped key")
        first.append(live, "seg-000000.rec", b"open segment")  # not finished: spooled
        for other in (config, local):
            with (
                pytest.raises(StartupError, match=rf"^recording\.dir {config.recording.dir} is"),
                segment_store(other, uploads=True),
            ):
                pass
        assert (live / "seg-000000.rec").read_bytes() == b"open segment"
        first.abandon(live)
    with segment_store(local, uploads=True), segment_store(local, uploads=True):
        pass  # nodes writing to the local disk share it
    with segment_store(config, uploads=True):
        pass  # and the spool is free again once its node stopped


def test_a_missing_bucket_fails_start_up_naming_it(tmp_path: Path, endpoint: str) -> None:
    config = s3_config(tmp_path, endpoint=endpoint, bucket="no-such-bucket")
    with (
        pytest.raises(StartupError, match=r"^recording\.s3\.bucket 'no-such-bucket': no such"),
        segment_store(config),
    ):
        pass


def test_an_endpoint_nobody_answers_fails_start_up_naming_it(
    tmp_path: Path, s3_server: S3Server
) -> None:
    silent = f"http://127.0.0.1:{s3_server.spare_port}"
    config = s3_config(tmp_path, endpoint=silent, bucket="recordings")
    with (
        pytest.raises(StartupError, match=rf"^recording\.s3\.endpoint {silent}: "),
        segment_store(config),
    ):
        pass


def test_an_object_lock_the_bucket_cannot_give_fails_start_up(
    tmp_path: Path, endpoint: str
) -> None:
    bucket = f"rec-{uuid.uuid4().hex[:10]}"
    make_bucket(endpoint, bucket)  # created without object lock
    config = s3_config(tmp_path, endpoint=endpoint, bucket=bucket, object_lock="compliance")
    with (
        pytest.raises(StartupError, match=r"^recording\.s3\.object_lock = 'compliance', but"),
        segment_store(config),
    ):
        pass


def test_a_bucket_whose_default_retention_would_lock_the_key_fails_start_up(
    tmp_path: Path, endpoint: str
) -> None:
    """A default rule locks every object put, the wrapped key too: crypto-shredding could
    not delete it.  Refused at start, naming the bucket and the rule."""
    bucket = f"rec-{uuid.uuid4().hex[:10]}"
    make_bucket(endpoint, bucket, object_lock=True)
    rule = {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}}
    admin(endpoint).put_object_lock_configuration(
        Bucket=bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": rule}
    )
    config = s3_config(tmp_path, endpoint=endpoint, bucket=bucket, object_lock="compliance")
    with (
        pytest.raises(
            StartupError,
            match=rf"^recording\.s3\.bucket '{bucket}' has a default object-lock retention "
            r"rule \(COMPLIANCE, 1 days\): it would lock each recording's wrapped key",
        ),
        segment_store(config, uploads=True),
    ):
        pass


def test_every_put_carries_the_integrity_header_object_lock_asks_for(endpoint: str) -> None:
    """S3 wants Content-MD5 (or a checksum) on any put that a retention applies to,
    a bucket's default rule included, not only on puts with lock headers."""
    name = f"rec-{uuid.uuid4().hex[:10]}"
    make_bucket(endpoint, name, object_lock=True)
    rule = {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}
    admin(endpoint).put_object_lock_configuration(
        Bucket=name, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": rule}
    )
    bucket = Bucket(BucketSettings(endpoint, name, REGION, ACCESS_KEY, SECRET_KEY, 5.0))
    try:
        bucket.call(bucket.put("r/key", b"wrapped key"))
        assert bucket.call(bucket.get("r/key")) == b"wrapped key"
        assert bucket.call(bucket.check()).default_retention == "GOVERNANCE, 1 days"
    finally:
        bucket.close()


def test_credentials_come_from_the_file_before_the_environment(tmp_path: Path) -> None:
    ini = tmp_path / "s3.ini"
    ini.write_text("[default]\naws_access_key_id = from-file\naws_secret_access_key = shh\n")
    config = s3_config(tmp_path, endpoint="http://x:1", bucket="b", credentials_file="s3.ini")
    assert credentials(config.recording.s3) == ("from-file", "shh")
    plain = s3_config(tmp_path, endpoint="http://x:1", bucket="b")
    assert credentials(plain.recording.s3) == (ACCESS_KEY, SECRET_KEY)
    ini.write_text("[default]\naws_access_key_id = only-the-id\n")
    with pytest.raises(StartupError, match=r"^recording\.s3\.credentials_file .*: needs"):
        credentials(config.recording.s3)
