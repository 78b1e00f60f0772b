"""RFC 3263 target selection without DNS: the resolution generator is answered from a
dict, so each test says which questions were asked, in which order, and what came out."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.sip.resolve import (
    Naptr,
    Query,
    Record,
    Srv,
    Target,
    naptr_choices,
    order_srv,
    resolution,
)
from proxy.sip.uri import SipUri, parse_uri

Zone = Mapping[tuple[str, str], Sequence[Record]]


def resolve(
    uri: str,
    zone: Zone,
    *,
    transports: Sequence[str] = ("UDP", "TCP"),
    families: Sequence[int] = (4, 6),
    seed: int = 1,
) -> tuple[list[Target], list[Query]]:
    """The targets for ``uri`` and the questions asked, answered from ``zone``."""
    parsed = parse_uri(uri)
    assert isinstance(parsed, SipUri)
    steps = resolution(parsed, transports, random.Random(seed), families=families)
    asked: list[Query] = []
    try:
        query = next(steps)
        while True:
            asked.append(query)
            query = steps.send(list(zone.get((query.name, query.rdtype), [])))
    except StopIteration as done:
        return done.value, asked


def test_a_numeric_host_is_used_as_it_is_without_asking_dns() -> None:
    targets, asked = resolve("sip:desk@192.0.2.10", {})
    assert targets == [Target("192.0.2.10", 5060, "UDP")]
    assert asked == []
    targets, asked = resolve("sip:desk@[2001:db8::1]:5080;transport=tcp", {})
    assert targets == [Target("2001:db8::1", 5080, "TCP")]
    assert asked == []


def test_an_explicit_port_asks_for_addresses_only() -> None:
    zone = {("pbx.example", "A"): ["192.0.2.1"], ("pbx.example", "AAAA"): ["2001:db8::1"]}
    targets, asked = resolve("sip:desk@pbx.example:5070", zone)
    assert targets == [Target("192.0.2.1", 5070, "UDP"), Target("2001:db8::1", 5070, "UDP")]
    assert asked == [Query("pbx.example", "A"), Query("pbx.example", "AAAA")]


def test_an_explicit_transport_asks_for_its_srv_then_falls_back_to_addresses() -> None:
    zone = {
        ("_sip._tcp.pbx.example", "SRV"): [Srv(10, 0, 5080, "edge.pbx.example.")],
        ("edge.pbx.example", "A"): ["192.0.2.7"],
    }
    targets, asked = resolve("sip:desk@pbx.example;transport=tcp", zone, families=(4,))
    assert targets == [Target("192.0.2.7", 5080, "TCP")]
    assert asked[0] == Query("_sip._tcp.pbx.example", "SRV")

    zone = {("pbx.example", "A"): ["192.0.2.8"]}
    targets, _ = resolve("sip:desk@pbx.example;transport=tcp", zone, families=(4,))
    assert targets == [Target("192.0.2.8", 5060, "TCP")]


def test_naptr_is_filtered_to_our_transports_then_ordered_by_order_and_preference() -> None:
    zone = {
        ("pbx.example", "NAPTR"): [
            Naptr(20, 10, "s", "SIP+D2U", "_sip._udp.pbx.example."),
            Naptr(10, 20, "s", "SIP+D2T", "_sip._tcp.pbx.example."),
            Naptr(10, 10, "s", "SIPS+D2T", "_sips._tcp.pbx.example."),  # no TLS here
            Naptr(5, 10, "u", "E2U+sip", "!^.*$!sip:x@y!"),  # not ours
        ],
        ("_sip._tcp.pbx.example", "SRV"): [Srv(0, 0, 5060, "a.pbx.example")],
        ("_sip._udp.pbx.example", "SRV"): [Srv(0, 0, 5062, "a.pbx.example")],
        ("a.pbx.example", "A"): ["192.0.2.1"],
    }
    targets, asked = resolve("sip:desk@pbx.example", zone, families=(4,))
    assert targets == [Target("192.0.2.1", 5060, "TCP"), Target("192.0.2.1", 5062, "UDP")]
    assert Query("_sips._tcp.pbx.example", "SRV") not in asked
    # with UDP only, the TCP record is skipped too
    targets, _ = resolve("sip:desk@pbx.example", zone, transports=("UDP",), families=(4,))
    assert targets == [Target("192.0.2.1", 5062, "UDP")]


def test_no_naptr_asks_srv_for_each_of_our_transports_in_our_order() -> None:
    zone = {
        ("_sip._udp.pbx.example", "SRV"): [Srv(0, 0, 5060, "u.pbx.example")],
        ("_sip._tcp.pbx.example", "SRV"): [Srv(0, 0, 5060, "t.pbx.example")],
        ("u.pbx.example", "A"): ["192.0.2.1"],
        ("t.pbx.example", "A"): ["192.0.2.2"],
    }
    targets, asked = resolve("sip:desk@pbx.example", zone, families=(4,))
    assert targets == [Target("192.0.2.1", 5060, "UDP"), Target("192.0.2.2", 5060, "TCP")]
    assert asked[:3] == [
        Query("pbx.example", "NAPTR"),
        Query("_sip._udp.pbx.example", "SRV"),
        Query("u.pbx.example", "A"),
    ]


def test_no_srv_falls_back_to_addresses_on_the_default_port() -> None:
    zone = {("pbx.example", "A"): ["192.0.2.9"], ("pbx.example", "AAAA"): ["2001:db8::9"]}
    targets, _ = resolve("sip:desk@pbx.example", zone, families=(4,))
    assert targets == [Target("192.0.2.9", 5060, "UDP")]


def test_sips_uses_tls_only_and_nothing_when_we_have_no_tls() -> None:
    zone = {
        ("_sips._tcp.pbx.example", "SRV"): [Srv(0, 0, 5061, "s.pbx.example")],
        ("s.pbx.example", "A"): ["192.0.2.3"],
    }
    targets, _ = resolve("sips:desk@pbx.example", zone, transports=("UDP", "TLS"), families=(4,))
    assert targets == [Target("192.0.2.3", 5061, "TLS")]
    targets, asked = resolve("sips:desk@pbx.example", zone, families=(4,))
    assert (targets, asked) == ([], [])


@pytest.mark.parametrize("param", ["", ";transport=tcp", ";transport=udp", ";transport=tls"])
def test_a_sips_uri_goes_over_tls_whatever_its_transport_parameter(param: str) -> None:
    """RFC 5630 §3.1.3: ``transport=`` in a sips: URI names what is under TLS."""
    zone = {
        ("_sips._tcp.pbx.example", "SRV"): [Srv(0, 0, 5061, "s.pbx.example")],
        ("s.pbx.example", "A"): ["192.0.2.3"],
    }
    tls_only = ("TLS",)
    targets, _ = resolve(f"sips:desk@pbx.example{param}", zone, transports=tls_only, families=(4,))
    assert targets == [Target("192.0.2.3", 5061, "TLS")]
    targets, _ = resolve(f"sips:desk@192.0.2.5{param}", {}, transports=("UDP", "TCP", "TLS"))
    assert targets == [Target("192.0.2.5", 5061, "TLS")]


def test_targets_found_through_dns_carry_the_domain_asked_for_as_their_server_name() -> None:
    """RFC 5922 §7.2: a TLS peer's certificate must match the URI's domain, not the SRV
    target's name nor the address."""
    zone = {
        ("_sips._tcp.pbx.example", "SRV"): [Srv(0, 0, 5061, "s1.hosting.example")],
        ("s1.hosting.example", "A"): ["192.0.2.3"],
    }
    (target,), _ = resolve("sips:desk@pbx.example", zone, transports=("TLS",), families=(4,))
    assert (target.host, target.server_name) == ("192.0.2.3", "pbx.example")
    assert target == Target("192.0.2.3", 5061, "TLS")  # the name is not its identity
    (numeric,), _ = resolve("sips:desk@192.0.2.5", {}, transports=("TLS",))
    assert numeric.server_name is None  # verified against the address itself


