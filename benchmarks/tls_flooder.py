"""A TLS handshake flood from one source address, bounded in count and time, and what
the target did with it.

Runs as its own process (the flood must not share the measuring process's CPU or
sockets).  Three kinds of connection, ``--concurrency`` at a time:

* ``--count`` full handshakes (the attacker does not verify the certificate), started
  at ``--rate`` a second (0: as fast as they go), each closed as soon as it is done or
  refused;
* ``--half-open`` connections that send the first bytes of a ClientHello and then
  nothing, held until the target closes them or ``--seconds`` is over;
* ``--slow`` connections that send a ClientHello a few bytes a second.

    python benchmarks/tls_flooder.py --target 127.0.0.1:5061 --source 127.0.0.2 \\
        --count 2000 --rate 200 --concurrency 50 --half-open 100 --slow 20 --seconds 20

Prints one JSON object: handshakes completed, refused (closed before the server said
anything: the limits and the token bucket), failed otherwise, and how many half-open
and slow connections the target closed by itself and after how long.  Used by
``benchmarks/tls_flood.py`` and ``tests/e2e/test_tls_flood.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import time
from collections import Counter

MAX_CONNECTIONS = 50_000  # whatever the flags say
# The first bytes of a TLS ClientHello record (handshake, TLS 1.0 record version).
HELLO_START = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"


def attacker_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def handshake(
    target: tuple[str, int], source: str, context: ssl.SSLContext, timeout: float
) -> str:
    """One full handshake: completed, refused (closed at once, nothing said) or failed."""
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(*target, ssl=context, local_addr=(source, 0)), timeout
        )
    except (ConnectionResetError, asyncio.IncompleteReadError, EOFError):
        return "refused"
    except ssl.SSLError as exc:
        # a server that closed at accept: the handshake saw EOF before any answer
        return "refused" if "EOF" in str(exc) or "UNEXPECTED_EOF" in str(exc) else "failed"
    except (OSError, TimeoutError):
        return "failed"
    writer.transport.abort()
    return "completed"


async def lingering(target: tuple[str, int], source: str, slow: bool, until: float) -> float | None:
    """A half-open (or slow) connection: seconds until the target closed it, or None
    if it was still open at ``until``."""
    started = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection(*target, local_addr=(source, 0))
    except OSError:
        return 0.0
    try:
        writer.write(HELLO_START[:5])
        while time.monotonic() < until:
            if slow:
                writer.write(b"\x00")
            try:
                data = await asyncio.wait_for(
                    reader.read(4096), 1.0 if slow else until - time.monotonic()
                )
            except TimeoutError:
                continue
            if not data:
                return time.monotonic() - started
        return None
    except OSError:
        return time.monotonic() - started
    finally:
        writer.transport.abort()


async def flood(args: argparse.Namespace) -> dict[str, object]:
    host, _, port = args.target.rpartition(":")
    target = (host, int(port))
    context = attacker_context()
    started = time.monotonic()
    until = started + args.seconds
    outcomes: Counter[str] = Counter()
    count = min(args.count, MAX_CONNECTIONS)
    gate = asyncio.Semaphore(args.concurrency)

    async def one(n: int) -> None:
        if args.rate > 0:
            await asyncio.sleep(max(0.0, started + n / args.rate - time.monotonic()))
        async with gate:
            if time.monotonic() < until:
                outcomes[await handshake(target, args.source, context, args.timeout)] += 1

    lingerers = [
        asyncio.ensure_future(lingering(target, args.source, slow, until))
        for slow, n in ((False, args.half_open), (True, args.slow))
        for _ in range(min(n, MAX_CONNECTIONS))
    ]
    await asyncio.gather(*(one(n) for n in range(count)))
    full_done = time.monotonic() - started
    closed = await asyncio.gather(*lingerers)
    half = closed[: args.half_open]
    slow = closed[args.half_open :]

    def summary(times: list[float | None]) -> dict[str, object]:
        shut = [t for t in times if t is not None]
        return {
            "opened": len(times),
            "closed_by_target": len(shut),
            "max_seconds_open": round(max(shut), 2) if shut else None,
        }

    return {
        "handshakes": sum(outcomes.values()),
        "completed": outcomes["completed"],
        "refused": outcomes["refused"],
        "failed": outcomes["failed"],
        "handshake_seconds": round(full_done, 2),
        "half_open": summary(half),
        "slow": summary(slow),
        "seconds": round(time.monotonic() - started, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", required=True, help="HOST:PORT of the TLS listener")
    parser.add_argument("--source", default="127.0.0.2", help="the address to flood from")
    parser.add_argument("--count", type=int, default=500, help="full handshakes to try")
    parser.add_argument("--rate", type=float, default=0, help="handshakes started a second")
    parser.add_argument("--concurrency", type=int, default=20, help="at once")
    parser.add_argument("--half-open", type=int, default=0, help="silent connections")
    parser.add_argument("--slow", type=int, default=0, help="slow ClientHello connections")
    parser.add_argument("--seconds", type=float, default=20, help="the whole flood, at most")
    parser.add_argument("--timeout", type=float, default=5, help="one handshake, at most")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(flood(args))))


if __name__ == "__main__":
    main()
