"""The nftables rules of the kernel fast path, rendered as nft commands (pure).

One table per family (``ip recproxy``, ``ip6 recproxy``) with fixed rules and per-call
state in sets and maps only, all keyed by our leg's UDP port: adding or removing a call
is a handful of elements, whose cost does not grow with the calls in the kernel (a
chain per leg did: 0.14 ms per call's rules with none there, 1 ms with 500).

- ``sources``: (our port, party address, party port) of every leg in the kernel.  Only
  a packet from the leg's latched source is rewritten; anything else goes on to our
  socket, so a stranger's packet still meets the relay's latching.
- ``keep_<pt>``: the ports whose RTP of payload type ``pt`` goes on to our socket (the
  call taker's telephone-events: the call flow holds its recording codes back), one set
  and one rule for each such payload type in use.
- ``via_addr``/``via_port`` (our other leg) and ``to_addr``/``to_port`` (the other
  party): the stateless rewrite, in the raw hook before conntrack (``notrack``).  A
  conntrack DNAT would not switch a flow already tracked; this switches at once.

Only RTP is rewritten; RTCP (one packet in five seconds) stays on the relay.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

TABLE = "recproxy"
FAMILIES = ("ip", "ip6")


@dataclass(frozen=True)
class LegRoute:
    """One direction of a call in the kernel: what arrives on ``port`` (our leg) from
    ``source`` leaves from ``via`` (our other leg) to ``destination``."""

    port: int
    source: tuple[str, int]
    via: tuple[str, int]
    destination: tuple[str, int]
    # a payload type left to the socket (the call taker's telephone-events), or None
    keep_payload_type: int | None = None

    @property
    def family(self) -> str:
        """``ip`` or ``ip6``: the nftables family of the route's addresses."""
        return "ip6" if ipaddress.ip_address(self.source[0]).version == 6 else "ip"


def _words(family: str) -> tuple[str, str]:
    """The address expression and type of ``family``."""
    return ("ip6", "ipv6_addr") if family == "ip6" else ("ip", "ipv4_addr")


def setup_commands(family: str) -> str:
    """Our table, owned by this process's netlink socket (``flags owner``): the kernel
    removes it, with every call's rules, when the process ends, however it ends — a
    crashed recorder never leaves two parties talking unrecorded through the kernel.
    Another process owning the table (a second recproxy in this namespace) makes this
    fail, and that one stays on the relay."""
    address, kind = _words(family)
    return (
        f"table {family} {TABLE} {{\n"
        "  flags owner;\n"
        f"  set sources {{ type inet_service . {kind} . inet_service ; }}\n"
        f"  map via_addr {{ type inet_service : {kind} ; }}\n"
        "  map via_port { type inet_service : inet_service ; }\n"
        f"  map to_addr {{ type inet_service : {kind} ; }}\n"
        "  map to_port { type inet_service : inet_service ; }\n"
        "  chain prerouting {\n"
        "    type filter hook prerouting priority raw; policy accept;\n"
        f"    udp dport . {address} saddr . udp sport @sources goto rewrite\n"
        "  }\n"
        "  chain rewrite {\n"
        f"    notrack {address} saddr set udp dport map @via_addr"
        " udp sport set udp dport map @via_port"
        f" {address} daddr set udp dport map @to_addr"
        " udp dport set udp dport map @to_port counter accept\n"
        "  }\n"
        "}\n"
    )


def teardown_commands(family: str) -> str:
    return f"delete table {family} {TABLE}\n"


def keep_commands(family: str, payload_type: int) -> str:
    """The set and rule that leave ``payload_type`` to the socket (once per type): the
    RTP payload type is the low 7 bits of the second byte after the UDP header."""
    name = f"keep_{payload_type}"
    return (
        f"add set {family} {TABLE} {name} {{ type inet_service ; }}\n"
        f"insert rule {family} {TABLE} rewrite udp dport @{name} @th,73,7 {payload_type} return\n"
    )


def _elements(route: LegRoute) -> list[tuple[str, str]]:
    (host, port), (via_host, via_port) = route.source, route.via
    to_host, to_port = route.destination
    elements = [
        ("sources", f"{route.port} . {host} . {port}"),
        ("via_addr", f"{route.port} : {via_host}"),
        ("via_port", f"{route.port} : {via_port}"),
        ("to_addr", f"{route.port} : {to_host}"),
        ("to_port", f"{route.port} : {to_port}"),
    ]
    if route.keep_payload_type is not None:
        elements.append((f"keep_{route.keep_payload_type}", str(route.port)))
    return elements


def add_commands(route: LegRoute) -> str:
    """The route's elements (the ``keep_<pt>`` set must exist: ``keep_commands``); the
    source last, so nothing is rewritten before its maps are filled — though the whole
    batch applies at once anyway."""
    elements = _elements(route)
    elements.append(elements.pop(0))
    return "".join(
        f"add element {route.family} {TABLE} {name} {{ {element} }}\n" for name, element in elements
    )


def remove_commands(route: LegRoute) -> str:
    """The source first: from then on nothing of the route is rewritten."""
    return "".join(
        f"delete element {route.family} {TABLE} {name} {{ {element.split(' : ')[0]} }}\n"
        for name, element in _elements(route)
    )
