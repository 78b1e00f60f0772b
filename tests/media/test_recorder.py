"""The recorder core: aligned stereo blocks from jitter-buffered G.711, on a fake tick."""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import numpy.typing as npt
import pytest

from proxy.media import g711
from proxy.media.g711 import wire_decode, wire_samples
from proxy.media.recorder import PauseMode, Recorder, RecorderError
from proxy.recording_state import RecordingState
from tests.media.media_helpers import shared_data_file

FRAME = 160
DEPTH = 3  # the recorder's default jitter depth: audio appears 3 ticks after it arrives


class Collector:
    """A sink that keeps every block it is given (without copying: it owns them)."""

    def __init__(self) -> None:
        self.blocks: dict[Hashable, list[tuple[npt.NDArray[np.uint16], bool]]] = {}

    def __call__(self, call_key: Hashable, block: npt.NDArray[np.uint16], final: bool) -> None:
        assert block.dtype == np.uint16 and block.ndim == 2 and block.shape[1] == 2
        self.blocks.setdefault(call_key, []).append((block, final))

    def wire(self, call_key: Hashable) -> npt.NDArray[np.uint16]:
        return np.concatenate([block for block, _ in self.blocks[call_key]])

    def audio(self, call_key: Hashable) -> npt.NDArray[np.int16]:
        return wire_decode(self.wire(call_key))

    def finals(self, call_key: Hashable) -> list[bool]:
        return [final for _, final in self.blocks[call_key]]


def frames_of(data: bytes) -> list[bytes]:
    return [data[i : i + FRAME] for i in range(0, len(data) - FRAME + 1, FRAME)]


def dialogue() -> list[bytes]:
    return frames_of(shared_data_file("audio", "dialogue_8k.ulaw").read_bytes())


def notice() -> list[bytes]:
    return frames_of(shared_data_file("audio", "notice_8k.ulaw").read_bytes())


def decoded(frames: list[bytes], codec: str = "PCMU") -> npt.NDArray[np.int16]:
    return g711.decode(b"".join(frames), codec)


def tick_time(tick: int) -> float:
    return 500.0 + tick * 0.02


# --------------------------------------------------------------------------- one call


def test_exported_blocks_equal_the_decoded_input_and_channels_are_aligned() -> None:
    caller, taker = dialogue(), notice()
    assert (len(caller), len(taker)) == (1090, 500)
    sink = Collector()
    recorder = Recorder(sink)
    pair = recorder.add("call-1", "PCMU", "pcmu")
    ticks = 1100
    for t in range(ticks):
        if t < len(caller):
            pair.caller.push(t, t * FRAME, caller[t])
        if t < len(taker):
            pair.taker.push(40_000 + t, 7 + t * FRAME, taker[t])
        recorder.tick(tick_time(t), tick_time(t))
    recorder.close("call-1")

    out = sink.audio("call-1")
    assert out.shape == (ticks * FRAME, 2)
    lead = DEPTH * FRAME
    left, right = out[:, 0], out[:, 1]
    assert np.all(left[:lead] == 0) and np.all(right[:lead] == 0)
    assert np.array_equal(left[lead : lead + len(caller) * FRAME], decoded(caller))
    assert np.array_equal(right[lead : lead + len(taker) * FRAME], decoded(taker))
    assert np.all(left[lead + len(caller) * FRAME :] == 0)
    assert np.all(right[lead + len(taker) * FRAME :] == 0)

    sizes = [len(block) for block, _ in sink.blocks["call-1"]]
    # 1100 ticks fill 22 blocks exactly; closing then sends an empty final block.
    assert sizes == [8000] * 22 + [0] and sink.finals("call-1") == [False] * 22 + [True]
    assert pair.state is RecordingState.STOPPED and "call-1" not in recorder
    assert pair.samples_written == ticks * FRAME and pair.blocks_emitted == 23


