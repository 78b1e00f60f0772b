"""Call-taker failover end to end (issue 18): real ``recproxy serve``, SIPp as the caller
and as the call takers, a DNS server the test starts in process, and the proxy's own
export to check that the recording is whole.

1. A hunt group whose first call taker rings and never answers: after
   ``no_answer_seconds`` it is CANCELled and the second answers; the recording holds the
   caller and the second call taker, each on its channel.
2. The first is busy (486): the second is rung at once.
3. One call taker found by DNS SRV at two addresses, the first a dead port: after the
   no-answer time with nothing back, the second address gets the INVITE.
4. OPTIONS keepalives mark a dead call taker down (``recproxy_call_taker_up`` 0), and a
   call skips it without waiting for it.
"""

from __future__ import annotations

import pytest

from ..dns_server import DnsServer
from .conftest import E2e
from .proxy_process import ProxyProcess, ProxySettings, wait_for
from .sipp import Sipp, play_pcap
from .test_media_addresses import assert_recorded, metric
from .test_recorded_call import seconds_of

pytestmark = pytest.mark.sipp


def bob(e2e: E2e, taker_audio: bytes, *, extra: tuple[str, ...] = (), calls: int = 1) -> Sipp:
    """The answering call taker at the spare SIP port, talking ``taker_audio``."""
    values = {
        "ring_ms": 300,
        "audio": play_pcap(e2e.rtp_pcap("bob.pcap", taker_audio)),
        "codec": "PCMU",
    }
    return e2e.run_sipp(
        "bob", "uas_answer", values,
        local_port=e2e.ports.spare_sip(0), media_port=e2e.ports.spare_media(1), extra=extra,
        calls=calls,
    )  # fmt: skip


def talk(dialogue: bytes) -> tuple[bytes, bytes]:
    """What the caller and the answering call taker say: 3 s each."""
    return seconds_of(dialogue, 0, 3), seconds_of(dialogue, 12, 15)


def hunt(
    e2e: E2e, proxy: ProxyProcess, dialogue: bytes, ann_scenario: str, *, pre_audio_ms: int
) -> tuple[Sipp, Sipp]:
    """A call to the hunt group: ann (at the call taker's port) plays ``ann_scenario``,
    bob answers; both SIPp runs, done."""
    caller_audio, taker_audio = talk(dialogue)
    ann = e2e.run_sipp(
        "ann", ann_scenario, {}, local_port=e2e.ports.taker_sip, media_port=e2e.ports.taker_rtp
    )
    second = bob(e2e, taker_audio)
    caller = e2e.caller(
        audio_pcap=e2e.rtp_pcap("caller.pcap", caller_audio),
        pre_audio_ms=pre_audio_ms,
        hold_ms=3500,
    )
    caller.expect_success(timeout=40)
    ann.expect_success(timeout=10)
    second.expect_success(timeout=10)
    proxy.wait_idle()
    return ann, second


def failovers(proxy: ProxyProcess, reason: str) -> float:
    return metric(proxy, f'recproxy_call_taker_failovers_total{{reason="{reason}"}}')


def test_a_call_taker_who_does_not_answer_rolls_to_the_next_and_the_recording_is_whole(
    e2e: E2e, dialogue: bytes
) -> None:
    ann_uri = f"sip:calltaker@127.0.0.1:{e2e.ports.taker_sip}"
    bob_uri = f"sip:bob@127.0.0.1:{e2e.ports.spare_sip(0)}"
    proxy = e2e.proxy(
        ProxySettings(call_takers=(ann_uri, bob_uri), routing="no_answer_seconds = 2")
    )
    # 2 s of notice, 2 s of ann ringing, 0.3 s of bob ringing, then the caller talks
    ann, second = hunt(e2e, proxy, dialogue, "uas_no_answer", pre_audio_ms=4800)

    cancelled = ann.first(sent=False, method="CANCEL").time
    invited = ann.first(sent=False, method="INVITE").time
    assert 1.8 <= cancelled - invited <= 3.0, (invited, cancelled)
    assert second.first(sent=False, method="INVITE").time >= cancelled - 0.1
    assert_recorded(e2e, proxy, 0, *talk(dialogue))
    assert failovers(proxy, "no_answer") == 1
    assert f"call taker {ann_uri} at 127.0.0.1:{e2e.ports.taker_sip}" in proxy.log_text()


