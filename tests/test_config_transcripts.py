"""The [transcripts] section: defaults, a configured model folder and hash, and each
bad value named by its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import ConfigError, TranscriptsSettings, build_config

HASH = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"


def test_defaults_use_the_installed_model_on_two_threads(tmp_path: Path) -> None:
    assert build_config({}, base=tmp_path).transcripts == TranscriptsSettings()
    assert TranscriptsSettings().model_path is None
    assert TranscriptsSettings().threads == 2


def test_a_model_folder_resolves_against_the_config_folder(tmp_path: Path) -> None:
    section = {"model_path": "models/whisper", "model_sha256": HASH.upper(), "threads": 4,
               "language": "auto", "vad_mode": 3}  # fmt: skip
    settings = build_config({"transcripts": section}, base=tmp_path).transcripts
    assert settings == TranscriptsSettings(tmp_path / "models/whisper", HASH, 4, "auto", 3)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"threads": 0}, "transcripts.threads: must be an integer from 1 to 64, got 0"),
        ({"vad_mode": 4}, "transcripts.vad_mode: must be an integer from 0 to 3, got 4"),
        ({"language": "english"}, 'transcripts.language: must be a language code like "en"'),
        ({"model_path": "m", "model_sha256": "abc"}, "transcripts.model_sha256: must be the 64"),
        ({"model_sha256": HASH}, "transcripts.model_sha256: needs transcripts.model_path"),
        ({"model": "x"}, "transcripts.model: unknown key"),
    ],
)
def test_a_bad_value_is_named_by_its_key(
    tmp_path: Path, section: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        build_config({"transcripts": section}, base=tmp_path)
    assert str(error.value).startswith(message)
