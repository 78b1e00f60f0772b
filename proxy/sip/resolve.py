"""RFC 3263 §4: from a SIP URI to the ordered addresses a request for it is sent to.

Sans-IO: :func:`resolution` is a generator that *yields* each DNS question it needs
answered, as a :class:`Query`, and is *sent* the records found (an empty list for none,
NXDOMAIN or a failed lookup alike); it returns the ordered :class:`Target` list.  The
asyncio shell (:mod:`proxy.calls.resolver`) asks the questions with dnspython; tests
answer them from a dict.  Randomness (RFC 2782's weighted choice) is injected.

The steps, as RFC 3263 orders them:

- a numeric host is used as it is (port: the URI's, else the transport's default);
- an explicit port: A/AAAA of the host, on that port;
- an explicit transport (``transport=``, or ``sips:``, which is always TLS whatever its
  ``transport=`` says, RFC 5630 §3.1.3): SRV for that transport, else A/AAAA on its
  default port;
- otherwise NAPTR, kept to the services this node speaks (``SIP+D2U``, ``SIP+D2T``,
  ``SIPS+D2T``) in order/preference → SRV of each replacement; no usable NAPTR → SRV for
  each transport we have, in our order; no SRV → A/AAAA on the default port.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, TypeVar

from .uri import SipUri

#: NAPTR service field → transport (RFC 3263 §4.1).
NAPTR_SERVICES: Final = {"SIP+D2U": "UDP", "SIP+D2T": "TCP", "SIPS+D2T": "TLS"}
#: transport → the SRV owner name's prefix (RFC 3263 §4.1).
SRV_PREFIXES: Final = {"UDP": "_sip._udp.", "TCP": "_sip._tcp.", "TLS": "_sips._tcp."}
DEFAULT_PORTS: Final = {"UDP": 5060, "TCP": 5060, "TLS": 5061}


@dataclass(frozen=True, slots=True)
class Target:
    """One address to send to: an IP literal, a port and a transport; and, when the URI
    named a host by its domain name, that name, which a TLS peer's certificate must match
    (RFC 5922 §7.2: the domain asked for, not the address or the SRV target).  The name
    is not part of a target's identity (its health and equality are the address's)."""

    host: str
    port: int
    transport: str  # "UDP" | "TCP" | "TLS"
    server_name: str | None = field(default=None, compare=False)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port};transport={self.transport.lower()}"


@dataclass(frozen=True, slots=True)
class Naptr:
    order: int
    preference: int
    flags: str
    service: str
    replacement: str


@dataclass(frozen=True, slots=True)
class Srv:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True, slots=True)
class Query:
    """A DNS question: an owner name (no trailing dot) and a record type."""

    name: str
    rdtype: str  # "NAPTR" | "SRV" | "A" | "AAAA"


Record = Naptr | Srv | str  # str: an A or AAAA address
R = TypeVar("R", Naptr, Srv, str)
Resolution = Generator[Query, Sequence[Record], list[Target]]


def resolution(
    uri: SipUri,
    transports: Sequence[str],
    rng: random.Random,
    *,
    families: Sequence[int] = (4, 6),
) -> Resolution:
    """The targets for ``uri``, asking DNS through the generator protocol (see the module
    docstring).  ``transports``: those this node speaks, upper case, in preference
    order; ``families``: the IP versions it can send to, in order.  Each target found
    through DNS carries the name resolved as its ``server_name``."""
    host = uri.param("maddr") or uri.host
    targets = yield from _resolution(uri, host, transports, rng, families)
    if _ip_version(host) is not None:
        return targets
    return [replace(t, server_name=host.lower().rstrip(".")) for t in targets]


def _resolution(
    uri: SipUri,
    host: str,
    transports: Sequence[str],
    rng: random.Random,
    families: Sequence[int],
) -> Resolution:
    explicit = _explicit_transport(uri)
    usable = [t for t in transports if t == "TLS"] if uri.scheme == "sips" else list(transports)
    if explicit is not None and explicit not in usable:
        return []
    numeric = _ip_version(host)
    if numeric is not None:
        transport = explicit or (usable[0] if usable else "UDP")
        if numeric not in families:
            return []
        return [Target(host, uri.port or DEFAULT_PORTS.get(transport, 5060), transport)]
    if not usable:
        return []
    if uri.port is not None:
        transport = explicit or usable[0]
        return (yield from _addresses(host, uri.port, transport, families))
    if explicit is not None:
        found = yield from _via_srv(host, explicit, rng, families)
        return found or (yield from _addresses(host, DEFAULT_PORTS[explicit], explicit, families))
    naptrs = yield Query(host, "NAPTR")
    targets: list[Target] = []
    for transport, replacement in naptr_choices(_only(naptrs, Naptr), usable):
        srvs = yield Query(replacement, "SRV")
        targets += yield from _srv_targets(order_srv(_only(srvs, Srv), rng), transport, families)
    if targets:
        return _unique(targets)
    for transport in usable:
        targets += yield from _via_srv(host, transport, rng, families)
    if targets:
        return _unique(targets)
    return (yield from _addresses(host, DEFAULT_PORTS[usable[0]], usable[0], families))


def naptr_choices(records: Sequence[Naptr], transports: Sequence[str]) -> list[tuple[str, str]]:
    """(transport, SRV name) for each NAPTR record we can use, best first: flag ``s``, a
    SIP service for a transport we speak, lowest order then preference (RFC 3403)."""
    usable = [
        r
        for r in records
        if r.flags.lower() == "s"
        and NAPTR_SERVICES.get(r.service.upper()) in transports
        and r.replacement not in ("", ".")
    ]
    usable.sort(key=lambda r: (r.order, r.preference))
    return [(NAPTR_SERVICES[r.service.upper()], r.replacement.rstrip(".")) for r in usable]


def order_srv(records: Sequence[Srv], rng: random.Random) -> list[Srv]:
    """RFC 2782's order: by priority, and within one priority a weighted random draw
    (weight 0 records first in the running sums, so they are rarely picked first).  A
    single record whose target is ``.`` means the service is not offered: none."""
    if len(records) == 1 and records[0].target in ("", "."):
        return []
    ordered: list[Srv] = []
    for priority in sorted({r.priority for r in records}):
        group = sorted((r for r in records if r.priority == priority), key=lambda r: r.weight > 0)
        while group:
            total = sum(r.weight for r in group)
            pick = rng.randint(0, total)
            running = 0
            for index, record in enumerate(group):
                running += record.weight
                if running >= pick:
                    ordered.append(group.pop(index))
                    break
    return [r for r in ordered if r.target not in ("", ".")]


def _via_srv(host: str, transport: str, rng: random.Random, families: Sequence[int]) -> Resolution:
    srvs = yield Query(SRV_PREFIXES[transport] + host, "SRV")
    return (yield from _srv_targets(order_srv(_only(srvs, Srv), rng), transport, families))


def _srv_targets(records: Sequence[Srv], transport: str, families: Sequence[int]) -> Resolution:
    targets: list[Target] = []
    for record in records:
        host = record.target.rstrip(".")
        targets += yield from _addresses(host, record.port, transport, families)
    return targets


def _addresses(host: str, port: int, transport: str, families: Sequence[int]) -> Resolution:
    """A then AAAA (in ``families``' order) of ``host``, each on ``port``."""
    targets: list[Target] = []
    for family in families:
        found = yield Query(host, "A" if family == 4 else "AAAA")
        targets += [
            Target(address, port, transport)
            for address in _only(found, str)
            if _ip_version(address) == family
        ]
    return targets


def _explicit_transport(uri: SipUri) -> str | None:
    """The transport the URI fixes: TLS for any ``sips:`` URI, whatever its ``transport``
    parameter says (RFC 5630 §3.1.3: ``sips:…;transport=tcp`` is TLS over TCP, the
    parameter only naming what is under TLS), else its ``transport=``, else none."""
    if uri.scheme == "sips":
        return "TLS"
    if uri.param("transport"):
        return uri.transport
    return None


def _ip_version(host: str) -> int | None:
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


def _only(records: Sequence[Record], kind: type[R]) -> list[R]:
    return [r for r in records if isinstance(r, kind)]


def _unique(targets: list[Target]) -> list[Target]:
    """The first of each address (two NAPTR paths may lead to the same one)."""
    return list(dict.fromkeys(targets))
