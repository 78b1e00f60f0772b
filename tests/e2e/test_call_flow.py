"""The call flow against a real ``recproxy serve``, with hand-written SIP over loopback
(and SIPp where a whole call is recorded): what issue 11 asked of the B2BUA.

1. REFER from the caller is refused with a reason (403: only a call taker transfers),
   and outside a dialog it is 481 (no call to transfer); SUBSCRIBE and NOTIFY get the
   same answers in and out of a dialog; one ``Allow`` list everywhere, with REFER and
   without SUBSCRIBE or NOTIFY; an unsupported in-dialog method is not answered 200.
2. An INVITE whose ``Accept`` excludes application/sdp gets 406.
3. A late offer (INVITE without SDP): our offer in the 200, the answer in the ACK, the
   notice, the call taker, a complete recording; a late offer whose ACK brings no
   answer ends with BYE.
4. Log lines and the catalog name a call by the same id.
5. A call taker's hold and resume with a linphone-like re-INVITE (Opus first, then
   PCMU): the caller is offered only what can be recorded, the recording stays
   decodable with both parties' audio after the resume, and it ends ``complete`` with
   the hold interval as recording events.
6. The caller holds during the notice: the notice stops, and plays whole from the start
   after the resume; the consent receipt says so.
7. The caller holds a bridged call with ``c=0.0.0.0``: nothing is relayed to it until it
   resumes, and the call taker is told with an offer of ours.
8. A call taker's switch to PCMA reaches the caller and the recording.
9. An offer with nothing recordable gets 488 and the call keeps its media.
"""

from __future__ import annotations

import re
import socket
import time
import uuid

import numpy as np
import numpy.typing as npt
import pytest

from . import audio, pcap, sipp
from .conftest import E2e
from .proxy_process import ProxyProcess, export_wav, list_recordings, query
from .sip_client import SDP_OFFER, Response, SipSocket, branch

pytestmark = pytest.mark.sipp

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE, REFER, PRACK"


# ---------------------------------------------------------------------------------------
# A caller written by hand: requests with any headers, and the proxy's requests answered


def send_request(
    sock: SipSocket,
    method: str,
    *,
    call_id: str,
    cseq: int,
    uri: str | None = None,
    from_: str | None = None,
    to: str | None = None,
    headers: tuple[str, ...] = (),
    body: str = "",
) -> None:
    uri = uri or f"sip:service@{sock.proxy[0]}:{sock.proxy[1]}"
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{sock.port};branch={branch()};rport",
        "Max-Forwards: 70",
        f"From: {from_ or f'<sip:e2e@127.0.0.1:{sock.port}>;tag=e2e{call_id[:8]}'}",
        f"To: {to or f'<sip:service@{sock.proxy[0]}:{sock.proxy[1]}>'}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:e2e@127.0.0.1:{sock.port}>",
        *headers,
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body.encode())}")
    sock.send(("\r\n".join(lines) + "\r\n\r\n" + body).encode())


def final_for(sock: SipSocket, call_id: str, cseq: int, timeout: float = 3.0) -> Response:
    """The final response to the request with CSeq ``cseq`` (retransmissions skipped)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        response = sock.receive(left)
        if (
            response is not None
            and response.call_id == call_id
            and response.status >= 200
            and response.cseq is not None
            and response.cseq[0] == cseq
        ):
            return response
    raise AssertionError(f"no final response to CSeq {cseq} of {call_id}")


def answer_request(sock: SipSocket, method: str, timeout: float) -> str:
    """Wait for a request ``method`` from the proxy and answer it 200; its text."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.sock.settimeout(left)
        try:
            data = sock.sock.recv(65535)
        except TimeoutError:
            break
        text = data.decode("utf-8", "replace")
        if not text.startswith(f"{method} "):
            continue
        head = text.split("\r\n\r\n", 1)[0].split("\r\n")[1:]
        kept = [h for h in head if h.split(":", 1)[0].strip().lower() in _ECHOED]
        reply = "\r\n".join(["SIP/2.0 200 OK", *kept, "Content-Length: 0"]) + "\r\n\r\n"
        sock.send(reply.encode())
        return text
    raise AssertionError(f"no {method} from the proxy within {timeout} s")


