"""The SIP work of one recorded call, in-process: microseconds of CPU per call.

``setup_cost.py`` measures a whole call through a real ``recproxy serve`` and SIPp, where
SIP parsing and building are a fifth of the samples; that is too coarse to compare two
versions of a parser.  This script drives one sans-IO ``SipCore`` (the proxy's) through
the messages of the calls ``setup_cost.py`` makes, as SIPp's built-in ``uac`` and
``uas`` write them: the caller's INVITE (answered 100 by the core, then 200 with our SDP
answer), its ACK; our INVITE to the call taker with our SDP offer, its 180 and 200 (SDP
answer), our ACK; the caller's BYE (200) and our BYE to the call taker (its 200).  The
SDP offer/answer of both legs is included (parse, answer, offer, serialise).  The peer
messages are filled in from what the core sent, outside the timed sections.

    python benchmarks/sip_call.py --calls 2000

Prints µs per call (best of ``--repeat`` rounds), µs for the core to read one INVITE
and answer its 100 Trying, and (``--show``) the messages of one call.  Not part
of the tests: speed is measured here, never asserted.
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from proxy.sip import sdp  # noqa: E402
from proxy.sip.core import CoreSettings, SipCore  # noqa: E402
from proxy.sip.dialog import build_request  # noqa: E402
from proxy.sip.events import RequestReceived, ResponseReceived  # noqa: E402
from proxy.sip.uri import parse_uri  # noqa: E402

CALLER = ("127.0.0.1", 5391)
TAKER = ("127.0.0.1", 5392)

OFFER = (
    "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n"
    "c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)

# SIPp's built-in uac, as it writes its INVITE, ACK and BYE (call number n)
INVITE = (
    "INVITE sip:service@127.0.0.1:5390 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5391;branch=z9hG4bK-4242-{n}-0\r\n"
    "From: sipp <sip:sipp@127.0.0.1:5391>;tag=4242SIPpTag00{n}\r\n"
    "To: service <sip:service@127.0.0.1:5390>\r\n"
    "Call-ID: {n}-4242@127.0.0.1\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: sip:sipp@127.0.0.1:5391\r\n"
    "Max-Forwards: 70\r\n"
    "Subject: Performance Test\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: {length}\r\n\r\n{body}"
)
ACK = (
    "ACK sip:service@127.0.0.1:5390 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5391;branch=z9hG4bK-4242-{n}-5\r\n"
    "From: sipp <sip:sipp@127.0.0.1:5391>;tag=4242SIPpTag00{n}\r\n"
    "To: {to}\r\n"
    "Call-ID: {n}-4242@127.0.0.1\r\n"
    "CSeq: 1 ACK\r\n"
    "Contact: sip:sipp@127.0.0.1:5391\r\n"
    "Max-Forwards: 70\r\n"
    "Subject: Performance Test\r\n"
    "Content-Length: 0\r\n\r\n"
)
BYE = ACK.replace("ACK sip", "BYE sip").replace("-5\r\n", "-7\r\n").replace("1 ACK", "2 BYE")

# SIPp's built-in uas: [last_Via:] ... copied from our request
RESPONSE = (
    "SIP/2.0 {status}\r\n"
    "{via}\r\n"
    "{from_}\r\n"
    "{to};tag=4243SIPpTag01{n}\r\n"
    "{call_id}\r\n"
    "{cseq}\r\n"
    "Contact: <sip:127.0.0.1:5392;transport=UDP>\r\n"
    "{extra}"
    "Content-Length: {length}\r\n\r\n{body}"
)


def _line(data: str, name: str) -> str:
    match = re.search(rf"^{name}: [^\r\n]*", data, re.MULTILINE)
    assert match is not None, name
    return match.group(0)


def peer_response(request: bytes, status: str, n: int, body: str = "") -> bytes:
    text = request.decode()
    extra = "Content-Type: application/sdp\r\n" if body else ""
    return RESPONSE.format(
        status=status,
        via=_line(text, "Via"),
        from_=_line(text, "From"),
        to=_line(text, "To").split(";tag=")[0],
        call_id=_line(text, "Call-ID"),
        cseq=_line(text, "CSeq"),
        n=n,
        extra=extra,
        length=len(body),
        body=body,
    ).encode()


class Clock:
    """CPU time spent in the proxy's own calls (peer message building left out)."""

    def __init__(self) -> None:
        self.spent = 0.0
        self.started = 0.0

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *_: object) -> None:
        self.spent += time.perf_counter() - self.started


