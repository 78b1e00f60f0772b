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

Nothing here creates a file: the WAV header and PCM are bytes the caller streams,
decrypted audio reaches ffmpeg through its stdin and comes back through an anonymous
memory file, so no plaintext copy ever lands in a folder (see
:mod:`proxy.records.playback`, which renders recordings with these).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import subprocess
from collections.abc import Iterable, Iterator
from typing import Literal

import numpy as np
import numpy.typing as npt

from ..media.g711 import CODEC_TAGS

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


def pcm16(audio: npt.NDArray[np.int16], channels: ChannelChoice) -> bytes:
    """Little-endian 16-bit PCM of the chosen channels, interleaved: a WAV's data."""
    return np.ascontiguousarray(select_channels(audio, channels), dtype="<i2").tobytes()


def channel_count(channels: ChannelChoice) -> int:
    """How many channels a rendering of ``channels`` has."""
    return 2 if channels == "stereo" else 1


WAV_HEADER_SIZE = 44


def wav_header(frames: int, channels: int, sample_rate: int = DEFAULT_SAMPLE_RATE) -> bytes:
    """The 44-byte header of a 16-bit PCM WAV file of ``frames`` frames (what the
    ``wave`` module writes): known before any audio is decoded, so a player can be told
    the file's length and start while the rest is still being decrypted."""
    data = frames * channels * 2
    fmt = struct.pack(
        "<HHIIHH", 1, channels, sample_rate, sample_rate * channels * 2, channels * 2, 16
    )
    return (
        b"RIFF" + struct.pack("<I", 36 + data) + b"WAVE"
        + b"fmt " + struct.pack("<I", len(fmt)) + fmt
        + b"data" + struct.pack("<I", data)
    )  # fmt: skip


def encode_mp3(
    pcm_blocks: Iterable[bytes],
    channels: int,
    *,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    bitrate: str = MP3_BITRATE,
) -> bytes:
    """An MP3 file of the 16-bit PCM ``pcm_blocks``, made by ffmpeg without a file.

    The PCM goes to ffmpeg's stdin (``pipe:0``) one block at a time, so only a block of
    it is held at once.  ffmpeg's stdout is an anonymous memory file (``memfd_create``:
    no name in any folder, gone when closed), named ``/dev/stdout`` rather than
    ``pipe:1`` so that ffmpeg sees a seekable file and goes back to write the LAME
    header, which tells decoders the exact length (without it, players add the
    encoder's padding, about 0.15 s at 8 kHz).  The MP3 itself is held in memory:
    32 kbit/s is 14.4 MB for an hour.  pydub is not used: its ``export`` writes the
    audio to named temporary files for ffmpeg.
    """
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise EncodingError("MP3 export needs ffmpeg, which is not on PATH")
    command = [
        ffmpeg, "-hide_banner", "-loglevel", "error",
        "-f", "s16le", "-ar", str(sample_rate), "-ac", str(channels), "-i", "pipe:0",
        "-codec:a", "libmp3lame", "-b:a", bitrate, "-f", "mp3", "-y", "file:/dev/stdout",
    ]  # fmt: skip
    with _memory_file("mp3") as out, _memory_file("ffmpeg-stderr") as err:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=out, stderr=err)
        assert process.stdin is not None
        try:
            for block in pcm_blocks:
                process.stdin.write(block)
        except BrokenPipeError:
            pass  # ffmpeg stopped reading: its exit status says why
        except BaseException:
            process.kill()  # the audio could not be decoded: stop the encoder
            raise
        finally:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()
            process.wait()
        if process.returncode != 0:
            message = _read_all(err).decode(errors="replace").strip().splitlines()
            raise EncodingError(
                f"ffmpeg exited {process.returncode}: {message[-1] if message else 'no message'}"
            )
        return _read_all(out)


@contextlib.contextmanager
def _memory_file(name: str) -> Iterator[int]:
    """A file descriptor of an anonymous file in memory (Linux ``memfd_create``)."""
    fd = os.memfd_create(f"recproxy-{name}", os.MFD_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    return os.pread(fd, size, 0) if size else b""


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