_ECHOED = {"via", "v", "from", "f", "to", "t", "call-id", "i", "cseq"}


class CallerDialog:
    """The caller's side of an answered call, to send in-dialog requests."""

    def __init__(self, sock: SipSocket, answer: Response, cseq: int) -> None:
        contact = re.search(r"<([^>]+)>", answer.header("Contact", "m") or "")
        assert contact is not None, answer.text
        assert answer.call_id is not None
        self.sock = sock
        self.call_id = answer.call_id
        self.uri = contact.group(1)
        self.from_ = answer.header("From", "f")
        self.to = answer.header("To", "t")
        self.cseq = cseq

    def ack(self, body: str = "") -> None:
        send_request(self.sock, "ACK", call_id=self.call_id, cseq=self.cseq, uri=self.uri,
                     from_=self.from_, to=self.to, body=body)  # fmt: skip

    def request(self, method: str, *headers: str, body: str = "") -> Response:
        self.cseq += 1
        send_request(self.sock, method, call_id=self.call_id, cseq=self.cseq, uri=self.uri,
                     from_=self.from_, to=self.to, headers=headers, body=body)  # fmt: skip
        return final_for(self.sock, self.call_id, self.cseq)


def invite(sock: SipSocket, *headers: str, body: str = "") -> Response:
    call_id = f"flow-{uuid.uuid4().hex}"
    send_request(sock, "INVITE", call_id=call_id, cseq=1, headers=headers, body=body)
    return final_for(sock, call_id, 1, timeout=5)


def sdp_formats(text: str) -> list[str]:
    """The encoding names of a message's SDP audio stream."""
    body = text.replace("\r\n", "\n").split("\n\n", 1)[1]
    return [m.upper() for m in re.findall(r"^a=rtpmap:\d+ ([^/\s]+)/", body, re.M)]


def sdp_direction(text: str) -> str:
    found = re.findall(r"^a=(sendrecv|sendonly|recvonly|inactive)\s*$", text, re.M)
    return found[-1] if found else "sendrecv"


def calls_in(proxy: ProxyProcess) -> list[dict[str, object]]:
    return [dict(r) for r in query(proxy.catalog_path, "SELECT * FROM calls ORDER BY started_at")]


# ---------------------------------------------------------------------------------------
# 1. REFER, SUBSCRIBE, NOTIFY and Allow


def _refusals(send: object, refer_status: int) -> None:
    """What each refused method gets, asserted through ``send(method, *headers)``; a
    REFER gets ``refer_status`` (a caller's 403 says why)."""
    assert callable(send)
    refer = send("REFER", "Refer-To: <sip:2002@127.0.0.1>")
    assert refer.status == refer_status, refer.text
    if refer_status == 403:
        assert "transfer" in refer.text.split("\r\n", 1)[0].lower()
    subscribe = send("SUBSCRIBE", "Event: refer", "Expires: 60")
    assert subscribe.status == 489, subscribe.text
    notify = send("NOTIFY", "Event: refer", "Subscription-State: active")
    assert notify.status == 481, notify.text
    message = send("MESSAGE")
    assert message.status == 405 and message.header("Allow") == ALLOW, message.text
    options = send("OPTIONS")
    assert options.status == 200 and options.header("Allow") == ALLOW, options.text


def hold_events(proxy: ProxyProcess, row: dict[str, object]) -> list[tuple[str, str]]:
    """A recording's hold and unhold events, in order: (action, which party)."""
    events = query(
        proxy.catalog_path,
        "SELECT action, actor FROM recording_events WHERE recording_id = ? ORDER BY at, id",
        row["id"],
    )
    return [(e["action"], e["actor"]) for e in events if e["action"] in ("hold", "unhold")]


