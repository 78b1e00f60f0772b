"""recproxy as a SIPREC recording server, end to end: a SIPp recording client (SRC)
sends RFC 8068 §3.1.1's INVITE (multipart SDP and rs-metadata), the test sends the two
streams' RTP, the SRC sends a new metadata snapshot in a re-INVITE and hangs up.  The
recording is decrypted (exported) and each channel checked against the audio of its
stream; the catalog holds the participants, the session's identifiers and both
snapshots; the consent receipt says the notice was the SRC's.  A malformed metadata
body sent meanwhile gets 400 and leaves the session untouched; with [siprec] disabled
a recording session is refused with 403.  The same session over SRTP (RTP/SAVP with
SDES keys, as SBCs send to a recorder): answered with our keys, and the recording holds
the decrypted audio."""

from __future__ import annotations

import re
import socket
import struct
import time
from base64 import b64encode

import pytest

from proxy.media.srtp import SrtpStreams
from proxy.sip.sdes import new_key
from tests.sip.siprec_examples import SESSION_ID, SIP_SESSION_ID, metadata

from . import audio
from .conftest import E2e
from .proxy_process import ProxySettings, export_wav, list_recordings, query, wait_for
from .sipp import Sipp

RATE = 8000
SIPREC = '[siprec]\nenabled = true\nsources = ["127.0.0.1"]\n'
ALICE_AOR = "sip:+441632960001@127.0.0.1"
BOB_AOR = "sip:+441632960002@127.0.0.1"
TALK_S = 4.0  # from the ACK to the re-INVITE; the RTP is sent in this time
RTP_S = 3.0
TAIL_S = 1.5  # from the re-INVITE to the BYE
LENGTH_TOLERANCE_S = 0.5  # the catalogue writes between the 200 and the first frame


def _answer_ports(src: Sipp) -> list[int] | None:
    """Our ports, per m= line, from the 200 to the SRC's INVITE (SIPp's message log)."""
    for message in src.messages():
        if not message.sent and message.status == 200 and message.cseq_method == "INVITE":
            return [int(p) for p in re.findall(r"^m=audio (\d+) ", message.text, re.M)]
    return None


SUITE = "AES_CM_128_HMAC_SHA1_80"


def _send_streams(
    sources: list[socket.socket],
    targets: list[int],
    payloads: list[bytes],
    srtp: list[SrtpStreams] | None = None,
) -> None:
    """Each payload as 20 ms PCMU packets from its socket to its port, paced in real
    time, all streams together (bounded: the payloads' length); each protected with
    its stream's ``srtp`` when given."""
    frames = min(len(p) for p in payloads) // 160
    ssrcs = [0x11111111, 0x22222222]
    start = time.monotonic()
    for n in range(frames):
        for index, (sock, port, payload) in enumerate(zip(sources, targets, payloads, strict=True)):
            header = struct.pack("!BBHII", 0x80, 0, (1000 + n) & 0xFFFF, 160 * n, ssrcs[index])
            packet = header + payload[160 * n : 160 * (n + 1)]
            if srtp is not None:
                packet = srtp[index].protect(packet)
            sock.sendto(packet, ("127.0.0.1", port))
        delay = start + (n + 1) * 0.02 - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def _scenario_xml(document: str) -> str:
    return "\n".join(f"      {line}" for line in document.strip().splitlines())


