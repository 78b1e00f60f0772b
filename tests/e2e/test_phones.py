"""Real softphones through ``recproxy serve`` (issue 11, "Real phones in the test suite"):
Debian's baresip 1.0 and linphonec 5.1 as the caller and as the call taker, each
talking a steady tone of its own (the caller 500 Hz, the call taker 1300 Hz), so that
the recording's channels can be told apart by ear, or rather by spectrum.

Each test states what a practice would see with these phones:

1. the everyday call, in every pairing: the caller hears the notice before the call
   taker's phone even rings; the recording is ``complete``, as long as the bridged call,
   the caller left and the call taker right; BYE from either side ends both legs;
2. hold and resume from either side: a hold (``sendonly``) is answered ``recvonly``
   (RFC 3264 §6.1), the proxy's SDP on either leg holds only what it can record, each
   hold is a recording event, the call comes back with audio both ways, and the
   recording is ``complete``;
3. ``*0`` keyed on the call taker's phone, over RFC 4733 (baresip) and over SIP INFO
   (linphonec): the recording ends at the key;
4. linphone's default offer, ``c=IN IP6``: relayed and recorded like any other call;
5. a blind transfer (REFER) from the call taker is refused with 501 or 403: nobody is
   called, the caller sees no REFER, and the call stays up until a phone ends it
   (baresip 1.0 ends it itself when its transfer fails), recorded up to then.

Times from tcpdump and the catalog are both the host's wall clock.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from . import audio
from .conftest import NOTICE_SECONDS, E2e
from .pcap import LoopbackCapture, RtpPacket
from .phones import (
    CALLER_HZ,
    TAKER_HZ,
    Baresip,
    Phone,
    Phones,
    SipPacket,
    dominant_frequency,
    sip_packets,
)
from .proxy_process import ProxyProcess, export_wav, list_recordings, query

pytestmark = pytest.mark.phones

RATE = audio.RATE
TALK_S = 2.0  # each stretch of conversation: long enough to recognise, short to run
HZ_TOLERANCE = 20.0
LENGTH_TOLERANCE_S = 0.2
KEY_TOLERANCE_S = 0.15  # a recording stopped by a key ends this close to the key


# ---------------------------------------------------------------------------------------
# A call with phones


def dial(e2e: E2e, caller: Phone, taker: Phone) -> float:
    """The caller dials the proxy; when the call taker's phone answered (it auto-answers
    once the notice has played and the proxy invites it)."""
    caller.dial(f"sip:100@127.0.0.1:{e2e.ports.sip}")
    caller.wait_event("established", timeout=10)
    return taker.wait_event("established", timeout=NOTICE_SECONDS + 10).time


def hang_up(by: Phone, other: Phone) -> None:
    by.hangup()
    by.wait_event("closed", timeout=10)
    other.wait_event("closed", timeout=10)


def sip_capture(e2e: E2e) -> LoopbackCapture:
    return e2e.capture("sip.pcap", f"udp port {e2e.ports.sip}")


def the_recording(e2e: E2e, proxy: ProxyProcess) -> tuple[dict[str, Any], audio.Wav]:
    """The one recording the call left, and its decrypted export."""
    proxy.wait_idle()
    rows = list_recordings(e2e.config_path)
    assert len(rows) == 1, rows
    wav = audio.read_wav(export_wav(e2e.config_path, str(rows[0]["id"]), e2e.folder / "call.wav"))
    assert (wav.channels, wav.rate) == (2, RATE)
    return rows[0], wav


def the_call(proxy: ProxyProcess) -> dict[str, Any]:
    (call,) = [dict(row) for row in query(proxy.catalog_path, "SELECT * FROM calls")]
    return call


def assert_voices(wav: audio.Wav, start_s: float = 0.0, end_s: float | None = None) -> None:
    """The caller's tone on the left, the call taker's on the right, in [start, end)."""
    end = len(wav.frames) if end_s is None else int(end_s * RATE)
    left = dominant_frequency(wav.channel(0)[int(start_s * RATE) : end])
    right = dominant_frequency(wav.channel(1)[int(start_s * RATE) : end])
    assert abs(left - CALLER_HZ) <= HZ_TOLERANCE, f"left channel is {left:.0f} Hz, not the caller"
    assert abs(right - TAKER_HZ) <= HZ_TOLERANCE, f"right channel is {right:.0f} Hz, not the taker"


def assert_notice_heard(caller: Phone, notice: audio.Samples) -> None:
    """The caller's loudspeaker played the whole notice, from the call's start."""
    heard = caller.received()
    placed = audio.place(heard[: len(notice) + RATE], notice)
    assert len(placed.good) >= placed.voiced - 1, f"the caller missed the notice: {placed}"
    assert placed.start_s <= 0.2, f"the notice did not start the call: {placed}"


def requests(packets: list[SipPacket], method: str, *, to_port: int) -> list[SipPacket]:
    return [p for p in packets if p.method == method and p.destination_port == to_port]


def answers_to(packets: list[SipPacket], request: SipPacket) -> list[SipPacket]:
    """The responses sent back for ``request`` (same Call-ID and CSeq)."""
    return [
        p
        for p in packets
        if p.status is not None
        and p.destination_port == request.source_port
        and p.header("Call-ID") == request.header("Call-ID")
        and p.cseq == request.cseq
    ]


def final_answer(packets: list[SipPacket], request: SipPacket) -> SipPacket:
    finals = [p for p in answers_to(packets, request) if p.status and p.status >= 200]
    assert finals, f"no final answer to {request.first_line} ({request.cseq})"
    return finals[0]


RECORDABLE = {"PCMU/8000", "PCMA/8000", "telephone-event/8000"}
STATIC = {"0": "PCMU/8000", "8": "PCMA/8000"}


def codecs(sdp: str) -> set[str]:
    """The encodings an SDP's audio line offers or accepts ("PCMU/8000", "opus/48000")."""
    lines = sdp.split("\r\n")
    (media,) = [line for line in lines if line.startswith("m=audio ")]
    names = dict(STATIC)
    for line in lines:
        if line.startswith("a=rtpmap:"):
            number, _, name = line[len("a=rtpmap:") :].partition(" ")
            names[number] = "/".join(name.split("/")[:2])
    return {names.get(number, f"payload type {number}") for number in media.split()[3:]}