def test_refer_in_a_dialog_is_refused_and_the_call_goes_on(e2e: E2e) -> None:
    """Defect 7: a REFER in the call was answered 200 and dropped.  The caller's REFER
    is now refused (403): the caller cannot redirect a recorded call."""
    proxy = e2e.proxy()
    sock = SipSocket(("127.0.0.1", e2e.ports.sip))
    try:
        answered = invite(sock, body=SDP_OFFER.format(port=e2e.ports.caller_rtp))
        assert answered.status == 200, answered.text
        assert answered.header("Allow") == ALLOW
        dialog = CallerDialog(sock, answered, cseq=1)
        dialog.ack()
        _refusals(dialog.request, 403)
        bye = dialog.request("BYE")
        assert bye.status == 200  # the dialog was still up
    finally:
        sock.close()
    proxy.wait_idle()
    (call,) = calls_in(proxy)
    assert call["outcome"] == "caller_abandoned_during_notice"  # the REFER changed nothing


def test_refer_subscribe_and_notify_outside_a_dialog_get_the_same_answers(e2e: E2e) -> None:
    e2e.proxy()
    sock = SipSocket(("127.0.0.1", e2e.ports.sip))
    try:

        def outside(method: str, *headers: str) -> Response:
            call_id = f"out-{uuid.uuid4().hex}"
            send_request(sock, method, call_id=call_id, cseq=1, headers=headers)
            return final_for(sock, call_id, 1)

        _refusals(outside, 481)
    finally:
        sock.close()


# ---------------------------------------------------------------------------------------
# 4. One call id


def test_log_lines_name_a_call_by_its_catalog_id(e2e: E2e) -> None:
    proxy = e2e.proxy()
    sock = SipSocket(("127.0.0.1", e2e.ports.sip))
    try:
        dialog = CallerDialog(sock, invite(sock, body=SDP_OFFER.format(port=5)), cseq=1)
        dialog.ack()
        assert dialog.request("BYE").status == 200
    finally:
        sock.close()
    proxy.wait_idle()
    (call,) = calls_in(proxy)
    ended = re.findall(r"call (\S+) ended by caller", proxy.log_text())
    assert ended == [call["id"]], (ended, call["id"])


# ---------------------------------------------------------------------------------------
# 2. Accept


def test_an_invite_that_does_not_accept_sdp_gets_406(e2e: E2e) -> None:
    proxy = e2e.proxy()
    sock = SipSocket(("127.0.0.1", e2e.ports.sip))
    try:
        offer = SDP_OFFER.format(port=e2e.ports.caller_rtp)
        refused = invite(sock, "Accept: text/plain, application/json", body=offer)
        assert refused.status == 406, refused.text
        assert refused.header("Accept") == "application/sdp"
        quality_zero = invite(sock, "Accept: application/sdp;q=0", body=offer)
        assert quality_zero.status == 406, quality_zero.text
        wildcard = invite(sock, "Accept: text/plain, */*;q=0.1", body=offer)
        assert wildcard.status == 200, wildcard.text
        CallerDialog(sock, wildcard, cseq=1).ack()
        bye = CallerDialog(sock, wildcard, cseq=1).request("BYE")
        assert bye.status == 200
    finally:
        sock.close()
    health = proxy.wait_idle()
    assert health["rtp"]["in_use"] == 0


# ---------------------------------------------------------------------------------------
# 3. Late offer


def test_late_offer_gets_our_offer_in_the_200_and_the_answer_in_the_ack(e2e: E2e) -> None:
    proxy = e2e.proxy()
    taker = e2e.call_taker(ring_ms=200)
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", e2e.ports.caller_rtp))
    sock = SipSocket(("127.0.0.1", e2e.ports.sip), port=e2e.ports.caller_sip)
    try:
        answered = invite(sock)
        assert answered.status == 200, answered.text
        assert sdp_formats(answered.text) == ["PCMU", "PCMA", "TELEPHONE-EVENT"]
        dialog = CallerDialog(sock, answered, cseq=1)
        our_answer = SDP_OFFER.format(port=e2e.ports.caller_rtp)  # PCMU + telephone-event
        dialog.ack(body=our_answer)
        # the notice reaches the answered address, as PCMU
        rtp.settimeout(2)
        packet = rtp.recv(2048)
        assert packet[1] & 0x7F == 0
        time.sleep(e2e.notice.seconds + 1.5)  # the notice, the ringing, a bridged second
        bye = dialog.request("BYE")
        assert bye.status == 200
        taker.expect_success(timeout=10)
    finally:
        sock.close()
        rtp.close()
    proxy.wait_idle()
    (call,) = calls_in(proxy)
    assert call["outcome"] == "completed" and call["bridged_at"] is not None, call
    assert [row["state"] for row in list_recordings(e2e.config_path)] == ["complete"]


