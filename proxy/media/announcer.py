"""Prompts and tones, paced out as RTP packets on a schedule fixed at the start.

* ``load_prompt(path)`` reads a mono WAV file (16-bit PCM, µ-law or A-law) at any common
  rate and returns 8 kHz int16 PCM; other rates go through ``resample``, a polyphase
  Kaiser-windowed-sinc filter.
* A frame source (``FrameSource``: ``read_payload(count, codec)`` gives the G.711 bytes
  of the next ``count`` samples, or ``None`` when it is exhausted)
  feeds a ``PacketPacer``.  ``PromptSource`` plays a prompt once, ``RingbackTone`` plays
  the UK or EU ringing tone for ever.
* A ``PromptAudio`` is a prompt encoded once per codec when it is loaded, and shared by
  every call that plays it; the ringing tones and the confirmation beeps are encoded once
  per process the same way.  Starting a notice, ringback or beeps encodes nothing:
  issue 19 measured the per-packet encoding at about 3 % of a call's set-up.
* ``PacketPacer`` sends packet n at ``start_time + n * ptime`` (computed from n, so no
  drift accumulates however irregularly ``due(now)`` is called); timestamps step by the
  packet's samples, sequence numbers by one, and the first packet (and the first after
  ``set_source``) carries the marker bit.  Switching the source keeps the SSRC,
  sequence and timestamp running, so notice → ringback is one continuous stream; a
  pacer of a ``PromptSource`` plays one prompt (the notice).
"""

from __future__ import annotations

import functools
import math
import os
import struct
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from . import g711
from .rtp import RtpPacket

__all__ = [
    "FrameSource",
    "PacketPacer",
    "PromptAudio",
    "PromptError",
    "PromptSource",
    "RingbackTone",
    "beep_audio",
    "load_prompt",
    "read_wav",
    "resample",
]

SAMPLE_RATE: Final = 8000

_WAVE_PCM = 0x0001
_WAVE_ALAW = 0x0006
_WAVE_MULAW = 0x0007
_WAVE_EXTENSIBLE = 0xFFFE
_TIME_EPSILON = 1e-9  # seconds: float noise when the caller wakes exactly on time


class PromptError(ValueError):
    """A prompt file cannot be used; the message names the file and the reason."""


# --------------------------------------------------------------------------- WAV