def one_call(core: SipCore, n: int, now: float, clock: Clock, trace: list[bytes] | None) -> None:
    def sent() -> list[bytes]:
        out = [o.data for o in core.datagrams_to_send()]
        if trace is not None:
            trace.extend(out)
        return out

    invite = INVITE.format(n=n, length=len(OFFER), body=OFFER).encode()
    with clock:
        core.receive_datagram(invite, CALLER, now)
        event = core.next_event()
        assert isinstance(event, RequestReceived)
        txn = event.transaction
        offer = sdp.SessionDescription.parse(event.request.body)
        answer = sdp.answer_offer(
            offer, local_address="127.0.0.1", ports=lambda i, m: 20000,
            session_id=n, session_version=1,
        )  # fmt: skip
        a_dialog = core.accept_dialog(txn)
        core.respond(txn, 200, now=now, dialog=a_dialog, body=answer.serialize(),
                     headers=[("Allow", core.allow)])  # fmt: skip
        ok_a = sent()[-1]
        our_offer = sdp.create_offer("127.0.0.1", 20002, session_id=n, session_version=1)
        request = build_request(
            "INVITE", parse_uri("sip:taker@127.0.0.1:5392"),
            from_=f"<sip:{n}@127.0.0.1:5390>", to="<sip:taker@127.0.0.1:5392>",
            contact=core.default_contact(), local_host="127.0.0.1", body=our_offer.serialize(),
            headers=[("Allow", core.allow)],
        )  # fmt: skip
        b_txn = core.send_request(request, now)
        b_invite = sent()[-1]
    ack_a = ACK.format(n=n, to=_line(ok_a.decode(), "To")[4:]).encode()
    ringing = peer_response(b_invite, "180 Ringing", n)
    ok_b = peer_response(b_invite, "200 OK", n, OFFER)
    with clock:
        core.receive_datagram(ack_a, CALLER, now)
        assert core.next_event() is not None
        core.receive_datagram(ringing, TAKER, now)
        assert core.next_event() is not None
        core.receive_datagram(ok_b, TAKER, now)
        event = core.next_event()
        assert isinstance(event, ResponseReceived) and event.transaction is b_txn
        b_dialog = event.dialog
        assert b_dialog is not None
        sdp.negotiated(our_offer, sdp.SessionDescription.parse(event.response.body),
                       local_role=sdp.Role.OFFERER)  # fmt: skip
        core.send_ack(b_dialog, b_dialog.create_ack(event.response.cseq.number), now)
        sent()
    bye_a = BYE.format(n=n, to=_line(ok_a.decode(), "To")[4:]).encode()
    with clock:
        core.receive_datagram(bye_a, CALLER, now)
        event = core.next_event()
        assert isinstance(event, RequestReceived)
        core.respond(event.transaction, 200, now=now, dialog=event.dialog)
        core.send_request(b_dialog.create_request("BYE"), now, dialog=b_dialog)
        b_bye = sent()[-1]
    ok_bye = peer_response(b_bye, "200 OK", n)
    with clock:
        core.receive_datagram(ok_bye, TAKER, now)
        assert core.next_event() is not None
        core.handle_timer(now + 64)  # transactions and dialogs forgotten
        sent()


def run_round(calls: int, trace: list[bytes] | None = None) -> float:
    core = SipCore(CoreSettings(host="127.0.0.1", port=5390))
    clock = Clock()
    for n in range(calls):
        one_call(core, n, float(n), clock, trace if n == 0 else None)
    assert core.transaction_count == 0 and not core.dialogs
    return clock.spent


def invite_round(invites: int) -> float:
    """Seconds for the core to read ``invites`` new INVITEs and answer each 100 Trying."""
    core = SipCore(CoreSettings(host="127.0.0.1", port=5390))
    datagrams = [INVITE.format(n=n, length=len(OFFER), body=OFFER).encode() for n in range(invites)]
    started = time.perf_counter()
    for n, data in enumerate(datagrams):
        core.receive_datagram(data, CALLER, float(n))
        core.datagrams_to_send()
        core.next_event()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--show", action="store_true", help="print one call's messages")
    args = parser.parse_args()
    trace: list[bytes] = []
    run_round(20, trace)  # warm up
    gc.collect()
    rounds = [run_round(args.calls) for _ in range(args.repeat)]
    per_call = [1e6 * r / args.calls for r in rounds]
    per_invite = [1e6 * invite_round(args.calls) / args.calls for _ in range(args.repeat)]
    if args.show:
        print("\n\n".join(m.decode() for m in trace))
    print(json.dumps({
        "calls": args.calls,
        "rounds": args.repeat,
        "us_per_call_best": round(min(per_call), 1),
        "us_per_call_median": round(sorted(per_call)[len(per_call) // 2], 1),
        "us_per_invite_read_and_100_best": round(min(per_invite), 1),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