def test_lost_packets_are_silence_exactly_where_missing() -> None:
    caller, taker = dialogue()[:300], notice()[:300]
    lost_caller = {5, 6, 7, 100, 101, 250}
    lost_taker = {0, 50, 299}
    sink = Collector()
    recorder = Recorder(sink, vad_mode=None)
    pair = recorder.add("c", "PCMU", "PCMU")
    for t in range(300 + DEPTH):
        if t < 300 and t not in lost_caller:
            pair.caller.push(t, t * FRAME, caller[t])
        if t < 300 and t not in lost_taker:
            pair.taker.push(t, t * FRAME, taker[t])
        recorder.tick(tick_time(t))
    recorder.close("c")
    out = sink.audio("c")[DEPTH * FRAME :]
    for channel, frames, lost in ((0, caller, lost_caller), (1, taker, lost_taker)):
        expected = decoded(frames).reshape(300, FRAME).copy()
        expected[sorted(lost)] = 0
        assert np.array_equal(out[:, channel].reshape(300, FRAME), expected)
    assert pair.caller.jitter.stats.lost == len(lost_caller)
    # The taker's first packet was lost: the buffer cannot know it existed, so its
    # silence counts as lead-in, not loss (the audio above is right all the same).
    assert pair.taker.jitter.stats.lost == len(lost_taker) - 1


def test_every_code_of_each_law_is_recorded_as_received() -> None:
    """Issue 13 defect 1: A-law was decoded and stored as µ-law, changing 240 codes."""
    codes = bytes(range(256)) * 5  # 1280 bytes: 8 frames
    sink = Collector()
    recorder = Recorder(sink)
    pair = recorder.add("laws", "PCMA", "PCMU")
    frames = frames_of(codes)
    for t in range(len(frames) + DEPTH):
        if t < len(frames):
            pair.caller.push(t, t * FRAME, frames[t])
            pair.taker.push(t, t * FRAME, frames[t])
        recorder.tick(tick_time(t))
    recorder.close("laws")
    wire = sink.wire("laws")
    sent = np.frombuffer(codes, dtype=np.uint8)
    lead = wire[: DEPTH * FRAME]
    # the playout delay: filled, not heard, with silence in each direction's law
    assert np.all(lead[:, 0] == wire_samples(np.uint8(g711.silence_byte("PCMA")), "PCMA"))
    assert np.all(lead[:, 1] == wire_samples(np.uint8(g711.silence_byte("PCMU")), "PCMU"))
    np.testing.assert_array_equal(wire[DEPTH * FRAME :, 0], wire_samples(sent, "PCMA"))
    np.testing.assert_array_equal(wire[DEPTH * FRAME :, 1], wire_samples(sent, "PCMU"))


def test_alaw_and_ulaw_directions_decode_with_their_own_tables() -> None:
    pcm = decoded(dialogue()[:60])
    alaw = frames_of(g711.encode(pcm, "PCMA"))
    ulaw = frames_of(g711.encode(pcm, "PCMU"))
    sink = Collector()
    recorder = Recorder(sink)
    pair = recorder.add("mixed", "PCMA", "PCMU")
    for t in range(60 + DEPTH):
        if t < 60:
            pair.caller.push(t, t * FRAME, alaw[t])
            pair.taker.push(t, t * FRAME, ulaw[t])
        recorder.tick(tick_time(t))
    recorder.close("mixed")
    out = sink.audio("mixed")[DEPTH * FRAME :]
    assert np.array_equal(out[:, 0], decoded(alaw, "PCMA"))
    assert np.array_equal(out[:, 1], decoded(ulaw, "PCMU"))


# --------------------------------------------------------------------------- states


def _run_with(recorder: Recorder, key: str, frames: list[bytes], actions: dict[int, str]) -> None:
    pair = recorder.add(key, "PCMU", "PCMU")
    for t, frame in enumerate(frames):
        if t in actions:
            getattr(pair, actions[t])()
        pair.caller.push(t, t * FRAME, frame)
        pair.taker.push(t, t * FRAME, frame)
        recorder.tick(tick_time(t))


def test_pause_in_silence_mode_records_silence_for_the_paused_time() -> None:
    frames = dialogue()[:200]
    sink = Collector()
    recorder = Recorder(sink, pause_mode="silence")
    _run_with(recorder, "p", frames, {100: "pause", 150: "resume"})
    recorder.close("p")
    out = sink.audio("p")
    assert len(out) == 200 * FRAME
    per_frame = out[:, 0].reshape(200, FRAME)
    expected = decoded(frames).reshape(200, FRAME)
    assert np.array_equal(per_frame[DEPTH:100], expected[: 100 - DEPTH])
    assert np.all(per_frame[100:150] == 0)
    # Audio that arrived during the pause is not recorded later: the time line holds.
    assert np.array_equal(per_frame[150:], expected[150 - DEPTH : 200 - DEPTH])
    assert np.array_equal(out[:, 0], out[:, 1])


