"""Prompt loading, resampling, tones, and drift-free RTP pacing on a fake clock."""

from __future__ import annotations

import math
import random
import struct
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from proxy.media import g711
from proxy.media.announcer import (
    PacketPacer,
    PromptAudio,
    PromptError,
    PromptSource,
    RingbackTone,
    beep_audio,
    beeps,
    load_prompt,
    read_wav,
    resample,
)
from proxy.media.rtp import RtpPacket
from tests.media.media_helpers import shared_data_file

START = 1000.0  # the fake clock's start, in seconds


def notice() -> npt.NDArray[np.int16]:
    return load_prompt(shared_data_file("audio", "notice_8k_s16.wav"))


def wav_bytes(
    samples: bytes,
    rate: int,
    *,
    tag: int = 1,
    bits: int = 16,
    channels: int = 1,
    extra: bytes = b"",
) -> bytes:
    """A WAV file: RIFF header, an optional extra chunk, fmt, data."""
    block_align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block_align, block_align, bits)
    if tag == 0xFFFE:
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", 1) + bytes(14)
    chunks = extra + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    chunks += (
        b"data" + struct.pack("<I", len(samples)) + samples + (b"\0" if len(samples) % 2 else b"")
    )
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def sine(
    frequency: float, rate: int, seconds: float, amplitude: float = 10000.0
) -> npt.NDArray[np.int16]:
    n = np.arange(round(rate * seconds))
    return np.rint(amplitude * np.sin(2 * np.pi * frequency * n / rate)).astype(np.int16)


def parse_all(packets: list[bytes]) -> list[RtpPacket]:
    return [RtpPacket.parse(p) for p in packets]


# --------------------------------------------------------------------------- WAV


def test_the_notice_is_exactly_ten_seconds_at_8k() -> None:
    pcm = notice()
    assert pcm.dtype == np.int16 and pcm.shape == (80_000,)


def test_ulaw_wav_loads_as_the_decoded_ulaw_stream() -> None:
    pcm = load_prompt(shared_data_file("audio", "notice_8k_ulaw.wav"))
    raw = shared_data_file("audio", "notice_8k.ulaw").read_bytes()
    assert np.array_equal(pcm, g711.decode(raw, "PCMU"))


def test_alaw_and_extensible_wavs_are_read(tmp_path: Path) -> None:
    pcm = sine(440, 8000, 0.5)
    alaw = tmp_path / "a.wav"
    alaw.write_bytes(wav_bytes(g711.encode(pcm, "PCMA"), 8000, tag=6, bits=8))
    assert np.array_equal(load_prompt(alaw), g711.decode(g711.encode(pcm, "PCMA"), "PCMA"))
    extensible = tmp_path / "x.wav"
    extensible.write_bytes(wav_bytes(pcm.tobytes(), 8000, tag=0xFFFE, extra=b"LIST\4\0\0\0abcd"))
    assert np.array_equal(load_prompt(extensible), pcm)


@pytest.mark.parametrize("rate", [16000, 22050, 44100, 48000])
def test_other_rates_are_resampled_to_8k(tmp_path: Path, rate: int) -> None:
    path = tmp_path / f"tone_{rate}.wav"
    path.write_bytes(wav_bytes(sine(1000, rate, 1.0).tobytes(), rate))
    pcm = load_prompt(path)
    assert pcm.shape == (8000,)
    ideal = sine(1000, 8000, 1.0).astype(np.float64)
    error = pcm[100:-100].astype(np.float64) - ideal[100:-100]
    assert np.sqrt(np.mean(error**2)) < 5.0  # against an amplitude of 10000: below -66 dB


def test_stereo_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    path.write_bytes(wav_bytes(bytes(400), 8000, channels=2))
    with pytest.raises(PromptError, match=r"stereo\.wav: 2 channels; a prompt must be mono"):
        load_prompt(path)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"OggS" + bytes(40), "not a WAV file"),
        (wav_bytes(bytes(100), 8000, bits=8), r"unsupported sample format \(tag 0x0001, 8 bits\)"),
        (wav_bytes(bytes(100), 8000, tag=3, bits=32), "unsupported sample format"),
        (b"RIFF\x04\0\0\0WAVE", "no valid 'fmt ' chunk"),
        (wav_bytes(bytes(10), 8000)[:36], "no 'data' chunk"),
    ],
)
def test_unusable_files_raise_prompt_error(data: bytes, message: str) -> None:
    with pytest.raises(PromptError, match=message):
        read_wav(data, "x.wav")


