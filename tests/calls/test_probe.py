"""OPTIONS keepalives to the call takers through the real sans-IO core (no sockets):
what is sent, how answers and silence change a call taker's health, and what is
published for the metrics."""

from __future__ import annotations

from pathlib import Path

from proxy.config import RoutingSettings
from proxy.events import CallTakerProbed
from proxy.sip.message import Request, make_response

from .call_harness import TAKER, Harness
from .test_call_flow import no_sockets  # noqa: F401 (the fixture)
from .test_hunt import ANN, BOB, TAKER2

ROUTING = RoutingSettings(call_takers=(ANN, BOB), options_interval_seconds=1, options_failures=2)


def options_to(h: Harness, address: tuple[str, int]) -> list[Request]:
    return [s.message for s in h.to(address) if isinstance(s.message, Request)
            and s.message.method == "OPTIONS"]  # fmt: skip


async def test_each_call_taker_gets_an_options_and_an_answer_keeps_it_up(tmp_path: Path) -> None:
    async with Harness(tmp_path, routing=ROUTING) as h:
        await h.b2bua.prober.probe_all()
        h.pump()
        (probe,) = options_to(h, TAKER)
        assert str(probe.uri) == ANN and len(options_to(h, TAKER2)) == 1
        h.feed(make_response(probe, 200, to_tag="ann").serialize(), TAKER)

        (probed,) = h.published(CallTakerProbed)
        assert (probed.call_taker, probed.up) == (ANN, True)
        assert probed.round_trip_seconds is not None and probed.round_trip_seconds >= 0
        assert h.b2bua.health.is_up(ANN)


async def test_unanswered_probes_mark_a_call_taker_down_and_any_answer_brings_it_up(
    tmp_path: Path,
) -> None:
    async with Harness(tmp_path, routing=ROUTING) as h:
        for _ in range(3):  # the third round finds the second unanswered
            await h.b2bua.prober.probe_all()
            h.pump()
        ann = [e for e in h.published(CallTakerProbed) if e.call_taker == ANN]
        assert [(e.up, e.round_trip_seconds) for e in ann] == [(True, None), (False, None)]
        assert not h.b2bua.health.is_up(ANN) and not h.b2bua.health.is_up(BOB)

        latest = options_to(h, TAKER)[-1]
        h.feed(make_response(latest, 405, to_tag="ann").serialize(), TAKER)  # alive
        assert h.published(CallTakerProbed)[-1].up is True
        assert h.b2bua.health.is_up(ANN)


async def test_a_503_counts_as_a_failed_probe(tmp_path: Path) -> None:
    routing = RoutingSettings(
        call_takers=(ANN, BOB), options_interval_seconds=1, options_failures=1
    )
    async with Harness(tmp_path, routing=routing) as h:
        await h.b2bua.prober.probe_all()
        h.pump()
        h.feed(make_response(options_to(h, TAKER)[0], 503).serialize(), TAKER)
        assert not h.b2bua.health.is_up(ANN)
        assert h.b2bua.health.is_up(BOB)  # not answered yet: its round is not over
