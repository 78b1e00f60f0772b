"""The call proxy's side of the privilege boundary (issue 15): ``ensure_keys`` only
ever reads the public key.  At first start the development key pair is made by a
short-lived key-holder process: this process neither generates a private key nor opens
the private key file (an audit hook sees every ``open``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy import app
from proxy.config import Config, ExportSettings, RecordingSettings, RecordsSettings
from proxy.startup import StartupError
from proxy.storage import crypto

_opened: list[str] = []
_watching: list[str] = []  # the private key path while a test watches it


def _hook(event: str, args: tuple[object, ...]) -> None:
    path = args[0] if event == "open" and args else None
    if _watching and isinstance(path, str | Path) and os.fspath(path) == _watching[0]:
        _opened.append(os.fspath(path))


sys.addaudithook(_hook)  # audit hooks cannot be removed: it acts only while watching


def config_in(folder: Path, passphrase_file: Path | None = None) -> Config:
    return Config(
        recording=RecordingSettings(
            public_key=folder / "keys" / "recording.pub",
            private_key=folder / "keys" / "recording.key",
        ),
        records=RecordsSettings(passphrase_file=passphrase_file),
        export=ExportSettings(
            signing_key=folder / "keys" / "signing.key",
            signing_public_key=folder / "keys" / "signing.pub",
        ),
    )


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[Config]:
    config = config_in(tmp_path)
    _opened.clear()
    _watching[:] = [os.fspath(config.recording.private_key)]
    yield config
    _watching.clear()


def test_the_development_key_pair_is_made_outside_the_call_proxy(
    watched: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse() -> None:
        raise AssertionError("the call proxy generated a private key")

    monkeypatch.setattr(crypto, "generate_keypair", refuse)
    monkeypatch.setenv("RECPROXY_KEY_PASSPHRASE", "dev passphrase")
    public, made = app.ensure_keys(watched)
    assert made and _opened == []
    private = crypto.load_private_key(watched.recording.private_key, b"dev passphrase")
    assert crypto.public_key_bytes(private.public_key()) == crypto.public_key_bytes(public)
    assert watched.recording.private_key.stat().st_mode & 0o777 == 0o600
    _opened.clear()
    again, made = app.ensure_keys(watched)  # the second start: the public key, read
    assert not made and _opened == []
    assert crypto.public_key_bytes(again) == crypto.public_key_bytes(public)
    watched.recording.private_key.open("rb").close()  # the hook sees an open: it can fail
    assert _opened == [os.fspath(watched.recording.private_key)]


def test_the_key_holder_uses_the_passphrase_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RECPROXY_KEY_PASSPHRASE", raising=False)
    secret = tmp_path / "passphrase"
    secret.write_text("from the file\n")
    config = config_in(tmp_path, secret)
    app.ensure_keys(config)
    crypto.load_private_key(config.recording.private_key, b"from the file")


def test_a_development_signing_key_is_made_with_the_recording_key_unless_one_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECPROXY_KEY_PASSPHRASE", "dev passphrase")
    config = config_in(tmp_path / "first")
    app.ensure_keys(config)
    signing = crypto.load_signing_key(config.export.signing_key, b"dev passphrase")
    published = crypto.load_signing_public_key(config.export.signing_public_key)
    assert crypto.public_key_sha256(published) == crypto.public_key_sha256(signing.public_key())
    assert config.export.signing_key.stat().st_mode & 0o777 == 0o600

    kept = config_in(tmp_path / "second")  # an installation's own signing key stays
    kept.export.signing_public_key.parent.mkdir(parents=True)
    kept.export.signing_public_key.write_bytes(b"theirs")
    app.ensure_keys(kept)
    assert kept.export.signing_public_key.read_bytes() == b"theirs"
    assert not kept.export.signing_key.exists()


def test_a_key_holder_that_cannot_write_the_key_stops_start_up_with_its_line(
    tmp_path: Path,
) -> None:
    (tmp_path / "keys").write_text("a file where the keys folder should be")
    with pytest.raises(StartupError, match=r"recording\.private_key .*keys/recording\.key"):
        app.ensure_keys(config_in(tmp_path))
