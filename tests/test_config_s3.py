"""``[recording] store`` and ``[recording.s3]`` (issue 20): the local disk by default; a
bucket named by endpoint and bucket; credentials never in the file; bad values refused
naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import ConfigError, build_config, load_config


def test_the_local_disk_is_the_default_store(tmp_path: Path) -> None:
    config = load_config(None, cwd=tmp_path)
    assert config.recording.store == "local"
    assert config.recording.s3.endpoint == "" and config.recording.s3.object_lock == "off"


def test_an_s3_store_reads_its_table(tmp_path: Path) -> None:
    config = build_config(
        {
            "recording": {
                "store": "s3",
                "s3": {
                    "endpoint": "https://minio.internal:9000/",
                    "bucket": "recordings",
                    "prefix": "site-a/",
                    "region": "eu-west-2",
                    "object_lock": "compliance",
                    "credentials_file": "s3.ini",
                },
            }
        },
        base=tmp_path,
    )
    s3 = config.recording.s3
    assert config.recording.store == "s3"
    assert s3.endpoint == "https://minio.internal:9000"
    assert (s3.bucket, s3.prefix, s3.region, s3.object_lock) == (
        "recordings",
        "site-a/",
        "eu-west-2",
        "compliance",
    )
    assert s3.credentials_file == tmp_path / "s3.ini"


def test_an_s3_store_needs_an_endpoint_and_a_bucket(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as failed:
        build_config({"recording": {"store": "s3"}}, base=tmp_path)
    assert 'recording.s3.endpoint: required when recording.store = "s3"' in str(failed.value)
    assert 'recording.s3.bucket: required when recording.store = "s3"' in str(failed.value)


@pytest.mark.parametrize(
    "key", ["secret_access_key", "aws_secret_access_key", "access_key_id", "session_token"]
)
def test_a_credential_in_the_file_fails_naming_the_key(tmp_path: Path, key: str) -> None:
    with pytest.raises(ConfigError) as failed:
        build_config({"recording": {"s3": {key: "AKIA-looking-value"}}}, base=tmp_path)
    message = str(failed.value)
    assert f"recording.s3.{key}: credentials never go in the configuration file" in message
    assert "AKIA-looking-value" not in message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("endpoint", "minio:9000"),
        ("endpoint", "ftp://minio:9000"),
        ("object_lock", "legal"),
        ("bucket", 7),
        ("colour", "blue"),
    ],
)
def test_a_bad_s3_value_names_its_key(tmp_path: Path, key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"recording\.s3\.{key}: "):
        build_config({"recording": {"s3": {key: value}}}, base=tmp_path)


def test_a_bad_store_names_its_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"recording\.store: "):
        build_config({"recording": {"store": "tape"}}, base=tmp_path)
