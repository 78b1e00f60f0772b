"""Where a config file's paths lead: relative ones to the file's own folder, and
``builtin:NAME`` to the prompts shipped inside the package, wherever it is installed
(issue 12: a config file outside the checkout named prompts that were not there)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import proxy
from proxy.config import PROMPTS_DIR, ConfigError, load_config

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_the_shipped_prompts_are_package_data() -> None:
    assert PROMPTS_DIR.parent == Path(proxy.__file__).parent  # inside the package
    for name in ("notice-en-GB", "no-record-en-GB"):
        assert (PROMPTS_DIR / f"{name}.wav").stat().st_size > 1000
        assert (PROMPTS_DIR / f"{name}.txt").read_text().strip()


def test_the_documented_example_plays_the_shipped_prompts_from_any_folder(
    tmp_path: Path,
) -> None:
    example = re.search(r"```toml\n(.*?)```", DOC.read_text(), re.S)
    assert example is not None
    path = tmp_path / "etc" / "recproxy.toml"
    path.parent.mkdir()
    path.write_text(example.group(1))
    notice = load_config(path).notice
    assert notice.prompt == PROMPTS_DIR / "notice-en-GB.wav"
    assert notice.no_record_prompt == PROMPTS_DIR / "no-record-en-GB.wav"
    assert notice.prompt.is_file() and notice.no_record_prompt.is_file()


def test_builtin_names_a_shipped_prompt_for_a_service(tmp_path: Path) -> None:
    path = tmp_path / "recproxy.toml"
    path.write_text('[services.advice]\nprompt = "builtin:no-record-en-GB.wav"\n')
    assert load_config(path).services["advice"].prompt == PROMPTS_DIR / "no-record-en-GB.wav"


@pytest.mark.parametrize("name", ["welcome.wav", "../notice-en-GB.wav", ""])
def test_an_unknown_builtin_prompt_is_refused_naming_the_key(tmp_path: Path, name: str) -> None:
    path = tmp_path / "recproxy.toml"
    path.write_text(f'[notice]\nprompt = "builtin:{name}"\n')
    with pytest.raises(ConfigError, match=r"notice\.prompt: no shipped prompt .*notice-en-GB\.wav"):
        load_config(path)


def test_relative_paths_resolve_against_the_config_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc" / "recproxy"
    folder.mkdir(parents=True)
    (folder / "recproxy.toml").write_text(
        '[notice]\nprompt = "sounds/notice.wav"\n\n[recording]\ndir = "recordings"\n'
    )
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(Path("../etc/recproxy/recproxy.toml"))
    assert config.notice.prompt == folder / "sounds" / "notice.wav"
    assert config.recording.dir == folder / "recordings"
    assert config.catalog.path == folder / "data" / "catalog.sqlite3"  # defaults too
