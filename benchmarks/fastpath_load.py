"""The kernel fast path's packet cost, against the userspace relay (issue 19).

Runs in a network namespace of its own (``unshare --net``, as root; ``net.ipv4.ip_forward``
set there only), so its nftables rules never touch the host.  Two processes on that
namespace's loopback, as ``relay_load.py``:

* the **media process**: N bridged calls (``MediaSession``, latching), each direction
  pushed into recproxy's ``Recorder`` ticked by the ``MediaClock`` every 20 ms, its
  sealed blocks discarded (no encryption, no disk: the same in both modes, so the
  difference is the forwarding and the copy to the recorder); with ``--no-record`` the
  packets go to a sink that does nothing (the forwarding alone);
  ``--mode kernel`` hands every call to the fast path once latched;
* the **load process** plays both phones of every call: a 172-byte RTP packet every
  20 ms each way.

A third run, ``control``, has the phones send to each other with no proxy.  On loopback
the kernel's receive work (netfilter, the packet tap, delivery) runs in the sending
task, so "machine CPU" is media + load process CPU, minus the control run's load CPU:
the extra CPU the proxy costs, per packet forwarded.  It prints, per mode: media process
CPU per packet, machine CPU per packet, packets lost end to end, packets the recorder
got, and for the kernel, ring drops.  Not part of the test suite.

    flock /tmp/i19-bench.lock python benchmarks/fastpath_load.py --calls 200 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PACKET = struct.Struct("!BBHII")
PTIME = 0.02
WARM_UP_SECONDS = 1.0
LOW_PORT = 20000  # below the ephemeral ports the phones get


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------------------------------
# the media process


async def media_main(calls: int, kernel: bool, record: bool) -> None:
    from proxy.media.clock import MediaClock
    from proxy.media.fastpath import detect
    from proxy.media.recorder import Recorder
    from proxy.media.relay import MediaSession, PortAllocator

    loop = asyncio.get_running_loop()
    recorder = Recorder(lambda key, block, final: None)
    clock = MediaClock(recorder)
    clock.start()
    high = LOW_PORT + 4 * calls + 8
    path = None
    if kernel:
        detection = detect("auto", (LOW_PORT, high))
        path = detection.path
        if path is None:
            raise SystemExit(f"no kernel fast path: {detection.reason}")
        path.start(loop)
    allocator = PortAllocator(LOW_PORT, high)
    sessions = []
    for index in range(calls):
        media = MediaSession(allocator, "127.0.0.1")
        a = await media.open_leg("caller")
        b = await media.open_leg("call_taker")
        a.audio_payload_type = b.audio_payload_type = 0
        if record:
            pair = recorder.add(index, "PCMU", "PCMU")
            a.sink, b.sink = pair.caller.push, pair.taker.push
        else:  # the packet reaches a sink that does nothing: forwarding alone
            a.sink = b.sink = lambda seq, ts, payload: None
        sessions.append((media, a, b))
    print(json.dumps({"ports": [(a.port, b.port) for _, a, b in sessions]}), flush=True)
    remotes = json.loads(await loop.run_in_executor(None, sys.stdin.readline))["remotes"]
    for (media, a, b), (ra, rb) in zip(sessions, remotes, strict=True):
        a.set_remote("127.0.0.1", ra)
        b.set_remote("127.0.0.1", rb)
        media.bridge()
        if path is not None:
            path.offer(a, b)  # handed over once both legs latched

    def counts() -> dict[str, int]:
        legs = [leg for _, a, b in sessions for leg in (a, b)]
        snapshot = path.snapshot() if path is not None else None
        return {
            "in": sum(leg.stats.packets_in for leg in legs),
            "relayed": sum(leg.stats.packets_out for leg in legs),
            "ring": snapshot.recorded if snapshot else 0,
            "ring_drops": snapshot.drops if snapshot else 0,
            "in_kernel": snapshot.calls if snapshot else 0,
        }

    await loop.run_in_executor(None, sys.stdin.readline)  # "start"
    before, cpu_before, wall_before = counts(), cpu_seconds(), time.monotonic()
    await loop.run_in_executor(None, sys.stdin.readline)  # "stop"
    cpu, wall, after = cpu_seconds() - cpu_before, time.monotonic() - wall_before, counts()
    window = {key: after[key] - before[key] for key in ("in", "relayed", "ring", "ring_drops")}
    print(json.dumps({"cpu": cpu, "wall": wall, "window": window, "total": after}), flush=True)
    clock.stop()
    if path is not None:
        path.close()
    for media, _, _ in sessions:
        media.close()


# ---------------------------------------------------------------------------------------
# the load process


class Phone(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received = 0
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received += 1


async def load_main(
    calls: int, seconds: float, mode: str, record: bool, profile: bool
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    phones: list[tuple[Phone, Phone]] = []
    for _ in range(calls):
        pair = []
        for _ in range(2):
            _, phone = await loop.create_datagram_endpoint(Phone, local_addr=("127.0.0.1", 0))
            pair.append(phone)
        phones.append((pair[0], pair[1]))
    local = [tuple(p.transport.get_extra_info("sockname")[1] for p in pair) for pair in phones]
    child = None
    if mode == "control":
        targets = [(b, a) for a, b in local]  # each phone straight to the other
    else:
        child = subprocess.Popen(
            [sys.executable, __file__, "--media", "--mode", mode, "--calls", str(calls)]
            + ([] if record else ["--no-record"]),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert child.stdin is not None and child.stdout is not None
        targets = json.loads(await loop.run_in_executor(None, child.stdout.readline))["ports"]
        child.stdin.write(json.dumps({"remotes": local}) + "\n")
        child.stdin.flush()
        await asyncio.sleep(0.2)

    def tell(line: str) -> None:
        if child is not None and child.stdin is not None:
            child.stdin.write(line + "\n")
            child.stdin.flush()

    payload = b"\xff" * 160
    warm = round(WARM_UP_SECONDS / PTIME)
    ticks = warm + round(seconds / PTIME)
    start = loop.time()
    sent = 0
    cpu_before = wall_before = 0.0
    spy = None
    for n in range(ticks):
        if n == warm:
            tell("start")
            cpu_before, wall_before = cpu_seconds(), time.monotonic()
            if profile and child is not None:
                spy = start_profile(child.pid, seconds)
        await asyncio.sleep(max(0.0, start + n * PTIME - loop.time()))
        header = PACKET.pack(0x80, 0, n & 0xFFFF, (n * 160) & 0xFFFFFFFF, 0xA)
        for (pa, pb), (ta, tb) in zip(phones, targets, strict=True):
            pa.transport.sendto(header + payload, ("127.0.0.1", ta))
            pb.transport.sendto(header + payload, ("127.0.0.1", tb))
            sent += 2
    load_cpu, wall = cpu_seconds() - cpu_before, time.monotonic() - wall_before
    tell("stop")
    await asyncio.sleep(0.3)
    received = sum(pa.received + pb.received for pa, pb in phones)
    result: dict[str, Any] = {
        "mode": mode, "calls": calls, "seconds": seconds, "sent": sent, "received": received,
        "load_cpu": load_cpu, "wall": wall,
        "window_packets": 2 * calls * round(seconds / PTIME),
    }  # fmt: skip
    if spy is not None:
        spy.wait(timeout=60)
        result["profile"] = hot_frames(Path(f"/tmp/fastpath-{child.pid if child else 0}.txt"))
    if child is not None:
        assert child.stdout is not None
        result["media"] = json.loads(await loop.run_in_executor(None, child.stdout.readline))
        child.wait(timeout=60)
    return result


def start_profile(pid: int, seconds: float) -> subprocess.Popen[bytes]:
    """py-spy sampling the media process (its GIL-holding, non-idle frames) 250 times a
    second for the measured window, into /tmp/fastpath-PID.txt (collapsed stacks)."""
    spy = shutil.which("py-spy") or str(ROOT / ".venv/bin/py-spy")
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--rate", "250", "--duration", str(int(seconds)),
         "--format", "raw", "--output", f"/tmp/fastpath-{pid}.txt", "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def hot_frames(path: Path, top: int = 8) -> dict[str, float]:
    """The share of samples each innermost frame (function, file) took, the top ones."""
    counts: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        leaf = stack.rsplit(";", 1)[-1]
        name = re.sub(r" \((.*/)?([^/]+?):\d+\)$", r" (\2)", leaf)
        counts[name] = counts.get(name, 0) + int(count)
        total += int(count)
    ranked = sorted(counts.items(), key=lambda item: -item[1])[:top]
    return {name: round(100 * n / max(total, 1), 1) for name, n in ranked}


def summary(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per mode: µs of media process CPU and of extra machine CPU per packet forwarded."""
    control = runs.get("control")
    out: dict[str, Any] = {}
    for mode, run in runs.items():
        if mode == "control":
            continue
        packets = run["window_packets"]
        media = run["media"]
        machine = media["cpu"] + run["load_cpu"] - (control["load_cpu"] if control else 0.0)
        out[mode] = {
            "media_cpu_us_per_packet": round(1e6 * media["cpu"] / packets, 2),
            "machine_cpu_us_per_packet": round(1e6 * machine / packets, 2) if control else None,
            "lost_end_to_end": run["sent"] - run["received"],
            "recorder_got": media["total"]["in"],
            "relayed_in_window": media["window"]["relayed"],
            "ring_in_window": media["window"]["ring"],
            "ring_drops": media["total"]["ring_drops"],
            "calls_in_kernel_at_end": media["total"]["in_kernel"],
        }
    return out