def test_pause_in_skip_mode_leaves_the_paused_time_out() -> None:
    frames = dialogue()[:200]
    sink = Collector()
    recorder = Recorder(sink, pause_mode=PauseMode.SKIP)
    _run_with(recorder, "s", frames, {100: "pause", 150: "resume"})
    recorder.close("s")
    out = sink.audio("s")
    assert len(out) == 150 * FRAME
    per_frame = out[:, 0].reshape(150, FRAME)
    expected = decoded(frames).reshape(200, FRAME)
    assert np.array_equal(per_frame[DEPTH:100], expected[: 100 - DEPTH])
    assert np.array_equal(per_frame[100:], expected[150 - DEPTH : 200 - DEPTH])


def test_stop_flushes_a_final_block_at_the_next_tick_and_removes_the_recording() -> None:
    frames = dialogue()[:120]
    sink = Collector()
    recorder = Recorder(sink)
    _run_with(recorder, "x", frames[:70], {})
    pair = recorder.get("x")
    assert pair is not None
    pair.stop()
    assert pair.state is RecordingState.STOPPED and "x" in recorder  # not yet flushed
    assert sink.finals("x") == [False]  # one full block so far
    recorder.tick(tick_time(70))
    assert sink.finals("x") == [False, True]
    assert [len(b) for b, _ in sink.blocks["x"]] == [8000, 20 * FRAME]
    assert "x" not in recorder and len(recorder) == 0
    recorder.tick(tick_time(71))
    assert len(sink.blocks["x"]) == 2
    with pytest.raises(RecorderError, match="cannot resume recording 'x': it is stopped"):
        pair.resume()
    with pytest.raises(RecorderError, match="cannot pause"):
        pair.pause()
    pair.stop()  # stopping twice is harmless
    recorder.close("x")  # and so is closing a recording that is gone
    assert len(sink.blocks["x"]) == 2


def test_silence_is_filled_in_each_directions_law_also_when_paused() -> None:
    """A party that has sent nothing yet, or a paused recording, is stored in the law the
    party agreed: a G.711 export of an A-law call is then all A-law."""
    sink = Collector()
    recorder = Recorder(sink, vad_mode=None)
    pair = recorder.add("quiet", "PCMA", "PCMU")
    for t in range(5):
        recorder.tick(tick_time(t))
    pair.pause("silence")
    for t in range(5, 10):
        recorder.tick(tick_time(t))
    recorder.close("quiet")
    wire = sink.wire("quiet")
    assert wire.shape == (10 * FRAME, 2)
    assert set(np.unique(wire[:, 0]).tolist()) == {(8 << 8) | g711.silence_byte("PCMA")}
    assert set(np.unique(wire[:, 1]).tolist()) == {g711.silence_byte("PCMU")}


def test_close_flushes_at_once_with_final_and_an_empty_recording_still_gets_a_final_block() -> None:
    sink = Collector()
    recorder = Recorder(sink)
    recorder.add("empty", "PCMU", "PCMU")
    recorder.close("empty")
    assert [(len(b), f) for b, f in sink.blocks["empty"]] == [(0, True)]
    recorder.close("never-added")
    assert "never-added" not in sink.blocks


def test_close_right_after_stop_still_sends_the_final_block_once() -> None:
    sink = Collector()
    recorder = Recorder(sink)
    _run_with(recorder, "q", dialogue()[:10], {})
    pair = recorder.get("q")
    assert pair is not None
    pair.stop()
    recorder.close("q")
    recorder.tick(tick_time(10))
    assert [(len(b), f) for b, f in sink.blocks["q"]] == [(10 * FRAME, True)]


def test_paused_recording_can_be_closed() -> None:
    sink = Collector()
    recorder = Recorder(sink)
    _run_with(recorder, "k", dialogue()[:10], {5: "pause"})
    recorder.close("k")
    assert sink.finals("k") == [True] and len(sink.audio("k")) == 10 * FRAME


def test_close_all_finishes_every_recording() -> None:
    sink = Collector()
    recorder = Recorder(sink)
    for key in ("a", "b", "c"):
        recorder.add(key, "PCMU", "PCMA")
    recorder.tick(tick_time(0))
    recorder.close_all()
    assert len(recorder) == 0
    assert {k: sink.finals(k) for k in "abc"} == {"a": [True], "b": [True], "c": [True]}


