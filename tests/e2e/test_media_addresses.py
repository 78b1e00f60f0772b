"""Media addresses end to end: real ``recproxy serve`` (under uvloop), SIPp, and
hand-written INVITEs whose SDP names addresses a phone on the open network may send.

1. Defect 1 of issue 11: while a call is bridged and recording, INVITEs with
   ``c=IN IP6 ::1`` (linphone's kind of offer), ``c=IN IP4 pbx.example.net`` and
   ``c=IN IP4 999.1.1.1`` arrive.  The IPv6 one is served over IPv6, the others get 488
   with a Warning; the bridged call's recording is whole and ``complete``, and a later
   call is connected and recorded.
2. An IPv6 caller (SIPp with its media on ::1) through the relay to an IPv4 call taker:
   recorded, caller left and call taker right.
3. Mid-call, the call taker re-offers an address of the other family, then a host name
   (UPDATE): each gets 488, and the call and its recording go on as they were.
"""

from __future__ import annotations

import re
import socket
import time
import urllib.request
import uuid

import pytest

from . import audio
from .conftest import E2e
from .pcap import write_rtp_pcap
from .proxy_process import ProxyProcess, export_wav, list_recordings, query, wait_for
from .sip_client import SDP_OFFER, SipSocket, ack_and_bye
from .sipp import Sipp, play_pcap, render_scenario
from .test_recorded_call import LENGTH_TOLERANCE_S, bridged_seconds, call_rows, seconds_of
from .test_recording_control import answering, pause, play

pytestmark = pytest.mark.sipp

RATE = audio.RATE


def offer(connection: str, port: int) -> str:
    """The e2e caller's SDP offer with another ``c=`` line."""
    return SDP_OFFER.format(port=port).replace("c=IN IP4 127.0.0.1", f"c={connection}")


def metric(proxy: ProxyProcess, name: str) -> float:
    url = f"http://127.0.0.1:{proxy.ports.http}/metrics"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=2) as answer:
        text = answer.read().decode()
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert match is not None, f"{name} not in /metrics"
    return float(match.group(1))


def assert_recorded(e2e: E2e, proxy: ProxyProcess, index: int, left: bytes, *right: bytes) -> None:
    """Recording ``index`` (in start order) is complete, as long as its call was bridged,
    with all of ``left`` (µ-law) on the caller's channel and all of each ``right`` (the
    call taker's talk spurts, each placed on its own) on the call taker's."""
    rows = list_recordings(e2e.config_path)
    row = sorted(rows, key=lambda r: str(r["started_at"]))[index]
    assert row["state"] == "complete", rows
    (call,) = [c for c in call_rows(proxy.catalog_path) if c["id"] == row["call_id"]]
    wav = audio.read_wav(
        export_wav(e2e.config_path, str(row["id"]), e2e.folder / f"call{index}.wav")
    )
    assert (wav.channels, wav.rate) == (2, RATE)
    assert abs(wav.seconds - bridged_seconds(call)) <= LENGTH_TOLERANCE_S, (wav.seconds, call)
    for channel, reference in [(0, left), *((1, spurt) for spurt in right)]:
        placed = audio.place(wav.channel(channel), audio.ulaw_decode(reference))
        assert placed.voiced and len(placed.inside) == placed.voiced, (index, channel, placed)
    assert audio.absent(wav.channel(0), audio.ulaw_decode(right[0]))
    assert audio.absent(wav.channel(1), audio.ulaw_decode(left))


def test_bad_media_addresses_never_stop_recording(e2e: E2e, dialogue: bytes) -> None:
    proxy = e2e.proxy()
    caller_audio, taker_audio = seconds_of(dialogue, 0, 3), seconds_of(dialogue, 12, 15)
    taker = e2e.call_taker(
        audio_pcap=e2e.rtp_pcap("taker.pcap", taker_audio), ring_ms=300, calls=2, timeout_s=60
    )
    caller = e2e.caller(
        audio_pcap=e2e.rtp_pcap("caller.pcap", caller_audio), pre_audio_ms=2800, hold_ms=3500
    )
    wait_for(
        "the first call to be bridged",
        lambda: any(row["bridged_at"] for row in query(proxy.catalog_path, "SELECT * FROM calls")),
        timeout=15,
    )
    time.sleep(1.0)  # a second of the bridged call recorded

    sip = SipSocket(("127.0.0.1", e2e.ports.sip))
    v6_media = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    v6_media.bind(("::1", 0))
    try:
        # an IPv6 offer is served over IPv6: answered with IN IP6, the notice sent to ::1
        call_id = f"v6-{uuid.uuid4().hex}"
        sip.request("INVITE", call_id=call_id, body=offer("IN IP6 ::1", v6_media.getsockname()[1]))
        answer = sip.final_response(call_id, timeout=5)
        assert answer.status == 200, answer.text
        assert "c=IN IP6 ::1" in answer.text, answer.text
        v6_media.settimeout(2)
        notice, source = v6_media.recvfrom(2048)
        assert source[0] == "::1" and len(notice) == 172
        ack_and_bye(sip, answer)
        # addresses we cannot send to: 488 and a Warning, nothing else happens
        for connection, why in [
            ("IN IP4 pbx.example.net", "host names"),
            ("IN IP4 999.1.1.1", "not a valid IP"),
        ]:
            call_id = f"bad-{uuid.uuid4().hex}"
            sip.request("INVITE", call_id=call_id, body=offer(connection, 40000))
            refused = sip.final_response(call_id, timeout=5)
            assert refused.status == 488, refused.text
            assert why in (refused.header("Warning") or ""), refused.text
            ack_and_bye(sip, refused)
    finally:
        v6_media.close()
        sip.close()

    caller.expect_success(timeout=30)
    assert proxy.health()["ok"] is True
    assert_recorded(e2e, proxy, 0, caller_audio, taker_audio)

    # a later call is connected and recorded too
    later = e2e.caller(audio_pcap="caller.pcap", label="caller2", pre_audio_ms=2800, hold_ms=3500)
    later.expect_success(timeout=30)
    taker.expect_success(timeout=10)
    proxy.wait_idle()
    assert_recorded(e2e, proxy, 1, caller_audio, taker_audio)
    assert metric(proxy, "recproxy_rtp_send_errors_total") == 0
    outcomes = sorted(str(call["outcome"]) for call in call_rows(proxy.catalog_path))
    # the IPv6 caller left during the notice; the refused INVITEs never became calls
    assert outcomes == ["caller_abandoned_during_notice", "completed", "completed"], outcomes