def test_late_offer_without_an_answer_in_the_ack_ends_with_bye(e2e: E2e) -> None:
    proxy = e2e.proxy()
    sock = SipSocket(("127.0.0.1", e2e.ports.sip))
    try:
        answered = invite(sock)
        assert answered.status == 200, answered.text
        CallerDialog(sock, answered, cseq=1).ack()  # no SDP
        answer_request(sock, "BYE", timeout=5)
    finally:
        sock.close()
    health = proxy.wait_idle()
    assert (health["calls"], health["rtp"]["in_use"]) == (0, 0)
    (call,) = calls_in(proxy)
    assert call["outcome"] == "failed" and call["bridged_at"] is None, call
    assert "Traceback" not in proxy.log_text()


# ---------------------------------------------------------------------------------------
# 5. The call taker holds and resumes like linphone: Opus first, then PCMU

REOFFER = """\
v=0
o=linphone 1 {version} IN IP4 [media_ip]
s=Talk
c=IN IP4 [media_ip]
t=0 0
{media}
a=rtpmap:101 telephone-event/8000
a={direction}
"""
OPUS_FIRST = """\
m=audio [media_port] RTP/AVP 96 0 101
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:0 PCMU/8000"""
PCMA_ONLY = """\
m=audio [media_port] RTP/AVP 8 101
a=rtpmap:8 PCMA/8000"""


def reinvite(cseq: int, direction: str, version: int, media: str = OPUS_FIRST) -> str:
    """A re-INVITE from the call taker (SIPp, ``KEEP_DIALOG``), its 200, the ACK."""
    body = REOFFER.format(version=version, direction=direction, media=media)
    body = "\n".join("      " + line for line in body.splitlines())
    return f"""\
  <send retrans="500">
    <![CDATA[

      INVITE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: [$to_hdr];tag=[pid]SIPpTag01[call_number]
      To: [$from_hdr]
      Call-ID: [call_id]
      CSeq: {cseq} INVITE
      Contact: <sip:calltaker@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

{body}

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="200" rrs="true"/>
  <send>
    <![CDATA[

      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: [$to_hdr];tag=[pid]SIPpTag01[call_number]
      To: [$from_hdr]
      Call-ID: [call_id]
      CSeq: {cseq} ACK
      Contact: <sip:calltaker@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"""


KEEP_DIALOG = """\
    <action>
      <ereg regexp="[^ ].*" search_in="hdr" header="From:" assign_to="from_hdr"/>
      <ereg regexp="[^ ].*" search_in="hdr" header="To:" assign_to="to_hdr"/>
    </action>"""


