"""The fast path's nftables rules, rendered (pure) and, in a network namespace, loaded."""

from __future__ import annotations

import subprocess

from proxy.media.fastpath.rules import (
    LegRoute,
    add_commands,
    keep_commands,
    remove_commands,
    setup_commands,
    teardown_commands,
)

CALLER = LegRoute(20000, ("192.0.2.10", 4000), ("198.51.100.1", 20002), ("192.0.2.20", 6000))
TAKER = LegRoute(20002, ("192.0.2.20", 6000), ("198.51.100.1", 20000), ("192.0.2.10", 4000), 101)


def test_a_leg_is_five_elements_keyed_by_our_port_its_source_last() -> None:
    assert add_commands(CALLER).splitlines() == [
        "add element ip recproxy via_addr { 20000 : 198.51.100.1 }",
        "add element ip recproxy via_port { 20000 : 20002 }",
        "add element ip recproxy to_addr { 20000 : 192.0.2.20 }",
        "add element ip recproxy to_port { 20000 : 6000 }",
        "add element ip recproxy sources { 20000 . 192.0.2.10 . 4000 }",
    ]


def test_the_call_takers_telephone_events_are_left_to_the_socket() -> None:
    assert "add element ip recproxy keep_101 { 20002 }" in add_commands(TAKER)
    assert keep_commands("ip", 101).splitlines() == [
        "add set ip recproxy keep_101 { type inet_service ; }",
        "insert rule ip recproxy rewrite udp dport @keep_101 @th,73,7 101 return",
    ]


def test_ipv6_routes_go_to_the_ip6_table() -> None:
    route = LegRoute(20000, ("2001:db8::10", 4000), ("2001:db8::1", 20002), ("2001:db8::20", 6))
    assert route.family == "ip6"
    assert "add element ip6 recproxy sources { 20000 . 2001:db8::10 . 4000 }" in add_commands(route)
    assert "ip6 saddr set udp dport map @via_addr" in setup_commands("ip6")


def test_removing_takes_the_source_first() -> None:
    assert remove_commands(TAKER).splitlines() == [
        "delete element ip recproxy sources { 20002 . 192.0.2.20 . 6000 }",
        "delete element ip recproxy via_addr { 20002 }",
        "delete element ip recproxy via_port { 20002 }",
        "delete element ip recproxy to_addr { 20002 }",
        "delete element ip recproxy to_port { 20002 }",
        "delete element ip recproxy keep_101 { 20002 }",
    ]


def test_the_table_belongs_to_the_process() -> None:
    setup = setup_commands("ip")
    assert setup.startswith("table ip recproxy {\n  flags owner;\n")
    assert "type filter hook prerouting priority raw" in setup
    assert "udp dport . ip saddr . udp sport @sources goto rewrite" in setup
    assert teardown_commands("ip6") == "delete table ip6 recproxy\n"


def test_the_rendered_rules_load_and_unload_in_nftables() -> None:
    """nft itself parses what we render (``--check``: nothing is applied)."""
    v6 = LegRoute(20000, ("2001:db8::10", 4000), ("2001:db8::1", 20002), ("2001:db8::20", 6))
    for family, routes in (("ip", (CALLER, TAKER)), ("ip6", (v6,))):
        batch = setup_commands(family) + keep_commands(family, 101)
        batch += "".join(add_commands(route) + remove_commands(route) for route in routes)
        batch += teardown_commands(family)
        result = subprocess.run(
            ["nft", "--check", "-f", "-"], input=batch.encode(), capture_output=True, timeout=10
        )
        assert result.returncode == 0, result.stderr.decode()
