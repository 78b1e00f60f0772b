"""Relay-delay probe (issue 19): the delay recproxy's relay adds to a bridged call's RTP
while it carries N other calls, with the load generator kept out of the figure.

Four processes on loopback:

* the **media process** is ``relay_load.py``'s: recproxy's real media path (relay legs,
  recorder ticked every 20 ms, the writer thread sealing AES-256-GCM chunks) for N + 1
  bridged calls;
* this process plays both phones of the N **background** calls (a 160-byte PCMU packet
  each way every 20 ms), as ``relay_load.py`` does;
* the **sender**, pinned to one core (``os.sched_setaffinity``), sends the probe call's
  caller packets, one in each 20 ms period at a random moment of it (so that the probe
  meets the media tick and the background calls at every phase), each carrying its
  CLOCK_MONOTONIC send time, and the same packet a second time straight to the
  receiver: the direct path, the baseline;
* the **receiver**, pinned to the other core, stamps each packet on receipt.

A packet's added delay is its delay through the proxy minus its twin's on the direct
path (sent within microseconds of each other, stamped separately), so the kernel's
loopback delivery and the receiver's wake-up are taken out.  Reported: p50, p99 and max
added delay, the direct path's own, and packets lost on each path.  Targets: p99 ≤ 1 ms,
no loss.  Not part of the tests.

    python benchmarks/relay_delay.py --calls 200 --seconds 30
    python benchmarks/relay_delay.py --calls 0 --seconds 10        # no background load
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import selectors
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.load import report  # noqa: E402
from benchmarks.relay_load import PACKET, PTIME, Phone  # noqa: E402

RELAY_LOAD = Path(__file__).resolve().parent / "relay_load.py"
PROBE_SSRC = 0xB
STAMP = struct.Struct("!QI")  # send time (ns, CLOCK_MONOTONIC), probe sequence number
PAYLOAD = 160
T = TypeVar("T")
SPREAD_GROUPS = 4  # the background calls' packets leave in 4 groups 5 ms apart


# ---------------------------------------------------------------------------------------
# the statistics (pure)


def percentile(ordered: list[int], q: float) -> int:
    """The nearest-rank ``q``-th percentile of the ascending, non-empty ``ordered``."""
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summary_us(delays_ns: list[int]) -> dict[str, float | None]:
    """p50, p99 and max of ``delays_ns``, in microseconds (None when there are none)."""
    if not delays_ns:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(delays_ns)
    return {
        "p50": round(percentile(ordered, 50) / 1000, 1),
        "p99": round(percentile(ordered, 99) / 1000, 1),
        "max": round(ordered[-1] / 1000, 1),
    }


def delay_stats(sent: int, direct: dict[int, int], via: dict[int, int]) -> dict[str, object]:
    """What the probe measured: ``direct`` and ``via`` map each probe sequence number that
    arrived on that path to its one-way delay in ns.  The added delay is taken per packet
    (via minus direct) over the packets that arrived both ways."""
    both = direct.keys() & via.keys()
    return {
        "probe_packets_sent": sent,
        "lost_via_proxy": sent - len(via),
        "lost_direct": sent - len(direct),
        "added_delay_us": summary_us([via[seq] - direct[seq] for seq in both]),
        "via_proxy_delay_us": summary_us(list(via.values())),
        "direct_delay_us": summary_us(list(direct.values())),
    }


def probe_packet(seq: int) -> bytes:
    """One probe RTP packet (PCMU, 160-byte payload) stamped with the time now."""
    header = PACKET.pack(0x80, 0, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, PROBE_SSRC)
    stamp = STAMP.pack(time.monotonic_ns(), seq)
    return header + stamp + bytes(PAYLOAD - STAMP.size)


def read_probe(packet: bytes, now_ns: int) -> tuple[int, int]:
    """(probe sequence number, one-way delay in ns) of a received probe packet."""
    sent_ns, seq = STAMP.unpack_from(packet, PACKET.size)
    return seq, now_ns - sent_ns


# ---------------------------------------------------------------------------------------
# the sender and the receiver, each its own process pinned to its own core


def pin(core: int) -> None:
    os.sched_setaffinity(0, {core})


def sender_main(core: int) -> None:
    pin(core)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    print(json.dumps({"port": sock.getsockname()[1]}), flush=True)
    _, via_port, direct_port, count = sys.stdin.readline().split()
    via, direct = ("127.0.0.1", int(via_port)), ("127.0.0.1", int(direct_port))
    start = time.monotonic()
    phases = random.Random(19)  # the same phases run after run
    for seq in range(int(count)):
        # one packet per 20 ms period, at a random moment of it: the media process's
        # tick and the background calls are each on a fixed 20 ms grid, so a probe on a
        # grid of its own would meet them at one phase only, and measure the luck of it
        phase = phases.random() * PTIME
        time.sleep(max(0.0, start + seq * PTIME + phase - time.monotonic()))
        first, second = (via, direct) if seq % 2 else (direct, via)  # neither path first
        sock.sendto(probe_packet(seq), first)
        sock.sendto(probe_packet(seq), second)
    print(json.dumps({"sent": int(count)}), flush=True)


def receiver_main(core: int) -> None:
    pin(core)
    sockets = {}
    for name in ("via", "direct"):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        sockets[name] = sock
    arrived: dict[str, dict[int, int]] = {name: {} for name in sockets}
    selector = selectors.DefaultSelector()
    for name, sock in sockets.items():
        selector.register(sock, selectors.EVENT_READ, name)
    selector.register(sys.stdin, selectors.EVENT_READ, None)  # "stop"
    print(json.dumps({name: sock.getsockname()[1] for name, sock in sockets.items()}), flush=True)
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1.0):
            if key.data is None:
                sys.stdin.readline()
                print(json.dumps(arrived), flush=True)
                return
            while True:
                try:
                    packet = sockets[key.data].recv(2048)
                except BlockingIOError:
                    break
                seq, delay = read_probe(packet, time.monotonic_ns())
                arrived[key.data][seq] = delay


# ---------------------------------------------------------------------------------------
# the run


def _switch(args: argparse.Namespace) -> list[str]:
    return ["--switch-interval", str(args.switch_interval)] if args.switch_interval else []


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def _ask(proc: subprocess.Popen[str], line: str | None = None) -> dict[str, object]:
    assert proc.stdin is not None and proc.stdout is not None
    if line is not None:
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
    answer: dict[str, object] = json.loads(proc.stdout.readline())
    return answer


def _port(phone: Phone) -> int:
    assert phone.transport is not None
    port: int = phone.transport.get_extra_info("sockname")[1]
    return port


def split_evenly(items: list[T], groups: int) -> list[list[T]]:
    """``items`` in at most ``groups`` consecutive groups of (nearly) equal size; one
    empty group when there are none (the sender still sleeps once a period)."""
    size = max(1, -(-len(items) // groups))
    return [items[i : i + size] for i in range(0, len(items), size)] or [[]]


async def background(
    phones: list[tuple[Phone, int, Phone, int]], stop: asyncio.Event, groups: int
) -> int:
    """Both phones of every background call send a packet every 20 ms until ``stop``.

    The calls are sent in ``groups`` groups spread evenly over the 20 ms: real calls
    start at random moments, so their packets do not arrive in one burst.  With one group
    (``--burst``) all 2 x N packets leave together, and a probe packet that arrives just
    after them waits behind the whole burst in the media process: the generator's
    figure, not the relay's.
    """
    loop = asyncio.get_running_loop()
    payload = bytes(PAYLOAD)
    batches = split_evenly(phones, groups)
    start, n = loop.time(), 0
    while not stop.is_set():
        header = PACKET.pack(0x80, 0, n & 0xFFFF, (n * 160) & 0xFFFFFFFF, 0xA)
        for index, batch in enumerate(batches):
            await asyncio.sleep(max(0.0, start + (n + index / groups) * PTIME - loop.time()))
            for pa, a_port, pb, b_port in batch:
                pa.send(header + payload, a_port)
                pb.send(header + payload, b_port)
        n += 1
    return n * 2 * len(phones)


async def probe(args: argparse.Namespace) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    cores = sorted(os.sched_getaffinity(0))
    sender_core, receiver_core = cores[0], cores[1 % len(cores)]
    directory = Path(tempfile.mkdtemp(prefix="recproxy-delay-"))
    media = _spawn(str(RELAY_LOAD), "--media", "--calls", str(args.calls + 1), "--dir",
                   str(directory), "--fsync", args.fsync, *_switch(args))  # fmt: skip
    receiver = _spawn(__file__, "--role", "receiver", "--core", str(receiver_core))
    sender = _spawn(__file__, "--role", "sender", "--core", str(sender_core))
    try:
        ports = await loop.run_in_executor(None, _ask, media)
        targets = await loop.run_in_executor(None, _ask, receiver)
        sender_port = (await loop.run_in_executor(None, _ask, sender))["port"]
        legs: list[list[int]] = ports["ports"]  # type: ignore[assignment]
        ignored: list[float] = []
        phones: list[tuple[Phone, int, Phone, int]] = []
        remotes = [(sender_port, targets["via"])]
        for a_port, b_port in legs[1:]:
            _, pa = await loop.create_datagram_endpoint(
                lambda: Phone(ignored), local_addr=("127.0.0.1", 0)
            )
            _, pb = await loop.create_datagram_endpoint(
                lambda: Phone(ignored), local_addr=("127.0.0.1", 0)
            )
            remotes.append((_port(pa), _port(pb)))
            phones.append((pa, a_port, pb, b_port))
        assert media.stdin is not None
        media.stdin.write(json.dumps({"remotes": remotes}) + "\n")
        media.stdin.flush()
        stop = asyncio.Event()
        load = asyncio.create_task(background(phones, stop, 1 if args.burst else SPREAD_GROUPS))
        await asyncio.sleep(1.0)  # the background load settles first
        count = round(args.seconds / PTIME)
        line = f"go {legs[0][0]} {targets['direct']} {count}"
        sent = (await loop.run_in_executor(None, _ask, sender, line))["sent"]
        await asyncio.sleep(0.5)
        stop.set()
        background_sent = await load
        arrived = await loop.run_in_executor(None, _ask, receiver, "stop")
        report = await loop.run_in_executor(None, _ask, media, "stop")
    finally:
        for proc in (sender, receiver, media):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    direct = {int(k): v for k, v in arrived["direct"].items()}  # type: ignore[attr-defined]
    via = {int(k): v for k, v in arrived["via"].items()}  # type: ignore[attr-defined]
    relayed, received = int(report["relayed"]), int(report["received"])  # type: ignore[call-overload]
    cpu, wall = float(report["cpu_seconds"]), float(report["wall_seconds"])  # type: ignore[arg-type]
    return {
        "background_calls": args.calls,
        "background_groups": 1 if args.burst else SPREAD_GROUPS,
        "seconds": args.seconds,
        "fsync": args.fsync,
        "switch_interval": args.switch_interval or sys.getswitchinterval(),
        "cores": {"sender": sender_core, "receiver": receiver_core, "of": len(cores)},
        **delay_stats(int(sent), direct, via),  # type: ignore[call-overload]
        "background_packets_sent": background_sent,
        "media_packets_received": received,
        "media_packets_relayed": relayed,
        "lost_inside_proxy": received - relayed,
        "media_cpu_percent_of_core": round(100 * cpu / wall, 1),
        "clock_max_lag_ms": round(1000 * float(report["clock_max_lag"]), 2),  # type: ignore[arg-type]
        "recorder_tick_ms": report["tick_ms"],
        "gc_pauses": report["gc_pauses"],
        "gc_max_ms": report["gc_max_ms"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="background calls")
    parser.add_argument("--seconds", type=float, default=30.0, help="probe length")
    parser.add_argument("--fsync", choices=("chunk", "segment", "none"), default="chunk")
    parser.add_argument(
        "--switch-interval", type=float, help="the media process's sys.setswitchinterval (s)"
    )
    parser.add_argument("--role", choices=("sender", "receiver"), help=argparse.SUPPRESS)
    parser.add_argument("--core", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--burst", action="store_true", help="send all background packets at once (before)"
    )
    parser.add_argument("--out", type=Path, help="write the result as JSON here too")
    args = parser.parse_args()
    if args.role == "sender":
        sender_main(args.core)
        return
    if args.role == "receiver":
        receiver_main(args.core)
        return
    if not (0 <= args.calls <= 1000 and 1 <= args.seconds <= 300):
        parser.error("--calls 0-1000, --seconds 1-300")
    import uvloop

    report(uvloop.run(probe(args)), args.out)


if __name__ == "__main__":
    main()
