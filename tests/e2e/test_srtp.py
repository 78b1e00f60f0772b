"""SDES-SRTP through ``recproxy serve`` (issue 18), with real phones and real SIPp.

1. A baresip caller that insists on SRTP (``mediaenc=srtp-mand``: ``RTP/SAVP``) and a
   plain SIPp call taker: the caller hears the notice (protected with our key) and the
   call taker, the call taker hears the caller, the decrypted recording holds both
   parties on their channels, and tcpdump on the caller's leg shows none of the audio
   payloads the plain leg carried.
2. Both legs SRTP, with baresip on both ends: best effort (``RTP/AVP`` with
   ``a=crypto``) from the caller, ``RTP/SAVP`` to a call taker who must use it;
   each phone hears the other, the recording holds both, and no packet failed.
3. ``srtp = "require"`` and a plain offer: 488 with the Warning that says why, and
   nothing else happens.
"""

from __future__ import annotations

import time
import urllib.request
import uuid

import pytest

from . import audio
from .conftest import NOTICE_SECONDS, E2e
from .pcap import RtpPacket
from .phones import CALLER_HZ, TAKER_HZ, Phone, Phones, dominant_frequency, sip_packets
from .proxy_process import ProxySettings, export_wav, list_recordings, query
from .sip_client import SDP_OFFER, SipSocket, ack_and_bye
from .test_phones import HZ_TOLERANCE, assert_notice_heard, assert_voices, sip_capture
from .test_recorded_call import seconds_of

pytestmark = pytest.mark.phones

TALK_S = 3.0


