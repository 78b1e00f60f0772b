"""The configuration's version (P22): one hash of the effective settings and the prompts'
digests, the same however the file is written, different for any change of value or
prompt, and never carrying a secret."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import pytest

from proxy.config import Config, MediaSettings, load_config
from proxy.config_version import NOT_SET, SET, effective_settings, version_of

TOKEN_HASH = "ab" * 32
WEBHOOK = "https://hooks.example.org/recproxy/T0KEN-in-the-path?key=s3cret"

FILE = f"""
# the practice's proxy
[sip]
listen = "127.0.0.1:5060"
trusted_peers = ["127.0.0.1/32", "10.0.0.0/8"]

[media]
jitter_ms = 60

[services.general]
notice = true

[[routing.rules]]
match = "^\\\\+4420.*"
service = "general"

[webhook]
url = "{WEBHOOK}"

[[operators]]
name = "alice"
token_sha256 = "{TOKEN_HASH}"
identities = ["sip:2001@10.0.0.21"]
"""

# the same settings: sections and keys in another order, other spacing, other comments
SAME_FILE = f"""
[[operators]]
token_sha256   =   "{TOKEN_HASH}"
identities = [ "sip:2001@10.0.0.21" ]
name = "alice"   # the call taker
[webhook]
url = "{WEBHOOK}"
[media]
jitter_ms = 60
[services.general]
notice = true
[sip]
trusted_peers = [
    "127.0.0.1/32",
    "10.0.0.0/8",
]
listen = "127.0.0.1:5060"
[[routing.rules]]
service = "general"
match = "^\\\\+4420.*"
"""


def loaded(tmp_path: Path, text: str, name: str = "recproxy.toml") -> Config:
    path = tmp_path / name
    path.write_text(text)
    return load_config(path)


def digests(config: Config) -> dict[Path, str]:
    """Each prompt file's SHA-256, as the app factory has it from the loaded prompts."""
    return {
        path: hashlib.sha256(path.read_bytes()).hexdigest() for _, path in config.prompt_files()
    }


def version(config: Config) -> str:
    return version_of(config, digests(config)).version


def test_the_same_settings_written_differently_are_one_version(tmp_path: Path) -> None:
    first = version(loaded(tmp_path, FILE, "a.toml"))
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert version(loaded(tmp_path, SAME_FILE, "b.toml")) == first
    assert version(loaded(tmp_path, FILE + "\n# a comment at the end\n", "c.toml")) == first


def test_a_default_written_out_is_the_default(tmp_path: Path) -> None:
    defaults = load_config(None, cwd=tmp_path)
    assert version(loaded(tmp_path, "[media]\njitter_ms = 60\n")) == version(defaults)


@pytest.mark.parametrize(
    ("before", "after", "key"),
    [
        ("jitter_ms = 60", "jitter_ms = 80", "media.jitter_ms"),
        ('"10.0.0.0/8"]', '"10.0.0.0/9"]', "sip.trusted_peers"),
        ('match = "^', 'match = "^0', "routing.rules[0].match"),
        ('identities = ["sip:2001', 'identities = ["sip:2002', "operators.alice.identities"),
        ("notice = true", "notice = false", "services.general.notice"),
    ],
)
def test_a_changed_value_is_a_new_version(
    tmp_path: Path, before: str, after: str, key: str
) -> None:
    assert before in FILE
    old, new = loaded(tmp_path, FILE, "old.toml"), loaded(tmp_path, FILE.replace(before, after))
    old_settings, new_settings = (
        effective_settings(old, digests(old)),
        effective_settings(new, digests(new)),
    )
    assert old_settings[key] != new_settings[key]
    assert [k for k in new_settings if old_settings.get(k) != new_settings[k]] == [key]
    assert version(old) != version(new)


def test_a_prompt_rerecorded_under_the_same_name_is_a_new_version(tmp_path: Path) -> None:
    shipped = load_config(None).notice.prompt
    prompt = tmp_path / "notice.wav"
    prompt.write_bytes(shipped.read_bytes())
    config = loaded(tmp_path, '[notice]\nprompt = "notice.wav"\n')
    before = version_of(config, digests(config))
    assert (
        before.settings["notice.prompt.sha256"] == hashlib.sha256(shipped.read_bytes()).hexdigest()
    )
    prompt.write_bytes(shipped.read_bytes()[:-2] + b"\x01\x02")  # one sample differs
    after = version_of(config, digests(config))
    assert after.version != before.version
    assert after.settings["notice.prompt"] == before.settings["notice.prompt"]


def test_every_setting_is_in_it_with_its_defaults(tmp_path: Path) -> None:
    config = load_config(None, cwd=tmp_path)
    settings = effective_settings(config, digests(config))
    for section in dataclasses.fields(config):
        if section.name in ("source", "warnings", "services", "operators"):
            continue
        for key in dataclasses.fields(getattr(config, section.name)):
            name = f"{section.name}.{key.name}"  # a nested table by its keys (media.srtp)
            assert name in settings or any(k.startswith(f"{name}.") for k in settings)
    assert settings["media.rtp_ports"] == [20000, 20999]
    assert settings["media.srtp.caller"] == settings["media.srtp.call_taker"] == "off"
    assert settings["sip.trusted_peers"] == ["127.0.0.0/8", "::1/128"]
    assert settings["catalog.path"] == str(tmp_path.resolve() / "data/catalog.sqlite3")
    assert settings["operators"] == [] and settings["routing.rules"] == []
    assert "source" not in settings and "warnings" not in settings


def test_the_access_times_have_a_canonical_form(tmp_path: Path) -> None:
    config = load_config(None, cwd=tmp_path)
    settings = effective_settings(config, digests(config))
    assert settings["access.working_hours"] == ["08:00", "18:30"]
    assert settings["access.working_days"] == [0, 1, 2, 3, 4]
    assert settings["access.timezone"] == "Europe/London"
    for changed in ('timezone = "Europe/Dublin"', 'working_hours = "08:00-18:00"'):
        other = loaded(tmp_path, f"[access]\n{changed}\n")
        assert version(other) != version(config)


def test_secrets_are_redacted_before_hashing(tmp_path: Path) -> None:
    config = loaded(tmp_path, FILE)
    settings = effective_settings(config, digests(config))
    assert settings["operators.alice.token_sha256"] == SET
    assert settings["webhook.url"] == SET
    text = json.dumps(settings)
    assert TOKEN_HASH not in text and "T0KEN" not in text and "s3cret" not in text
    assert (
        effective_settings(load_config(None), digests(load_config(None)))["webhook.url"] == NOT_SET
    )
    # another token or webhook is not told apart: the version is no oracle for a secret
    other = FILE.replace(TOKEN_HASH, "cd" * 32).replace("T0KEN", "other")
    assert version(loaded(tmp_path, other, "other.toml")) == version(config)


def test_a_setting_of_a_kind_with_no_canonical_form_is_refused(tmp_path: Path) -> None:
    config = dataclasses.replace(
        load_config(None, cwd=tmp_path),
        media=MediaSettings(jitter_ms=object()),  # type: ignore[arg-type]
    )
    with pytest.raises(TypeError, match=r"media\.jitter_ms: no canonical form for object"):
        version(config)