@pytest.mark.parametrize("srtp", [False, True], ids=["rtp", "srtp"])
def test_a_siprec_session_records_each_participant_on_its_channel(
    e2e: E2e, dialogue: bytes, srtp: bool
) -> None:
    proxy = e2e.proxy(ProxySettings(extra=SIPREC))
    keys = [new_key(SUITE), new_key(SUITE)]  # the SRC's, per stream
    if srtp:
        profile = "RTP/SAVP"
        extra = [f"a=crypto:1 {SUITE} inline:{b64encode(key).decode()}" for key in keys]
    else:
        profile, extra = "RTP/AVP", ["a=ptime:20", "a=ptime:20"]
    port_a, port_b = e2e.ports.spare_media(0), e2e.ports.spare_media(1)
    first = metadata(ALICE_AOR, BOB_AOR)
    second = first.replace(">Bob<", ">Robert<")
    sources = []
    for port in (port_a, port_b):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", port))
        sources.append(sock)
    src = e2e.caller(
        "uac_siprec",
        label="src",
        port_a=port_a,
        port_b=port_b,
        talk_ms=int(TALK_S * 1000),
        tail_ms=int(TAIL_S * 1000),
        metadata_1=_scenario_xml(first),
        metadata_2=_scenario_xml(second),
        profile=profile,
        extra_a=extra[0],
        extra_b=extra[1],
    )
    try:
        wait_for("the 200 to the SRC's INVITE", lambda: _answer_ports(src) is not None, 10)
        assert proxy.health()["recording_sessions"] == 1
        ports = _answer_ports(src)
        assert ports is not None and len(ports) == 2 and 0 not in ports, ports
        bob_audio = dialogue[: int(RTP_S * RATE)]  # stream 96, from port a
        alice_audio = dialogue[8 * RATE : int((8 + RTP_S) * RATE)]  # stream 97, from port b
        # meanwhile another SRC's metadata is malformed: 400, and this session goes on
        bad = e2e.caller(
            "uac_siprec_bad",
            label="bad",
            local_port=e2e.ports.spare_sip(0),
            media_port=e2e.ports.spare_media(2),
            status=400,
        )
        streams = [SrtpStreams(SUITE, key, new_key(SUITE)) for key in keys] if srtp else None
        ok = next(m for m in src.messages() if not m.sent and m.status == 200)
        assert ok.text.count(f"a=crypto:1 {SUITE} inline:") == (2 if srtp else 0), ok.text
        _send_streams(sources, ports, [bob_audio, alice_audio], streams)
        bad.expect_success(timeout=10)
        src.expect_success(timeout=TALK_S + TAIL_S + 10)
    finally:
        for sock in sources:
            sock.close()
    proxy.wait_idle()
    # the ports go back before the recording is closed and the session forgotten
    wait_for("the session's end", lambda: proxy.health()["recording_sessions"] == 0, 10)
    refusal = bad.first(sent=False, status=400)
    assert "recording metadata" in refusal.first_line, refusal.first_line

    # one complete recording, as long as the session, Alice left and Bob right
    rows = list_recordings(e2e.config_path)
    assert [row["state"] for row in rows] == ["complete"], rows
    wav = audio.read_wav(export_wav(e2e.config_path, str(rows[0]["id"]), e2e.folder / "rs.wav"))
    assert (wav.channels, wav.rate) == (2, RATE)
    answered = src.first(sent=False, status=200, cseq_method="INVITE").time
    session_s = src.first(sent=True, method="BYE").time - answered
    assert abs(wav.seconds - session_s) <= LENGTH_TOLERANCE_S, (wav.seconds, session_s)
    alice_pcm, bob_pcm = audio.ulaw_decode(alice_audio), audio.ulaw_decode(bob_audio)
    left = audio.place(wav.channel(0), alice_pcm)
    right = audio.place(wav.channel(1), bob_pcm)
    assert len(left.inside) == left.voiced and len(right.inside) == right.voiced, (left, right)
    assert abs(left.start_s - right.start_s) <= 0.1, "the streams are not time-aligned"
    assert audio.absent(wav.channel(0), bob_pcm), "Bob is on Alice's channel"
    assert audio.absent(wav.channel(1), alice_pcm), "Alice is on Bob's channel"

    # the catalog: a SIPREC call found by its participants' numbers, its identifiers,
    # both snapshots with their participants and channels, and the SRC's notice
    path = proxy.catalog_path
    (call,) = [dict(r) for r in query(path, "SELECT * FROM calls")]
    assert (call["kind"], call["caller"], call["callee"], call["outcome"]) == (
        "siprec",
        "+441632960001",
        "+441632960002",
        "completed",
    )
    (session,) = [dict(r) for r in query(path, "SELECT * FROM siprec_sessions")]
    assert session == {
        "call_id": call["id"],
        "src_call_id": src.first(sent=True, method="INVITE").call_id,
        "session_id": SESSION_ID,
        "sip_session_id": SIP_SESSION_ID,
    }
    people = query(
        path,
        "SELECT snapshot, aor, name, channel FROM siprec_participants ORDER BY snapshot, position",
    )
    assert [tuple(p) for p in people] == [
        (1, ALICE_AOR, "Alice", "left"),
        (1, BOB_AOR, "Bob", "right"),
        (2, ALICE_AOR, "Alice", "left"),
        (2, BOB_AOR, "Robert", "right"),
    ]
    (receipt,) = query(path, "SELECT mode, played_ms FROM consent_receipts")
    assert tuple(receipt) == ("src", 0)


def test_with_siprec_disabled_a_recording_session_is_refused_with_403(e2e: E2e) -> None:
    proxy = e2e.proxy()
    src = e2e.caller("uac_siprec_bad", label="src", status=403)
    src.expect_success(timeout=10)
    assert "SIPREC is not enabled" in src.first(sent=False, status=403).first_line
    proxy.wait_idle()
    assert query(proxy.catalog_path, "SELECT * FROM calls") == []