def test_a_name_that_does_not_exist_gives_no_targets() -> None:
    targets, asked = resolve("sip:desk@nowhere.example", {})
    assert targets == []
    assert asked[-1] == Query("nowhere.example", "AAAA")


def test_srv_priorities_come_first_and_a_dot_target_means_no_service() -> None:
    records = [Srv(20, 0, 5060, "c"), Srv(10, 5, 5060, "a"), Srv(10, 5, 5060, "b")]
    ordered = order_srv(records, random.Random(7))
    assert {r.target for r in ordered[:2]} == {"a", "b"}
    assert ordered[2].target == "c"
    assert order_srv([Srv(0, 0, 0, ".")], random.Random(1)) == []


def test_srv_weights_share_the_first_place_as_rfc_2782_says() -> None:
    records = [Srv(10, 60, 5060, "heavy"), Srv(10, 20, 5060, "light"), Srv(10, 20, 5060, "l2")]
    rng = random.Random(1234)
    firsts = Counter(order_srv(records, rng)[0].target for _ in range(2000))
    assert 0.55 < firsts["heavy"] / 2000 < 0.65, firsts
    assert 0.15 < firsts["light"] / 2000 < 0.25, firsts


def test_the_same_seed_gives_the_same_order() -> None:
    records = [Srv(0, w, 5060, f"h{w}") for w in (1, 2, 3, 4, 5)]
    assert order_srv(records, random.Random(9)) == order_srv(records, random.Random(9))
    assert sorted(order_srv(records, random.Random(9)), key=lambda r: r.weight) == records


