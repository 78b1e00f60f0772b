"""An INVITE flood from one source address, bounded in count and time, and what came back.

Runs as its own process (the flood must not share the measuring process's CPU or
sockets).  Each INVITE carries an SDP offer, like a real one (about 550 bytes); a 200
is answered with ACK and BYE at once, as a compliant but pointless caller would, so
an admitted flood call ends during its notice.  Replies are counted per INVITE for as
long as ``--linger`` after the last one, so retransmissions are seen.

    python benchmarks/flood_sender.py --target 127.0.0.1:5060 --source 127.0.0.2 \\
        --rate 2000 --seconds 10 --linger 3

Prints one JSON object: INVITEs and bytes sent, replies and bytes received for them by
status, the most replies any one INVITE drew, and the amplification (reply bytes over
request bytes).  Used by ``benchmarks/flood.py`` and the end-to-end flood tests.
"""

from __future__ import annotations

import argparse
import json
import re
import select
import socket
import time
from collections import Counter
from collections.abc import Callable

MAX_INVITES = 100_000  # whatever the flags say

_CALL_ID = re.compile(rb"^(?:Call-ID|i)[ \t]*:[ \t]*(\S+)", re.I | re.M)
_CSEQ = re.compile(rb"^CSeq[ \t]*:[ \t]*(\d+)[ \t]+(\w+)", re.I | re.M)
_TO = re.compile(rb"^(?:To|t)[ \t]*:[^\r\n]*", re.I | re.M)
_CONTACT = re.compile(rb"^(?:Contact|m)[ \t]*:[^<\r\n]*<([^>]+)>", re.I | re.M)