def test_call_taker_hold_and_resume_with_opus_first_stays_recorded(
    e2e: E2e, dialogue: bytes
) -> None:
    proxy = e2e.proxy()
    caller_audio = dialogue[: 3 * audio.RATE]
    taker_audio = dialogue[12 * audio.RATE : 15 * audio.RATE]
    steps = (
        '  <pause milliseconds="800"/>\n'
        + reinvite(1, "sendonly", 2)
        + '  <pause milliseconds="1500"/>\n'
        + reinvite(2, "sendrecv", 3)
        + sipp.play_pcap(e2e.rtp_pcap("taker.pcap", taker_audio))
        + '  <pause milliseconds="3500"/>\n'
    )
    taker = e2e.run_sipp(
        "taker", "uas_actions",
        {"ring_ms": 300, "user": "calltaker", "actions": steps, "invite_actions": KEEP_DIALOG},
        local_port=e2e.ports.taker_sip, media_port=e2e.ports.taker_rtp,
    )  # fmt: skip
    caller = e2e.run_sipp(
        "caller", "uac_held",
        {"audio": sipp.play_pcap(e2e.rtp_pcap("caller.pcap", caller_audio)), "hold_ms": 3500,
         "pt": 0, "codec": "PCMU"},
        local_port=e2e.ports.caller_sip, media_port=e2e.ports.caller_rtp,
        remote=("127.0.0.1", e2e.ports.sip),
    )  # fmt: skip
    caller.expect_success(timeout=30)
    taker.expect_success(timeout=10)
    proxy.wait_idle()

    # the caller was offered only what can be recorded, and the hold, then the resume
    offers = [m for m in caller.messages() if not m.sent and m.method == "INVITE"]
    assert [sdp_direction(m.text) for m in offers] == ["sendonly", "sendrecv"], offers
    for offer in offers:
        assert sdp_formats(offer.text) == ["PCMU", "TELEPHONE-EVENT"], offer.text
    # the call taker's re-INVITEs were answered by us: PCMU, recvonly then sendrecv
    answers = [
        m for m in taker.messages()
        if not m.sent and m.status == 200 and m.cseq_method == "INVITE"
    ][-2:]  # fmt: skip
    assert [sdp_direction(m.text) for m in answers] == ["recvonly", "sendrecv"]
    assert all(sdp_formats(m.text) == ["PCMU", "TELEPHONE-EVENT"] for m in answers)

    (row,) = list_recordings(e2e.config_path)
    assert row["state"] == "complete", row
    holds = hold_events(proxy, row)
    assert holds == [("hold", "call taker"), ("unhold", "call taker")], holds
    wav = audio.read_wav(export_wav(e2e.config_path, str(row["id"]), e2e.folder / "call.wav"))
    left = audio.place(wav.channel(0), audio.ulaw_decode(caller_audio))
    right = audio.place(wav.channel(1), audio.ulaw_decode(taker_audio))
    assert left.voiced and len(left.inside) == left.voiced, left
    assert right.voiced and len(right.inside) == right.voiced, right


# ---------------------------------------------------------------------------------------
# 6. The caller holds during the notice


def test_hold_during_the_notice_restarts_it_after_the_resume(e2e: E2e) -> None:
    proxy = e2e.proxy()
    taker = e2e.call_taker(ring_ms=200)
    sock = SipSocket(("127.0.0.1", e2e.ports.sip), port=e2e.ports.caller_sip)
    offer = SDP_OFFER.format(port=e2e.ports.caller_rtp)
    try:
        answered = invite(sock, body=offer)
        assert answered.status == 200, answered.text
        dialog = CallerDialog(sock, answered, cseq=1)
        dialog.ack()
        time.sleep(0.6)
        held = dialog.request("INVITE", body=offer.replace("a=ptime:20", "a=sendonly"))
        assert held.status == 200 and sdp_direction(held.text) == "recvonly", held.text
        dialog.ack()
        time.sleep(1.5)  # on hold: the notice would have ended by now
        resumed = dialog.request("INVITE", body=offer)
        assert resumed.status == 200 and sdp_direction(resumed.text) == "sendrecv"
        dialog.ack()
        resumed_at = time.time()
        time.sleep(e2e.notice.seconds + 1.5)  # the whole notice again, ringing, bridged
        assert dialog.request("BYE").status == 200
        taker.expect_success(timeout=10)
    finally:
        sock.close()
    # the call taker is invited only once the whole notice has played after the resume
    invited_at = taker.first(sent=False, method="INVITE").time
    assert invited_at - resumed_at >= e2e.notice.seconds - 0.1, (resumed_at, invited_at)
    proxy.wait_idle()
    (call,) = calls_in(proxy)
    (receipt,) = query(proxy.catalog_path, "SELECT * FROM consent_receipts WHERE call_id = ?",
                       call["id"])  # fmt: skip
    assert receipt["completed"] == 1 and receipt["notice_restarts"] == 1, dict(receipt)
    assert abs(receipt["played_ms"] - receipt["notice_ms"]) <= 20, dict(receipt)
    assert 1300 <= receipt["held_ms"] <= 2500, dict(receipt)


