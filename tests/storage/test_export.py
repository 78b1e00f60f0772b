"""WAV, MP3 and G.711 WAV encoding, stereo, mixed, or one party only."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from proxy.media import g711
from proxy.media.g711 import wire_samples
from proxy.storage.export import (
    WAV_HEADER_SIZE,
    EncodingError,
    channel_count,
    encode_mp3,
    g711_wav,
    pcm16,
    select_channels,
    wav_header,
)

from .conftest import dialogue_call


def export_wav(audio: np.ndarray, path: Path, channels: str = "stereo") -> Path:
    count = channel_count(channels)  # type: ignore[arg-type]
    path.write_bytes(wav_header(len(audio), count) + pcm16(audio, channels))  # type: ignore[arg-type]
    return path


@pytest.mark.parametrize("frames", [0, 1, 7999, 80_001])
@pytest.mark.parametrize("channels", [1, 2])
def test_wav_header_is_what_the_wave_module_writes(frames: int, channels: int) -> None:
    stream = io.BytesIO()
    with wave.open(stream, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\0" * frames * channels * 2)
    expected = stream.getvalue()[:WAV_HEADER_SIZE]
    assert wav_header(frames, channels) == expected and len(expected) == 44


def read_wav(path: Path) -> tuple[int, int, np.ndarray]:
    with wave.open(str(path), "rb") as wav:
        assert wav.getsampwidth() == 2
        channels, rate = wav.getnchannels(), wav.getframerate()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return channels, rate, data.reshape(-1, channels)


@pytest.mark.parametrize(
    ("channels", "columns"), [("stereo", [0, 1]), ("caller", [0]), ("call_taker", [1])]
)
def test_wav_export_keeps_the_chosen_parties(
    tmp_path: Path, channels: str, columns: list[int]
) -> None:
    audio = dialogue_call(3.0)
    path = export_wav(audio, tmp_path / "out.wav", channels)
    count, rate, data = read_wav(path)
    assert (count, rate) == (len(columns), 8000)
    np.testing.assert_array_equal(data, audio[:, columns])


def test_mono_export_mixes_with_clipping_protection(tmp_path: Path) -> None:
    audio = np.array([[30000, 30000], [-30000, -30000], [100, -50], [0, 7]], dtype=np.int16)
    count, _, data = read_wav(export_wav(audio, tmp_path / "mono.wav", "mono"))
    assert count == 1
    assert data[:, 0].tolist() == [32767, -32768, 50, 7]


def test_unknown_channel_choice_is_refused() -> None:
    with pytest.raises(ValueError, match="channels"):
        select_channels(dialogue_call(0.1), "left")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="int16"):
        select_channels(np.zeros((4, 2), dtype=np.float32), "stereo")


def decoded_seconds(path: Path) -> float:
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "ffmpeg is needed for MP3 export"
    pcm = subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "1", "-ar", "8000", "-"],
        check=True,
        capture_output=True,
    ).stdout
    return len(pcm) / 2 / 8000


@pytest.mark.parametrize("channels", ["stereo", "caller"])
def test_mp3_decodes_to_the_same_duration(tmp_path: Path, channels: str) -> None:
    audio = dialogue_call(21.81)
    blocks = (pcm16(audio[i : i + 8000], channels) for i in range(0, len(audio), 8000))  # type: ignore[arg-type]
    path = tmp_path / "out.mp3"
    path.write_bytes(encode_mp3(blocks, channel_count(channels)))  # type: ignore[arg-type]
    assert path.read_bytes()[:3] in (b"ID3", b"\xff\xf3", b"\xff\xe3", b"\xff\xfb")
    assert abs(decoded_seconds(path) - len(audio) / 8000) <= 0.1


def test_a_block_that_fails_stops_ffmpeg_and_raises() -> None:
    def blocks() -> Iterator[bytes]:
        yield b"\0" * 16000
        raise RuntimeError("chunk 3 failed verification")

    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(RuntimeError, match="chunk 3"):
        encode_mp3(blocks(), 1)
    assert set(os.listdir("/proc/self/fd")) <= before  # the memory files are closed


def test_ffmpeg_failing_is_an_encoding_error() -> None:
    with pytest.raises(EncodingError, match="ffmpeg exited"):
        encode_mp3([b"\0" * 100], 1, bitrate="not-a-rate")


def test_g711_refuses_a_recording_that_holds_both_laws() -> None:
    codes = np.arange(200, dtype=np.uint8).reshape(-1, 2)
    mixed = np.concatenate([wire_samples(codes, "PCMA"), wire_samples(codes, "PCMU")])
    with pytest.raises(EncodingError, match="both µ-law and A-law"):
        g711_wav(mixed)
    # one party's channel alone may still be of one law
    caller_alaw = np.stack(
        [wire_samples(codes[:, 0], "PCMA"), wire_samples(codes[:, 1], "PCMU")], 1
    )
    assert g711_wav(caller_alaw, "caller").endswith(codes[:, 0].tobytes())
    with pytest.raises(EncodingError, match="both"):
        g711_wav(caller_alaw)


def test_g711_wav_of_an_odd_length_is_padded_and_ffmpeg_reads_it(tmp_path: Path) -> None:
    codes = np.arange(255, dtype=np.uint8).reshape(-1, 1)
    data = g711_wav(np.concatenate([wire_samples(codes, "PCMU")] * 2, axis=1), "call_taker")
    assert len(data) % 2 == 0 and data[20:22] == b"\x07\x00"
    path = tmp_path / "odd.wav"
    path.write_bytes(data)
    decoded = subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(path), "-f", "s16le", "-"],
        capture_output=True,
        check=True,
    ).stdout
    np.testing.assert_array_equal(np.frombuffer(decoded, "<i2"), g711.ULAW_DECODE[codes[:, 0]])
