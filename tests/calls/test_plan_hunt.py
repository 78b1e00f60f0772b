"""Which call takers a call's plan rings in turn: the hunt group, a rule's own list, or
the one target of a rule or of an outbound call."""

from __future__ import annotations

import re
from pathlib import Path

from proxy.calls.plan import plan_call
from proxy.config import Config, RouteRule, RoutingSettings, load_config

from .test_plan import invite

ANN, BOB, DESK = "sip:ann@192.0.2.1", "sip:bob@pbx.example", "sip:desk@192.0.2.9"


def config() -> Config:
    rules = (
        RouteRule(match=re.compile(r"\+441234000001"), call_taker=(DESK, ANN)),
        RouteRule(match=re.compile(r"\+441234000002"), call_taker=DESK),
    )
    return Config(routing=RoutingSettings(call_takers=(ANN, BOB), rules=rules))


def rung(dialled: str) -> list[str]:
    plan = plan_call(config(), invite(dialled), "192.0.2.1", "01234 567890")
    assert str(plan.target) == str(plan.hunt_group[0])
    return [str(uri) for uri in plan.hunt_group]


def test_a_call_no_rule_names_rings_the_hunt_group_in_order() -> None:
    assert rung("01234999999") == [ANN, BOB]


def test_a_rule_with_a_list_rings_its_own_and_a_rule_with_one_rings_that_one() -> None:
    assert rung("01234000001") == [DESK, ANN]
    assert rung("01234000002") == [DESK]


def test_every_call_taker_of_group_and_rules_is_probed_once() -> None:
    assert config().routing.every_call_taker == (ANN, BOB, DESK)


def test_a_rules_list_of_call_takers_loads_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "recproxy.toml"
    path.write_text(f'[[routing.rules]]\nmatch = "7[0-9]{{3}}"\ncall_taker = ["{DESK}", "{ANN}"]\n')
    (rule,) = load_config(path).routing.rules
    assert rule.hunt_group == (DESK, ANN)