def direction(sdp: str) -> str:
    for attribute in ("sendonly", "recvonly", "inactive", "sendrecv"):
        if f"a={attribute}" in sdp:
            return attribute
    return "sendrecv"


# ---------------------------------------------------------------------------------------
# 1. The everyday call in every pairing; BYE from either side


@pytest.mark.parametrize(
    ("caller_kind", "taker_kind", "hangs_up"),
    [
        ("baresip", "baresip", "caller"),
        ("baresip", "linphonec", "calltaker"),
        ("linphonec", "baresip", "calltaker"),
        ("linphonec", "linphonec", "caller"),
    ],
)
def test_everyday_call_notice_heard_recorded_on_the_right_channels_bye_from_either_side(
    e2e: E2e, phones: Phones, caller_kind: str, taker_kind: str, hangs_up: str
) -> None:
    proxy = e2e.proxy()
    capture = sip_capture(e2e)
    taker = phones.taker(taker_kind)
    caller = phones.caller(caller_kind)
    dialled = time.time()
    bridged = dial(e2e, caller, taker)
    time.sleep(TALK_S)
    by, other = (caller, taker) if hangs_up == "caller" else (taker, caller)
    hang_up(by, other)
    packets = sip_packets(capture.stop())

    # the call taker was invited only after the whole notice
    (invite,) = requests(packets, "INVITE", to_port=taker.sip_port)
    assert invite.time - dialled >= NOTICE_SECONDS, (dialled, invite.time)
    assert_notice_heard(caller, e2e.notice.samples)
    # the BYE went from the phone that hung up to the proxy, and on to the other phone
    (bye_in,) = requests(packets, "BYE", to_port=e2e.ports.sip)
    assert bye_in.source_port == by.sip_port, bye_in.first_line
    assert final_answer(packets, bye_in).status == 200
    (bye_out,) = requests(packets, "BYE", to_port=other.sip_port)
    assert final_answer(packets, bye_out).status == 200

    row, wav = the_recording(e2e, proxy)
    assert row["state"] == "complete", row
    call = the_call(proxy)
    assert call["outcome"] == "completed", call
    by_catalog = (call["ended_at"] - call["bridged_at"]) / 1000
    assert abs(wav.seconds - by_catalog) <= LENGTH_TOLERANCE_S, (wav.seconds, by_catalog)
    assert abs(wav.seconds - (bye_in.time - bridged)) <= 0.5, (wav.seconds, bye_in.time - bridged)
    assert_voices(wav)
    # and each phone heard the other
    assert abs(dominant_frequency(taker.received()) - CALLER_HZ) <= HZ_TOLERANCE
    tail = caller.received()[int((NOTICE_SECONDS + 1.0) * RATE) :]
    assert abs(dominant_frequency(tail) - TAKER_HZ) <= HZ_TOLERANCE


# ---------------------------------------------------------------------------------------
# 2. Hold and resume from either side


