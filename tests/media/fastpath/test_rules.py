"""The fast path's nftables rules, rendered (pure) and, in a network namespace, loaded."""

from __future__ import annotations

import subprocess

from proxy.media.fastpath.rules import (
    LegRoute,
    add_commands,
    remove_commands,
    setup_commands,
    teardown_commands,
)

CALLER = LegRoute(20000, ("192.0.2.10", 4000), ("198.51.100.1", 20002), ("192.0.2.20", 6000))
TAKER = LegRoute(20002, ("192.0.2.20", 6000), ("198.51.100.1", 20000), ("192.0.2.10", 4000), 101)


def test_a_leg_jumps_to_its_chain_which_rewrites_only_its_latched_source() -> None:
    assert add_commands(CALLER).splitlines() == [
        "add chain ip recproxy leg_20000",
        "add rule ip recproxy leg_20000 ip saddr != 192.0.2.10 return",
        "add rule ip recproxy leg_20000 udp sport != 4000 return",
        "add rule ip recproxy leg_20000 notrack ip saddr set 198.51.100.1 udp sport set 20002"
        " ip daddr set 192.0.2.20 udp dport set 6000 counter accept",
        "add element ip recproxy legs { 20000 : jump leg_20000 }",
    ]


def test_the_call_takers_telephone_events_are_left_to_the_socket() -> None:
    lines = add_commands(TAKER).splitlines()
    assert "add rule ip recproxy leg_20002 @th,73,7 101 return" in lines
    assert lines.index("add rule ip recproxy leg_20002 @th,73,7 101 return") < len(lines) - 2


def test_ipv6_routes_go_to_the_ip6_table() -> None:
    route = LegRoute(20000, ("2001:db8::10", 4000), ("2001:db8::1", 20002), ("2001:db8::20", 6))
    commands = add_commands(route)
    assert route.family == "ip6"
    assert "add rule ip6 recproxy leg_20000 ip6 saddr != 2001:db8::10 return" in commands
    assert "ip6 saddr set 2001:db8::1 udp sport set 20002 ip6 daddr set 2001:db8::20" in commands


def test_removing_takes_the_map_entry_before_the_chain() -> None:
    assert remove_commands(CALLER).splitlines() == [
        "delete element ip recproxy legs { 20000 }",
        "flush chain ip recproxy leg_20000",
        "delete chain ip recproxy leg_20000",
    ]


def test_the_table_belongs_to_the_process() -> None:
    setup = setup_commands("ip")
    assert setup.startswith("table ip recproxy {\n  flags owner;\n")
    assert "type filter hook prerouting priority raw" in setup
    assert "udp dport vmap @legs" in setup
    assert teardown_commands("ip6") == "delete table ip6 recproxy\n"


def test_the_rendered_rules_load_and_unload_in_nftables() -> None:
    """nft itself parses what we render (``--check``: nothing is applied)."""
    batch = setup_commands("ip") + add_commands(CALLER) + add_commands(TAKER)
    batch += remove_commands(CALLER) + remove_commands(TAKER) + teardown_commands("ip")
    result = subprocess.run(
        ["nft", "--check", "-f", "-"], input=batch.encode(), capture_output=True, timeout=10
    )
    assert result.returncode == 0, result.stderr.decode()
