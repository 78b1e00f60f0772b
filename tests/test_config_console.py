"""The ``[console]`` section: no Grafana link by default, an http(s) one when given, and
anything else refused at start naming the key (the real ``recproxy config check``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import ConfigError, build_config, load_config
from tests.cli.test_cli import recproxy

GRAFANA = "https://grafana.example.org/d/recproxy"


def test_the_grafana_link_is_off_by_default_and_taken_when_given(tmp_path: Path) -> None:
    assert load_config(None, cwd=tmp_path).console.grafana_url == ""
    given = build_config({"console": {"grafana_url": GRAFANA}}, base=tmp_path)
    assert given.console.grafana_url == GRAFANA


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("grafana_url", "javascript:alert(1)"),
        ("grafana_url", "grafana.example.org/d/recproxy"),
        ("grafana_url", "http:///no-host"),
        ("grafana_url", 42),
        ("dashboard", GRAFANA),
    ],
)
def test_a_bad_console_value_names_its_key(tmp_path: Path, key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"^console\.{key}: "):
        build_config({"console": {key: value}}, base=tmp_path)


def test_config_check_refuses_a_grafana_link_that_is_not_http(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text('[console]\ngrafana_url = "file:///etc/passwd"\n')
    refused = recproxy("config", "check", "--config", "c.toml", cwd=tmp_path)
    assert refused.returncode == 78, refused.stderr
    assert "console.grafana_url: must be an http(s) URL" in refused.stderr
    assert refused.stderr.count("\n") == 1, refused.stderr  # one line
    (tmp_path / "c.toml").write_text(f'[console]\ngrafana_url = "{GRAFANA}"\n')
    accepted = recproxy("config", "check", "--config", "c.toml", cwd=tmp_path)
    assert accepted.returncode == 0, accepted.stderr
