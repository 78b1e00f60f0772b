"""The jitter buffer, driven by simulated senders and networks on a 20 ms tick."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from proxy.media.jitter import JitterBuffer
from proxy.media.rtp import RtpPacket
from tests.media.media_helpers import read_pcap, sipp_pcap

TICK = 0.02
FRAME = 160


@dataclass(frozen=True)
class Packet:
    seq: int
    ts: int
    payload: bytes


def audio(samples: int, seed: int = 1) -> bytes:
    """Random 'codec bytes': any misplaced sample shows."""
    return random.Random(seed).randbytes(samples)


def packetise(data: bytes, size: int = FRAME, seq0: int = 1000, ts0: int = 50_000) -> list[Packet]:
    return [
        Packet((seq0 + i) & 0xFFFF, (ts0 + i * size) & 0xFFFFFFFF, data[i * size : (i + 1) * size])
        for i in range(len(data) // size)
    ]


def run(
    buffer: JitterBuffer,
    arrivals: list[tuple[float, Packet]],
    ticks: int,
    phase: float = 0.007,
) -> list[bytes | None]:
    """Tick every 20 ms (offset ``phase``): push what has arrived, then pop once."""
    arrivals = sorted(arrivals, key=lambda a: a[0])
    out: list[bytes | None] = []
    next_arrival = 0
    for tick in range(ticks):
        now = phase + tick * TICK
        while next_arrival < len(arrivals) and arrivals[next_arrival][0] <= now:
            packet = arrivals[next_arrival][1]
            buffer.push(packet.seq, packet.ts, packet.payload)
            next_arrival += 1
        out.append(buffer.pop())
    return out


def paced(
    packets: list[Packet],
    ptime: float = TICK,
    delay: Callable[[int], float] = lambda i: 0.005,
    rate: float = 1.0,
) -> list[tuple[float, Packet]]:
    """Arrival times of packets sent every ``ptime / rate`` seconds."""
    return [(i * ptime / rate + delay(i), p) for i, p in enumerate(packets)]


def played(out: list[bytes | None]) -> bytes:
    return b"".join(frame for frame in out if frame is not None)


# --------------------------------------------------------------------------- basics


def test_pop_before_any_packet_is_none_and_not_loss() -> None:
    buffer = JitterBuffer()
    assert [buffer.pop() for _ in range(5)] == [None] * 5
    assert buffer.stats.lost == 0
    assert not buffer.started


def test_in_order_stream_plays_after_the_playout_delay() -> None:
    data = audio(FRAME * 100)
    buffer = JitterBuffer(depth=3)
    out = run(buffer, paced(packetise(data)), ticks=103)
    assert out[:3] == [None, None, None]  # 60 ms playout delay
    assert b"".join(out[3:]) == data  # type: ignore[arg-type]
    assert buffer.stats.lost == 0 and buffer.stats.late == 0
    assert buffer.stats.received == 100


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_playout_delay_is_configurable(depth: int) -> None:
    data = audio(FRAME * 50)
    out = run(JitterBuffer(depth=depth), paced(packetise(data)), ticks=50 + depth)
    assert out[:depth] == [None] * depth
    assert b"".join(out[depth:]) == data  # type: ignore[arg-type]


def test_reordering_within_the_depth_is_absorbed() -> None:
    data = audio(FRAME * 300)
    rng = random.Random(7)
    arrivals = paced(packetise(data), delay=lambda i: 0.005 + rng.uniform(0.0, 0.045))
    buffer = JitterBuffer(depth=3)
    out = run(buffer, arrivals, ticks=310)
    # A packet that overtook the first one plays in the lead-in: the audio may start a
    # frame early, but it is complete and gapless.
    first_tick = next(i for i in range(310) if 0.007 + i * TICK >= min(t for t, _ in arrivals))
    start = next(i for i, frame in enumerate(out) if frame is not None)
    assert start - first_tick <= 3
    assert b"".join(out[start : start + 300]) == data  # type: ignore[arg-type]
    assert buffer.stats.late == 0
    assert buffer.stats.lost == len(out[start + 300 :])  # only the ticks after the end


def test_swapped_packets_come_out_in_order() -> None:
    data = audio(FRAME * 20)
    packets = packetise(data)
    arrivals = [(i * TICK + 0.001, p) for i, p in enumerate(packets)]
    order = [0, 2, 1, 3, 6, 4, 5, 7, *range(8, 20)]
    arrivals = [(arrivals[i][0], packets[j]) for i, j in enumerate(order)]
    out = run(JitterBuffer(depth=3), arrivals, ticks=23)
    assert b"".join(out[3:]) == data  # type: ignore[arg-type]


def test_duplicates_are_dropped_and_counted() -> None:
    data = audio(FRAME * 50)
    packets = packetise(data)
    arrivals = paced(packets) + paced(packets, delay=lambda i: 0.006)  # every packet twice
    arrivals += [(2.0, packets[3]), (2.0, packets[40])]  # and two long after
    buffer = JitterBuffer()
    out = run(buffer, arrivals, ticks=110)
    assert played(out) == data
    assert buffer.stats.duplicates == 52
    assert buffer.stats.received == 102
    assert buffer.stats.late == 0


def test_too_late_packet_is_dropped_and_its_frame_is_silence() -> None:
    data = audio(FRAME * 30)
    delays = {10: 0.2}  # 200 ms late: its frame played 140 ms before it came
    buffer = JitterBuffer(depth=3)
    out = run(buffer, paced(packetise(data), delay=lambda i: delays.get(i, 0.005)), ticks=33)
    assert out[3 + 10] is None
    assert buffer.stats.late == 1
    assert buffer.stats.lost == 1
    expected = [data[i * FRAME : (i + 1) * FRAME] for i in range(30)]
    expected[10] = None  # type: ignore[call-overload]
    assert out[3:] == expected


def test_five_percent_random_loss_is_silence_exactly_where_missing() -> None:
    data = audio(FRAME * 1000, seed=5)
    packets = packetise(data)
    rng = random.Random(1234)
    dropped = {i for i in range(len(packets)) if rng.random() < 0.05}
    assert 30 < len(dropped) < 70
    arrivals = [a for i, a in enumerate(paced(packets)) if i not in dropped]
    buffer = JitterBuffer()
    out = run(buffer, arrivals, ticks=1003)[3:]
    assert [i for i, frame in enumerate(out) if frame is None] == sorted(dropped)
    for i, frame in enumerate(out):
        if frame is not None:
            assert frame == data[i * FRAME : (i + 1) * FRAME]
    assert buffer.stats.lost == len(dropped)
    assert buffer.stats.skew_adjustments == 0


def test_sequence_and_timestamp_wraparound_is_seamless() -> None:
    data = audio(FRAME * 200)
    packets = packetise(data, seq0=65_450, ts0=(1 << 32) - FRAME * 70)
    assert packets[0].seq > packets[-1].seq and packets[0].ts > packets[-1].ts  # both wrapped
    buffer = JitterBuffer()
    out = run(buffer, paced(packets, delay=lambda i: 0.005 + (0.03 if i % 7 == 0 else 0)), 203)
    assert b"".join(out[3:]) == data  # type: ignore[arg-type]
    assert buffer.stats.resyncs == 0 and buffer.stats.late == 0


def test_empty_payload_is_counted_and_ignored() -> None:
    buffer = JitterBuffer()
    buffer.push(1, 160, b"")
    assert buffer.stats.received == 1 and not buffer.started


# --------------------------------------------------------------------------- packet sizes


def test_sipp_30ms_pcma_capture_is_reassembled_into_20ms_frames() -> None:
    captured = [d for d in read_pcap(sipp_pcap("g711a.pcap"))]
    packets = [RtpPacket.parse(d.payload) for d in captured]
    assert len(packets) == 236
    assert {len(p.payload) for p in packets} == {240} and {p.payload_type for p in packets} == {8}
    start = captured[0].time
    arrivals = [
        (d.time - start, Packet(p.sequence_number, p.timestamp, p.payload))
        for d, p in zip(captured, packets, strict=True)
    ]
    buffer = JitterBuffer(depth=3)
    out = run(buffer, arrivals, ticks=3 + 236 * 240 // FRAME, phase=0.004)
    stream = b"".join(p.payload for p in packets)
    assert out[:3] == [None] * 3
    frames = out[3 : 3 + len(stream) // FRAME]
    assert all(frame is not None and len(frame) == FRAME for frame in frames)
    assert b"".join(frames) == stream  # type: ignore[arg-type]
    assert buffer.stats.lost == 0 and buffer.stats.partial == 0
    assert buffer.stats.skew_adjustments == 0


@pytest.mark.parametrize(("ptime", "size"), [(0.01, 80), (0.03, 240), (0.04, 320), (0.06, 480)])
def test_other_packet_durations_are_split_and_assembled(ptime: float, size: int) -> None:
    data = audio(FRAME * 150)
    buffer = JitterBuffer(depth=4)
    out = run(buffer, paced(packetise(data, size=size), ptime=ptime), ticks=154)
    assert b"".join(out[4:]) == data  # type: ignore[arg-type]
    assert buffer.stats.lost == 0 and buffer.stats.skew_adjustments == 0


def test_lost_30ms_packet_leaves_a_partial_frame_filled_with_silence() -> None:
    data = audio(240 * 10)
    packets = packetise(data, size=240)
    arrivals = [a for i, a in enumerate(paced(packets, ptime=0.03)) if i != 1]
    buffer = JitterBuffer(depth=3, fill=0xD5)
    out = run(buffer, arrivals, ticks=18)[3:]
    # Packet 1 held samples 240..479: the last 80 samples of frame 1 and all of frame 2.
    assert out[0] == data[0:160]
    assert out[1] == data[160:240] + b"\xd5" * 80
    assert out[2] is None
    assert out[3] == data[480:640]
    assert buffer.stats.partial == 1 and buffer.stats.lost == 1


def test_partly_late_packet_keeps_its_unplayed_part() -> None:
    data = audio(240 * 12)
    packets = packetise(data, size=240)
    # Packet 4 holds samples 960..1199: all of frame 6 and the first half of frame 7.
    # It comes after frame 6 was played (at 0.187 s) but before frame 7 (0.207 s).
    delays = {4: 0.005 + 0.07}
    buffer = JitterBuffer(depth=3)
    out = run(buffer, paced(packets, ptime=0.03, delay=lambda i: delays.get(i, 0.005)), 20)[3:]
    assert out[6] is None
    assert out[7] == data[1120:1280]
    assert buffer.stats.late == 0 and buffer.stats.lost == 1


# --------------------------------------------------------------------------- skew


def _frame_ids(out: list[bytes | None]) -> list[int | None]:
    return [None if frame is None else frame[0] | (frame[1] << 8) for frame in out]


def _numbered(frames: int, size: int) -> bytes:
    """Audio whose every frame starts with its 16-bit index (then zeros)."""
    samples = bytearray(frames * FRAME)
    for i in range(frames):
        samples[i * FRAME] = i & 0xFF
        samples[i * FRAME + 1] = i >> 8
    return bytes(samples[: len(samples) // size * size])


@pytest.mark.parametrize("size", [160, 240])
def test_fast_sender_is_corrected_by_dropping_frames(size: int) -> None:
    ticks = 3000  # 60 s at +1 %: 30 frames too many
    data = _numbered(ticks + 40, size)
    ptime = size / 8000
    buffer = JitterBuffer(depth=3)
    out = run(buffer, paced(packetise(data, size=size), ptime=ptime, rate=1.01), ticks)
    ids = [i for i in _frame_ids(out) if i is not None]
    steps = [b - a for a, b in itertools.pairwise(ids)]
    assert set(steps) <= {1, 2}
    assert steps.count(2) == buffer.stats.skew_dropped
    assert 24 <= buffer.stats.skew_dropped <= 31
    assert buffer.stats.skew_inserted == 0
    assert buffer.stats.lost == 0 and buffer.stats.late == 0
    assert out.count(None) == 3  # only the initial playout delay


@pytest.mark.parametrize("size", [160, 240])
def test_slow_sender_is_corrected_by_inserting_silence(size: int) -> None:
    ticks = 3000  # 60 s at -1 %: 30 frames too few
    data = _numbered(ticks, size)
    ptime = size / 8000
    buffer = JitterBuffer(depth=3)
    out = run(buffer, paced(packetise(data, size=size), ptime=ptime, rate=0.99), ticks)
    ids = [i for i in _frame_ids(out) if i is not None]
    assert ids == list(range(len(ids)))  # every frame, in order, none dropped
    assert 24 <= buffer.stats.skew_inserted <= 31
    assert buffer.stats.skew_dropped == 0
    assert buffer.stats.lost == 0 and buffer.stats.late == 0
    assert out.count(None) == 3 + buffer.stats.skew_inserted


def test_jitter_and_loss_alone_cause_no_skew_adjustment() -> None:
    data = _numbered(3000, FRAME)
    rng = random.Random(99)
    arrivals = [
        a
        for a in paced(packetise(data), delay=lambda i: 0.005 + rng.uniform(0, 0.04))
        if rng.random() > 0.05
    ]
    buffer = JitterBuffer(depth=3)
    run(buffer, arrivals, 3000)
    assert buffer.stats.skew_adjustments == 0


def test_silence_suppression_gap_is_not_skew() -> None:
    data = _numbered(600, FRAME)
    packets = packetise(data)
    talk = [a for i, a in enumerate(paced(packets)) if not 100 <= i < 400]  # 6 s of DTX
    buffer = JitterBuffer(depth=3)
    out = run(buffer, talk, 603)
    ids = _frame_ids(out[3:])
    assert ids[:100] == list(range(100)) and ids[400:] == list(range(400, 600))
    assert ids[100:400] == [None] * 300
    assert buffer.stats.skew_adjustments == 0 and buffer.stats.resyncs == 0


# --------------------------------------------------------------------------- resync


def test_timestamp_jump_resynchronises_without_a_gap() -> None:
    first = audio(FRAME * 50, seed=1)
    second = audio(FRAME * 50, seed=2)
    a = packetise(first, seq0=100, ts0=1000)
    b = packetise(second, seq0=150, ts0=1000 + 8000 * 3600)  # continuing seq, ts jumps 1 h
    buffer = JitterBuffer(depth=3)
    out = run(buffer, paced(a + b), ticks=103)
    assert b"".join(out[3:]) == first + second  # type: ignore[arg-type]
    assert buffer.stats.resyncs == 1 and buffer.stats.lost == 0


def test_new_ssrc_with_random_sequence_and_timestamp_continues_the_stream() -> None:
    first = audio(FRAME * 40, seed=3)
    second = audio(FRAME * 40, seed=4)
    a = packetise(first, seq0=65_000, ts0=4_000_000_000)
    b = packetise(second, seq0=17, ts0=123_456)
    buffer = JitterBuffer(depth=3)
    out = run(buffer, paced(a + b, delay=lambda i: 0.005 + (0.02 if i % 3 else 0)), ticks=90)
    assert played(out) == first + second
    # The new stream gets a full playout delay again: at most `depth` silent frames at
    # the seam, none elsewhere.
    inner = out[3 : 3 + 80 + 3]
    assert inner.count(None) <= 3
    assert buffer.stats.resyncs == 1


def test_timestamp_jump_backwards_also_resynchronises() -> None:
    first = audio(FRAME * 30, seed=5)
    second = audio(FRAME * 30, seed=6)
    a = packetise(first, seq0=1, ts0=10_000_000)
    b = packetise(second, seq0=31, ts0=10_000)
    buffer = JitterBuffer()
    out = run(buffer, paced(a + b), ticks=63)
    assert b"".join(out[3:]) == first + second  # type: ignore[arg-type]
    assert buffer.stats.resyncs == 1


def test_source_resuming_after_a_pause_with_a_jump_starts_after_the_playout_delay() -> None:
    first = audio(FRAME * 10, seed=7)
    second = audio(FRAME * 10, seed=8)
    a = packetise(first, seq0=1, ts0=0)
    b = packetise(second, seq0=11, ts0=5_000_000)
    arrivals = paced(a) + [(t + 1.0, p) for t, p in paced(b)]  # 1 s later, new timeline
    buffer = JitterBuffer(depth=3)
    out = run(buffer, arrivals, ticks=80)
    assert b"".join(out[3:13]) == first  # type: ignore[arg-type]
    resumed = next(i for i in range(13, 80) if out[i] is not None)
    assert out[resumed - 3 : resumed] == [None] * 3  # a fresh playout delay
    assert b"".join(out[resumed : resumed + 10]) == second  # type: ignore[arg-type]
    assert buffer.stats.resyncs == 1


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    "kwargs",
    [{"depth": 0}, {"frame_samples": 0}, {"resync_frames": 6}, {"skew_window": 0}],
)
def test_bad_settings_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        JitterBuffer(**kwargs)


def test_a_burst_at_the_start_is_an_offset_not_skew() -> None:
    """SIPp sends its first two packets together: the buffer then sits a frame above
    the nominal level for the whole call.  That is no drift; no speech may be dropped."""
    buffer = JitterBuffer()
    frame = 160
    buffer.push(0, 0, bytes([1]) * frame)
    buffer.push(1, frame, bytes([2]) * frame)  # the burst
    out = []
    for tick in range(2, 1000):  # 20 s, one packet per tick, perfectly on time
        buffer.push(tick, tick * frame, bytes([tick % 250 + 3]) * frame)
        out.append(buffer.pop())
    assert buffer.stats.skew_dropped == 0 and buffer.stats.skew_inserted == 0
    played = [f[0] for f in out if f is not None]
    assert played == [1, 2] + [t % 250 + 3 for t in range(2, len(played))]


# --- what was filled, and why ---------------------------------------------------------------


def _drive(buffer: JitterBuffer, arrivals: dict[int, list[Packet]], ticks: int) -> None:
    """Push what arrives before each tick, then pop once."""
    for tick in range(ticks):
        for packet in arrivals.get(tick, []):
            buffer.push(packet.seq, packet.ts, packet.payload)
        buffer.pop()


def test_a_hole_in_the_stream_is_lost_and_a_packet_after_its_slot_is_late() -> None:
    packets = packetise(audio(FRAME * 40))
    arrivals = {i: [p] for i, p in enumerate(packets) if i not in (10, 20, 21)}
    arrivals[30] = [*arrivals.get(30, []), packets[20]]  # 20 arrives 10 slots late
    buffer = JitterBuffer(depth=3)
    _drive(buffer, arrivals, 50)
    buffer.settle()
    fills = buffer.fills
    assert (fills.lost, fills.late) == (2, 1)  # 10 and 21 lost; 20 late
    assert fills.longest_gap == 2  # 20 and 21 in a row
    assert fills.missing == 0 + 7  # the stream ended: 50 ticks - 40 frames - 3 prefill


def test_time_that_does_not_count_is_not_counted() -> None:
    packets = packetise(audio(FRAME * 20))
    buffer = JitterBuffer(depth=3)
    for tick in range(30):
        if tick < 20 and tick != 8:
            buffer.push(packets[tick].seq, packets[tick].ts, packets[tick].payload)
        buffer.pop(count=not 5 <= tick <= 15)  # a hold from tick 5 to 15
    buffer.settle()
    assert (buffer.fills.lost, buffer.fills.late) == (0, 0)  # frame 8 played while held
    assert buffer.fills.missing == 7  # ticks 23-29: the sender stopped


def test_a_burst_loss_longer_than_the_playout_delay_is_all_lost() -> None:
    packets = packetise(audio(FRAME * 40))
    arrivals = {i: [p] for i, p in enumerate(packets) if not 10 <= i < 20}
    buffer = JitterBuffer(depth=3)
    _drive(buffer, arrivals, 43)
    buffer.settle()
    assert (buffer.fills.lost, buffer.fills.missing, buffer.fills.longest_gap) == (10, 0, 10)


@pytest.mark.parametrize("lost_before_the_gap", [0, 2])
def test_a_pause_in_sending_is_missing_and_only_the_packets_lost_are_lost(
    lost_before_the_gap: int,
) -> None:
    """Silence suppression (or any pause in sending): the sequence numbers go on where
    they stopped and the timestamp jumps by the pause.  The frames of the pause are
    missing, also the ones still to be played when the next packet arrives; if packets
    were lost just before the pause, exactly their frames are lost."""
    talk = audio(FRAME * 40)
    first = packetise(talk[: FRAME * 20], seq0=1000, ts0=50_000)
    second = packetise(talk[FRAME * 20 :], seq0=1020, ts0=50_000 + FRAME * 50)  # 30 paused
    sent = first[: 20 - lost_before_the_gap] + second
    arrivals: dict[int, list[Packet]] = {}
    for packet in sent:
        arrivals.setdefault((packet.ts - 50_000) // FRAME, []).append(packet)
    buffer = JitterBuffer(depth=3)
    _drive(buffer, arrivals, 73)
    buffer.settle()
    fills = buffer.fills
    assert (fills.lost, fills.late) == (lost_before_the_gap, 0)
    assert fills.missing == 30
    assert fills.longest_gap == lost_before_the_gap