# ---------------------------------------------------------------------------------------
# 7. The caller holds a bridged call the RFC 2543 way (c=0.0.0.0), then resumes


def answer_reinvite(direction: str, version: int) -> str:
    """The call taker (SIPp) answers the proxy's re-INVITE with PCMU, ``direction``."""
    return f"""\
  <recv request="INVITE" timeout="20000"/>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:calltaker@[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=- 53655766 {version} IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-16
      a={direction}

    ]]>
  </send>
  <recv request="ACK"/>
"""


def packets_within(rtp: socket.socket, seconds: float) -> int:
    count = 0
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        rtp.settimeout(left)
        try:
            rtp.recv(2048)
        except TimeoutError:
            break
        count += 1
    return count


def test_caller_holds_the_bridged_call_with_a_hold_address_then_resumes(
    e2e: E2e, dialogue: bytes
) -> None:
    proxy = e2e.proxy()
    taker_audio = dialogue[12 * audio.RATE : 20 * audio.RATE]
    steps = (
        sipp.play_pcap(e2e.rtp_pcap("taker.pcap", taker_audio))
        + answer_reinvite("recvonly", 2353687639)
        + answer_reinvite("sendrecv", 2353687640)
    )
    taker = e2e.run_sipp(
        "taker", "uas_actions",
        {"ring_ms": 300, "user": "calltaker", "actions": steps, "invite_actions": ""},
        local_port=e2e.ports.taker_sip, media_port=e2e.ports.taker_rtp,
    )  # fmt: skip
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", e2e.ports.caller_rtp))
    sock = SipSocket(("127.0.0.1", e2e.ports.sip), port=e2e.ports.caller_sip)
    offer = SDP_OFFER.format(port=e2e.ports.caller_rtp)
    try:
        dialog = CallerDialog(sock, invite(sock, body=offer), cseq=1)
        dialog.ack()
        time.sleep(e2e.notice.seconds + 1.3)  # the notice, the ringing, bridged a while
        assert packets_within(rtp, 0.5) > 0, "no audio from the call taker once bridged"
        on_hold = offer.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0")
        held = dialog.request("INVITE", body=on_hold)
        assert held.status == 200 and sdp_direction(held.text) == "recvonly", held.text
        dialog.ack()
        time.sleep(0.5)  # our hold reaches the call taker
        packets_within(rtp, 0.1)  # what was on its way
        assert packets_within(rtp, 1.5) == 0, "audio relayed towards a caller who holds"
        resumed = dialog.request("INVITE", body=offer)
        assert resumed.status == 200 and sdp_direction(resumed.text) == "sendrecv"
        dialog.ack()
        time.sleep(0.5)
        assert packets_within(rtp, 1.0) > 20, "no audio from the call taker after the resume"
        assert dialog.request("BYE").status == 200
        taker.expect_success(timeout=15)
    finally:
        sock.close()
        rtp.close()
    proxy.wait_idle()
    offers = [m for m in taker.messages() if not m.sent and m.method == "INVITE"][1:]
    assert [sdp_direction(m.text) for m in offers] == ["sendonly", "sendrecv"], offers
    assert all(sdp_formats(m.text) == ["PCMU", "TELEPHONE-EVENT"] for m in offers)
    (row,) = list_recordings(e2e.config_path)
    assert row["state"] == "complete", row
    holds = hold_events(proxy, row)
    assert holds == [("hold", "caller"), ("unhold", "caller")], holds


# ---------------------------------------------------------------------------------------
# 8. A switch from PCMU to PCMA (with a hold) reaches the other party and the recorder


def _alaw_table() -> npt.NDArray[np.int64]:
    """G.711 A-law code → linear value, from ITU-T G.711 (not from the proxy)."""
    codes = np.arange(256, dtype=np.int64) ^ 0x55
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    )
    return np.where(codes & 0x80, magnitude, -magnitude)