def srtp_dropped(e2e: E2e) -> dict[str, float]:
    """``recproxy_srtp_dropped_total`` by leg and reason, from /metrics."""
    url = f"http://127.0.0.1:{e2e.ports.http}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("recproxy_srtp_dropped_total{"):
            labels, _, value = line.rpartition(" ")
            counts[labels.removeprefix("recproxy_srtp_dropped_total")] = float(value)
    return counts


def test_an_srtp_caller_and_a_plain_sipp_call_taker(
    e2e: E2e, phones: Phones, dialogue: bytes
) -> None:
    proxy = e2e.proxy(ProxySettings(srtp='{ caller = "require" }'))
    signalling = sip_capture(e2e)
    low = e2e.ports.caller_rtp
    media = e2e.capture(
        "media.pcap", f"udp portrange {low}-{low + 9} or udp port {e2e.ports.taker_rtp}"
    )
    taker_audio = seconds_of(dialogue, 12, 18)
    taker = e2e.call_taker(audio_pcap=e2e.rtp_pcap("taker.pcap", taker_audio), ring_ms=300)
    caller = phones.caller("baresip", mediaenc="srtp-mand")
    caller.dial(f"sip:100@127.0.0.1:{e2e.ports.sip}")
    caller.wait_event("established", timeout=10)
    time.sleep(NOTICE_SECONDS + 0.3 + len(taker_audio) / audio.RATE + 0.5)
    caller.hangup()
    caller.wait_event("closed", timeout=10)
    taker.expect_success(timeout=10)
    proxy.wait_idle()
    packets = sip_packets(signalling.stop())
    datagrams = media.stop()

    # the caller offered RTP/SAVP and was answered RTP/SAVP with a key of ours
    (invite,) = [p for p in packets if p.method == "INVITE" and p.source_port == caller.sip_port]
    assert "RTP/SAVP" in invite.body and "a=crypto:" in invite.body, invite.body
    answers = [p for p in packets if p.source_port == e2e.ports.sip and "m=audio" in p.body]
    to_caller = [p for p in answers if p.destination_port == caller.sip_port]
    assert to_caller and all("RTP/SAVP" in p.body and "a=crypto:" in p.body for p in to_caller)
    to_taker = [p for p in answers if p.destination_port == e2e.ports.taker_sip]
    assert to_taker and all("a=crypto" not in p.body for p in to_taker)
    assert "SRTP is Enabled" in caller.log_text()

    # the caller heard the notice and the call taker: decrypted by baresip
    assert_notice_heard(caller, e2e.notice.samples)
    heard = caller.received()[int(NOTICE_SECONDS * audio.RATE) :]
    audio.place(heard, audio.ulaw_decode(taker_audio), threshold=0.8)

    # the recording: the caller's tone on the left, the call taker's dialogue on the right
    (row,) = list_recordings(e2e.config_path)
    assert row["state"] == "complete", row
    wav = audio.read_wav(export_wav(e2e.config_path, str(row["id"]), e2e.folder / "call.wav"))
    assert abs(dominant_frequency(wav.channel(0)) - CALLER_HZ) <= HZ_TOLERANCE
    audio.place(wav.channel(1), audio.ulaw_decode(taker_audio))

    # on the wire: the plain leg carried the caller's audio decrypted, and the SRTP leg
    # carried none of it, nor any of the call taker's payloads, in the clear
    srtp_leg = [d for d in datagrams if {d.source[1], d.destination[1]} & set(range(low, low + 10))]
    plain_leg = [d for d in datagrams if e2e.ports.taker_rtp in (d.source[1], d.destination[1])]
    plain = {p.payload for d in plain_leg if (p := RtpPacket.parse(d.payload)) and p.payload}
    assert len(plain) > 100 and len(srtp_leg) > 100, (len(plain), len(srtp_leg))
    for datagram in srtp_leg:
        packet = RtpPacket.parse(datagram.payload)
        assert packet is not None  # the RTP header stays in the clear (RFC 3711)
        assert not any(payload in datagram.payload for payload in plain if len(payload) >= 80)
    assert not any(d.payload[12:172] in taker_audio for d in srtp_leg)
    assert all(value == 0 for value in srtp_dropped(e2e).values())


def baresip_call(e2e: E2e, phones: Phones, caller_enc: str, taker_enc: str) -> tuple[Phone, Phone]:
    """Two baresips with these ``mediaenc`` values, the caller dialling the proxy:
    (caller, call taker) once both are established."""
    taker = phones.taker("baresip", mediaenc=taker_enc)
    caller = phones.caller("baresip", mediaenc=caller_enc)
    caller.dial(f"sip:100@127.0.0.1:{e2e.ports.sip}")
    caller.wait_event("established", timeout=10)
    taker.wait_event("established", timeout=NOTICE_SECONDS + 10)
    return caller, taker


def test_both_legs_srtp_with_baresip_on_both_ends(e2e: E2e, phones: Phones) -> None:
    proxy = e2e.proxy(ProxySettings(srtp='{ caller = "offer", call_taker = "require" }'))
    signalling = sip_capture(e2e)
    caller, taker = baresip_call(e2e, phones, "srtp", "srtp-mand")
    time.sleep(TALK_S)
    caller.hangup()
    caller.wait_event("closed", timeout=10)
    taker.wait_event("closed", timeout=10)
    proxy.wait_idle()
    packets = sip_packets(signalling.stop())

    # best effort from the caller (RTP/AVP with a=crypto), answered with a key of ours;
    # RTP/SAVP to the call taker, who answered with its own
    (invite_in,) = [p for p in packets if p.method == "INVITE" and p.source_port == caller.sip_port]
    assert "RTP/AVP" in invite_in.body and "a=crypto:" in invite_in.body, invite_in.body
    (invite_out,) = [
        p for p in packets if p.method == "INVITE" and p.destination_port == taker.sip_port
    ]
    assert "RTP/SAVP" in invite_out.body and invite_out.body.count("a=crypto:") == 2
    ok = [p for p in packets if p.status == 200 and p.source_port == taker.sip_port]
    assert any("a=crypto:" in p.body for p in ok)
    # our offer's first suite on the call taker's leg; the caller's choice on its own
    assert "SRTP is Enabled (cryptosuite=AEAD_AES_256_GCM)" in taker.log_text()
    assert "SRTP is Enabled" in caller.log_text(), caller.log_text()

    # each phone heard the other, and the recording holds both on their channels
    assert abs(dominant_frequency(taker.received()) - CALLER_HZ) <= HZ_TOLERANCE
    tail = caller.received()[int((NOTICE_SECONDS + 1.0) * audio.RATE) :]
    assert abs(dominant_frequency(tail) - TAKER_HZ) <= HZ_TOLERANCE
    (row,) = list_recordings(e2e.config_path)
    assert row["state"] == "complete", row
    wav = audio.read_wav(export_wav(e2e.config_path, str(row["id"]), e2e.folder / "call.wav"))
    assert_voices(wav)
    assert all(value == 0 for value in srtp_dropped(e2e).values())


def test_a_plain_offer_to_a_proxy_that_requires_srtp_gets_488_with_a_warning(e2e: E2e) -> None:
    proxy = e2e.proxy(ProxySettings(srtp='"require"'))
    sip = SipSocket(("127.0.0.1", e2e.ports.sip))
    try:
        call_id = f"plain-{uuid.uuid4().hex}"
        sip.request("INVITE", call_id=call_id, body=SDP_OFFER.format(port=e2e.ports.caller_rtp))
        refusal = sip.final_response(call_id, timeout=5)
        assert refusal.status == 488, refusal.text
        assert refusal.header("Warning") == (
            '302 recproxy "SRTP is required here: offer RTP/SAVP with a=crypto"'
        )
        ack_and_bye(sip, refusal)
    finally:
        sip.close()
    proxy.wait_idle()
    calls = [dict(row) for row in query(proxy.catalog_path, "SELECT * FROM calls")]
    assert all(call["bridged_at"] is None for call in calls), calls
    assert list_recordings(e2e.config_path) == []


def test_hold_and_resume_on_srtp_legs_keep_our_keys_and_the_audio_comes_back(
    e2e: E2e, phones: Phones
) -> None:
    """A hold and a resume from each phone: four re-INVITEs answered, and four offers
    of ours passing them on, each leg keeping our key (baresip 1.0 keeps decrypting
    with the first key it was given); both phones hear each other afterwards."""
    e2e.proxy(ProxySettings(srtp='"require"'))
    signalling = sip_capture(e2e)
    caller, taker = baresip_call(e2e, phones, "srtp-mand", "srtp-mand")
    time.sleep(1.0)
    for phone in (caller, taker):
        phone.hold()
        time.sleep(1.0)
        phone.resume()
        time.sleep(1.0)
    time.sleep(TALK_S)
    caller.hangup()
    caller.wait_event("closed", timeout=10)
    taker.wait_event("closed", timeout=10)
    packets = sip_packets(signalling.stop())

    for phone in (caller, taker):
        ours = [
            p.body
            for p in packets
            if p.source_port == e2e.ports.sip
            and p.destination_port == phone.sip_port
            and "a=crypto:" in p.body
        ]
        assert len(ours) >= 3, f"{phone.name}: {len(ours)} descriptions of ours"
        keys: dict[str, set[str]] = {}  # suite -> the keys of ours for it
        for body in ours:
            for line in body.split("\r\n"):
                if line.startswith("a=crypto:"):
                    _, suite, key = line.split()[:3]
                    keys.setdefault(suite, set()).add(key)
        assert all(len(found) == 1 for found in keys.values()), f"{phone.name}: our key changed"
    # the last stretch after the resumes, both ways
    for phone, hz in ((caller, TAKER_HZ), (taker, CALLER_HZ)):
        heard = phone.received()[-int((TALK_S - 0.5) * audio.RATE) :]
        assert abs(dominant_frequency(heard) - hz) <= HZ_TOLERANCE, phone.log_text()
        assert "failed to decrypt" not in phone.log_text()
    (row,) = list_recordings(e2e.config_path)
    assert row["state"] == "complete", row
    assert all(value == 0 for value in srtp_dropped(e2e).values())