@pytest.mark.parametrize(
    ("caller_kind", "taker_kind"),
    [
        ("baresip", "baresip"),
        ("baresip", "linphonec"),
        ("linphonec", "baresip"),
        ("linphonec", "linphonec"),
    ],
)
def test_hold_and_resume_from_either_side_answered_recvonly_recording_complete(
    e2e: E2e, phones: Phones, caller_kind: str, taker_kind: str
) -> None:
    proxy = e2e.proxy()
    capture = sip_capture(e2e)
    taker = phones.taker(taker_kind)
    caller = phones.caller(caller_kind)
    dial(e2e, caller, taker)
    time.sleep(1.0)
    for phone in (caller, taker):
        phone.hold()
        time.sleep(1.0)
        phone.resume()
        time.sleep(1.0)
    resumed = time.time()
    time.sleep(TALK_S)
    hang_up(caller, taker)
    packets = sip_packets(capture.stop())

    held: list[tuple[float, float]] = []  # (hold, resume) re-INVITEs reaching the proxy
    for phone in (caller, taker):
        reinvites = [
            p
            for p in requests(packets, "INVITE", to_port=e2e.ports.sip)
            if p.source_port == phone.sip_port and "tag=" in p.header("To")
        ]
        assert len(reinvites) >= 2, f"{phone.name}: {[p.first_line for p in reinvites]}"
        hold, resume = reinvites[0], reinvites[-1]
        assert direction(hold.body) in ("sendonly", "inactive"), hold.body
        answer = final_answer(packets, hold)
        assert answer.status == 200, answer.first_line
        expected = "recvonly" if direction(hold.body) == "sendonly" else "inactive"
        assert direction(answer.body) == expected, f"{phone.name} held: answered\n{answer.body}"
        resumed_answer = final_answer(packets, resume)
        assert resumed_answer.status == 200 and direction(resumed_answer.body) == "sendrecv"
        held.append((hold.time, resume.time))

    # every SDP the proxy sent, on either leg, offers or accepts only what it can record
    for sent in [p for p in packets if p.source_port == e2e.ports.sip and "m=audio" in p.body]:
        unrecordable = codecs(sent.body) - RECORDABLE
        assert not unrecordable, f"the proxy sent {unrecordable} in {sent.first_line} ({sent.cseq})"
    row, wav = the_recording(e2e, proxy)
    assert row["state"] == "complete", row
    # each hold is a recording event (whatever the action is called), made while held
    events = [dict(r) for r in query(proxy.catalog_path, "SELECT * FROM recording_events")]
    for hold_at, resume_at in held:
        during = [
            e
            for e in events
            if e["action"] not in ("start", "complete")
            and hold_at - 0.05 <= e["at"] / 1000 <= resume_at + 0.5
        ]
        assert during, f"no recording event for the hold at {hold_at:.3f}: {events}"
    # after the last resume, both voices are back, each on its own channel
    call = the_call(proxy)
    since_bridge = resumed - call["bridged_at"] / 1000
    assert_voices(wav, since_bridge + 0.5, since_bridge + TALK_S - 0.2)


# ---------------------------------------------------------------------------------------
# 3. *0 from the call taker's phone: RFC 4733 (baresip), SIP INFO (linphonec)


def key_event_time(e2e: E2e, taker: Phone, packets: list[SipPacket], rtp: LoopbackCapture) -> float:
    """When the proxy had the last key of the code: the INFO with Signal=0, or the last
    telephone-event packet from the call taker."""
    if isinstance(taker, Baresip):
        events = [
            d.time
            for d in rtp.stop()
            if (packet := RtpPacket.parse(d.payload)) is not None
            and packet.payload_type >= 96  # dynamic: not G.711, nor RTCP (200-204 & 0x7f)
            and len(packet.payload) == 4  # an RFC 4733 event
        ]
        assert events, "no telephone-event packet from the call taker"
        return events[-1]
    infos = [
        p
        for p in requests(packets, "INFO", to_port=e2e.ports.sip)
        if p.source_port == taker.sip_port and "Signal=0" in p.body.replace(" ", "")
    ]
    assert infos, "no INFO with Signal=0 from the call taker"
    return infos[-1].time


