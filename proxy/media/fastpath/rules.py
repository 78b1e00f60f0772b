"""The nftables rules of the kernel fast path, rendered as nft commands (pure).

One table per family (``ip recproxy``, ``ip6 recproxy``) holds a verdict map keyed by
the UDP destination port: each leg handed to the kernel has an entry jumping to a chain
of its own, ``leg_<port>``.  That chain lets the packet go on to our socket (``return``)
unless it comes from the leg's latched source — so a stranger's packet still meets the
relay's latching — and, on a leg whose telephone-events the call flow must see (the
call taker's recording codes), unless it is one of those.  Everything else is rewritten
statelessly in the raw hook, before conntrack (``notrack``): the source becomes the
other leg's address and port, the destination the other party's.  A conntrack DNAT
would not switch a flow already tracked; the stateless rewrite switches at once.

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


def chain_name(port: int) -> str:
    return f"leg_{port}"


def setup_commands(family: str) -> str:
    """Our table, owned by this process's netlink socket (``flags owner``): the kernel
    removes it, with every call's rules, when the process ends, however it ends — a
    crashed recorder never leaves two parties talking unrecorded through the kernel.
    Another process owning the table (a second recproxy in this namespace) makes this
    fail, and that one stays on the relay."""
    return (
        f"table {family} {TABLE} {{\n"
        "  flags owner;\n"
        "  map legs { type inet_service : verdict ; }\n"
        "  chain prerouting {\n"
        "    type filter hook prerouting priority raw; policy accept;\n"
        "    udp dport vmap @legs\n"
        "  }\n"
        "}\n"
    )


def teardown_commands(family: str) -> str:
    return f"delete table {family} {TABLE}\n"


def add_commands(route: LegRoute) -> str:
    """The route's chain and its map entry (added last: nothing jumps to a half-built
    chain, and the whole batch applies at once anyway)."""
    family, chain = route.family, chain_name(route.port)
    address = "ip6" if family == "ip6" else "ip"
    prefix = f"add rule {family} {TABLE} {chain}"
    lines = [
        f"add chain {family} {TABLE} {chain}",
        f"{prefix} {address} saddr != {route.source[0]} return",
        f"{prefix} udp sport != {route.source[1]} return",
    ]
    if route.keep_payload_type is not None:
        # the RTP payload type: the low 7 bits of the second byte after the UDP header
        lines.append(f"{prefix} @th,73,7 {route.keep_payload_type} return")
    lines.append(
        f"{prefix} notrack {address} saddr set {route.via[0]} udp sport set {route.via[1]}"
        f" {address} daddr set {route.destination[0]} udp dport set {route.destination[1]}"
        " counter accept"
    )
    lines.append(f"add element {family} {TABLE} legs {{ {route.port} : jump {chain} }}")
    return "\n".join(lines) + "\n"


def remove_commands(route: LegRoute) -> str:
    """The map entry first, then the chain (a chain still jumped to cannot go)."""
    family, chain = route.family, chain_name(route.port)
    return (
        f"delete element {family} {TABLE} legs {{ {route.port} }}\n"
        f"flush chain {family} {TABLE} {chain}\n"
        f"delete chain {family} {TABLE} {chain}\n"
    )