@pytest.mark.parametrize("flags", ["", "a", "u"])
def test_naptr_records_without_the_s_flag_are_not_used(flags: str) -> None:
    assert naptr_choices([Naptr(1, 1, flags, "SIP+D2U", "_sip._udp.x")], ("UDP",)) == []


srv_records = st.lists(
    st.builds(
        Srv,
        priority=st.integers(0, 3),
        weight=st.integers(0, 100),
        port=st.integers(1, 65535),
        target=st.sampled_from(["a", "b", "c", "d"]),
    ),
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(records=srv_records, seed=st.integers(0, 2**32))
def test_srv_order_is_a_permutation_sorted_by_priority(records: list[Srv], seed: int) -> None:
    ordered = order_srv(records, random.Random(seed))
    assert sorted(ordered, key=repr) == sorted(records, key=repr)
    assert [r.priority for r in ordered] == sorted(r.priority for r in records)


@settings(max_examples=200, deadline=None)
@given(
    naptrs=st.lists(
        st.builds(
            Naptr,
            order=st.integers(0, 3),
            preference=st.integers(0, 3),
            flags=st.sampled_from(["s", "S", "a", ""]),
            service=st.sampled_from(["SIP+D2U", "SIP+D2T", "SIPS+D2T", "E2U+sip", "x"]),
            replacement=st.sampled_from(["_sip._udp.h", "_sip._tcp.h", ".", ""]),
        ),
        max_size=6,
    ),
    srvs=srv_records,
)
def test_resolution_of_any_answers_gives_targets_of_our_transports(
    naptrs: list[Naptr], srvs: list[Srv]
) -> None:
    zone: dict[tuple[str, str], Sequence[Record]] = {("h", "NAPTR"): naptrs}
    for name in ("_sip._udp.h", "_sip._tcp.h"):
        zone[(name, "SRV")] = srvs
    for host in ("a", "b", "c", "d", "h"):
        zone[(host, "A")] = ["192.0.2.1"]
    targets, asked = resolve("sip:x@h", zone, transports=("UDP",))
    assert all(t.transport == "UDP" and t.host == "192.0.2.1" for t in targets)
    assert len(set(targets)) == len(targets)
    # NAPTR; per usable NAPTR record its SRV and two address questions per SRV record;
    # then our one transport's SRV and its addresses; then the host's two
    n, s = len(naptrs), len(srvs)
    assert len(asked) <= 1 + n * (1 + 2 * s) + (1 + 2 * s) + 2