def test_a_busy_call_taker_rolls_to_the_next_at_once(e2e: E2e, dialogue: bytes) -> None:
    ann_uri = f"sip:calltaker@127.0.0.1:{e2e.ports.taker_sip}"
    bob_uri = f"sip:bob@127.0.0.1:{e2e.ports.spare_sip(0)}"
    proxy = e2e.proxy(ProxySettings(call_takers=(ann_uri, bob_uri)))
    ann, second = hunt(e2e, proxy, dialogue, "uas_busy", pre_audio_ms=2800)

    busy = ann.first(sent=True, status=486).time
    # two SIPp processes' logs: one logs its 486 a fraction of a millisecond after
    # sending it, so the other's receipt may carry a slightly earlier time (5 ms slack)
    assert -0.005 <= second.first(sent=False, method="INVITE").time - busy < 0.5
    assert_recorded(e2e, proxy, 0, *talk(dialogue))
    assert failovers(proxy, "refused") == 1


def test_a_dead_first_srv_address_fails_over_to_the_second(e2e: E2e, dialogue: bytes) -> None:
    dead = e2e.ports.spare_sip(1)  # reserved for this test, nothing listens
    zone = {
        ("_sip._udp.takers.test", "SRV"): [
            f"10 0 {dead} one.takers.test.",
            f"20 0 {e2e.ports.taker_sip} two.takers.test.",
        ],
        ("one.takers.test", "A"): ["127.0.0.1"],
        ("two.takers.test", "A"): ["127.0.0.1"],
    }
    with DnsServer(zone) as dns:
        proxy = e2e.proxy(
            ProxySettings(
                call_takers=("sip:calltaker@takers.test",),
                routing="no_answer_seconds = 2",
                extra=f'[dns]\nnameservers = ["{dns.address}"]\n',
            )
        )
        caller_audio, taker_audio = talk(dialogue)
        taker = e2e.call_taker(audio_pcap=e2e.rtp_pcap("taker.pcap", taker_audio), ring_ms=300)
        caller = e2e.caller(
            audio_pcap=e2e.rtp_pcap("caller.pcap", caller_audio), pre_audio_ms=4800,
            hold_ms=3500,
        )  # fmt: skip
        caller.expect_success(timeout=40)
        taker.expect_success(timeout=10)
        proxy.wait_idle()
        asked = list(dns.asked)

    assert ("_sip._udp.takers.test", "SRV") in asked
    invite = taker.first(sent=False, method="INVITE")
    assert invite.first_line.startswith("INVITE sip:calltaker@takers.test SIP/2.0"), invite.text
    assert_recorded(e2e, proxy, 0, caller_audio, taker_audio)
    assert failovers(proxy, "no_response") == 1


def test_keepalives_mark_a_dead_call_taker_down_and_a_call_skips_it(
    e2e: E2e, dialogue: bytes
) -> None:
    dead_uri = f"sip:dead@127.0.0.1:{e2e.ports.spare_sip(1)}"  # nothing listens
    bob_uri = f"sip:bob@127.0.0.1:{e2e.ports.spare_sip(0)}"
    routing = "no_answer_seconds = 10\noptions_interval_seconds = 0.3\noptions_failures = 2"
    caller_audio, taker_audio = talk(dialogue)
    # -aa: SIPp answers each OPTIONS 200, as a call of its own (so many calls allowed)
    second = bob(e2e, taker_audio, extra=("-aa",), calls=1000)
    proxy = e2e.proxy(ProxySettings(call_takers=(dead_uri, bob_uri), routing=routing))

    def up(uri: str) -> float | None:
        """The call taker's health, None before its first probe has ended."""
        try:
            return metric(proxy, f'recproxy_call_taker_up{{target="{uri}"}}')
        except AssertionError:
            return None

    wait_for("the dead call taker marked down", lambda: up(dead_uri) == 0, timeout=10)
    assert up(bob_uri) == 1
    # rung first, the dead one would hold the call for no_answer_seconds (10 s)
    caller = e2e.caller(
        audio_pcap=e2e.rtp_pcap("caller.pcap", caller_audio), pre_audio_ms=2800, hold_ms=3500
    )
    caller.expect_success(timeout=20)
    proxy.wait_idle()
    # SIPp keeps a call open for each OPTIONS it answered, so it does not exit by
    # itself: what it did is read from its message log
    wait_for("bob to answer our BYE", lambda: bob_answered_bye(second), timeout=5)
    # bob was rung as the notice ended (2 s), not after the dead one's 10 s
    rung = second.first(sent=False, method="INVITE").time
    assert rung - caller.first(sent=True, method="INVITE").time < 4
    assert_recorded(e2e, proxy, 0, caller_audio, taker_audio)
    for reason in ("no_response", "no_answer", "unavailable"):
        assert failovers(proxy, reason) == 0
    assert f"call taker {dead_uri} is down (keepalives): skipped" in proxy.log_text()


def bob_answered_bye(run: Sipp) -> bool:
    """The call taker answered one INVITE and then our BYE."""
    try:
        run.first(sent=True, status=200, cseq_method="INVITE")
        run.first(sent=True, status=200, cseq_method="BYE")
    except AssertionError:
        return False
    return True
