"""The pure parts of benchmarks/load.py: the pcap it extends for long calls, the SIPp
scenarios it derives, the counters it reads, the flags it turns into a load, and the
closing lines every run prints."""

from __future__ import annotations

import argparse
import json
import os
import struct
import threading
from pathlib import Path

import pytest

from benchmarks.load import (
    PEERS,
    SCENARIOS,
    SIPP_PCAP,
    Load,
    closing_lines,
    counters_from_json,
    cpu_split,
    derive_scenario,
    dropped_by_reason,
    extend_pcap,
    load_from,
    rtp_delivery,
    thread_times,
)

RTP = 14 + 20 + 8  # Ethernet, IPv4 (no options), UDP


def _pcap(packets: int) -> bytes:
    """A pcap of ``packets`` RTP packets 30 ms apart, the first with the marker bit."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for n in range(packets):
        rtp = struct.pack("!BBHII", 0x80, 0x88 if n == 0 else 0x08, 100 + n, 240 * n, 7)
        frame = bytes(14) + bytes([0x45]) + bytes(19) + bytes(8) + rtp + bytes([n]) * 240
        micros = 1_000_000 + 30_000 * n
        out += struct.pack("<IIII", micros // 1_000_000, micros % 1_000_000, len(frame), len(frame))
        out += frame
    return bytes(out)


def _records(data: bytes) -> list[tuple[int, bytes]]:
    found, offset = [], 24
    while offset < len(data):
        seconds, micros, caplen = struct.unpack_from("<III", data, offset)
        found.append((seconds * 1_000_000 + micros, data[offset + 16 : offset + 16 + caplen]))
        offset += 16 + caplen
    return found


def test_extend_pcap_keeps_the_first_lap_unchanged() -> None:
    data = _pcap(3)
    assert extend_pcap(data, 3) == data
    assert extend_pcap(data, 2) == data[: len(data) - (16 + RTP + 12 + 240)]


def test_extend_pcap_carries_sequence_timestamp_and_time_on_past_the_recording() -> None:
    records = _records(extend_pcap(_pcap(3), 8))
    assert len(records) == 8
    times = [when for when, _ in records]
    assert times == [1_000_000 + 30_000 * n for n in range(8)]
    for n, (_, frame) in enumerate(records):
        seq, ts = struct.unpack_from("!HI", frame, RTP + 2)
        assert (seq, ts) == (100 + n, 240 * n)
        assert frame[RTP + 12] == n % 3  # the audio is the recording's, replayed
        assert (frame[RTP + 1] & 0x80 != 0) == (n == 0)  # one marker: one stream


def test_extend_pcap_rejects_an_empty_capture() -> None:
    with pytest.raises(ValueError, match="no packets"):
        extend_pcap(_pcap(0), 5)


@pytest.mark.skipif(not SIPP_PCAP.exists(), reason="SIPp's g711a.pcap (sip-tester)")
def test_five_seconds_are_the_first_167_packets_of_sipps_capture() -> None:
    """Today's g711a_5s.pcap, so 5 s runs stay comparable with earlier ones."""
    original = SIPP_PCAP.read_bytes()
    assert _records(extend_pcap(original, 167)) == _records(original)[:167]


TEMPLATE = """<scenario>
  <send><![CDATA[INVITE]]></send>
  <nop>
    <action>
      <exec play_pcap_audio="g711a_5s.pcap"/>
    </action>
  </nop>
  <pause milliseconds="5000"/>
  <send><![CDATA[BYE]]></send>
</scenario>
"""


def test_derived_scenario_plays_the_given_pcap_for_the_given_time() -> None:
    text = derive_scenario(TEMPLATE, "g711a_2000p.pcap", 60_000)
    assert 'play_pcap_audio="g711a_2000p.pcap"' in text
    assert '<pause milliseconds="60000"/>' in text
    assert text.replace("g711a_2000p", "g711a_5s").replace("60000", "5000") == TEMPLATE


def test_signalling_only_scenario_sends_no_rtp() -> None:
    text = derive_scenario(TEMPLATE, None, 500)
    assert "play_pcap_audio" not in text and "<nop>" not in text
    assert '<pause milliseconds="500"/>' in text and "BYE" in text


def test_a_scenario_without_exactly_one_pcap_is_refused() -> None:
    with pytest.raises(ValueError, match="exactly one pcap"):
        derive_scenario("<scenario/>", None, None)


@pytest.mark.parametrize(
    "template",
    [
        PEERS / "uac5.xml",
        PEERS / "uac5_norr.xml",
        SCENARIOS / "uas_pcma_play.xml",
        SCENARIOS / "uas_pcma_play_lc.xml",
    ],
)
def test_every_scenario_load_uses_can_be_derived(template: Path) -> None:
    if not template.exists():
        pytest.skip(f"{template} not here")
    pause = 20_000 if template.name.startswith("uac") else None
    assert "play_pcap_audio" not in derive_scenario(template.read_text(), None, pause)