def test_duplicate_key_and_unknown_codec_are_refused() -> None:
    recorder = Recorder(Collector())
    recorder.add("k", "PCMU", "PCMU")
    with pytest.raises(RecorderError, match="already exists"):
        recorder.add("k", "PCMU", "PCMU")
    with pytest.raises(ValueError, match="unsupported codec"):
        recorder.add("other", "G729", "PCMU")


def test_block_length_follows_block_seconds() -> None:
    sink = Collector()
    recorder = Recorder(sink, block_seconds=0.5, vad_mode=None)
    _run_with(recorder, "b", dialogue()[:60], {})
    recorder.close("b")
    assert [len(b) for b, _ in sink.blocks["b"]] == [4000, 4000, 10 * FRAME]
    with pytest.raises(ValueError, match="shorter than one frame"):
        Recorder(sink, block_seconds=0.001)


def test_a_failing_sink_fails_only_its_own_recording() -> None:
    good = Collector()

    def sink(call_key: Hashable, block: npt.NDArray[np.int16], final: bool) -> None:
        if call_key == "bad":
            raise OSError("disk full")
        good(call_key, block, final)

    recorder = Recorder(sink, vad_mode=None)
    bad = recorder.add("bad", "PCMU", "PCMU")
    recorder.add("ok", "PCMU", "PCMU")
    for t in range(120):
        recorder.tick(tick_time(t))
    assert bad.state is RecordingState.FAILED and isinstance(bad.error, OSError)
    assert "bad" not in recorder and "ok" in recorder
    assert recorder.stats.sink_errors == 1
    assert good.finals("ok") == [False, False]
    with pytest.raises(RecorderError):
        bad.resume()


# --------------------------------------------------------------------------- many calls


def test_two_hundred_calls_each_get_their_own_audio_back() -> None:
    caller_frames, taker_frames = dialogue(), notice()
    calls = 200
    ticks = 130
    sink = Collector()
    recorder = Recorder(sink)
    pairs = []
    for i in range(calls):
        caller_codec = "PCMA" if i % 3 == 0 else "PCMU"
        pairs.append((recorder.add(("call", i), caller_codec, "PCMU"), caller_codec))
    expected_left = np.zeros((calls, ticks + DEPTH, FRAME), dtype=np.int16)
    expected_right = np.zeros((calls, ticks + DEPTH, FRAME), dtype=np.int16)
    for i, (_, caller_codec) in enumerate(pairs):  # the lead-in: silence in the call's law
        expected_left[i, :DEPTH] = g711.decode(
            bytes([g711.silence_byte(caller_codec)]), caller_codec
        )
    for t in range(ticks):
        for i, (pair, caller_codec) in enumerate(pairs):
            caller = caller_frames[(t + 5 * i) % len(caller_frames)]
            if caller_codec == "PCMA":
                caller = g711.encode(g711.decode(caller, "PCMU"), "PCMA")
            taker = taker_frames[(t + 2 * i) % len(taker_frames)]
            pair.caller.push(t, t * FRAME, caller)
            pair.taker.push(t, t * FRAME, taker)
            expected_left[i, t + DEPTH] = g711.decode(caller, caller_codec)
            expected_right[i, t + DEPTH] = g711.decode(taker, "PCMU")
        recorder.tick(tick_time(t), tick_time(t) - 0.001)
    recorder.close_all()
    for i in range(calls):
        out = sink.audio(("call", i))
        assert out.shape == (ticks * FRAME, 2)
        assert np.array_equal(out[:, 0], expected_left[i, :ticks].ravel()), i
        assert np.array_equal(out[:, 1], expected_right[i, :ticks].ravel()), i
        assert sink.finals(("call", i)) == [False, False, True]
    assert recorder.stats.ticks == ticks
    assert recorder.stats.frames == ticks * calls
    assert recorder.stats.blocks == 3 * calls
    assert recorder.stats.missing_frames == DEPTH * 2 * calls  # the lead-in only


# --------------------------------------------------------------------------- VAD, timing


