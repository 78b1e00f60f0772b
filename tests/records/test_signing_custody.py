"""Only the key holder loads the export-signing key: ``custody.load_signing_key`` unlocks
it with the recording key's passphrase and names ``export.signing_key`` when it cannot."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from proxy.config import Config, ExportSettings, RecordsSettings
from proxy.records import custody
from proxy.startup import StartupError
from proxy.storage import crypto


def config_with(tmp_path: Path, passphrase_file: Path | None = None) -> Config:
    return dataclasses.replace(
        Config(),
        export=ExportSettings(
            signing_key=tmp_path / "signing.key", signing_public_key=tmp_path / "signing.pub"
        ),
        records=RecordsSettings(passphrase_file=passphrase_file),
    )


def test_the_signing_key_unlocks_with_the_passphrase_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(custody.PASSPHRASE_ENV, raising=False)
    key = crypto.generate_signing_key()
    crypto.save_private_key(tmp_path / "signing.key", key, b"the passphrase")
    (tmp_path / "secret").write_text("the passphrase\n")
    loaded = custody.load_signing_key(config_with(tmp_path, tmp_path / "secret"))
    assert crypto.public_key_sha256(loaded.public_key()) == crypto.public_key_sha256(
        key.public_key()
    )
    with pytest.raises(
        StartupError, match=r"^export\.signing_key .*passphrase is needed.*set RECPROXY"
    ):
        custody.load_signing_key(config_with(tmp_path))


def test_a_missing_or_wrong_kind_of_signing_key_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(custody.PASSPHRASE_ENV, raising=False)
    with pytest.raises(StartupError, match=r"^export\.signing_key .*signing\.key: cannot read"):
        custody.load_signing_key(config_with(tmp_path))
    private, _ = crypto.generate_keypair()  # the recording key put in its place
    crypto.save_private_key(tmp_path / "signing.key", private, None)
    with pytest.raises(StartupError, match=r"^export\.signing_key .*not an Ed25519 signing key"):
        custody.load_signing_key(config_with(tmp_path))