@pytest.mark.parametrize(
    ("caller_kind", "taker_kind", "dtmf"),
    [("linphonec", "baresip", "rfc4733"), ("baresip", "linphonec", "info")],
)
def test_star0_from_the_call_takers_phone_ends_the_recording_at_the_key(
    e2e: E2e, phones: Phones, caller_kind: str, taker_kind: str, dtmf: str
) -> None:
    proxy = e2e.proxy()
    capture = sip_capture(e2e)
    rtp = e2e.capture(
        "taker_rtp.pcap", f"udp src portrange {e2e.ports.taker_rtp}-{e2e.ports.taker_rtp + 9}"
    )
    options = {"dtmf": dtmf} if taker_kind == "linphonec" else {}
    taker = phones.taker(taker_kind, **options)
    caller = phones.caller(caller_kind)
    dial(e2e, caller, taker)
    time.sleep(TALK_S)
    taker.send_dtmf("*0")
    time.sleep(TALK_S)
    hang_up(caller, taker)
    packets = sip_packets(capture.stop())
    key = key_event_time(e2e, taker, packets, rtp)

    row, wav = the_recording(e2e, proxy)
    assert row["state"] == "complete", row
    events = [dict(r) for r in query(proxy.catalog_path, "SELECT * FROM recording_events")]
    stops = [e for e in events if e["action"] == "stop"]
    assert len(stops) == 1 and stops[0]["channel"] == "dtmf", events
    call = the_call(proxy)
    to_key = key - call["bridged_at"] / 1000
    assert abs(wav.seconds - to_key) <= KEY_TOLERANCE_S, (wav.seconds, to_key)
    assert_voices(wav, 0.2, wav.seconds - 0.2)


# ---------------------------------------------------------------------------------------
# 4. linphone's default offer: IPv6


def test_linphones_default_ipv6_offer_is_relayed_and_recorded(e2e: E2e, phones: Phones) -> None:
    proxy = e2e.proxy()
    capture = sip_capture(e2e)
    taker = phones.taker("baresip")
    caller = phones.caller("linphonec", ipv6=True)
    dial(e2e, caller, taker)
    time.sleep(TALK_S)
    hang_up(caller, taker)
    packets = sip_packets(capture.stop())

    (invite,) = [p for p in requests(packets, "INVITE", to_port=e2e.ports.sip) if p.cseq]
    assert "c=IN IP6 " in invite.body, f"linphone offered IPv4 here:\n{invite.body}"
    assert_notice_heard(caller, e2e.notice.samples)
    row, wav = the_recording(e2e, proxy)
    assert row["state"] == "complete", row
    call = the_call(proxy)
    assert call["outcome"] == "completed", call
    assert wav.seconds >= TALK_S - LENGTH_TOLERANCE_S, wav.seconds
    assert_voices(wav)
    assert abs(dominant_frequency(taker.received()) - CALLER_HZ) <= HZ_TOLERANCE
    health = proxy.health()
    assert health.get("ok") is True, health


# ---------------------------------------------------------------------------------------
# 5. REFER from the call taker: refused; what the phone does then is the phone's


def test_refer_from_the_call_taker_is_refused_and_only_the_phone_ends_the_call(
    e2e: E2e, phones: Phones
) -> None:
    """recproxy refuses the REFER and keeps the call.  baresip 1.0 then hangs up by
    itself: its ``ua.c`` ends a call whose transfer failed (CALL_EVENT_TRANSFER_FAILED,
    "transfer failure ... terminated" in its log; see docs/interop.md).  So the call
    ends by the call taker's own BYE, and the recording covers the call up to it."""
    proxy = e2e.proxy()
    capture = sip_capture(e2e)
    taker = phones.taker("baresip")
    caller = phones.caller("baresip")
    target = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target.bind(("127.0.0.1", e2e.ports.spare_sip(5)))
    try:
        bridged = dial(e2e, caller, taker)
        time.sleep(TALK_S)
        assert isinstance(taker, Baresip)
        taker.transfer(f"sip:2002@127.0.0.1:{e2e.ports.spare_sip(5)}")
        taker.wait_event("transfer failed", timeout=10)  # and baresip 1.0 ends the call
        caller.wait_event("closed", timeout=10)
        target.settimeout(0.2)
        with pytest.raises(TimeoutError):
            target.recvfrom(65535)  # nobody called the transfer target
    finally:
        target.close()
    packets = sip_packets(capture.stop())

    (refer,) = requests(packets, "REFER", to_port=e2e.ports.sip)
    answer = final_answer(packets, refer)
    assert answer.status in (403, 501), f"REFER answered {answer.first_line}"
    assert requests(packets, "REFER", to_port=caller.sip_port) == []
    # the call taker's phone ended the call after the refusal, recproxy did not
    (bye_in,) = requests(packets, "BYE", to_port=e2e.ports.sip)
    assert bye_in.source_port == taker.sip_port and bye_in.time >= answer.time, bye_in.first_line
    assert requests(packets, "BYE", to_port=taker.sip_port) == []
    (bye_out,) = requests(packets, "BYE", to_port=caller.sip_port)
    assert final_answer(packets, bye_out).status == 200
    # the recording, up to the call taker's BYE: complete, both voices on their channels
    row, wav = the_recording(e2e, proxy)
    assert row["state"] == "complete", row
    call = the_call(proxy)
    assert call["outcome"] == "completed", call
    assert abs(wav.seconds - (bye_in.time - bridged)) <= 0.5, (wav.seconds, bye_in.time - bridged)
    assert_voices(wav, 0.2, wav.seconds - 0.2)
