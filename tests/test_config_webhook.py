"""The ``[webhook]`` section: off by default, its queue beside the catalog, and bad values
refused naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import ConfigError, build_config, load_config


def test_the_webhook_is_off_by_default_and_queues_beside_the_catalog(tmp_path: Path) -> None:
    config = load_config(None, cwd=tmp_path)
    assert config.webhook.url == ""
    assert config.webhook_queue_dir == tmp_path / "data" / "webhook-queue"
    on = build_config(
        {"webhook": {"url": "https://hooks.example.org/rec?t=x", "queue_dir": "q"}}, base=tmp_path
    )
    assert on.webhook.url == "https://hooks.example.org/rec?t=x"
    assert on.webhook_queue_dir == tmp_path / "q"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("url", "ftp://hooks.example.org/x"),
        ("url", "hooks.example.org/x"),
        ("url", "http:///no-host"),
        ("url", "http://[::1/x"),
        ("url", 42),
        ("timeout_seconds", 0),
        ("max_attempts", 0),
        ("queue_max", 0),
        ("secret", "in the file"),
    ],
)
def test_a_bad_webhook_value_names_its_key(tmp_path: Path, key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"^webhook\.{key}: "):
        build_config({"webhook": {key: value}}, base=tmp_path)


def test_a_bad_webhook_url_is_not_echoed_as_it_may_hold_a_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        build_config({"webhook": {"url": "hooks.example.org/?token=s3cret"}}, base=tmp_path)
    assert "s3cret" not in str(error.value)
