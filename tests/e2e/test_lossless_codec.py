"""The wire codec is stored losslessly: for a PCMA call and a PCMU call through SIPp,
``recproxy export --format g711`` gives back, byte for byte, the RTP payload bytes each
party put on the wire, as tcpdump saw them on loopback.

The caller and the call taker send different speech (two parts of the shared dialogue,
in the call's law), so the channels cannot be confused.  The recording covers the
bridged span only, so each exported channel is found as one contiguous run inside the
payload stream its party sent: around that run the recorder may only have filled
silence (before a party's first packet of the span, after its last), and only the
packet at each end of the run may differ (a packet cut by the span's edge); every byte
in between must be the byte on the wire.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from proxy.media import g711

from . import audio
from .conftest import E2e, shared_data
from .pcap import Datagram, RtpPacket
from .proxy_process import ProxySettings, list_recordings, run_cli

pytestmark = pytest.mark.sipp

RATE = 8000
PACKET = 160  # bytes of one 20 ms G.711 packet
MIN_MATCH = 3 * RATE  # the run each channel must match exactly: at least 3 s
# law → (RTP payload type, WAVE format tag, the law's silence code)
LAWS = {"PCMU": (0, 7, 0xFF), "PCMA": (8, 6, 0xD5)}


@dataclass(frozen=True)
class G711Wav:
    format_tag: int
    channels: int
    rate: int
    data: bytes

    def channel(self, index: int) -> bytes:
        return self.data[index :: self.channels]


def read_g711_wav(path: Path) -> G711Wav:
    """A G.711 WAV as ``export --format g711`` writes it, read from the RIFF chunks
    (not with the proxy's code)."""
    raw = path.read_bytes()
    assert raw[:4] == b"RIFF" and raw[8:12] == b"WAVE", raw[:12]
    chunks: dict[bytes, bytes] = {}
    offset = 12
    while offset + 8 <= len(raw):
        name, size = raw[offset : offset + 4], struct.unpack_from("<I", raw, offset + 4)[0]
        chunks[name] = raw[offset + 8 : offset + 8 + size]
        offset += 8 + size + size % 2
    tag, channels, rate, _, align, bits = struct.unpack_from("<HHIIHH", chunks[b"fmt "])
    assert (align, bits) == (channels, 8), (align, bits)
    return G711Wav(tag, channels, rate, chunks[b"data"])


def sent_stream(datagrams: list[Datagram], port: int) -> bytes:
    """The RTP payload bytes sent from ``port``, in order; fails unless they form one
    unbroken run of 20 ms packets (what tcpdump saw is the whole stream)."""
    packets = [RtpPacket.parse(d.payload) for d in datagrams if d.source[1] == port]
    rtp = [packet for packet in packets if packet is not None]
    assert rtp and len(rtp) == len(packets), f"no RTP, or non-RTP, sent from port {port}"
    sequences = [packet.sequence for packet in rtp]
    assert sequences == list(range(sequences[0], sequences[0] + len(rtp))), sequences
    assert {len(packet.payload) for packet in rtp} == {PACKET}
    return b"".join(packet.payload for packet in rtp)


@dataclass(frozen=True)
class Run:
    """Where an exported channel lies in the party's sent stream."""

    start: int  # first byte of the channel that overlaps the stream
    end: int  # one past the last
    offset: int  # the stream index of channel byte i is i + offset
    mismatches: list[int]  # channel indices in [start, end) whose byte differs


def locate(channel: bytes, stream: bytes) -> Run:
    """Align ``channel`` with ``stream`` by a 0.1 s window of the channel (from its middle
    outwards: past pauses in the speech) that occurs exactly once in the stream, then
    compare every overlapping byte."""
    middle = len(channel) // 2
    for step in range(0, middle, 400):
        for start in (middle - step, middle + step):
            window = channel[start : start + 800]
            at = stream.find(window)
            if len(window) == 800 and at >= 0 and stream.find(window, at + 1) < 0:
                offset = at - start
                break
        else:
            continue
        break
    else:
        raise AssertionError("no 0.1 s of the exported channel is found once in what was sent")
    start, end = max(0, -offset), min(len(channel), len(stream) - offset)
    ours = np.frombuffer(channel[start:end], dtype=np.uint8)
    theirs = np.frombuffer(stream[start + offset : end + offset], dtype=np.uint8)
    mismatches = (np.flatnonzero(ours != theirs) + start).tolist()
    return Run(start, end, offset, mismatches)


def assert_wire_bytes(channel: bytes, stream: bytes, silence: int, party: str) -> int:
    """The channel is the party's stream over the span, with silence filled only outside
    it; returns how many bytes matched."""
    run = locate(channel, stream)
    outside = channel[: run.start] + channel[run.end :]
    assert set(outside) <= {silence}, f"{party}: audio outside the span of what was sent"
    edges = [i for i in run.mismatches if i < run.start + PACKET or i >= run.end - PACKET]
    interior = [i for i in run.mismatches if i not in edges]
    assert not interior, (
        f"{party}: {len(interior)} bytes differ from the wire inside the run "
        f"[{run.start}, {run.end}), first at {interior[:10]}"
    )
    assert all(channel[i] == silence for i in edges), f"{party}: an edge byte is not fill"
    matched = run.end - run.start - len(edges)
    assert matched >= MIN_MATCH, f"{party}: only {matched} bytes matched"
    return matched


def speech(start_s: int, end_s: int, codec: str) -> bytes:
    """Seconds of the shared dialogue, from its 16-bit source, in ``codec``'s law: every
    code of the law can occur (audio that came from µ-law would use only the A-law codes
    that survive a trip through µ-law, and could not show that A-law is kept)."""
    pcm = audio.read_wav(shared_data("audio", "dialogue_8k_s16.wav")).channel(0)
    return g711.encode(pcm[start_s * RATE : end_s * RATE].astype(np.int16), codec)


def through_ulaw(data: bytes, codec: str) -> bytes:
    """What storing ``data`` as µ-law and exporting it in ``codec`` again would give."""
    ulaw = g711.encode(g711.decode(data, codec), "PCMU")
    return g711.encode(g711.decode(ulaw, "PCMU"), codec)


@pytest.mark.parametrize("codec", ["PCMA", "PCMU"])
def test_export_g711_gives_back_the_bytes_each_party_sent(e2e: E2e, codec: str) -> None:
    payload_type, wave_tag, silence = LAWS[codec]
    # a deep jitter buffer: this test is about the bytes kept, not about late packets;
    # two-second segments, so the bytes cross segment files
    proxy = e2e.proxy(ProxySettings(jitter_ms=200, segment_seconds=2))
    caller_audio = speech(0, 5, codec)
    taker_audio = speech(12, 17, codec)
    if codec == "PCMA":  # the audio can tell: a trip through µ-law would change it
        changed = np.frombuffer(caller_audio, np.uint8) != np.frombuffer(
            through_ulaw(caller_audio, codec), np.uint8
        )
        assert changed.sum() >= len(caller_audio) // 100, changed.sum()
    capture = e2e.capture(
        "rtp.pcap", f"udp and (src port {e2e.ports.caller_rtp} or src port {e2e.ports.taker_rtp})"
    )
    taker = e2e.call_taker(
        audio_pcap=e2e.rtp_pcap("taker.pcap", taker_audio, codec=codec), ring_ms=300, codec=codec
    )
    # The call taker talks from its ACK, 5 s of the 7 s it is bridged.  The caller lets
    # the call taker speak first: it sends nothing until 4 s after its ACK (1.5 s after
    # the 2 s notice and the ringing), so the first chunk of its channel is all filled
    # silence, which must be in the call's law too; then 5 s of speech, then BYE.
    caller = e2e.caller(
        audio_pcap=e2e.rtp_pcap("caller.pcap", caller_audio, codec=codec),
        pre_audio_ms=4000,
        hold_ms=5500,
        codec=codec,
    )
    caller.expect_success(timeout=30)
    taker.expect_success(timeout=10)
    proxy.wait_idle()
    datagrams = capture.stop()

    for side, name in ((caller, "caller"), (taker, "call taker")):
        answer = side.first(sent=name == "call taker", status=200, cseq_method="INVITE")
        assert f"RTP/AVP {payload_type} 101" in answer.text, f"{name} did not use {codec}"
    (row,) = list_recordings(e2e.config_path)
    assert row["state"] == "complete", row
    out = e2e.folder / "call.wav"
    run_cli(
        e2e.config_path, "export", str(row["id"]), "--format", "g711", "--out", str(out),
        "--reason", "recproxy end-to-end test",
    )  # fmt: skip
    wav = read_g711_wav(out)
    assert (wav.format_tag, wav.channels, wav.rate) == (wave_tag, 2, RATE)

    matched = {
        party: assert_wire_bytes(wav.channel(index), sent_stream(datagrams, port), silence, party)
        for index, party, port in (
            (0, "caller", e2e.ports.caller_rtp),
            (1, "call taker", e2e.ports.taker_rtp),
        )
    }
    # the caller spoke only inside the bridged span: all of it is in the recording
    assert matched["caller"] >= len(caller_audio) - 2 * PACKET, matched
