"""The kernel fast path end to end (issue 19): ``recproxy serve`` and SIPp in a network
namespace the test sets up for it (``fast_path_net``), so nftables forwards the bridged
call's RTP while the recorder reads the same packets from the ring.

1. a plain bridged call is handed to the kernel once both legs latched: the relay's
   packet counters stop growing, the call taker still receives every packet the caller
   sent, and the recording is complete, as long as the call, both channels holding the
   audio sent; when the call ends no rule is left;
2. a call taker's recording code keyed while the kernel forwards: its telephone-events
   still go to the call flow, never to the caller, and the recording stops at the code
   (the call comes back to the relay for the beeps);
3. ``fast_path = "off"`` in the same namespace: the relay does everything.

An SRTP call staying on the relay is shown with real legs and keys in
``tests/media/fastpath/test_kernel_path.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest

from . import audio, fast_path_net
from .conftest import E2e, end_world, new_world
from .netns import in_private_network
from .proxy_process import ProxySettings, list_recordings, query, wait_for
from .recorded_call import LENGTH_TOLERANCE_S, check_whole_recording
from .test_recording_control import STOP_TOLERANCE_S, StopByKeys

pytestmark = pytest.mark.sipp

T = TypeVar("T")
RATE = audio.RATE
FAST = ProxySettings(media='fast_path = "auto"')


def _in_fast_path_namespace(folder: Path, body: Callable[[E2e], T]) -> T:
    def run() -> T:
        fast_path_net.prepare()
        world = new_world(folder)
        try:
            return body(world)
        finally:
            end_world(world)

    return in_private_network(run, timeout=150)


def _ulaw(dialogue: bytes, start: float, end: float) -> bytes:
    return dialogue[int(start * RATE) : int(end * RATE)]


def _relayed_out(world: E2e) -> float:
    return fast_path_net.metric(world.ports.http, "recproxy_rtp_packets_total", 'direction="out"')


def _ring_packets(world: E2e) -> float:
    return fast_path_net.metric(world.ports.http, "recproxy_fast_path_ring_packets_total")


def _calls_in_kernel(world: E2e) -> float:
    return fast_path_net.metric(world.ports.http, "recproxy_fast_path_calls")


# ---------------------------------------------------------------------------------------
# 1. A plain bridged call: forwarded by the kernel, recorded whole


def test_bridged_call_is_forwarded_by_the_kernel_and_recorded_whole(
    tools: None, tmp_path: Path, dialogue: bytes
) -> None:
    _in_fast_path_namespace(tmp_path, lambda world: _kernel_call(world, dialogue))


def _kernel_call(world: E2e, dialogue: bytes) -> None:
    proxy = world.proxy(FAST)
    assert "RTP forwarding: the kernel fast path" in proxy.log_text()
    ports = world.ports
    fast_path_net.count_arrivals(ports.taker_rtp)
    caller_audio, taker_audio = _ulaw(dialogue, 0, 6), _ulaw(dialogue, 12, 18)
    sent = world.capture("caller_sent.pcap", f"udp src port {ports.caller_rtp}")
    taker = world.call_taker(audio_pcap=world.rtp_pcap("taker.pcap", taker_audio), ring_ms=500)
    caller = world.caller(
        audio_pcap=world.rtp_pcap("caller.pcap", caller_audio), pre_audio_ms=3000, hold_ms=6500
    )
    wait_for("the call in the kernel", lambda: _calls_in_kernel(world) == 1, timeout=15)
    time.sleep(0.3)
    relayed, ringed = _relayed_out(world), _ring_packets(world)
    time.sleep(1.5)
    # the relay sends nothing more; the ring gives the recorder both directions
    assert _relayed_out(world) == relayed
    assert _ring_packets(world) - ringed >= 0.8 * 2 * 50 * 1.5
    assert len(fast_path_net.proxy_sources()) == 2, "the call's legs are not in the kernel"
    caller.expect_success(timeout=30)
    taker.expect_success(timeout=10)
    proxy.wait_idle()
    caller_packets = [d for d in sent.stop() if d.source[1] == ports.caller_rtp]

    # nothing of the call is left in the kernel
    assert fast_path_net.proxy_sources() == []
    assert _calls_in_kernel(world) == 0
    # the call taker received every packet the caller sent (relay, then kernel)
    assert caller_packets
    assert fast_path_net.arrivals() == len(caller_packets), len(caller_packets)
    assert fast_path_net.metric(ports.http, "recproxy_fast_path_ring_drops_total") == 0

    # one complete recording, as long as the bridged call, caller left, call taker right
    [row] = list_recordings(world.config_path)
    (call,) = [dict(r) for r in query(proxy.catalog_path, "SELECT * FROM calls")]
    wav = check_whole_recording(world, call, row, caller_audio, taker_audio)
    by_sipp = (
        caller.first(sent=True, method="BYE").time - taker.first(sent=False, method="ACK").time
    )
    assert abs(wav.seconds - by_sipp) <= LENGTH_TOLERANCE_S, (wav.seconds, by_sipp)


# ---------------------------------------------------------------------------------------
# 2. The call taker's recording code: held back from the caller, acted on, with beeps


def test_a_stop_code_during_a_kernel_call_never_reaches_the_caller_and_stops_the_recording(
    tools: None, tmp_path: Path, dialogue: bytes
) -> None:
    _in_fast_path_namespace(tmp_path, lambda world: _code_in_kernel_call(world, dialogue))


def _code_in_kernel_call(world: E2e, dialogue: bytes) -> None:
    run = StopByKeys(world, dialogue)
    run.start(replace(run.settings(), media=FAST.media))
    fast_path_net.count_arrivals(world.ports.caller_rtp, (world.ports.caller_rtp, 101))
    run.call()
    # the caller hung up mid-sentence (the call back on the relay for the beeps, or
    # still in the kernel): nothing of it is left in the kernel
    assert fast_path_net.proxy_sources() == []
    handed = fast_path_net.metric(
        world.ports.http, "recproxy_fast_path_handovers_total", 'to="kernel"'
    )
    back = fast_path_net.metric(
        world.ports.http, "recproxy_fast_path_handovers_total", 'to="relay"'
    )
    run.after()
    world.proxies.clear()  # run.after() stopped and checked them (a clean exit)
    run.expect_calls_succeeded()
    # in the kernel after the bridge, back on the relay for the beeps (and at the end)
    assert handed >= 1 and back >= 1, (handed, back)
    # the caller got the call taker's audio, and not one telephone-event packet
    assert fast_path_net.arrivals(0) > 100
    assert fast_path_net.arrivals(1) == 0
    # the recording ended at the code, as on the relay
    wav: audio.Wav = run.notes["wav"]
    expected = run.event() - run.bridge()
    assert abs(wav.seconds - expected) <= STOP_TOLERANCE_S, (wav.seconds, expected)


# ---------------------------------------------------------------------------------------
# 3. fast_path = "off": the relay forwards, in a namespace where the kernel could


def test_off_keeps_every_packet_on_the_relay(tools: None, tmp_path: Path, dialogue: bytes) -> None:
    _in_fast_path_namespace(tmp_path, lambda world: _relay_call(world, dialogue))


def _relay_call(world: E2e, dialogue: bytes) -> None:
    proxy = world.proxy(ProxySettings(media='fast_path = "off"'))
    assert 'no kernel fast path: media.fast_path is "off"' in proxy.log_text()
    taker_audio = _ulaw(dialogue, 12, 15)
    taker = world.call_taker(audio_pcap=world.rtp_pcap("taker.pcap", taker_audio), ring_ms=200)
    caller = world.caller(pre_audio_ms=0, hold_ms=4000)
    caller.expect_success(timeout=30)
    taker.expect_success(timeout=10)
    proxy.wait_idle()
    assert _relayed_out(world) > 150  # the call taker's 3 s to the caller, and the notice
    assert _ring_packets(world) == 0 and _calls_in_kernel(world) == 0
    [row] = list_recordings(world.config_path)
    assert row["state"] == "complete", row
