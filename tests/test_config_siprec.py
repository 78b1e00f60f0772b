"""``[siprec]``: its keys read, ``sources`` as networks like ``[sip] trusted_peers``,
and the settings that cannot work (enabled with no source) refused naming the key."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from proxy.config import ConfigError, SiprecSettings, build_config


def siprec(**raw: object) -> SiprecSettings:
    return build_config({"siprec": raw}, base=Path("/")).siprec


def test_off_and_no_sources_by_default() -> None:
    settings = build_config({}, base=Path("/")).siprec
    assert settings == SiprecSettings()
    assert not settings.enabled and settings.sources == ()
    assert not settings.is_source("127.0.0.1")


def test_srtp_takes_what_the_src_offers_by_default_and_is_one_of_the_policies() -> None:
    assert SiprecSettings().srtp == "offer"
    assert siprec(srtp="require").srtp == "require"
    with pytest.raises(ConfigError) as caught:
        siprec(srtp="sdes")
    assert "siprec.srtp" in str(caught.value)


def test_the_media_timeout_is_off_by_default_and_bounded() -> None:
    assert SiprecSettings().media_timeout_seconds == 0
    assert siprec(media_timeout_seconds=120).media_timeout_seconds == 120
    with pytest.raises(ConfigError) as caught:
        siprec(media_timeout_seconds=-1)
    assert "siprec.media_timeout_seconds" in str(caught.value)


def test_sources_are_networks_and_only_they_are_sources() -> None:
    settings = siprec(enabled=True, sources=["192.0.2.10", "2001:db8::/32"])
    assert settings.sources == (
        ipaddress.ip_network("192.0.2.10/32"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    assert settings.is_source("192.0.2.10") and settings.is_source("2001:db8::5")
    assert not settings.is_source("192.0.2.11") and not settings.is_source("not an ip")


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"sources": "192.0.2.10"}, "siprec.sources"),
        ({"sources": ["sbc.example"]}, "siprec.sources"),
        ({"enabled": True}, "siprec.sources: required when siprec.enabled is true"),
        ({"enabled": True, "sources": []}, "siprec.sources: required"),
    ],
)
def test_a_bad_value_names_its_key(raw: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        siprec(**raw)
    assert words in str(caught.value)