# --------------------------------------------------------------------------- resampling


@pytest.mark.parametrize("rate", [11025, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("frequency", [300.0, 1000.0, 3400.0])
def test_resampling_keeps_the_telephone_band(rate: int, frequency: float) -> None:
    out = resample(sine(frequency, rate, 0.5), rate, 8000).astype(np.float64)
    ideal = sine(frequency, 8000, 0.5).astype(np.float64)
    assert len(out) == 4000
    error = out[200:-200] - ideal[200:-200]
    assert np.sqrt(np.mean(error**2)) < 0.005 * 10000 / math.sqrt(2)


@pytest.mark.parametrize("rate", [16000, 22050, 44100, 48000])
@pytest.mark.parametrize("frequency", [4400.0, 5000.0, 7000.0])
def test_resampling_rejects_what_would_alias(rate: int, frequency: float) -> None:
    out = resample(sine(frequency, rate, 0.5), rate, 8000).astype(np.float64)
    level = np.sqrt(np.mean(out[200:-200] ** 2)) / (10000 / math.sqrt(2))
    assert level < 10 ** (-60 / 20)


def test_resampling_to_the_same_rate_is_a_copy() -> None:
    pcm = sine(700, 8000, 0.1)
    out = resample(pcm, 8000, 8000)
    assert np.array_equal(out, pcm) and out is not pcm


def test_resampled_speech_matches_the_8k_master() -> None:
    master = notice()
    up = resample(master, 8000, 48000)
    back = resample(up, 48000, 8000)
    assert len(back) == len(master)
    assert np.corrcoef(back.astype(np.float64), master.astype(np.float64))[0, 1] > 0.999


# --------------------------------------------------------------------------- pacing


def test_ten_second_notice_is_500_packets_on_schedule_despite_late_calls() -> None:
    source = notice()
    announcer = PacketPacer(PromptSource(source), "PCMU", 0, START, 0x1234ABCD, 65_400, 0xFFFFF000)
    rng = random.Random(42)
    now = START - 0.5
    packets: list[bytes] = []
    assert announcer.due(now) == []
    while not announcer.finished:
        due_at = announcer.next_time()
        assert due_at is not None
        now = max(now, due_at) + rng.choice([0.0, 0.0, 0.001, 0.013, 0.05, 0.2])
        batch = announcer.due(now)
        packets.extend(batch)
        # Exactly the packets scheduled at or before now have gone: none early, none held.
        assert len(packets) == min(500, math.floor((now - START) / 0.02 + 1e-6) + 1)
    assert len(packets) == 500
    assert announcer.next_time() is None and announcer.played_ms == 10_000
    assert announcer.due(now + 10) == []

    parsed = parse_all(packets)
    assert [p.marker for p in parsed] == [True] + [False] * 499
    assert {p.ssrc for p in parsed} == {0x1234ABCD} and {p.payload_type for p in parsed} == {0}
    assert [p.sequence_number for p in parsed] == [(65_400 + i) & 0xFFFF for i in range(500)]
    assert [p.timestamp for p in parsed] == [
        (0xFFFFF000 + 160 * i) & 0xFFFFFFFF for i in range(500)
    ]
    assert all(len(p.payload) == 160 for p in parsed)
    decoded = g711.decode(b"".join(p.payload for p in parsed), "PCMU").astype(np.float64)
    assert np.corrcoef(decoded, source.astype(np.float64))[0, 1] >= 0.99


def test_send_times_are_start_plus_n_ptime_without_drift() -> None:
    announcer = PacketPacer(PromptSource(notice()), "PCMA", 8, START, 1, 0, 0)
    times: list[float] = []
    while (due_at := announcer.next_time()) is not None:
        times.append(due_at)
        assert len(announcer.due(due_at)) == 1  # woken exactly on time: one packet
        assert announcer.due(due_at + 0.0199) == []
    assert times == [START + n * 0.02 for n in range(500)]


def test_one_late_wakeup_sends_every_overdue_packet_in_order() -> None:
    announcer = PacketPacer(PromptSource(notice()), "PCMU", 0, START, 1, 100, 0)
    batch = parse_all(announcer.due(START + 1.0))
    assert [p.sequence_number for p in batch] == list(range(100, 151))
    assert announcer.next_time() == pytest.approx(START + 1.02)


def test_partial_last_frame_is_padded_with_silence() -> None:
    pcm = sine(500, 8000, 0.05)  # 400 samples: 2.5 packets
    announcer = PacketPacer(PromptSource(pcm), "PCMU", 0, START, 1, 0, 0)
    packets = parse_all(announcer.due(START + 1))
    assert len(packets) == 3 and announcer.finished
    tail = g711.decode(packets[2].payload, "PCMU")
    assert np.all(tail[80:] == 0)


def test_ptime_30_steps_by_240_samples() -> None:
    announcer = PacketPacer(PromptSource(notice()), "PCMU", 0, START, 1, 0, 0, ptime=0.03)
    packets = parse_all(announcer.due(START + 0.09))
    assert [p.timestamp for p in packets] == [0, 240, 480, 720]
    assert all(len(p.payload) == 240 for p in packets)
    assert announcer.next_time() == pytest.approx(START + 0.12)


def test_ptime_must_be_whole_samples() -> None:
    with pytest.raises(ValueError, match="ptime"):
        PacketPacer(PromptSource(notice()), "PCMU", 0, START, 1, 0, 0, ptime=0.00001)


def test_notice_then_ringback_is_one_continuous_stream() -> None:
    pacer = PacketPacer(PromptSource(sine(600, 8000, 0.1)), "PCMU", 0, START, 77, 10, 5000)
    first = parse_all(pacer.due(START + 0.08))
    assert len(first) == 5 and pacer.finished
    end_time = START + 0.1  # the slot after the prompt
    pacer.set_source(RingbackTone("uk"), end_time)
    assert not pacer.finished and pacer.next_time() == pytest.approx(end_time)
    second = parse_all(pacer.due(START + 0.5))
    stream = first + second
    assert [p.sequence_number for p in stream] == list(range(10, 10 + len(stream)))
    assert [p.timestamp for p in stream] == [5000 + 160 * i for i in range(len(stream))]
    assert {p.ssrc for p in stream} == {77}
    assert [p.marker for p in stream] == [True] + [False] * 4 + [True] + [False] * (len(second) - 1)


def test_switching_source_after_a_pause_skips_the_idle_time_in_the_timestamp() -> None:
    pacer = PacketPacer(PromptSource(sine(600, 8000, 0.04)), "PCMU", 0, START, 1, 0, 0)
    assert len(pacer.due(START + 0.02)) == 2 and pacer.finished
    pacer.set_source(RingbackTone("eu"), START + 1.005)  # silence: 0.04 .. 1.005
    assert pacer.next_time() == pytest.approx(START + 1.0)
    packet = parse_all(pacer.due(START + 1.005))
    assert len(packet) == 1
    assert packet[0].sequence_number == 2  # no sequence gap: nothing was lost
    assert packet[0].timestamp == 8000  # the timestamp shows the silence
    assert packet[0].marker


# --------------------------------------------------------------------------- ringback


def _pcm(tone: RingbackTone, count: int) -> npt.NDArray[np.int16]:
    """What the caller hears: the tone's µ-law bytes, decoded."""
    return g711.decode(tone.read_payload(count, "PCMU"), "PCMU")


def _on_off(tone: RingbackTone, seconds: float) -> npt.NDArray[np.bool_]:
    pcm = np.concatenate([_pcm(tone, 160) for _ in range(round(seconds * 50))])
    frames = pcm.reshape(-1, 80).astype(np.float64)  # 10 ms resolution
    on: npt.NDArray[np.bool_] = np.sqrt(np.mean(frames**2, axis=1)) > 100
    return on


def test_uk_ringback_cadence_and_frequencies() -> None:
    tone = RingbackTone("uk")
    on = _on_off(RingbackTone("uk"), 6.0)
    pattern = np.array([True] * 40 + [False] * 20 + [True] * 40 + [False] * 200)
    assert np.array_equal(on, np.tile(pattern, 2))
    pcm = _pcm(tone, 3200).astype(np.float64)  # 0.4 s on
    spectrum = np.abs(np.fft.rfft(pcm))
    frequencies = np.fft.rfftfreq(len(pcm), 1 / 8000)
    peaks = sorted(frequencies[np.argsort(spectrum)[-2:]])
    assert peaks == [400.0, 450.0]


def test_eu_ringback_cadence_and_frequency() -> None:
    on = _on_off(RingbackTone("eu"), 10.0)
    pattern = np.array([True] * 100 + [False] * 400)
    assert np.array_equal(on, np.tile(pattern, 2))
    pcm = _pcm(RingbackTone("eu"), 8000).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(pcm))
    assert np.fft.rfftfreq(8000, 1 / 8000)[np.argmax(spectrum)] == 425.0


def test_ringback_is_phase_continuous_across_reads() -> None:
    whole = RingbackTone("eu").read_payload(1600, "PCMA")
    tone = RingbackTone("eu")
    assert whole == b"".join(tone.read_payload(160, "PCMA") for _ in range(10))


def test_unknown_ringback_style_is_refused() -> None:
    with pytest.raises(ValueError, match="ringback style"):
        RingbackTone("us")


def test_beeps_are_short_tones_with_gaps() -> None:
    from proxy.media.announcer import beeps

    pcm = beeps(2, on=0.1, off=0.05)
    assert len(pcm) == 8000 * 0.25
    assert np.abs(pcm[:800]).max() > 3000  # a tone
    assert np.abs(pcm[800:1200]).max() == 0  # the gap
    assert np.abs(pcm[1200:]).max() > 3000


# --------------------------------------------------------------------------- encoded once


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
@pytest.mark.parametrize("ptime", [0.02, 0.03])
def test_a_shared_prompt_paces_the_bytes_of_encoding_each_packet(codec: str, ptime: float) -> None:
    pcm = sine(500, 8000, 0.25) + 3  # 2000 samples: the last packet of 30 ms is partial
    samples = round(8000 * ptime)
    padded = np.concatenate([pcm, np.zeros(-len(pcm) % samples, dtype=np.int16)])
    expected = [g711.encode(piece, codec) for piece in padded.reshape(-1, samples)]
    pacer = PacketPacer(PromptSource(PromptAudio(pcm)), codec, 0, START, 1, 0, 0, ptime=ptime)
    assert [p.payload for p in parse_all(pacer.due(START + 10))] == expected


def test_starting_a_shared_prompt_encodes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    audio = PromptAudio(sine(600, 8000, 0.1))

    def refuse(*_: object) -> bytes:
        raise AssertionError("a prompt was encoded while a call played it")

    monkeypatch.setattr(g711, "encode", refuse)
    for codec in ("PCMU", "PCMA"):
        pacer = PacketPacer(PromptSource(audio), codec, 0, START, 1, 0, 0)
        assert len(pacer.due(START + 1)) == 5
        ringback = PacketPacer(RingbackTone("uk"), codec, 0, START, 1, 0, 0)
        assert len(ringback.due(START + 1)) == 51


def test_prompt_audio_is_a_read_only_copy() -> None:
    pcm = sine(600, 8000, 0.1)
    audio = PromptAudio(pcm)
    pcm[:] = 0
    assert audio.pcm.any() and not audio.pcm.flags.writeable
    assert beep_audio() is beep_audio()
    assert np.array_equal(beep_audio().pcm, beeps(2))


@pytest.mark.parametrize("style", ["uk", "eu"])
def test_ringback_repeats_its_cadence_as_the_tone_formula_gives_it(style: str) -> None:
    frequencies, cadence = RingbackTone.STYLES[style]
    edges = np.cumsum([0, *(round(part * 8000) for part in cadence)])
    n = np.arange(2 * int(edges[-1]) + 1234)
    phase = n % int(edges[-1])
    on = np.zeros(len(n), dtype=bool)
    for i in range(0, len(cadence), 2):
        on |= (phase >= edges[i]) & (phase < edges[i + 1])
    tone = sum(np.sin(2 * np.pi * f * n / 8000) for f in frequencies) * 2500.0
    expected = np.where(on, np.rint(tone), 0).astype(np.int16)
    pacer = PacketPacer(RingbackTone(style), "PCMA", 8, START, 1, 0, 0)
    sent = b"".join(p.payload for p in parse_all(pacer.due(START + (len(n) // 160 - 1) * 0.02)))
    assert sent == g711.encode(expected[: len(n) // 160 * 160], "PCMA")


def test_a_tone_that_would_not_repeat_its_cadence_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    styles = {**RingbackTone.STYLES, "odd": ((401.0,), (0.25, 0.25))}  # 200.5 cycles
    monkeypatch.setattr(RingbackTone, "STYLES", styles)
    with pytest.raises(ValueError, match="no whole cycles"):
        RingbackTone("odd")
