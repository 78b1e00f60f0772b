"""Planning a call from its INVITE and the configuration: direction, service, target,
recording and notice; and the do-not-record list's change to the plan."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from proxy.calls.plan import not_recorded, plan_call
from proxy.config import (
    Config,
    RouteRule,
    RoutingSettings,
    ServiceSettings,
    SipSettings,
)
from proxy.sip.message import Request, parse_message

from .call_harness import CALLER, Peer

HELPLINE = ServiceSettings("helpline", prompt=Path("helpline.wav"))
STAFF_LINE = ServiceSettings("staff", notice=False, record=False)


def config() -> Config:
    rules = (
        RouteRule(match=re.compile(r"\+441234000001"), service="helpline",
                  call_taker="sip:desk@127.0.0.1:5080"),
        RouteRule(match=re.compile(r"\+441234000002"), service="staff"),
        RouteRule(match=re.compile(r"\+44.*"), direction="outbound"),
    )  # fmt: skip
    return Config(
        sip=SipSettings(internal_peers=(ipaddress.ip_network("10.0.0.0/8"),)),
        routing=RoutingSettings(rules=rules, trunk="sip:trunk.example.net"),
        services={"helpline": HELPLINE, "staff": STAFF_LINE},
    )


def invite(dialled: str) -> Request:
    data = Peer(CALLER, "caller", "plan-1").request(
        "INVITE", uri=f"sip:{dialled}@127.0.0.1", to=f"<sip:{dialled}@127.0.0.1>"
    )
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def test_an_inbound_call_to_a_service_goes_to_its_call_taker_with_its_notice() -> None:
    plan = plan_call(config(), invite("01234000001"), "192.0.2.1", "01234 567890")
    assert (plan.caller, plan.callee) == ("+441234567890", "+441234000001")
    assert not plan.outbound and plan.service is HELPLINE
    assert str(plan.target) == "sip:desk@127.0.0.1:5080"
    assert plan.record and plan.notice == Path("helpline.wav") and plan.may_be_listed


def test_a_service_may_play_no_notice_and_record_nothing() -> None:
    plan = plan_call(config(), invite("01234000002"), "192.0.2.1", "01234 567890")
    assert plan.service is STAFF_LINE and plan.notice is None and not plan.record


def test_a_number_dialled_from_inside_leaves_through_the_trunk_without_a_notice() -> None:
    plan = plan_call(config(), invite("01234999999"), "10.0.0.21", "2001")
    assert plan.outbound and plan.notice is None and plan.record
    assert str(plan.target) == "sip:01234999999@trunk.example.net"
    assert not plan.may_be_listed  # the list is for inbound callers


def test_the_same_number_dialled_from_outside_is_not_an_outbound_call() -> None:
    plan = plan_call(config(), invite("01234999999"), "192.0.2.1", "01234 567890")
    assert not plan.outbound and str(plan.target) == "sip:calltaker@127.0.0.1:5070"
    assert plan.notice == config().notice.prompt


def test_a_caller_on_the_do_not_record_list_is_told_and_not_recorded() -> None:
    cfg = config()
    plan = not_recorded(plan_call(cfg, invite("01234000001"), "192.0.2.1", "01234 567890"), cfg)
    assert plan.do_not_record and not plan.record
    assert plan.notice == cfg.notice.no_record_prompt
    assert plan.service is HELPLINE
