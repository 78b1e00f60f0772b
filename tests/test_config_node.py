"""``[node] name`` (issue 20): the host name by default, and a name a row and a command
line can carry."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from proxy.config import ConfigError, load_config


def test_the_node_is_named_after_the_host_by_default(tmp_path: Path) -> None:
    assert load_config(None, cwd=tmp_path).node.name == socket.gethostname()


def test_a_node_name_is_read(tmp_path: Path) -> None:
    path = tmp_path / "recproxy.toml"
    path.write_text('[node]\nname = "rec-2.site_a"\n')
    assert load_config(path).node.name == "rec-2.site_a"


@pytest.mark.parametrize("name", ["", "two words", "-leading", "x" * 64, "a/b"])
def test_a_bad_node_name_fails_start_up_naming_the_key(tmp_path: Path, name: str) -> None:
    path = tmp_path / "recproxy.toml"
    path.write_text(f'[node]\nname = "{name}"\n')
    with pytest.raises(ConfigError, match=r"node\.name: must be 1 to 63"):
        load_config(path)
