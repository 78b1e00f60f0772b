"""RTP hijack (issue 11, defect 6), end to end: a sender on the caller's IP but another
port learns the proxy's RTP port for the caller (here: from the answer the caller got)
and sends first, and on through the call.  The caller's own packets, from the exact
address and port of its SDP, must own the leg: the recording holds the caller, not the
attacker, and every attacker packet is counted as dropped.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time

import pytest

from . import audio
from .conftest import E2e
from .proxy_process import export_wav, list_recordings, wait_for
from .test_media_addresses import assert_recorded, metric
from .test_recorded_call import seconds_of

pytestmark = pytest.mark.sipp

PACKET_SAMPLES = 160
PRE_AUDIO_S = 2.8  # the caller sends nothing until after the notice and the ringing


def flood(port: int, ulaw: bytes, stop: threading.Event) -> int:
    """Send ``ulaw`` as 20 ms RTP packets from a fresh 127.0.0.1 port until ``stop``
    (or the audio ends); returns the number sent."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sent = 0
    try:
        start = time.monotonic()
        for index in range(len(ulaw) // PACKET_SAMPLES):
            if stop.is_set():
                break
            header = struct.pack("!BBHII", 0x80, 0, index, index * PACKET_SAMPLES, 0x0BAD)
            payload = ulaw[index * PACKET_SAMPLES : (index + 1) * PACKET_SAMPLES]
            sock.sendto(header + payload, ("127.0.0.1", port))
            sent += 1
            time.sleep(max(start + (index + 1) * 0.02 - time.monotonic(), 0))
    finally:
        sock.close()
    return sent


def test_a_same_ip_sender_that_sends_first_does_not_take_the_callers_leg(
    e2e: E2e, dialogue: bytes
) -> None:
    proxy = e2e.proxy()
    caller_audio, taker_audio = seconds_of(dialogue, 0, 3), seconds_of(dialogue, 12, 15)
    attacker_audio = seconds_of(dialogue, 6, 10)
    taker = e2e.call_taker(audio_pcap=e2e.rtp_pcap("taker.pcap", taker_audio), ring_ms=300)
    caller = e2e.caller(
        audio_pcap=e2e.rtp_pcap("caller.pcap", caller_audio),
        pre_audio_ms=int(PRE_AUDIO_S * 1000),
        hold_ms=3500,
    )
    answers: list[str] = []

    def answered() -> bool:
        answers[:] = [m.text for m in caller.messages() if not m.sent and m.status == 200]
        return bool(answers)

    wait_for("the caller's 200", answered, timeout=10)
    match = re.search(r"^m=audio (\d+) ", answers[0], re.M)
    assert match is not None, answers[0]
    stop = threading.Event()
    sent: list[int] = []
    attacker = threading.Thread(
        target=lambda: sent.append(flood(int(match.group(1)), attacker_audio, stop))
    )
    attacker.start()  # before the caller's first packet, and on through the call
    try:
        caller.expect_success(timeout=30)
        taker.expect_success(timeout=10)
    finally:
        stop.set()
        attacker.join(timeout=10)
    proxy.wait_idle()
    assert sent and sent[0] > 100, sent
    assert_recorded(e2e, proxy, 0, caller_audio, taker_audio)
    (row,) = list_recordings(e2e.config_path)
    wav = audio.read_wav(export_wav(e2e.config_path, str(row["id"]), e2e.folder / "again.wav"))
    assert audio.absent(wav.channel(0), audio.ulaw_decode(attacker_audio))
    # Before the caller's first packet its leg hears nothing from the exact address, so
    # after media.nat_latch_seconds the attacker's port is taken as the NAT case (during
    # the notice: nothing recorded); from the caller's first packet on, every attacker
    # packet is dropped.
    before_caller = PRE_AUDIO_S * 50 + 10
    dropped = metric(proxy, 'recproxy_rtp_dropped_total{reason="unknown_source"}')
    assert dropped >= sent[0] - before_caller, (dropped, sent)
