"""A REGISTER brute force from one source address, bounded in count and time, and what
came back.

Runs as its own process.  It asks for a challenge once (a REGISTER without
credentials), then sends ``--count`` REGISTERs answering that challenge with guessed
passwords — a wrong digest ``response`` for an existing account, with a growing
nonce-count, as a password guesser would — at ``--rate`` a second, each its own
transaction.  Replies are counted by status for ``--linger`` seconds after the last.

    python benchmarks/register_sender.py --target 127.0.0.1:5060 --source 127.0.0.2 \\
        --user alice --realm gp.example --count 1000 --rate 500

Prints one JSON object: guesses and bytes sent, replies and bytes received by status,
and the amplification (reply bytes over request bytes).  Used by
``benchmarks/register_flood.py`` and the end-to-end REGISTER tests.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import socket
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.flood_sender import send_paced, traffic  # noqa: E402

MAX_GUESSES = 100_000  # whatever the flags say

_NONCE = re.compile(rb'^WWW-Authenticate:[^\r\n]*nonce="([^"]+)"', re.I | re.M)


def register(
    n: int,
    local: tuple[str, int],
    target: tuple[str, int],
    user: str,
    tag: str,
    authorization: str | None,
) -> bytes:
    host, port = local
    lines = [
        f"REGISTER sip:{target[0]}:{target[1]} SIP/2.0",
        f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-{tag}-{n};rport",
        "Max-Forwards: 70",
        f"From: <sip:{user}@{target[0]}>;tag={tag}",
        f"To: <sip:{user}@{target[0]}>",
        f"Call-ID: {tag}@{host}",
        f"CSeq: {n + 1} REGISTER",
        f"Contact: <sip:{user}@{host}:{port}>",
        "Expires: 600",
    ]
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    return ("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode()


def guess(n: int, user: str, realm: str, nonce: str, uri: str) -> str:
    """A digest answer made with the n-th guessed password (never the right one)."""
    ha1 = hashlib.sha256(f"{user}:{realm}:guess-{n}".encode()).hexdigest()
    ha2 = hashlib.sha256(f"REGISTER:{uri}".encode()).hexdigest()
    nc = f"{n + 1:08x}"
    response = hashlib.sha256(f"{ha1}:{nonce}:{nc}:cafe:auth:{ha2}".encode()).hexdigest()
    return (
        f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
        f'response="{response}", algorithm=SHA-256, cnonce="cafe", qop=auth, nc={nc}'
    )


def brute_force(
    target: tuple[str, int],
    source: str,
    user: str,
    realm: str,
    rate: float,
    count: int,
    linger: float,
) -> dict[str, object]:
    count = min(count, MAX_GUESSES)
    tag = f"g{int(time.time() * 1000) % 10**8}"
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((source, 0))
    local = sock.getsockname()
    uri = f"sip:{target[0]}:{target[1]}"
    statuses: Counter[int] = Counter()
    reply_bytes = 0

    # the challenge, once (bounded wait)
    sock.sendto(register(0, local, target, user, tag, None), target)
    sock.settimeout(5.0)
    challenge = sock.recv(65536)
    found = _NONCE.search(challenge)
    if found is None:
        raise SystemExit(f"no challenge: {challenge[:200]!r}")
    nonce = found.group(1).decode()
    sock.setblocking(False)

    def receive() -> None:
        nonlocal reply_bytes
        while True:
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                return
            if data.startswith(b"SIP/2.0 "):
                statuses[int(data[8:11])] += 1
                reply_bytes += len(data)

    sent, sent_bytes, send_seconds = send_paced(
        sock,
        target,
        lambda n: register(n + 1, local, target, user, tag, guess(n, user, realm, nonce, uri)),
        count=count,
        rate=rate,
        seconds=count / rate,
        linger=linger,
        receive=receive,
    )
    sock.close()
    return traffic("guesses", "guess_bytes", sent, sent_bytes, send_seconds, statuses, reply_bytes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", required=True, help="HOST:PORT of the proxy (UDP)")
    parser.add_argument("--source", default="127.0.0.2", help="the address to send from")
    parser.add_argument("--user", required=True, help="the account guessed at")
    parser.add_argument("--realm", required=True, help="[registrar] realm")
    parser.add_argument("--rate", type=float, default=500, help="guesses a second")
    parser.add_argument("--count", type=int, default=1000, help="guesses (at most 100,000)")
    parser.add_argument("--linger", type=float, default=2, help="listen this long after")
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    target = (host, int(port))
    report = brute_force(
        target, args.source, args.user, args.realm, args.rate, args.count, args.linger
    )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
