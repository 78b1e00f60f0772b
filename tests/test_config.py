"""Configuration: defaults, validation that names the key, relative paths."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.config import PROMPTS_DIR, ConfigError, NumberError, NumberSettings, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recproxy.toml"
    path.write_text(text)
    return path


def test_defaults_without_a_file(tmp_path: Path) -> None:
    config = load_config(None, cwd=tmp_path)
    assert config.sip.listen == ("0.0.0.0", 5060)
    assert config.media.rtp_ports == (20000, 20999)
    assert config.routing.call_taker == "sip:calltaker@127.0.0.1:5070"
    assert config.http.listen == ("127.0.0.1", 8080)
    assert config.catalog.path == tmp_path.resolve() / "data/catalog.sqlite3"
    assert config.recording.dir == tmp_path.resolve() / "data/recordings"
    assert config.notice.prompt == PROMPTS_DIR / "notice-en-GB.wav"
    assert config.notice.prompt.exists()


def test_the_issue_example_loads_and_paths_resolve_against_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[sip]
listen = "127.0.0.1:5060"
advertise = "127.0.0.1"
trusted_peers = ["127.0.0.1/32"]
[routing]
call_taker = "sip:desk@127.0.0.1:5070"
[notice]
prompt = "prompts/notice-en-GB.wav"
mode = "answer"
[media]
rtp_ports = "20000-20999"
[recording]
dir = "data/recordings"
segment_seconds = 10
public_key = "data/keys/recording.pub"
private_key = "data/keys/recording.key"
[catalog]
path = "data/catalog.sqlite3"
[http]
listen = "127.0.0.1:8080"
""",
    )
    config = load_config(path)
    base = tmp_path.resolve()
    assert config.sip.trusted_peers == (ipaddress.ip_network("127.0.0.1/32"),)
    assert config.notice.prompt == base / "prompts/notice-en-GB.wav"
    assert config.recording.public_key == base / "data/keys/recording.pub"
    assert config.catalog.path == base / "data/catalog.sqlite3"
    assert config.source == path.resolve()


