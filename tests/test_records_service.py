"""``recproxy records serve`` start-up: the private key is loaded once, before anything
else, and a missing or unreadable key, a wrong or missing passphrase, or an unreadable
or empty passphrase file each refuse to start — one line naming the setting, exit 1, no
traceback, no passphrase in it; the passphrase from the environment wins over the file.
And a throttled source address is answered 429."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import aiohttp
import pytest

from proxy.config import RecordsSettings
from proxy.records import custody
from proxy.startup import StartupError
from tests.control.records.service import (
    PASSPHRASE,
    PASSWORD,
    RecordsProcess,
    add_user,
    make_folder,
    recproxy,
    with_passphrase,
)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    made = make_folder(tmp_path)
    add_user(made, "alice", "admin")
    return made


def refused(config: Path, words: str, env: dict[str, str]) -> None:
    result = recproxy(config.parent, "records", "serve", "--config", str(config), env=env)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert words in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("recproxy: records service: "), lines
    assert "Traceback" not in result.stderr
    for secret in (PASSPHRASE, "the wrong one"):
        assert secret not in result.stderr + result.stdout


def test_a_wrong_passphrase_refuses_to_start(config: Path) -> None:
    refused(config, "wrong passphrase", with_passphrase("the wrong one"))


def test_no_passphrase_for_a_protected_key_refuses_to_start(config: Path) -> None:
    refused(config, "RECPROXY_KEY_PASSPHRASE or records.passphrase_file", with_passphrase(None))


def test_a_missing_key_refuses_to_start(config: Path) -> None:
    (config.parent / "data" / "keys" / "recording.key").unlink()
    refused(config, "recording.private_key", with_passphrase())


def test_an_unreadable_key_refuses_to_start(config: Path) -> None:
    # tests run as root: a path under a regular file cannot be opened whatever the mode
    text = config.read_text().replace(
        'private_key = "data/keys/recording.key"', 'private_key = "recproxy.toml/recording.key"'
    )
    config.write_text(text)
    refused(config, "recording.private_key", with_passphrase())


def test_the_passphrase_file_unlocks_the_key_and_the_environment_wins(config: Path) -> None:
    secret = config.parent / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    config.write_text(config.read_text().replace(
        "[records]\n", f'[records]\npassphrase_file = "{secret}"\n'
    ))  # fmt: skip
    running = RecordsProcess(config, env=with_passphrase(None))  # the file alone: starts
    assert running.stop() == 0
    refused(config, "wrong passphrase", with_passphrase("the wrong one"))  # env first


@pytest.mark.parametrize(
    ("content", "words"), [(None, "No such file"), ("\n", "the file is empty")]
)
def test_an_unreadable_or_empty_passphrase_file_refuses_to_start(
    config: Path, content: str | None, words: str
) -> None:
    secret = config.parent / "passphrase"
    if content is not None:
        secret.write_text(content)
    config.write_text(config.read_text().replace(
        "[records]\n", f'[records]\npassphrase_file = "{secret}"\n'
    ))  # fmt: skip
    refused(config, f"records.passphrase_file {secret}: {words}", with_passphrase(None))


def test_a_bad_records_key_fails_start_up_naming_it(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text('[records]\nchild = "sometimes"\nhttp_listen = "x"\n')
    result = recproxy(tmp_path, "records", "serve", "--config", "bad.toml")
    assert result.returncode == 78
    assert "records.child" in result.stderr and "records.http_listen" in result.stderr


def test_key_passphrase_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "passphrase"
    secret.write_text("from the file\nsecond line\n")
    monkeypatch.delenv(custody.PASSPHRASE_ENV, raising=False)
    assert custody.key_passphrase(None) is None
    assert custody.key_passphrase(secret) == b"from the file"
    monkeypatch.setenv(custody.PASSPHRASE_ENV, "")  # set but empty: as if unset
    assert custody.key_passphrase(secret) == b"from the file"
    monkeypatch.setenv(custody.PASSPHRASE_ENV, "from the environment")
    assert custody.key_passphrase(secret) == b"from the environment"
    monkeypatch.delenv(custody.PASSPHRASE_ENV)
    with pytest.raises(StartupError, match=r"records\.passphrase_file"):
        custody.key_passphrase(tmp_path / "absent")
    assert RecordsSettings().http_listen == ("127.0.0.1", 8081)
    assert os.environ.get(custody.PASSPHRASE_ENV) is None


async def test_a_throttled_source_address_is_429_with_retry_after(tmp_path: Path) -> None:
    config = make_folder(tmp_path, accounts="source_failures_per_minute = 2\n")
    add_user(config, "alice", "admin")
    running = RecordsProcess(config)
    try:
        async with aiohttp.ClientSession() as http:
            statuses = []
            for _ in range(4):
                async with http.post(
                    f"{running.url}/api/v1/login",
                    json={"username": "alice", "password": "not it, not it"},
                ) as answer:
                    statuses.append(answer.status)
            assert statuses == [401, 401, 401, 429]
            async with http.post(  # the right password too, from this address
                f"{running.url}/api/v1/login", json={"username": "alice", "password": PASSWORD}
            ) as answer:
                assert answer.status == 429
                assert 1 <= int(answer.headers["Retry-After"]) <= 60
                assert (await answer.json(content_type=None))["status"] == 429
    finally:
        assert running.stop() == 0


def test_no_catalog_refuses_to_start_naming_it(tmp_path: Path) -> None:
    config = make_folder(tmp_path)  # keygen made the catalog for its audit entry
    for made in (tmp_path / "data").glob("catalog.sqlite3*"):
        made.unlink()
    refused(config, "catalog.path", with_passphrase())
    assert not (tmp_path / "data" / "catalog.sqlite3").exists()  # nothing made


def test_a_listener_address_in_use_refuses_to_start_naming_it(config: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config.write_text(config.read_text().replace("127.0.0.1:0", f"127.0.0.1:{port}"))
        refused(config, f"records.http_listen 127.0.0.1:{port}", with_passphrase())