def alaw_encode(samples: audio.Samples) -> bytes:
    """Each sample as the A-law code whose value is nearest."""
    table = _alaw_table()
    order = np.argsort(table)
    values = table[order]
    right = np.clip(np.searchsorted(values, samples), 1, len(values) - 1)
    nearer = np.where(samples - values[right - 1] <= values[right] - samples, right - 1, right)
    return order[nearer].astype(np.uint8).tobytes()


def test_a_switch_to_pcma_reaches_the_caller_and_the_recording(e2e: E2e, dialogue: bytes) -> None:
    proxy = e2e.proxy()
    caller_pcm = audio.ulaw_decode(dialogue[: 3 * audio.RATE])
    taker_pcm = audio.ulaw_decode(dialogue[12 * audio.RATE : 15 * audio.RATE])
    caller_pcap = e2e.folder / "caller.pcap"
    taker_pcap = e2e.folder / "taker.pcap"
    pcap.write_rtp_pcap(caller_pcap, alaw_encode(caller_pcm), payload_type=8)
    pcap.write_rtp_pcap(taker_pcap, alaw_encode(taker_pcm), payload_type=8)
    steps = (
        '  <pause milliseconds="800"/>\n'
        + reinvite(1, "sendonly", 2, PCMA_ONLY)
        + '  <pause milliseconds="1000"/>\n'
        + reinvite(2, "sendrecv", 3, PCMA_ONLY)
        + sipp.play_pcap(taker_pcap.name)
        + '  <pause milliseconds="3500"/>\n'
    )
    taker = e2e.run_sipp(
        "taker", "uas_actions",
        {"ring_ms": 300, "user": "calltaker", "actions": steps, "invite_actions": KEEP_DIALOG},
        local_port=e2e.ports.taker_sip, media_port=e2e.ports.taker_rtp,
    )  # fmt: skip
    caller = e2e.run_sipp(
        "caller", "uac_held",
        # the caller hangs up well after the call taker's two re-INVITEs, however slow
        {"audio": sipp.play_pcap(caller_pcap.name), "hold_ms": 6000, "pt": 8, "codec": "PCMA"},
        local_port=e2e.ports.caller_sip, media_port=e2e.ports.caller_rtp,
        remote=("127.0.0.1", e2e.ports.sip),
    )  # fmt: skip
    caller.expect_success(timeout=30)
    taker.expect_success(timeout=10)
    proxy.wait_idle()

    offers = [m for m in caller.messages() if not m.sent and m.method == "INVITE"]
    assert [sdp_formats(m.text) for m in offers] == [["PCMA", "TELEPHONE-EVENT"]] * 2, offers
    (row,) = list_recordings(e2e.config_path)
    assert row["state"] == "complete", row
    wav = audio.read_wav(export_wav(e2e.config_path, str(row["id"]), e2e.folder / "call.wav"))
    left = audio.place(wav.channel(0), caller_pcm)
    right = audio.place(wav.channel(1), taker_pcm)
    assert left.voiced and len(left.inside) == left.voiced, left
    assert right.voiced and len(right.inside) == right.voiced, right


# ---------------------------------------------------------------------------------------
# 9. An offer with nothing recordable gets 488, and the call keeps its media


def test_an_offer_with_nothing_recordable_gets_488_and_the_notice_goes_on(e2e: E2e) -> None:
    proxy = e2e.proxy()
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", e2e.ports.caller_rtp))
    sock = SipSocket(("127.0.0.1", e2e.ports.sip))
    offer = SDP_OFFER.format(port=e2e.ports.caller_rtp)
    try:
        dialog = CallerDialog(sock, invite(sock, body=offer), cseq=1)
        dialog.ack()
        opus_only = offer.replace("RTP/AVP 0 101", "RTP/AVP 96").replace(
            "a=rtpmap:0 PCMU/8000", "a=rtpmap:96 opus/48000/2"
        )
        refused = dialog.request("INVITE", body=opus_only)
        assert refused.status == 488, refused.text
        packets_within(rtp, 0.2)
        assert packets_within(rtp, 0.5) > 15, "the notice stopped after the refused offer"
        assert dialog.request("BYE").status == 200
    finally:
        sock.close()
        rtp.close()
    proxy.wait_idle()
