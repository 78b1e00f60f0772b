"""``[media] srtp``: one policy for both legs or a table per leg, off by default, and a
bad value refused naming the key (issue 18)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from proxy.config import ConfigError, SrtpSettings, build_config, load_config


def test_srtp_is_off_on_both_legs_by_default(tmp_path: Path) -> None:
    assert load_config(None, cwd=tmp_path).media.srtp == SrtpSettings("off", "off")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('srtp = "offer"', SrtpSettings("offer", "offer")),
        ('srtp = "require"', SrtpSettings("require", "require")),
        ('srtp = { caller = "require", call_taker = "offer" }', SrtpSettings("require", "offer")),
        ('srtp = { caller = "offer" }', SrtpSettings("offer", "off")),
        ("srtp = {}", SrtpSettings("off", "off")),
    ],
)
def test_one_value_or_a_table_per_leg(tmp_path: Path, text: str, expected: SrtpSettings) -> None:
    data = tomllib.loads(f"[media]\n{text}\n")
    assert build_config(data, base=tmp_path).media.srtp == expected


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("on", "must be one of 'off', 'offer', 'require'"),
        (True, 'must be "off", "offer" or "require", or a table'),
        ({"caller": "mandatory"}, "caller must be one of"),
        ({"callee": "offer"}, "unknown leg 'callee' (known: caller, call_taker)"),
        ({"call_taker": 1}, "call_taker must be one of"),
    ],
)
def test_a_bad_srtp_value_names_its_key(tmp_path: Path, value: object, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config({"media": {"srtp": value}}, base=tmp_path)
    (error,) = caught.value.errors
    assert error.startswith("media.srtp: ") and says in error