def read_wav(data: bytes, name: str = "<wav>") -> tuple[npt.NDArray[np.int16], int]:
    """Decode a mono WAV file's bytes: (int16 samples, sample rate).  16-bit PCM,
    G.711 µ-law and A-law are accepted (plain or WAVE_FORMAT_EXTENSIBLE)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise PromptError(f"{name}: not a WAV file (no RIFF/WAVE header)")
    offset = 12
    fmt: bytes | None = None
    samples: bytes | None = None
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        (chunk_size,) = struct.unpack_from("<I", data, offset + 4)
        body = data[offset + 8 : offset + 8 + chunk_size]
        if chunk_id == b"fmt ":
            fmt = body
        elif chunk_id == b"data":
            samples = body
            if fmt is not None:
                break
        offset += 8 + chunk_size + (chunk_size & 1)
    if fmt is None or len(fmt) < 16:
        raise PromptError(f"{name}: no valid 'fmt ' chunk")
    if samples is None:
        raise PromptError(f"{name}: no 'data' chunk")
    tag, channels, rate, _byte_rate, _align, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _WAVE_EXTENSIBLE:
        if len(fmt) < 26:
            raise PromptError(f"{name}: WAVE_FORMAT_EXTENSIBLE without a sub-format")
        (tag,) = struct.unpack_from("<H", fmt, 24)
    if channels != 1:
        raise PromptError(f"{name}: {channels} channels; a prompt must be mono")
    if tag == _WAVE_PCM and bits == 16:
        usable = len(samples) & ~1
        pcm = np.frombuffer(samples[:usable], dtype="<i2").astype(np.int16)
    elif tag == _WAVE_MULAW and bits == 8:
        pcm = g711.decode(samples, "PCMU")
    elif tag == _WAVE_ALAW and bits == 8:
        pcm = g711.decode(samples, "PCMA")
    else:
        raise PromptError(
            f"{name}: unsupported sample format (tag {tag:#06x}, {bits} bits); "
            "use 16-bit PCM, µ-law or A-law"
        )
    if rate <= 0:
        raise PromptError(f"{name}: sample rate {rate}")
    return pcm, rate


def load_prompt(path: str | os.PathLike[str]) -> npt.NDArray[np.int16]:
    """A prompt file as 8 kHz mono int16 PCM."""
    name = os.fspath(path)
    with open(path, "rb") as file:
        data = file.read()
    pcm, rate = read_wav(data, name)
    if rate == SAMPLE_RATE:
        return pcm
    return resample(pcm, rate, SAMPLE_RATE)


# --------------------------------------------------------------------------- resampling


def _kaiser(t: npt.NDArray[np.float64], half_width: float, beta: float) -> npt.NDArray[np.float64]:
    ratio = np.clip(t / half_width, -1.0, 1.0)
    window: npt.NDArray[np.float64] = np.i0(beta * np.sqrt(1.0 - ratio * ratio)) / np.i0(beta)
    return np.where(np.abs(t) <= half_width, window, 0.0)


def resample(
    samples: npt.NDArray[np.int16],
    from_rate: int,
    to_rate: int,
    *,
    zero_crossings: int = 32,
    rolloff: float = 0.95,
    beta: float = 9.0,
) -> npt.NDArray[np.int16]:
    """Resample int16 audio by the rational factor ``to_rate / from_rate`` with a
    polyphase windowed-sinc low-pass filter: cut-off at ``rolloff`` times the lower
    Nyquist frequency, ``zero_crossings`` sinc lobes each side, Kaiser window
    (``beta``).  Output sample n is at input time ``n * from_rate / to_rate``."""
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError("sample rates must be positive")
    x = np.asarray(samples, dtype=np.float64)
    divisor = math.gcd(from_rate, to_rate)
    up, down = to_rate // divisor, from_rate // divisor
    if up == down:
        return np.asarray(samples, dtype=np.int16).copy()
    cutoff = rolloff * min(1.0, to_rate / from_rate)  # as a fraction of the input rate / 2
    half_width = zero_crossings / cutoff  # in input samples
    taps = 2 * math.ceil(half_width)
    # table[phase, j]: the weight of input sample q + 1 - taps/2 + j for the output at
    # input time q + phase / up.
    offsets = (np.arange(up)[:, None] / up) + (taps // 2 - 1 - np.arange(taps))[None, :]
    table = cutoff * np.sinc(cutoff * offsets) * _kaiser(offsets, half_width, beta)
    table /= table.sum(axis=1, keepdims=True)  # unity gain at DC for every phase

    count = -(-len(x) * up // down)  # every output time inside the input
    padded = np.concatenate([np.zeros(taps // 2), x, np.zeros(taps // 2 + 1)])
    out = np.empty(count, dtype=np.float64)
    chunk = 4096
    for first in range(0, count, chunk):
        n = np.arange(first, min(first + chunk, count), dtype=np.int64)
        position = n * down
        whole = position // up
        phase = position % up
        # padded index of input sample i is i + taps // 2
        index = whole[:, None] + 1 + np.arange(taps)[None, :]
        out[first : first + len(n)] = np.einsum("ij,ij->i", padded[index], table[phase])
    return np.clip(np.rint(out), -32768, 32767).astype(np.int16)


# --------------------------------------------------------------------------- sources


class FrameSource(Protocol):
    """Audio at 8 kHz, read in packet-sized pieces of G.711 bytes."""

    def read_payload(self, count: int, codec: str) -> bytes | None:
        """The next ``count`` samples as the G.711 bytes of ``codec`` ("PCMU" or
        "PCMA"), the last piece padded with silence, or ``None`` when the source is
        exhausted."""
        ...


class PromptAudio:
    """A prompt's 8 kHz PCM and its G.711 bytes in every codec the pacer speaks, encoded
    once when the prompt is loaded and shared (read-only) by every call that plays it."""

    def __init__(self, pcm: npt.NDArray[np.int16]) -> None:
        self.pcm = np.array(pcm, dtype=np.int16)  # our own copy: callers cannot change it
        self.pcm.flags.writeable = False
        self.encoded = {codec: g711.encode(self.pcm, codec) for codec in g711.CODECS}

    def __len__(self) -> int:
        return len(self.pcm)


def _padded(piece: bytes, count: int, silence: bytes) -> bytes:
    """``piece`` (cut short by the end of a prompt) made ``count`` long with silence."""
    missing = count - len(piece)
    return piece if missing <= 0 else piece + silence * missing


def _cyclic(data: bytes, start: int, count: int) -> bytes:
    """``count`` items of ``data`` repeated for ever, from item ``start``."""
    start %= len(data)
    if start + count <= len(data):
        return data[start : start + count]
    pieces = []
    while count > 0:
        piece = data[start : start + count]
        pieces.append(piece)
        count -= len(piece)
        start = 0
    return b"".join(pieces)


class PromptSource:
    """Plays a prompt once: a shared :class:`PromptAudio` (nothing is encoded), or PCM,
    encoded here."""

    def __init__(self, audio: PromptAudio | npt.NDArray[np.int16]) -> None:
        self._audio = audio if isinstance(audio, PromptAudio) else PromptAudio(audio)
        self._position = 0

    @property
    def remaining(self) -> int:
        return max(0, len(self._audio) - self._position)

    def _take(self, count: int) -> int | None:
        """Where the next ``count`` samples start, or None when the prompt has ended."""
        start = self._position
        if start >= len(self._audio):
            return None
        self._position += count
        return start

    def read_payload(self, count: int, codec: str) -> bytes | None:
        start = self._take(count)
        if start is None:
            return None
        piece = self._audio.encoded[codec][start : start + count]
        return _padded(piece, count, bytes([g711.silence_byte(codec)]))


class RingbackTone:
    """The ringing tone callers hear while the far end rings, for ever.

    * ``"uk"``: 400 Hz + 450 Hz, 0.4 s on, 0.2 s off, 0.4 s on, 2.0 s off;
    * ``"eu"``: 425 Hz, 1 s on, 4 s off (ETSI TR 101 041 / CEPT).

    ``amplitude`` is the peak of each component (2500 ≈ -19 dBm0 in G.711).  Every
    frequency makes a whole number of cycles in one cadence, so the tone is one cadence
    repeated: computed and encoded once per process (:func:`_tone_cycle`)."""

    STYLES: Final = {
        "uk": ((400.0, 450.0), (0.4, 0.2, 0.4, 2.0)),
        "eu": ((425.0,), (1.0, 4.0)),
    }

    def __init__(self, style: str = "uk", *, amplitude: float = 2500.0) -> None:
        if style not in self.STYLES:
            raise ValueError(f"unknown ringback style {style!r}; use 'uk' or 'eu'")
        self.style = style
        self.frequencies, self.cadence = self.STYLES[style]
        self._cycle = _tone_cycle(style, amplitude)
        self._position = 0

    def _take(self, count: int) -> int:
        start = self._position
        self._position += count
        return start

    def read_payload(self, count: int, codec: str) -> bytes:
        return _cyclic(self._cycle.encoded[codec], self._take(count), count)


@functools.cache
def _tone_cycle(style: str, amplitude: float) -> PromptAudio:
    """One cadence of a ringing tone (see :class:`RingbackTone`)."""
    frequencies, cadence = RingbackTone.STYLES[style]
    edges = np.cumsum([0, *(round(part * SAMPLE_RATE) for part in cadence)])
    if any(f * int(edges[-1]) % SAMPLE_RATE for f in frequencies):
        raise ValueError(f"ringback style {style!r}: a frequency makes no whole cycles")
    n = np.arange(int(edges[-1]), dtype=np.int64)
    on = np.zeros(len(n), dtype=bool)
    for i in range(0, len(cadence), 2):
        on[int(edges[i]) : int(edges[i + 1])] = True
    t = n / SAMPLE_RATE
    tone = sum(np.sin(2 * np.pi * f * t) for f in frequencies) * amplitude
    return PromptAudio(np.where(on, np.rint(tone), 0).astype(np.int16))


# --------------------------------------------------------------------------- pacing


class PacketPacer:
    """Packetises a frame source as G.711 RTP on a fixed schedule (see the module
    docstring).  ``due(now)`` returns the packets whose time has come; schedule the
    next call at ``next_time()`` (``None`` once the source is exhausted)."""

    def __init__(
        self,
        source: FrameSource,
        codec: str,
        payload_type: int,
        start_time: float,
        ssrc: int,
        first_sequence: int,
        first_timestamp: int,
        ptime: float = 0.02,
    ) -> None:
        samples = round(SAMPLE_RATE * ptime)
        if samples < 1 or abs(samples - SAMPLE_RATE * ptime) > 1e-6:
            raise ValueError(f"ptime {ptime} s is not a whole number of 8 kHz samples")
        self.codec = g711.codec_name(codec)
        self.payload_type = payload_type
        self.ssrc = ssrc
        self.ptime = ptime
        self.samples_per_packet = samples
        self._start = start_time
        self._first_sequence = first_sequence
        self._first_timestamp = first_timestamp
        self._slot = 0  # schedule slot of the next packet: its time and timestamp
        self._sent = 0
        self._marker = True
        self._source = source
        self._next = source.read_payload(samples, self.codec)

    @property
    def finished(self) -> bool:
        """The source is exhausted: every packet has been returned."""
        return self._next is None

    @property
    def packets_sent(self) -> int:
        return self._sent

    @property
    def played_ms(self) -> int:
        """Audio sent so far, in milliseconds."""
        return round(self._sent * self.ptime * 1000)

    @property
    def next_sequence(self) -> int:
        return (self._first_sequence + self._sent) & 0xFFFF

    @property
    def next_timestamp(self) -> int:
        return (self._first_timestamp + self._slot * self.samples_per_packet) & 0xFFFFFFFF

    def next_time(self) -> float | None:
        """When the next packet is due, or ``None`` when finished."""
        if self._next is None:
            return None
        return self._start + self._slot * self.ptime

    def set_source(self, source: FrameSource, now: float) -> None:
        """Continue the stream (same SSRC, sequence and timestamp running) from another
        source; its first packet has the marker bit.  If the schedule has fallen more
        than one packet behind ``now`` (the old source ended a while ago), the idle
        slots are skipped: the timestamp jumps by the silence, the sequence does not."""
        self._source = source
        self._next = source.read_payload(self.samples_per_packet, self.codec)
        self._marker = True
        behind = now - (self._start + self._slot * self.ptime)
        if behind > self.ptime:
            self._slot += math.floor(behind / self.ptime + _TIME_EPSILON)

    def due(self, now: float) -> list[bytes]:
        """The packets whose send time ``start_time + n * ptime`` is at or before
        ``now``, in order (several when the caller is late)."""
        packets: list[bytes] = []
        while self._next is not None:
            if self._start + self._slot * self.ptime > now + _TIME_EPSILON:
                break
            packet = RtpPacket(
                payload_type=self.payload_type,
                sequence_number=self.next_sequence,
                timestamp=self.next_timestamp,
                ssrc=self.ssrc,
                payload=self._next,
                marker=self._marker,
            )
            packets.append(packet.serialize())
            self._marker = False
            self._slot += 1
            self._sent += 1
            self._next = self._source.read_payload(self.samples_per_packet, self.codec)
        return packets


def beeps(
    count: int = 2,
    *,
    frequency: float = 1000.0,
    on: float = 0.12,
    off: float = 0.08,
    amplitude: float = 4000.0,
) -> npt.NDArray[np.int16]:
    """A short confirmation tone: ``count`` beeps, as 8 kHz PCM (for the call taker's
    ear when a recording code is accepted)."""
    if count < 1:
        raise ValueError("at least one beep")
    t = np.arange(round(on * SAMPLE_RATE)) / SAMPLE_RATE
    beep = np.rint(np.sin(2 * np.pi * frequency * t) * amplitude).astype(np.int16)
    gap = np.zeros(round(off * SAMPLE_RATE), dtype=np.int16)
    parts: list[npt.NDArray[np.int16]] = []
    for i in range(count):
        parts.append(beep)
        if i < count - 1:
            parts.append(gap)
    return np.concatenate(parts)


@functools.cache
def beep_audio(count: int = 2) -> PromptAudio:
    """:func:`beeps` with the default tone, encoded once per process."""
    return PromptAudio(beeps(count))