def test_unset_default_paths_also_resolve_against_the_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[http]\nlisten = "127.0.0.1:9000"\n'))
    assert config.catalog.path == tmp_path.resolve() / "data/catalog.sqlite3"
    assert config.http.listen == ("127.0.0.1", 9000)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[sip]\nlisen = "1.2.3.4:5060"\n', "sip.lisen: unknown key"),
        ('[sipp]\nlisten = "1.2.3.4:5060"\n', "sipp: unknown section"),
        ('[sip]\nlisten = "1.2.3.4"\n', "sip.listen:"),
        ('[sip]\nlisten = "1.2.3.4:70000"\n', "sip.listen:"),
        ('[sip]\ntrusted_peers = ["10.0.0.0/33"]\n', "sip.trusted_peers:"),
        ('[sip]\ntrusted_peers = "10.0.0.0/8"\n', "sip.trusted_peers:"),
        ('[routing]\ncall_taker = "desk@127.0.0.1"\n', "routing.call_taker:"),
        ('[notice]\nmode = "loud"\n', "notice.mode:"),
        ('[media]\nrtp_ports = "20000"\n', "media.rtp_ports:"),
        ('[media]\nrtp_ports = "30000-20000"\n', "media.rtp_ports:"),
        ("[recording]\nsegment_seconds = 0\n", "recording.segment_seconds:"),
        ('[recording]\nsegment_seconds = "10"\n', "recording.segment_seconds:"),
        ("[recording]\nsegment_seconds = true\n", "recording.segment_seconds:"),
        ('[recording]\nencoding = "flac"\n', "recording.encoding:"),
        ('[catalog]\npath = ""\n', "catalog.path:"),
        ('[sip]\nadvertise = "0.0.0.0"\n', "sip.advertise: must be the address others reach"),
        ('[sip]\nadvertise = "::"\n', "sip.advertise: must be the address others reach"),
        ("[limits]\nmax_calls = 0\n", "limits.max_calls:"),
        ('[limits]\ntcp_idle_seconds = "1"\n', "limits.tcp_idle_seconds:"),
        ("recording = 3\n", "recording: must be a table"),
        ('[sip]\nadvertise6 = "10.0.0.1"\n', "sip.advertise6:"),
        ('[sip]\nadvertise6 = "::"\n', "sip.advertise6:"),
        ("[media]\nnat_latch_seconds = -1\n", "media.nat_latch_seconds:"),
    ],
)
def test_bad_keys_and_values_are_named(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert named in str(caught.value)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[sip\nlisten=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.toml")


def test_trusted_peer_check() -> None:
    config = load_config(None)
    assert config.sip.is_trusted("127.0.0.1")
    assert config.sip.is_trusted("::1")
    assert not config.sip.is_trusted("192.0.2.1")
    assert not config.sip.is_trusted("not-an-ip")


def test_routing_rules_services_operators_dtmf_and_numbers(tmp_path: Path) -> None:
    token_hash = "a" * 64
    config = load_config(
        write(
            tmp_path,
            f"""
[sip]
internal_peers = ["10.0.0.0/8"]
[routing]
trunk = "sip:trunk@127.0.0.1:5080"
[[routing.rules]]
match = "\\\\+44[1-9][0-9]{{8,9}}"
direction = "outbound"
service = "general"
[[routing.rules]]
numbers = ["+44 (0)1234 567890", "0044 1632 960124"]
service = "patient-advice"
[services.general]
record = true
[services.patient-advice]
prompt = "advice.wav"
record = false
[dtmf]
stop = "#7"
[numbers]
region = "GB"
[[operators]]
name = "alice"
token_sha256 = "{token_hash}"
identities = ["sip:2001@10.0.0.21", "2001"]
team = "reception"
""",
        )
    )
    assert config.sip.is_internal("10.1.2.3") and not config.sip.is_internal("192.0.2.1")
    dialled = config.numbers.normalise("01234567890")
    rule = config.routing.rule_for(dialled, outbound_allowed=True)
    assert rule is not None and rule.direction == "outbound" and rule.service == "general"
    for form in ("01234 567890", "+441234567890", "01632 960124"):
        inbound = config.routing.rule_for(config.numbers.normalise(form), outbound_allowed=False)
        assert inbound is not None and inbound.service == "patient-advice", form
    assert config.routing.rule_for("+441234567891", outbound_allowed=False) is None
    assert config.services["patient-advice"].record is False
    assert config.services["patient-advice"].prompt == tmp_path.resolve() / "advice.wav"
    assert config.dtmf.codes() == {"#7": "stop", "*9": "discard", "*1": "resume"}
    assert config.operators[0].identities == ("sip:2001@10.0.0.21", "2001")


# the UK forms of one number a written request or a caller may give (issue 12, defect 3)
UK_FORMS = ["+44 (0)1234 567890", "0044 1234 567890", "01234 567890", "+441234567890"]


@pytest.mark.parametrize("form", UK_FORMS)
def test_every_uk_form_of_a_number_is_the_same_e164(tmp_path: Path, form: str) -> None:
    numbers = load_config(None, cwd=tmp_path).numbers
    assert numbers.region == "GB"
    assert numbers.e164(form) == "+441234567890"
    assert numbers.normalise(form) == "+441234567890"


@pytest.mark.parametrize(
    "text", ["+44 (0)1234", "reception", "alice01234567890", "01234 567890 x12", "0800 FLOWERS", ""]
)
def test_text_that_is_not_a_whole_number_is_refused_naming_it(tmp_path: Path, text: str) -> None:
    numbers = load_config(None, cwd=tmp_path).numbers
    with pytest.raises(NumberError, match=re.escape(repr(text))):
        numbers.e164(text)
    assert numbers.normalise(text) == text  # a call's user name or extension stays as it is


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="+0123456789 ().-/x#*;", max_size=30) | st.text(max_size=30))
def test_normalise_takes_any_user_part_without_raising(text: str) -> None:
    """A caller's user part comes off the network: it is normalised or kept, never an
    exception."""
    numbers = NumberSettings()
    out = numbers.normalise(text)
    assert out == text or (out.startswith("+") and out[1:].isdigit())


