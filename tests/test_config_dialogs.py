"""``[sip] reliable_provisional``, ``session_expires`` and ``min_se`` (issue 18): the
defaults, bad values named, an interval below the least accepted refused, and the real
``recproxy config check`` saying so (exit 78, EX_CONFIG) and changing nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from proxy.app import _core_settings
from proxy.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recproxy.toml"
    path.write_text(text)
    return path


def test_defaults_are_the_rfc_values(tmp_path: Path) -> None:
    sip = load_config(None, cwd=tmp_path).sip
    assert (sip.reliable_provisional, sip.session_expires, sip.min_se) == ("supported", 1800, 90)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('reliable_provisional = "always"', "sip.reliable_provisional"),
        ("session_expires = -1", "sip.session_expires"),
        ("session_expires = 1.5", "sip.session_expires"),
        ("min_se = 0", "sip.min_se"),
        ("session_expires = 60", "sip.session_expires (60) is below sip.min_se (90)"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, f"[sip]\n{text}\n"))
    assert named in str(caught.value)


def test_the_core_checks_min_se_only_with_session_timers(tmp_path: Path) -> None:
    on = load_config(write(tmp_path, "[sip]\nsession_expires = 8\nmin_se = 1\n"))
    assert (_core_settings(on, 5060).min_se, _core_settings(on, 5060).supported) == (
        1,
        ("siprec", "timer"),
    )
    off = load_config(write(tmp_path, "[sip]\nsession_expires = 0\n"))
    assert (_core_settings(off, 5060).min_se, _core_settings(off, 5060).supported) == (
        None,
        ("siprec",),
    )


def test_config_check_refuses_an_interval_below_min_se(tmp_path: Path) -> None:
    path = write(tmp_path, "[sip]\nsession_expires = 100\nmin_se = 200\n")
    before = path.read_text()
    result = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "config", "check", "--config", str(path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 78, result  # EX_CONFIG, as for every configuration error
    assert "sip.session_expires (100) is below sip.min_se (200)" in result.stderr
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recproxy.toml"]