def test_counters_are_read_from_nft_json() -> None:
    text = json.dumps(
        {
            "nftables": [
                {"metainfo": {"version": "1.0.6"}},
                {"counter": {"family": "inet", "name": "from_callee", "packets": 26680}},
                {"counter": {"family": "inet", "name": "to_caller", "packets": 26675}},
            ]
        }
    )
    assert counters_from_json(text) == {"from_callee": 26680, "to_caller": 26675}


def test_rtp_delivery_gives_the_shortfall_as_a_share_of_what_was_sent() -> None:
    load = Load(rate=2, calls=40, limit=20, duration=20)
    assert rtp_delivery({"from_callee": 26680, "to_caller": 26675}, load, 40) == {
        "rtp_callee_expected": 667 * 40,
        "rtp_callee_sent": 26680,
        "rtp_caller_delivered": 26675,
        "rtp_callee_to_caller_loss_percent": 0.019,
    }
    assert rtp_delivery({}, load, 40) == {}


def _args(**given: object) -> argparse.Namespace:
    flags: dict[str, object] = {
        "profile": "short", "rate": None, "calls": None, "limit": None, "duration": None,
        "signalling_only": False, "timeout": None,
    }  # fmt: skip
    return argparse.Namespace(**{**flags, **given})


def test_the_long_profile_ramps_to_200_concurrent_minute_long_calls() -> None:
    load = load_from(_args(profile="long"))
    assert (load.rate, load.calls, load.limit, load.duration) == (5.0, 600, 200, 60.0)
    assert load.rate * load.duration >= load.limit  # the ramp reaches the limit and holds
    held = load.limit / load.duration  # calls a second once 200 are up
    assert load.timeout >= load.calls / held + load.duration  # SIPp is not cut short
    assert load.packets == 2000


def test_flags_override_the_profile() -> None:
    load = load_from(_args(profile="long", duration=20.0, limit=20, calls=40, rate=2.0))
    assert (load.rate, load.calls, load.limit, load.duration) == (2.0, 40, 20, 20.0)
    assert load_from(_args()).packets == 167  # today's 5 s calls
    assert load_from(_args(signalling_only=True)).packets == 0
    assert load_from(_args(timeout=42)).timeout == 42


def test_closing_lines_keep_their_form() -> None:
    results: list[dict[str, object]] = [
        {"system": "recproxy", "cpu_ms_per_recorded_second": 5.348, "cpu_ms_per_call": 101.5},
        {"system": "kamailio", "cpu_ms_per_recorded_second": 1.875, "cpu_ms_per_call": 37.5},
        {"system": "sippy", "cpu_ms_per_recorded_second": 3.375, "cpu_ms_per_call": 67.5},
    ]
    assert closing_lines(results) == [
        "recproxy / kamailio: CPU per recorded call-second 5.348 / 1.875 ms = 2.85x",
        "recproxy / sippy: CPU per recorded call-second 5.348 / 3.375 ms = 1.58x",
    ]
    assert closing_lines(results[1:]) == []


def test_a_signalling_only_run_compares_cpu_per_call_set_up() -> None:
    results: list[dict[str, object]] = [
        {"system": "recproxy", "signalling_only": True, "cpu_ms_per_call": 14.0},
        {"system": "kamailio", "signalling_only": True, "cpu_ms_per_call": 1.0},
    ]
    assert closing_lines(results) == [
        "recproxy / kamailio: CPU per call set-up 14.000 / 1.000 ms = 14.00x"
    ]


def test_recproxy_drops_are_read_by_reason() -> None:
    metrics = {
        'recproxy_rtp_dropped_total{reason="late"}': 1190.0,
        'recproxy_rtp_dropped_total{reason="unknown_source"}': 11.0,
        'recproxy_rtp_packets_total{direction="in"}': 5.0,
    }
    assert dropped_by_reason(metrics) == {"late": 1190, "unknown_source": 11}


def test_cpu_split_gives_user_and_system_time_per_thread_busiest_first() -> None:
    before = {"1/1 recproxy": (1.0, 0.5), "1/2 recproxy": (0.2, 0.1)}
    after = {"1/1 recproxy": (1.5, 0.75), "1/2 recproxy": (1.2, 0.3), "1/3 recproxy": (0.0, 0.0)}

    split = cpu_split(before, after)

    assert split["cpu_user_seconds"] == 1.5
    assert split["cpu_system_seconds"] == 0.45
    assert list(split["cpu_by_thread"]) == ["1/2 recproxy", "1/1 recproxy"]  # idle 1/3 left out
    assert split["cpu_by_thread"]["1/2 recproxy"] == {"user": 1.0, "system": 0.2}


def test_thread_times_reads_every_thread_of_this_process() -> None:
    started = threading.Event()
    stop = threading.Event()
    worker = threading.Thread(target=lambda: (started.set(), stop.wait(5)))
    worker.start()
    started.wait(5)
    try:
        times = thread_times([os.getpid()])
    finally:
        stop.set()
        worker.join(5)
    ours = [key for key in times if key.startswith(f"{os.getpid()}/")]
    assert f"{os.getpid()}/{os.getpid()}" in {key.split()[0] for key in ours}
    assert len(ours) >= 2
    assert all(user >= 0 and system >= 0 for user, system in times.values())
