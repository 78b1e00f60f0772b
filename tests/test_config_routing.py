"""The routing keys of issue 18: a hunt group (``[routing] call_takers``), its no-answer
time and keepalives, and ``[dns]``; each bad value named, both call-taker forms refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import ConfigError, load_config

from .cli.test_cli import recproxy
from .test_config import write


def test_a_hunt_group_of_host_names_and_the_dns_servers_load(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            '[routing]\ncall_takers = ["sip:ann@pbx.example", "sip:bob@192.0.2.7:5070"]\n'
            "no_answer_seconds = 12\noptions_interval_seconds = 30\noptions_failures = 2\n"
            '[dns]\nnameservers = ["127.0.0.1:5353", "192.0.2.53", "[::1]:53"]\n'
            "timeout_seconds = 1.5\n",
        )
    )
    routing = config.routing
    assert routing.hunt_group == ("sip:ann@pbx.example", "sip:bob@192.0.2.7:5070")
    assert (routing.no_answer_seconds, routing.options_interval_seconds) == (12, 30)
    assert routing.options_failures == 2
    assert config.dns.nameservers == ("127.0.0.1:5353", "192.0.2.53:53", "[::1]:53")
    assert config.dns.timeout_seconds == 1.5


def test_the_defaults_ring_one_call_taker_with_no_keepalives(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.routing.hunt_group == (config.routing.call_taker,)
    assert config.routing.options_interval_seconds == 0
    assert config.routing.no_answer_seconds == 0
    assert config.dns.nameservers == ()


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[routing]\ncall_takers = []\n", "routing.call_takers: must be a non-empty list"),
        ('[routing]\ncall_takers = "sip:a@x"\n', "routing.call_takers: must be a non-empty list"),
        ('[routing]\ncall_takers = ["tel:+441234"]\n', "routing.call_takers: must be a SIP URI"),
        ('[routing]\ncall_takers = ["sip:a@x", "sip:a@x"]\n', "routing.call_takers: lists"),
        ("[routing]\nno_answer_seconds = -1\n", "routing.no_answer_seconds:"),
        ("[routing]\noptions_interval_seconds = 7200\n", "routing.options_interval_seconds:"),
        ("[routing]\noptions_failures = 0\n", "routing.options_failures:"),
        ('[dns]\nnameservers = ["dns.example"]\n', "dns.nameservers: 'dns.example' is not"),
        ('[dns]\nnameservers = "127.0.0.1"\n', "dns.nameservers: must be a list"),
        ("[dns]\ntimeout_seconds = 0\n", "dns.timeout_seconds:"),
        ("[dns]\nsearch = true\n", "dns.search: unknown key"),
        (
            '[[routing.rules]]\nmatch = "7"\ncall_taker = []\n',
            "routing.rules[0].call_taker: must be a non-empty list",
        ),
    ],
)
def test_bad_routing_and_dns_values_are_named(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert named in str(caught.value)


BOTH = '[routing]\ncall_taker = "sip:a@192.0.2.1"\ncall_takers = ["sip:b@192.0.2.2"]\n'


def test_both_call_taker_forms_stop_start_up_naming_the_two_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"routing\.call_taker and routing\.call_takers"):
        load_config(write(tmp_path, BOTH))


def test_config_check_refuses_both_forms_with_one_line_and_ex_config(tmp_path: Path) -> None:
    write(tmp_path, BOTH)
    result = recproxy("config", "check", "--config", "recproxy.toml", cwd=tmp_path)
    assert result.returncode == 78, (result.stdout, result.stderr)  # EX_CONFIG, as for any
    assert "routing.call_taker and routing.call_takers: set one of them" in result.stderr


def test_config_check_names_the_hunt_group_in_order(tmp_path: Path) -> None:
    write(tmp_path, '[routing]\ncall_takers = ["sip:b@192.0.2.2", "sip:a@pbx.example"]\n')
    result = recproxy("config", "check", "--config", "recproxy.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if "call taker" in line]
    assert line.split(None, 2)[2] == "sip:b@192.0.2.2, sip:a@pbx.example"
