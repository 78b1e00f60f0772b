"""What a call is, decided from its INVITE and the configuration before it is answered:
its direction (P1), its service (P3), where it goes, whether it is recorded and which
notice the caller hears — and what changes when the caller is on the do-not-record list
(P14).  Pure: the catalog lookup of that list is the call flow's."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..config import Config, ServiceSettings
from ..sip.message import Request
from ..sip.uri import SipUri, Uri, parse_uri
from .parties import party, user


@dataclass(frozen=True, slots=True)
class CallPlan:
    caller: str  # normalised (E.164 when it is a number)
    callee: str
    target: Uri  # where leg B goes: the call taker, or the trunk for an outbound call
    outbound: bool = False
    service: ServiceSettings | None = None
    record: bool = True
    do_not_record: bool = False  # the caller asked in writing not to be recorded
    notice: Path | None = None  # the prompt the caller hears first; None: no notice
    hunt: tuple[Uri, ...] = ()  # the call takers rung in turn ([routing] call_takers)

    @property
    def hunt_group(self) -> tuple[Uri, ...]:
        """Where leg B may go, in order: the hunt group, else the one target."""
        return self.hunt or (self.target,)

    @property
    def service_name(self) -> str | None:
        return self.service.name if self.service is not None else None

    @property
    def may_be_listed(self) -> bool:
        """Whether the do-not-record list applies: an inbound call from a number."""
        return not self.outbound and self.caller.startswith("+")


def unplanned(config: Config, caller: str, callee: str) -> CallPlan:
    """A call before it is planned: the parties as the INVITE names them."""
    return CallPlan(caller, callee, parse_uri(config.routing.hunt_group[0]))


def plan_call(config: Config, request: Request, source_host: str, caller: str) -> CallPlan:
    """The plan for the INVITE ``request`` from ``source_host``; ``caller`` as its From
    names the caller."""
    dialled = user(request.uri) or user(request.to.uri) or ""
    outbound_allowed = config.routing.trunk is not None and config.sip.is_internal(source_host)
    number = config.numbers.normalise(dialled)  # E.164, or an extension as it is
    rule = config.routing.rule_for(number, outbound_allowed=outbound_allowed)
    outbound = rule is not None and rule.direction == "outbound"
    service = config.services.get(rule.service) if rule and rule.service else None
    hunt = tuple(parse_uri(uri) for uri in config.routing.hunt_group)
    target = hunt[0]
    if outbound:
        assert config.routing.trunk is not None
        trunk = parse_uri(config.routing.trunk)
        target = replace(trunk, user=dialled) if isinstance(trunk, SipUri) else trunk
        hunt = ()
    elif rule is not None and rule.hunt_group:
        hunt = tuple(parse_uri(uri) for uri in rule.hunt_group)
        target = hunt[0]
    wants_notice = not outbound
    if service is not None and service.notice is not None:
        wants_notice = service.notice
    prompt = service.prompt if service is not None and service.prompt else None
    return CallPlan(
        caller=config.numbers.normalise(caller),
        callee=number if dialled else party(request.to),
        target=target,
        outbound=outbound,
        service=service,
        record=service.record if service is not None else True,
        notice=(prompt or config.notice.prompt) if wants_notice else None,
        hunt=hunt,
    )


def not_recorded(plan: CallPlan, config: Config) -> CallPlan:
    """The caller is on the do-not-record list: not recorded, and told so."""
    return replace(plan, record=False, do_not_record=True, notice=config.notice.no_record_prompt)
