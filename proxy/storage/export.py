"""Encoding recording audio: WAV (16-bit PCM), MP3 (ffmpeg, fed by a pipe), and G.711
WAV (the stored wire bytes, format tag 7 µ-law or 6 A-law).

The audio is ``(frames, 2)`` int16, caller left and call taker right.  ``channels``
chooses what goes out: ``"stereo"`` (both, as recorded), ``"mono"`` (both mixed, with
clipping protection), ``"caller"`` or ``"call_taker"`` (one party only, P18: a subject
access export may include one party only).

A G.711 file holds one law, so a recording whose stored law changed (a party switched
codec mid-call, or the two parties used different laws) is refused with a clear message
rather than converted: converting would hand back bytes that were not on the wire, which
is what ``wav`` is for.  ``mono`` is refused for the same reason (mixing decodes).

The encoders write into an already open file (see :mod:`proxy.storage.output_file`) and
never create a file of their own: decrypted audio reaches ffmpeg through its stdin and
comes back through its stdout, so no plaintext copy ever lands in a temporary folder.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import wave
from collections.abc import Callable
from typing import BinaryIO, Literal

import numpy as np
import numpy.typing as npt

from ..media.g711 import CODEC_TAGS
from .reader import Recording

ChannelChoice = Literal["stereo", "mono", "caller", "call_taker"]
CHANNEL_CHOICES: tuple[ChannelChoice, ...] = ("stereo", "mono", "caller", "call_taker")
DEFAULT_SAMPLE_RATE = 8000
MP3_BITRATE = "32k"


def select_channels(audio: npt.NDArray[np.int16], channels: ChannelChoice) -> npt.NDArray[np.int16]:
    """``(n, 2)`` for stereo, ``(n, 1)`` otherwise."""
    block = np.asarray(audio)
    if block.ndim != 2 or block.shape[1] != 2 or block.dtype != np.int16:
        raise ValueError(f"audio must be int16 of shape (n, 2), not {block.dtype}{block.shape}")
    if channels == "stereo":
        return block
    if channels in ("caller", "call_taker"):
        column = 0 if channels == "caller" else 1
        party: npt.NDArray[np.int16] = block[:, column : column + 1]
        return party
    if channels == "mono":
        mixed = block.astype(np.int32).sum(axis=1, keepdims=True)
        clipped: npt.NDArray[np.int16] = np.clip(mixed, -32768, 32767).astype(np.int16)
        return clipped
    raise ValueError(f"channels must be one of {', '.join(CHANNEL_CHOICES)}, not {channels!r}")


class EncodingError(Exception):
    """The encoder could not produce the file (ffmpeg missing or failing)."""


def _pcm(audio: npt.NDArray[np.int16], channels: ChannelChoice) -> tuple[bytes, int]:
    """Little-endian 16-bit PCM of the chosen channels, and how many channels it has."""
    out = select_channels(audio, channels)
    return np.ascontiguousarray(out, dtype="<i2").tobytes(), out.shape[1]


def write_wav(
    audio: npt.NDArray[np.int16],
    stream: BinaryIO,
    channels: ChannelChoice = "stereo",
    *,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
) -> None:
    """Write a 16-bit PCM WAV file into ``stream``."""
    pcm, count = _pcm(audio, channels)
    with wave.open(stream, "wb") as wav:
        wav.setnchannels(count)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm)


def write_mp3(
    audio: npt.NDArray[np.int16],
    stream: BinaryIO,
    channels: ChannelChoice = "stereo",
    *,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    bitrate: str = MP3_BITRATE,
) -> None:
    """Write an MP3 file into ``stream`` (a real file: ffmpeg writes to its descriptor).

    The PCM goes to ffmpeg's stdin (``pipe:0``).  ffmpeg's stdout is ``stream`` itself,
    named ``/dev/stdout`` rather than ``pipe:1`` so that ffmpeg sees a seekable file and
    goes back to write the LAME header, which tells decoders the exact length (without
    it, players add the encoder's padding, about 0.15 s at 8 kHz).
    """
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise EncodingError("MP3 export needs ffmpeg, which is not on PATH")
    pcm, count = _pcm(audio, channels)
    stream.flush()
    command = [
        ffmpeg, "-hide_banner", "-loglevel", "error",
        "-f", "s16le", "-ar", str(sample_rate), "-ac", str(count), "-i", "pipe:0",
        "-codec:a", "libmp3lame", "-b:a", bitrate, "-f", "mp3", "-y", "file:/dev/stdout",
    ]  # fmt: skip
    result = subprocess.run(command, input=pcm, stdout=stream.fileno(), stderr=subprocess.PIPE)
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        raise EncodingError(
            f"ffmpeg exited {result.returncode}: {message[-1] if message else 'no message'}"
        )


# WAVE format tags of the G.711 laws, by the payload type that tags them in a segment
_WAVE_FORMAT = {CODEC_TAGS["PCMU"]: 7, CODEC_TAGS["PCMA"]: 6}
_WAVE_NAME = {7: "µ-law", 6: "A-law"}


def g711_wav(
    wire: npt.NDArray[np.uint16],
    channels: ChannelChoice = "stereo",
    *,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
) -> bytes:
    """A G.711 WAV file of stored wire samples ``(n, 2)``: the code bytes as received.

    Raises :class:`EncodingError` when the chosen channels hold more than one law, or
    for ``mono`` (a mix is not the wire's bytes).
    """
    if channels == "mono":
        raise EncodingError("g711 export gives the wire bytes of each party: mono mixes them")
    chosen = select_channels(wire.view(np.int16), channels).view(np.uint16)
    laws = np.unique(chosen >> 8)
    if len(laws) > 1:
        raise EncodingError(
            "the recording holds both µ-law and A-law (a party switched codec, or the "
            "parties used different ones): a G.711 file holds one; use --format wav"
        )
    tag = _WAVE_FORMAT[int(laws[0])] if len(laws) else 7
    count = chosen.shape[1]
    data = np.ascontiguousarray(chosen & 0xFF, dtype=np.uint8).tobytes()
    frames = len(data) // count
    fmt = struct.pack("<HHIIHHH", tag, count, sample_rate, sample_rate * count, count, 8, 0)
    body = (
        b"WAVE"
        + b"fmt " + struct.pack("<I", len(fmt)) + fmt
        + b"fact" + struct.pack("<II", 4, frames)
        + b"data" + struct.pack("<I", len(data)) + data
        + b"\0" * (len(data) % 2)  # chunks are padded to an even length
    )  # fmt: skip
    return b"RIFF" + struct.pack("<I", len(body)) + body


def encoder_for(
    recording: Recording, fmt: str, channels: ChannelChoice
) -> Callable[[BinaryIO], None]:
    """What writes ``recording`` as ``fmt`` into a stream.  Raises :class:`EncodingError`
    now, before any audio is written (or the access logged), when it cannot be done."""
    if fmt == "wav":
        return lambda stream: write_wav(recording.audio, stream, channels)
    if fmt == "mp3":
        return lambda stream: write_mp3(recording.audio, stream, channels)
    if fmt == "g711":
        if recording.wire is None:
            raise EncodingError("a PCM16 recording holds no G.711 bytes: use --format wav")
        data = g711_wav(recording.wire, channels, sample_rate=recording.report.sample_rate)

        def write(stream: BinaryIO) -> None:
            stream.write(data)

        return write
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")


FORMATS = ("wav", "mp3", "g711")