def test_an_ipv6_caller_is_relayed_and_recorded(e2e: E2e, dialogue: bytes) -> None:
    proxy = e2e.proxy()
    caller_audio, taker_audio = seconds_of(dialogue, 0, 3), seconds_of(dialogue, 12, 15)
    taker = e2e.call_taker(audio_pcap=e2e.rtp_pcap("taker.pcap", taker_audio), ring_ms=300)
    e2e.rtp_pcap("caller.pcap", caller_audio)
    scenario = render_scenario(
        "uac_call",
        e2e.folder,
        rendered_name="caller6.uac_call.xml",
        audio=play_pcap("caller.pcap"),
        pre_audio_ms=2800,
        hold_ms=3500,
    )
    caller = Sipp(
        e2e.folder,
        "caller6",
        scenario,
        local_port=e2e.ports.caller_sip,
        media_port=e2e.ports.caller_rtp,
        remote=("127.0.0.1", e2e.ports.sip),
        extra=("-mi", "::1"),  # SIP over IPv4, media over IPv6, as linphone does
    )
    e2e.sipps.append(caller)
    caller.expect_success(timeout=30)
    taker.expect_success(timeout=10)
    proxy.wait_idle()
    assert "c=IN IP6 ::1" in caller.first(sent=True, method="INVITE").text
    assert "c=IN IP6 ::1" in caller.first(sent=False, status=200).text
    assert "c=IN IP4 127.0.0.1" in taker.first(sent=False, method="INVITE").text
    assert_recorded(e2e, proxy, 0, caller_audio, taker_audio)
    assert metric(proxy, "recproxy_rtp_send_errors_total") == 0


def update_refused(connection: str, cseq: int) -> str:
    """A call taker's step: an UPDATE offering ``connection`` in the call's dialog (needs
    ``keep_dialog``), answered 488."""
    return f"""\
  <send retrans="500">
    <![CDATA[

      UPDATE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: [$to_hdr];tag=[pid]SIPpTag01[call_number]
      To: [$from_hdr]
      Call-ID: [call_id]
      CSeq: {cseq} UPDATE
      Contact: <sip:calltaker@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=- 1 2 IN IP4 [local_ip]
      s=-
      c={connection}
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000

    ]]>
  </send>
  <recv response="488"/>
"""


def test_a_refused_re_offer_mid_call_keeps_the_call_and_its_recording(
    e2e: E2e, dialogue: bytes
) -> None:
    proxy = e2e.proxy()
    caller_audio = seconds_of(dialogue, 0, 3)
    before, after = seconds_of(dialogue, 12, 13.5), seconds_of(dialogue, 15, 17)
    e2e.rtp_pcap("before.pcap", before)
    # the same stream continued after a pause in sending (no packet lost): the sequence
    # numbers go on from "before", the timestamps jump by the paused time
    packets = len(before) // 160
    write_rtp_pcap(
        e2e.folder / "after.pcap",
        after,
        first_sequence=packets,
        first_timestamp=(packets + 10) * 160,
    )
    steps = (
        play("before.pcap")
        + pause(1700)
        + update_refused("IN IP6 ::1", 1)  # a leg's sockets are of one family
        + update_refused("IN IP4 pbx.example.net", 2)  # no DNS on the call path
        + play("after.pcap")
        + pause(2200)
    )
    taker = answering(
        e2e,
        "taker",
        steps,
        sip_port=e2e.ports.taker_sip,
        media_port=e2e.ports.taker_rtp,
        keep_dialog=True,
    )
    # the caller talks after the notice and ringing, and hangs up after the call taker's steps
    caller = e2e.caller(
        audio_pcap=e2e.rtp_pcap("caller.pcap", caller_audio), pre_audio_ms=3000, hold_ms=3600
    )
    caller.expect_success(timeout=30)
    taker.expect_success(timeout=10)
    proxy.wait_idle()
    warnings = [m.header("Warning") for m in taker.messages() if m.status == 488]
    assert len(warnings) == 2 and all(w and w.startswith("301 ") for w in warnings), warnings
    assert_recorded(e2e, proxy, 0, caller_audio, before, after)