def test_speech_stats_per_channel_show_one_way_audio() -> None:
    speech = dialogue()[:250]
    silence = [b"\xff" * FRAME] * 250
    sink = Collector()
    recorder = Recorder(sink, vad_every=1)
    pair = recorder.add("v", "PCMU", "PCMU")
    for t in range(250):
        pair.caller.push(t, t * FRAME, speech[t])
        pair.taker.push(t, t * FRAME, silence[t])
        recorder.tick(tick_time(t))
    assert pair.caller.speech.frames == pair.taker.speech.frames == 250 - DEPTH
    assert pair.caller.speech.speech_frames > 100
    assert pair.taker.speech.speech_frames == 0
    assert pair.taker.speech.last_speech_time is None
    last = pair.caller.speech.last_speech_time
    assert last is not None and tick_time(0) < last <= tick_time(249)


def test_vad_samples_every_nth_tick_by_default() -> None:
    """Speech statistics come from a sample of the frames (a quarter by default): the
    same picture of who talks, at a quarter of the cost."""
    speech = dialogue()[:250]
    recorder = Recorder(Collector())
    pair = recorder.add("s", "PCMU", "PCMU")
    for t in range(250):
        pair.caller.push(t, t * FRAME, speech[t])
        pair.taker.push(t, t * FRAME, b"\xff" * FRAME)
        recorder.tick(tick_time(t))
    assert 55 <= pair.caller.speech.frames <= 63  # about (250 - DEPTH) / 4
    assert pair.caller.speech.speech_ratio > 0.4
    assert pair.taker.speech.speech_frames == 0


def test_vad_can_be_turned_off() -> None:
    recorder = Recorder(Collector(), vad_mode=None)
    _run_with(recorder, "n", dialogue()[:100], {})
    pair = recorder.get("n")
    assert pair is not None and pair.caller.speech.frames == 0


def test_tick_lag_statistics() -> None:
    recorder = Recorder(Collector())
    recorder.add("l", "PCMU", "PCMU")
    for t, lag in enumerate([0.001, 0.004, 0.0, 0.015]):
        recorder.tick(tick_time(t) + lag, tick_time(t))
    recorder.tick(tick_time(9))  # no schedule given: not counted
    stats = recorder.stats
    assert stats.ticks == 5 and stats.lag_samples == 4
    assert stats.last_lag == pytest.approx(0.015)
    assert stats.max_lag == pytest.approx(0.015)
    assert stats.mean_lag == pytest.approx(0.005)


def test_tick_without_recordings_only_counts() -> None:
    recorder = Recorder(Collector())
    recorder.tick(1.0, 0.99)
    assert recorder.stats.ticks == 1 and recorder.stats.frames == 0


def test_a_pause_can_skip_while_the_recorder_fills_silence() -> None:
    """A call taker's stop (P14) skips the time even where pauses normally write silence."""
    sink = Collector()
    recorder = Recorder(sink, pause_mode="silence", jitter_depth=1, vad_mode=None)
    stopped = recorder.add("stop", "PCMU", "PCMU")
    held = recorder.add("hold", "PCMU", "PCMU")
    for t in range(10):
        for pair in (stopped, held):
            pair.caller.push(t, t * FRAME, b"\x00" * FRAME)
            pair.taker.push(t, t * FRAME, b"\x00" * FRAME)
        if t == 5:
            stopped.pause("skip")
            held.pause()
        recorder.tick(tick_time(t))
    recorder.close_all()
    assert stopped.samples_written == 5 * FRAME  # ends at the stop
    assert held.samples_written == 10 * FRAME  # the paused time kept as silence
    assert len(sink.audio("stop")) == 5 * FRAME


def test_quality_counts_lost_frames_per_channel_but_not_while_held_or_paused() -> None:
    recorder = Recorder(Collector(), vad_mode=None)
    pair = recorder.add("call", "PCMU", "PCMU")
    frames = dialogue()[:100]
    for tick in range(100):
        ts = 1000 + tick * FRAME
        if tick not in (20, 21, 22):  # the caller's packets 20-22 are lost
            pair.caller.push(tick, ts, frames[tick])
        if not 40 <= tick < 60:  # the call taker sends nothing while on hold
            pair.taker.push(tick, ts, frames[tick])
        if tick == 40 + DEPTH:
            pair.taker.set_held(True)
        if tick == 60 + DEPTH:
            pair.taker.set_held(False)
        if tick == 70:
            pair.pause()
        if tick == 80:
            pair.resume()
        recorder.tick(tick_time(tick))
    recorder.close("call")
    caller, taker = pair.caller.quality(), pair.taker.quality()
    assert (caller.lost, caller.late, caller.longest_gap) == (3, 0, 3)
    assert (taker.lost, taker.late, taker.missing) == (0, 0, 0)
    assert caller.frames == 90 and taker.frames == 70  # paused: 10 ticks; held: 20 more


