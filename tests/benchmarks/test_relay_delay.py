"""The pure parts of benchmarks/relay_delay.py: the probe packet's stamp and the delay
statistics."""

from __future__ import annotations

import time

from benchmarks.relay_delay import (
    PAYLOAD,
    delay_stats,
    percentile,
    probe_packet,
    read_probe,
    split_evenly,
    summary_us,
)
from benchmarks.relay_load import tick_summary


def test_nearest_rank_percentiles() -> None:
    ordered = list(range(1, 101))
    assert percentile(ordered, 50) == 50
    assert percentile(ordered, 99) == 99
    assert percentile(ordered, 100) == 100
    assert percentile([7], 99) == 7


def test_summary_is_in_microseconds_and_empty_when_nothing_arrived() -> None:
    assert summary_us([3000, 1000, 2000]) == {"p50": 2.0, "p99": 3.0, "max": 3.0}
    assert summary_us([]) == {"p50": None, "p99": None, "max": None}


def test_added_delay_is_taken_per_packet_against_its_direct_twin() -> None:
    direct = {0: 100_000, 1: 900_000, 2: 100_000}
    via = {0: 150_000, 1: 950_000, 2: 1_100_000}
    stats = delay_stats(4, direct, via)
    assert stats["added_delay_us"] == {"p50": 50.0, "p99": 1000.0, "max": 1000.0}
    assert stats["via_proxy_delay_us"] == {"p50": 950.0, "p99": 1100.0, "max": 1100.0}
    assert stats["lost_via_proxy"] == 1 and stats["lost_direct"] == 1


def test_a_packet_lost_on_one_path_is_left_out_of_the_added_delay() -> None:
    stats = delay_stats(2, {0: 10_000, 1: 10_000}, {1: 30_000})
    assert stats["added_delay_us"] == {"p50": 20.0, "p99": 20.0, "max": 20.0}
    assert stats["lost_via_proxy"] == 1 and stats["lost_direct"] == 0


def test_probe_packet_carries_its_sequence_and_send_time() -> None:
    before = time.monotonic_ns()
    packet = probe_packet(70_000)  # past 16 bits: the RTP sequence wraps, the probe's not
    assert len(packet) == 12 + PAYLOAD
    assert packet[2:4] == (70_000 & 0xFFFF).to_bytes(2, "big")
    seq, delay = read_probe(packet, time.monotonic_ns())
    assert seq == 70_000
    assert 0 <= delay <= time.monotonic_ns() - before


def test_background_calls_are_split_into_even_groups_and_none_still_make_one() -> None:
    assert split_evenly(list(range(10)), 4) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert split_evenly([1, 2], 4) == [[1], [2]]
    assert split_evenly([], 4) == [[]]  # the generator still sleeps once a period


def test_tick_summary_leaves_out_the_first_second_and_is_in_ms() -> None:
    durations = [1.0] * 50 + [0.001] * 98 + [0.002, 0.005]
    assert tick_summary(durations) == {"p50": 1.0, "p99": 5.0, "max": 5.0}
    assert tick_summary([0.5] * 10) == {"p50": 0.0, "p99": 0.0, "max": 0.0}