def invite(n: int, source: tuple[str, int], target: tuple[str, int], tag: str) -> bytes:
    host, port = source
    body = (
        "v=0\r\n"
        f"o=flood {n} 1 IN IP4 {host}\r\n"
        "s=-\r\n"
        f"c=IN IP4 {host}\r\n"
        "t=0 0\r\n"
        "m=audio 9 RTP/AVP 0 8 101\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=sendrecv\r\n"
    )
    head = (
        f"INVITE sip:01234567890@{target[0]}:{target[1]} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-{tag}-{n};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:flood@{host}>;tag={tag}-{n}\r\n"
        f"To: <sip:01234567890@{target[0]}>\r\n"
        f"Call-ID: {tag}-{n}@{host}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:flood@{host}:{port}>\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return (head + body).encode()


def _end_call(sock: socket.socket, reply: bytes, target: tuple[str, int], tag: str) -> None:
    """ACK the 200 and send BYE straight after: the flood call ends at once."""
    call_id = _CALL_ID.search(reply)
    to = _CONTACT.search(reply), _TO.search(reply)
    if call_id is None or to[1] is None:
        return
    uri = to[0].group(1).decode() if to[0] else f"sip:{target[0]}:{target[1]}"
    host, port = sock.getsockname()[:2]
    n = call_id.group(1).decode().split("@")[0].rsplit("-", 1)[-1]
    for cseq, method in ((1, "ACK"), (2, "BYE")):
        branch = f"z9hG4bK-{tag}-{n}-{method.lower()}"
        message = (
            f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:flood@{host}>;tag={tag}-{n}\r\n"
            f"{to[1].group(0).decode()}\r\n"
            f"Call-ID: {call_id.group(1).decode()}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.sendto(message.encode(), target)


def send_paced(
    sock: socket.socket,
    target: tuple[str, int],
    make: Callable[[int], bytes],
    *,
    count: int,
    rate: float,
    seconds: float,
    linger: float,
    receive: Callable[[], None],
) -> tuple[int, int, float]:
    """Send ``make(0)``, ``make(1)``... at ``rate`` a second, ``count`` at most, reading
    replies with ``receive`` between sends and for ``linger`` seconds after the last;
    stops ``seconds`` + 5 s after it started whatever is left.  Sent, their bytes, and
    how long sending took.  (Also ``register_sender.py``'s.)"""
    sent = sent_bytes = 0
    started = time.monotonic()
    deadline = started + seconds + 5  # a slow machine still stops
    while sent < count and time.monotonic() < deadline:
        due = min(count, int((time.monotonic() - started) * rate) + 1)
        while sent < due:
            data = make(sent)
            try:
                sock.sendto(data, target)
            except BlockingIOError:
                break
            sent += 1
            sent_bytes += len(data)
        receive()
        select.select([sock], [], [], 0.002)
    send_seconds = time.monotonic() - started
    linger_end = time.monotonic() + linger
    while time.monotonic() < linger_end:
        select.select([sock], [], [], 0.05)
        receive()
    return sent, sent_bytes, send_seconds


def traffic(
    what: str,
    what_bytes: str,
    sent: int,
    sent_bytes: int,
    send_seconds: float,
    statuses: Counter[int],
    reply_bytes: int,
) -> dict[str, object]:
    """What was sent (how many, named ``what``, and their bytes, ``what_bytes``; at what
    rate) and what came back, by status."""
    return {
        what: sent,
        what_bytes: sent_bytes,
        "send_seconds": round(send_seconds, 2),
        "rate": round(sent / send_seconds, 1) if send_seconds else None,
        "replies": sum(statuses.values()),
        "reply_bytes": reply_bytes,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "amplification": round(reply_bytes / sent_bytes, 4) if sent_bytes else None,
    }


def flood(
    target: tuple[str, int], source: str, rate: float, seconds: float, count: int, linger: float
) -> dict[str, object]:
    count = min(count, int(rate * seconds), MAX_INVITES)
    tag = f"f{int(time.time() * 1000) % 10**8}"
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((source, 0))
    local = sock.getsockname()
    sock.setblocking(False)
    replies: Counter[str] = Counter()  # per call: replies to its INVITE
    statuses: Counter[int] = Counter()
    answered: set[str] = set()  # calls answered 2xx (a retransmitted 200 counts once)
    # calls we ended before the last INVITE was sent: each frees a call slot the flood's
    # later INVITEs may take, so a call cap of N admits at most N + this many
    ended_mid_flood = 0
    last_made = False
    reply_bytes = 0

    def receive() -> None:
        nonlocal reply_bytes, ended_mid_flood
        while True:
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                return
            cseq = _CSEQ.search(data)
            call_id = _CALL_ID.search(data)
            if not data.startswith(b"SIP/2.0 ") or cseq is None or call_id is None:
                continue
            if cseq.group(2) != b"INVITE":
                continue  # the answers to our ACK/BYE are not the flood's replies
            status = int(data[8:11])
            statuses[status] += 1
            replies[call_id.group(1).decode()] += 1
            reply_bytes += len(data)
            if 200 <= status < 300:
                if call_id.group(1).decode() not in answered and not last_made:
                    ended_mid_flood += 1
                answered.add(call_id.group(1).decode())
                _end_call(sock, data, target, tag)

    def make(n: int) -> bytes:
        nonlocal last_made
        last_made = last_made or n == count - 1
        return invite(n, (local[0], local[1]), target, tag)

    sent, sent_bytes, send_seconds = send_paced(
        sock,
        target,
        make,
        count=count,
        rate=rate,
        seconds=seconds,
        linger=linger,
        receive=receive,
    )
    sock.close()
    return traffic(
        "invites", "invite_bytes", sent, sent_bytes, send_seconds, statuses, reply_bytes
    ) | {
        "invites_answered": len(replies),
        "calls_answered": len(answered),
        "calls_ended_mid_flood": ended_mid_flood,
        "max_replies_per_invite": max(replies.values(), default=0),
        "replies_per_invite": round(sum(statuses.values()) / sent, 4) if sent else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", required=True, help="HOST:PORT of the proxy (UDP)")
    parser.add_argument("--source", default="127.0.0.2", help="the address to send from")
    parser.add_argument("--rate", type=float, default=2000, help="INVITEs a second")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--count", type=int, default=MAX_INVITES, help="at most this many")
    parser.add_argument("--linger", type=float, default=3, help="listen this long after")
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    result = flood((host, int(port)), args.source, args.rate, args.seconds, args.count, args.linger)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