@pytest.mark.parametrize(
    ("held_ticks", "sequence", "timestamp"),
    [
        (51, "goes on where it stopped", "advanced by the time held"),  # baresip 1.0
        (51, "advanced by the packets not sent", "advanced by the time held"),
        (25, "goes on where it stopped", "goes on where it stopped"),
    ],
)
def test_a_hold_and_its_resume_are_not_counted_as_loss(
    held_ticks: int, sequence: str, timestamp: str
) -> None:
    """Phones stop sending on hold (both of them, baresip 1.0 in the phone tests) and
    start again a little after the resume re-INVITE, their sequence number and
    timestamp either going on where they stopped or advanced across the hold.  Nothing
    of the hold, nor of the wait for the first packet after it, is loss, and the audio
    after it is recorded; a packet lost after the resume still counts."""
    collector = Collector()
    recorder = Recorder(collector, vad_mode=None)
    pair = recorder.add("call", "PCMU", "PCMU")
    frames = dialogue()[:150]
    hold, resume = 40, 40 + held_ticks  # the re-INVITEs; first packet a tick after
    not_sent = 0
    for tick in range(150):
        sending = not hold <= tick <= resume
        if sending and tick != 120:  # one packet lost after the resume
            seq = tick - not_sent if sequence == "goes on where it stopped" else tick
            ts = 1000 + (tick - not_sent if timestamp == "goes on where it stopped" else tick)
            for direction in (pair.caller, pair.taker):
                direction.push(seq, ts * FRAME, frames[tick])
        elif not sending:
            not_sent += 1
        if tick in (hold, resume):
            pair.caller.set_held(tick == hold)
            pair.taker.set_held(tick == hold)
        recorder.tick(tick_time(tick))
    recorder.close("call")
    for direction in (pair.caller, pair.taker):
        quality = direction.quality()
        assert (quality.lost, quality.late, quality.longest_gap) == (1, 0, 1), quality
        assert direction.jitter.stats.late == 0
    after = decoded(frames[125:145]).tobytes()
    recorded = collector.audio("call")
    for channel in (0, 1):
        assert after in np.ascontiguousarray(recorded[:, channel]).tobytes()


def test_recordings_that_come_and_go_never_get_each_others_audio() -> None:
    """Calls start and end at different ticks, so block slots are given back and handed
    out again mid-block: each recording holds exactly its own frames, from its own first
    tick, and nothing of the call that held its slot before."""
    sink = Collector()
    recorder = Recorder(sink, block_seconds=0.1, vad_mode=None)  # 5 frames a block
    spans = {("call", i): (3 * i, 3 * i + 7 + i % 4) for i in range(40)}  # (first, end)
    for t in range(140):
        for key, (first, end) in spans.items():
            if t == first:
                recorder.add(key, "PCMU", "PCMA")
            if first <= t < end:
                pair = recorder.get(key)
                assert pair is not None
                code = bytes([key[1] % 100]) * FRAME  # a code per call, both directions
                pair.caller.push(t, t * FRAME, code)
                pair.taker.push(t, t * FRAME, code)
            if t == end:
                recorder.close(key)
        recorder.tick(tick_time(t), tick_time(t))
    silence = wire_samples(np.full(1, g711.silence_byte("PCMU"), np.uint8), "PCMU")[0]
    taker_silence = wire_samples(np.full(1, g711.silence_byte("PCMA"), np.uint8), "PCMA")[0]
    for key, (first, end) in spans.items():
        out = sink.wire(key)
        ticks = end - first
        assert out.shape == (ticks * FRAME, 2), key
        expected = np.full(ticks * FRAME, silence, np.uint16)
        expected[DEPTH * FRAME :] = wire_samples(np.full(1, key[1] % 100, np.uint8), "PCMU")[0]
        assert np.array_equal(out[:, 0], expected), key
        assert set(out[: DEPTH * FRAME, 1].tolist()) == {taker_silence}, key
        assert sink.finals(key)[-1] is True and sink.finals(key).count(True) == 1
