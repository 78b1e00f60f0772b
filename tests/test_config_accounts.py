"""``[accounts]``: the login limits and session lifetimes, each bad value refused with
its key named, and an idle timeout that could never apply refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import AccountsSettings, ConfigError, build_config


def test_the_defaults() -> None:
    assert build_config({}, base=Path("/")).accounts == AccountsSettings(5, 900, 20, 480, 30, 60)


def test_every_key_is_read() -> None:
    raw = {
        "max_failures": 3,
        "lockout_seconds": 60,
        "source_failures_per_minute": 7,
        "browser_session_minutes": 120,
        "idle_minutes": 120,
        "token_minutes": 15,
    }
    accounts = build_config({"accounts": raw}, base=Path("/")).accounts
    assert accounts == AccountsSettings(3, 60, 7, 120, 120, 15)


@pytest.mark.parametrize(
    "key, value",
    [
        ("max_failures", 0),
        ("lockout_seconds", -1),
        ("source_failures_per_minute", "many"),
        ("token_minutes", 0),
        ("idle_minutes", 1.5),
    ],
)
def test_a_bad_value_names_its_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"accounts\.{key}"):
        build_config({"accounts": {key: value}}, base=Path("/"))


def test_an_unknown_key_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"accounts\.password: unknown key"):
        build_config({"accounts": {"password": "letmein12345"}}, base=Path("/"))


def test_an_idle_timeout_longer_than_the_session_is_refused() -> None:
    raw = {"browser_session_minutes": 60, "idle_minutes": 61}
    with pytest.raises(ConfigError, match=r"idle_minutes \(61\) is longer than"):
        build_config({"accounts": raw}, base=Path("/"))