def inner(args: argparse.Namespace) -> None:
    """In the namespace: loopback up, forwarding on (for ``auto``), then each mode."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(
        ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.accept_local=1"],
        check=True,
    )
    import uvloop

    runs = {}
    for mode in args.modes.split(","):
        runs[mode] = uvloop.run(
            load_main(args.calls, args.seconds, mode, args.record, args.profile)
        )
    print(json.dumps({"record": args.record, "runs": runs, "summary": summary(runs)}, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--modes", default="control,relay,kernel")
    parser.add_argument(
        "--no-record", dest="record", action="store_false", help="no recorder: forwarding only"
    )
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the media process (needs py-spy)"
    )
    parser.add_argument("--mode", choices=("relay", "kernel"), help=argparse.SUPPRESS)
    parser.add_argument("--media", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 1 <= args.calls <= 2000 or not 1 <= args.seconds <= 120:
        parser.error("--calls 1..2000 and --seconds 1..120")
    if args.media:
        import uvloop

        uvloop.run(media_main(args.calls, args.mode == "kernel", args.record))
    elif args.inner:
        inner(args)
    else:
        if os.geteuid() != 0:
            parser.error("run as root: the benchmark makes a network namespace")
        command = ["unshare", "--net", sys.executable, __file__, "--inner", *sys.argv[1:]]
        raise SystemExit(subprocess.run(command, check=False, timeout=600).returncode)


if __name__ == "__main__":
    main()
