"""Hot-path benchmark: RTP relayed and recorded by one recproxy media process.

Two processes on loopback:

* the **media process** runs recproxy's real media path — bridged ``MediaSession``s
  (relay with latching and stream rewriting), the ``Recorder`` ticked by the
  ``MediaClock`` every 20 ms, and the ``RecordingWriter`` thread encrypting 1 s chunks
  into segment files (fsync per chunk) — for N calls;
* the **load process** (this one) plays both phones of every call: each side sends a
  160-byte G.711 packet every 20 ms and receives the other side's.

It prints calls, packets relayed, packets lost inside the proxy, added relay delay
(p50/p99: each payload carries its send time; sender and receiver share a clock), the
media process's CPU (per concurrent call and per relayed packet) and its peak RSS, and
checks the recordings' length.  Not part of the test suite: speed is measured here, never
asserted in tests.

With ``--srtp SUITE`` both legs of every call are SDES-SRTP (issue 18): the phones
protect what they send and check what they receive with libsrtp, and the media process
decrypts, records and re-encrypts every packet; compare its CPU per relayed packet with
a run without.

    python benchmarks/relay_load.py --calls 200 --seconds 20
    python benchmarks/relay_load.py --calls 200 --seconds 20 --srtp AES_CM_128_HMAC_SHA1_80

With ``--profile``, py-spy samples the media process (the thread holding the GIL, 250
times a second) over the sending period, and the result names the functions the samples
were in: innermost (self) and anywhere on the stack (inclusive), as shares of the busy
samples.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.load import interrupt  # noqa: E402

PACKET = struct.Struct("!BBHII")
PTIME = 0.02


# ---------------------------------------------------------------------------------------
# the media process


async def media_main(
    calls: int, record: bool, directory: Path, vad: bool, fsync: str, srtp: str | None
) -> None:
    from proxy.media.clock import MediaClock
    from proxy.media.recorder import Recorder
    from proxy.media.relay import MediaSession, PortAllocator, StreamRewriter
    from proxy.sip.sdes import new_key
    from proxy.storage import crypto
    from proxy.storage.store import LocalDiskStore
    from proxy.storage.writer import RecordingWriter

    _, public = crypto.generate_keypair()
    store = LocalDiskStore(fsync=fsync)  # type: ignore[arg-type]
    writer = RecordingWriter(store, max_queued_blocks=8192)
    recorder = Recorder(writer.sink, vad_mode=2 if vad else None)
    tick_seconds = _time_ticks(recorder)
    gc_seconds = _time_collections()
    clock = MediaClock(recorder)
    clock.start()
    allocator = PortAllocator(40000, 40000 + 4 * calls + 8)
    sessions = []
    ports = []
    keys = []  # per call, with --srtp: each leg's (our key, the phone's key), hex
    import uuid

    for _ in range(calls):
        media = MediaSession(allocator, "127.0.0.1")
        a = await media.open_leg("caller")
        b = await media.open_leg("call_taker")
        a.audio_payload_type = b.audio_payload_type = 0
        a.rewriter = StreamRewriter(ssrc=0x1234, first_seq=1, first_ts=0)
        if record:
            rid = str(uuid.uuid4())
            writer.open(rid, directory, public, start_time_ms=int(time.time() * 1000))
            pair = recorder.add(rid, "PCMU", "PCMU")
            a.sink, b.sink = pair.caller.push, pair.taker.push
        if srtp is not None:
            call_keys = []
            for leg in (a, b):
                ours, theirs = new_key(srtp), new_key(srtp)
                leg.secure(srtp, ours, theirs)
                call_keys.append((ours.hex(), theirs.hex()))
            keys.append(call_keys)
        sessions.append((media, a, b))
        ports.append((a.port, b.port))
    print(json.dumps({"ports": ports, "keys": keys, "pid": os.getpid()}), flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    remotes = json.loads(line)["remotes"]
    for (media, a, b), (ra, rb) in zip(sessions, remotes, strict=True):
        a.set_remote("127.0.0.1", ra)
        b.set_remote("127.0.0.1", rb)
        media.bridge()
    usage_start = resource.getrusage(resource.RUSAGE_SELF)
    wall_start = time.monotonic()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "stop"
    wall = time.monotonic() - wall_start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage.ru_utime - usage_start.ru_utime) + (usage.ru_stime - usage_start.ru_stime)
    relayed = sum(a.stats.packets_out + b.stats.packets_out for _, a, b in sessions)
    received = sum(a.stats.packets_in + b.stats.packets_in for _, a, b in sessions)
    dropped = sum(
        a.stats.dropped_unknown_source + b.stats.dropped_unknown_source for _, a, b in sessions
    )
    srtp_failed = sum(
        leg.stats.srtp_auth_failed + leg.stats.srtp_replayed
        for _, a, b in sessions
        for leg in (a, b)
    )
    recorder.close_all()
    await asyncio.to_thread(writer.stop)
    frames = 0
    if record:
        from proxy.storage.reader import recover

        for path in directory.iterdir():
            frames += recover(path).frames
    print(
        json.dumps(
            {
                "cpu_seconds": cpu,
                "wall_seconds": wall,
                "relayed": relayed,
                "received": received,
                "dropped": dropped,
                "srtp_failed": srtp_failed,
                "max_rss_kb": usage.ru_maxrss,
                "recorded_frames": frames,
                "clock_max_lag": clock.stats.max_lag,
                "clock_overruns": clock.stats.overruns,
                "tick_ms": tick_summary(tick_seconds),
                "gc_pauses": len(gc_seconds),
                "gc_max_ms": round(1000 * max(gc_seconds, default=0.0), 3),
                "writer_dropped_blocks": writer.metrics.blocks_dropped,
                "chunks_sealed": writer.metrics.chunks_sealed,
            }
        ),
        flush=True,
    )
    clock.stop()
    for media, _, _ in sessions:
        media.close()


def _time_ticks(recorder: Any) -> list[float]:
    """Time every ``recorder.tick`` (the part of the clock's tick that grows with the
    calls): a packet that arrives meanwhile waits for it in the loop."""
    durations: list[float] = []
    tick = recorder.tick

    def timed(now: float, scheduled: float | None = None) -> None:
        started = time.perf_counter()
        tick(now, scheduled)
        durations.append(time.perf_counter() - started)

    recorder.tick = timed
    return durations


def _time_collections() -> list[float]:
    """Time every garbage collection of the media process (a pause of the loop)."""
    import gc

    durations: list[float] = []
    started = [0.0]

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            durations.append(time.perf_counter() - started[0])

    gc.callbacks.append(timed)
    return durations


def tick_summary(durations: list[float]) -> dict[str, float]:
    """p50, p99 and max of the recorder ticks, in ms (the first second left out: the
    block store grows there)."""
    steady = sorted(durations[50:]) or [0.0]
    return {
        "p50": round(1000 * steady[len(steady) // 2], 3),
        "p99": round(1000 * steady[int(len(steady) * 0.99)], 3),
        "max": round(1000 * steady[-1], 3),
    }


# ---------------------------------------------------------------------------------------
# the load process


class Phone(asyncio.DatagramProtocol):
    def __init__(self, delays: list[float], srtp: Any = None) -> None:
        self.delays = delays
        self.received = 0
        self.srtp = srtp  # the phone's SrtpStreams with --srtp
        self.transport: asyncio.DatagramTransport | None = None

    def send(self, packet: bytes, port: int) -> None:
        assert self.transport is not None
        if self.srtp is not None:
            packet = self.srtp.protect(packet)
        self.transport.sendto(packet, ("127.0.0.1", port))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.srtp is not None:
            data = self.srtp.unprotect(data)  # a failure raises: the run is void
        self.received += 1
        sent_ns = int.from_bytes(data[12:20], "big")
        self.delays.append((time.monotonic_ns() - sent_ns) / 1e6)


async def load_main(args: argparse.Namespace) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    directory = Path(tempfile.mkdtemp(prefix="recproxy-bench-"))
    child = subprocess.Popen(
        [sys.executable, __file__, "--media", "--calls", str(args.calls), "--dir", str(directory)]
        + ([] if args.record else ["--no-record"])
        + (["--asyncio"] if args.asyncio else [])
        + ([] if args.vad else ["--no-vad"])
        + ["--fsync", args.fsync]
        + (["--srtp", args.srtp] if args.srtp else [])
        + (["--switch-interval", str(args.switch_interval)] if args.switch_interval else []),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    hello = json.loads(await loop.run_in_executor(None, child.stdout.readline))
    delays: list[float] = []
    phones: list[tuple[Phone, int, Phone, int]] = []
    remotes = []
    for index, (a_port, b_port) in enumerate(hello["ports"]):
        srtp_a, srtp_b = _phone_srtp(args.srtp, hello["keys"][index] if args.srtp else None)
        _, pa = await loop.create_datagram_endpoint(
            lambda srtp=srtp_a: Phone(delays, srtp), local_addr=("127.0.0.1", 0)
        )
        _, pb = await loop.create_datagram_endpoint(
            lambda srtp=srtp_b: Phone(delays, srtp), local_addr=("127.0.0.1", 0)
        )
        assert pa.transport is not None and pb.transport is not None
        remotes.append(
            (pa.transport.get_extra_info("sockname")[1], pb.transport.get_extra_info("sockname")[1])
        )
        phones.append((pa, a_port, pb, b_port))
    child.stdin.write(json.dumps({"remotes": remotes}) + "\n")
    child.stdin.flush()
    profile = Path(f"{directory}.profile.txt")
    profiler = _start_profiler(hello["pid"], profile) if args.profile else None
    await asyncio.sleep(0.2)
    payload_tail = b"\xff" * (160 - 8)
    sent = 0
    start = loop.time()
    ticks = round(args.seconds / PTIME)
    for n in range(ticks):
        await asyncio.sleep(max(0.0, start + n * PTIME - loop.time()))
        for seq_side, (pa, a_port, pb, b_port) in enumerate(phones):
            del seq_side
            stamp = time.monotonic_ns().to_bytes(8, "big")
            header = PACKET.pack(0x80, 0, n & 0xFFFF, (n * 160) & 0xFFFFFFFF, 0xA)
            pa.send(header + stamp + payload_tail, a_port)
            pb.send(header + stamp + payload_tail, b_port)
            sent += 2
    await asyncio.sleep(0.5)
    if profiler is not None:
        interrupt(profiler, 30)
    child.stdin.write("stop\n")
    child.stdin.flush()
    report = json.loads(await loop.run_in_executor(None, child.stdout.readline))
    child.wait(timeout=60)
    received = sum(pa.received + pb.received for pa, _, pb, _ in phones)
    delays.sort()
    cpu = report["cpu_seconds"]
    wall = report["wall_seconds"]
    expected_frames = args.calls * args.seconds * 8000
    result: dict[str, object] = {
        "calls": args.calls,
        "seconds": args.seconds,
        "record": args.record,
        "vad": args.vad,
        "fsync": args.fsync,
        "loop": "asyncio" if args.asyncio else "uvloop",
        "switch_interval": args.switch_interval or sys.getswitchinterval(),
        "srtp": args.srtp,
        "srtp_failed_inside_proxy": report["srtp_failed"],
        "packets_sent": sent,
        "packets_relayed": report["relayed"],
        "packets_received_back": received,
        "lost_inside_proxy": report["received"] - report["relayed"],
        "lost_end_to_end": sent - received,
        "delay_ms_p50": round(statistics.median(delays), 3) if delays else None,
        "delay_ms_p99": round(delays[int(len(delays) * 0.99)], 3) if delays else None,
        "media_cpu_percent_of_core": round(100 * cpu / wall, 1),
        "cpu_percent_per_call": round(100 * cpu / wall / args.calls, 4),
        "cpu_us_per_relayed_packet": round(1e6 * cpu / max(report["relayed"], 1), 1),
        "max_rss_mb": round(report["max_rss_kb"] / 1024, 1),
        "recorded_seconds_per_call": round(report["recorded_frames"] / 8000 / args.calls, 2)
        if args.record
        else None,
        "expected_seconds_per_call": round(expected_frames / 8000 / args.calls, 2),
        "clock_max_lag_ms": round(1000 * report["clock_max_lag"], 2),
        "recorder_tick_ms": report["tick_ms"],
        "gc_pauses": report["gc_pauses"],
        "gc_max_ms": report["gc_max_ms"],
        "writer_dropped_blocks": report["writer_dropped_blocks"],
    }
    if profiler is not None:
        result["profile"] = hot_frames(profile)
        result["profile_file"] = str(profile)
    return result


def _start_profiler(pid: int, output: Path) -> subprocess.Popen[bytes]:
    spy = shutil.which("py-spy") or str(ROOT / ".venv/bin/py-spy")
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw",
         "--output", str(output), "--nonblocking", "--gil"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def hot_frames(collapsed: Path, top: int = 15) -> dict[str, dict[str, float]]:
    """The functions of a collapsed py-spy profile (``frame;frame;... count``) with the
    most samples: innermost (``self``) and anywhere on the stack (``inclusive``), in
    percent of all samples; frames named by function and file."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    text = collapsed.read_text(errors="replace") if collapsed.exists() else ""
    for line in text.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = [_frame_name(frame) for frame in stack.split(";")]
        total += int(n)
        own[frames[-1]] += int(n)
        for frame in set(frames):
            inclusive[frame] += int(n)
    total = total or 1
    return {
        kind: {frame: round(100 * n / total, 1) for frame, n in counter.most_common(top)}
        for kind, counter in (("self", own), ("inclusive", inclusive))
    }


