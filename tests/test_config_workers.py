"""``[media] workers``: 0 (the call process relays) unless set; a count of processes,
anything else refused naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import ConfigError, load_config


def test_workers_are_none_by_default_and_a_count_when_set(tmp_path: Path) -> None:
    assert load_config(None, cwd=tmp_path).media.workers == 0
    path = tmp_path / "recproxy.toml"
    path.write_text("[media]\nworkers = 2\n")
    assert load_config(path).media.workers == 2


@pytest.mark.parametrize("value", ["-1", "65", '"2"', "1.5", "true"])
def test_a_bad_worker_count_is_refused_naming_the_key(tmp_path: Path, value: str) -> None:
    path = tmp_path / "recproxy.toml"
    path.write_text(f"[media]\nworkers = {value}\n")
    with pytest.raises(ConfigError, match=r"media\.workers"):
        load_config(path)