def test_national_numbers_follow_the_configured_region(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[numbers]\nregion = "US"\n'))
    assert config.numbers.e164("(202) 555-0100") == "+12025550100"
    assert config.numbers.e164("+44 (0)1234 567890") == "+441234567890"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[[routing.rules]]\nservice = "x"\n', "routing.rules[0].match: required"),
        (
            '[[routing.rules]]\nnumbers = ["01234 567890", "+44 (0)1234"]\n',
            "routing.rules[0].numbers: '+44 (0)1234' is not a telephone number",
        ),
        ("[[routing.rules]]\nnumbers = []\n", "routing.rules[0].numbers: must be a non-empty"),
        ('[numbers]\nregion = "UK"\n', "numbers.region: must be a two-letter region"),
        ('[numbers]\ncountry_code = "44"\n', "numbers.country_code: unknown key"),
        ('[[routing.rules]]\nmatch = "("\n', "routing.rules[0].match:"),
        ('[[routing.rules]]\nmatch = "1"\nservice = "nope"\n', "routing.rules[0].service:"),
        ('[[routing.rules]]\nmatch = "1"\ndirection = "outbound"\n', "needs routing.trunk"),
        ('[[routing.rules]]\nmatch = "1"\nwhen = 3\n', "routing.rules[0].when: unknown key"),
        ('[services.general]\nrecord = "yes"\n', "services.general.record:"),
        ("[services.General]\n", "services.General:"),
        ('[dtmf]\nstop = "*x"\n', "dtmf.stop:"),
        ('[[operators]]\nname = "a"\n', "operators[0].token_sha256: required"),
        ('[[operators]]\nname = "a"\ntoken_sha256 = "abc"\n', "operators[0].token_sha256:"),
        ("operators = 3\n", "operators: must be an array"),
        (
            '[[operators]]\nname = "a"\ntoken_sha256 = "' + "ab" * 32 + '"\n'
            '[[operators]]\nname = "b"\ntoken_sha256 = "' + "AB" * 32 + '"\n',
            "operators[1].token_sha256: the same as operators[0]'s",
        ),
    ],
)
def test_nested_tables_name_the_bad_key(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert named in str(caught.value)


@pytest.mark.parametrize(
    ("text", "v4", "v6"),
    [
        ("", "127.0.0.1", "::1"),  # a loopback advertise: ::1 for IPv6 parties
        ('[sip]\nadvertise = "192.0.2.5"\n', "192.0.2.5", None),
        (
            '[sip]\nadvertise = "192.0.2.5"\nadvertise6 = "2001:db8:0::5"\n',
            "192.0.2.5",
            "2001:db8::5",
        ),
        ('[sip]\nadvertise6 = ""\n', "127.0.0.1", None),
        ('[sip]\nadvertise = "2001:db8::7"\n', None, "2001:db8::7"),
    ],
)
def test_media_address_per_family(
    tmp_path: Path, text: str, v4: str | None, v6: str | None
) -> None:
    sip = load_config(write(tmp_path, text)).sip
    assert (sip.media_host(4), sip.media_host(6)) == (v4, v6)


def test_every_problem_in_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[sip]
lisen = "127.0.0.1:5060"
[recording]
segment_seconds = 0
encoding = "flac"
[[routing.rules]]
match = "1"
service = "nope"
[[operators]]
name = "a"
[sipp]
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    named = [error.split(":")[0] for error in caught.value.errors]
    assert sorted(named) == sorted([
        "sipp",
        "sip.lisen",
        "recording.segment_seconds",
        "recording.encoding",
        "routing.rules[0].service",
        "operators[0].token_sha256",
    ])  # fmt: skip
    message = str(caught.value)
    assert message.startswith("6 configuration errors:\n")
    assert all(f"\n  {error}" in message for error in caught.value.errors)


def test_a_bad_trunk_is_reported_once_not_again_by_each_outbound_rule(tmp_path: Path) -> None:
    text = '[routing]\ntrunk = "trunk"\n[[routing.rules]]\nmatch = "1"\ndirection = "outbound"\n'
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert [error.split(":")[0] for error in caught.value.errors] == ["routing.trunk"]


def test_one_problem_is_one_plain_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "[recording]\nsegment_seconds = 0\n"))
    assert str(caught.value) == (
        "recording.segment_seconds: must be an integer from 1 to 3600, got 0"
    )


def test_recording_encoding_is_g711_by_default_and_pcm16_on_request(tmp_path: Path) -> None:
    assert load_config(None, cwd=tmp_path).recording.encoding == "g711"
    for value in ("g711", "pcm16"):
        config = load_config(write(tmp_path, f'[recording]\nencoding = "{value}"\n'))
        assert (config.recording.encoding, config.warnings) == (value, ())


def test_the_old_encoding_name_ulaw_means_g711_with_one_deprecation_warning(
    tmp_path: Path,
) -> None:
    config = load_config(write(tmp_path, '[recording]\nencoding = "ulaw"\n'))
    assert config.recording.encoding == "g711"  # so the catalog shows the right name
    assert config.warnings == (
        "recording.encoding: 'ulaw' is deprecated, write 'g711' (same meaning)",
    )
    with pytest.raises(ConfigError) as caught:  # the alias is a value, not a prefix
        load_config(write(tmp_path, '[recording]\nencoding = "ULAW"\n'))
    assert [error.split(":")[0] for error in caught.value.errors] == ["recording.encoding"]
    assert "'g711', 'pcm16'" in str(caught.value)


def test_logging_level_is_any_case_and_the_format_is_text_or_json(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[logging]\nlevel = "debug"\nformat = "json"\n'))
    assert (config.logging.level, config.logging.format) == ("DEBUG", "json")
    assert load_config(None).logging.format == "text"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, '[logging]\nlevel = "LOUD"\nformat = "xml"\n'))
    assert [error.split(":")[0] for error in caught.value.errors] == [
        "logging.level",
        "logging.format",
    ]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[[routing.rules]]\nmatch = "("\n', ["routing.rules[0].match"]),
        ("[[routing.rules]]\n", ["routing.rules[0].match"]),
        ('[[operators]]\nname = 3\ntoken_sha256 = "abc"\n', [
            "operators[0].name", "operators[0].token_sha256"
        ]),
    ],
)  # fmt: skip
def test_a_required_key_given_but_bad_is_one_problem_not_two(
    tmp_path: Path, text: str, named: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert [error.split(":")[0] for error in caught.value.errors] == named
