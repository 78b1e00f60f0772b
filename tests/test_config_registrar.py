"""``[registrar]`` (issue 18): each key read, each bad value refused naming its key, and
the settings that cannot work together (no realm when enabled, intervals out of order)
refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import ConfigError, RegistrarSettings, build_config


def registrar(**raw: object) -> RegistrarSettings:
    return build_config({"registrar": raw}, base=Path("/")).registrar


def test_disabled_by_default() -> None:
    settings = build_config({}, base=Path("/")).registrar
    assert settings == RegistrarSettings()
    assert not settings.enabled and settings.algorithms == ("SHA-256", "MD5")


def test_every_key_is_read() -> None:
    settings = registrar(
        enabled=True,
        realm="gp.example",
        algorithms=["MD5"],
        min_expires=30,
        max_expires=7200,
        default_expires=600,
        max_contacts_per_aor=2,
        nonce_seconds=60,
        source_failures=4,
        account_failures=8,
        failure_window_seconds=120,
    )
    assert settings == RegistrarSettings(
        True, "gp.example", ("MD5",), 30, 7200, 600, 2, 60, 4, 8, 120
    )


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"enabled": "yes"}, "registrar.enabled"),
        ({"realm": 'a"b'}, "registrar.realm"),
        ({"algorithms": ["SHA-512"]}, "registrar.algorithms: 'SHA-512'"),
        ({"algorithms": ["MD5", "MD5"]}, "listed twice"),
        ({"algorithms": []}, "registrar.algorithms"),
        ({"min_expires": 0}, "registrar.min_expires"),
        ({"max_contacts_per_aor": 101}, "registrar.max_contacts_per_aor"),
        ({"nonce_seconds": 1}, "registrar.nonce_seconds"),
        ({"enabled": True}, "registrar.realm: required when registrar.enabled is true"),
        ({"min_expires": 600, "max_expires": 300, "default_expires": 300}, "above"),
        ({"default_expires": 30}, "registrar.default_expires: 30 is outside"),
        ({"failures": 3}, "registrar.failures: unknown key"),
    ],
)
def test_a_bad_value_names_its_key(raw: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        registrar(**raw)
    assert words in str(caught.value)