def _frame_name(frame: str) -> str:
    """``function (path/to/file.py:line)`` → ``function (file.py)``."""
    function, _, where = frame.partition(" (")
    return f"{function} ({Path(where.split(':')[0]).name})" if where else function


def _phone_srtp(suite: str | None, keys: list[list[str]] | None) -> tuple[Any, Any]:
    """The two phones' SRTP with --srtp: each sends with its leg's party key and
    receives with the leg's own (the mirror of ``RtpLeg.secure``)."""
    if suite is None or keys is None:
        return None, None
    from proxy.media.srtp import SrtpStreams

    return tuple(  # type: ignore[return-value]
        SrtpStreams(suite, bytes.fromhex(theirs), bytes.fromhex(ours)) for ours, theirs in keys
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-record", dest="record", action="store_false")
    parser.add_argument("--media", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--asyncio", action="store_true", help="plain asyncio, not uvloop")
    parser.add_argument("--no-vad", dest="vad", action="store_false", help="no speech detection")
    parser.add_argument("--fsync", choices=("chunk", "segment", "none"), default="chunk")
    parser.add_argument(
        "--switch-interval",
        type=float,
        help="the media process's sys.setswitchinterval, in seconds (CPython's is 0.005)",
    )
    parser.add_argument(
        "--srtp",
        choices=("AES_CM_128_HMAC_SHA1_80", "AEAD_AES_256_GCM", "AES_CM_128_HMAC_SHA1_32"),
        help="SDES-SRTP on both legs of every call, with this suite",
    )
    parser.add_argument("--profile", action="store_true", help="sample the media process")
    args = parser.parse_args()
    if args.calls < 1 or args.calls > 2000 or not 1 <= args.seconds <= 300:
        parser.error("--calls 1..2000 and --seconds 1..300")
    runner = asyncio.run
    if not args.asyncio:
        import uvloop

        runner = uvloop.run  # type: ignore[assignment]
    if args.media:
        if args.switch_interval:
            sys.setswitchinterval(args.switch_interval)
        runner(media_main(args.calls, args.record, args.dir, args.vad, args.fsync, args.srtp))
        return
    result = runner(load_main(args))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
