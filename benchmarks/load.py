"""Whole-proxy load benchmark: SIPp drives recorded calls through recproxy, and — in the
same run, with the same load — through the systems a practice would otherwise pick:
Kamailio + rtpengine with recording on, and sippy's B2BUA with its in-process rtpproxy.

Each system gets the same SIPp caller (``shared/benchmark-peers/uac5.xml``: INVITE,
``--duration`` seconds of PCMA in 30 ms packets, BYE) and the same call taker
(``scenarios/uas_pcma_play.xml``: answers PCMA and plays the same length of PCMA back),
at a fixed offered load.  Reported per system, from the system's own CPU accounting
(/proc, every process and thread of it) and SIPp's statistics: calls attempted, completed
and failed; peak concurrent calls; CPU per call and per call-second of recorded audio;
RSS per active call; RTP packets the call taker sent and the caller received (nftables
counters on loopback, when ``nft`` is there).  For recproxy also: packets relayed and
dropped inside the proxy (its /metrics), and recording completeness (every recording's
length against its bridged time).  Then the ratio of recproxy's CPU per recorded
call-second to each peer's.

Profiles (``--profile``): ``short`` is today's 5 s calls at ``--rate``; ``long`` is 60 s
calls ramped at 5 a second to 200 concurrent and held there (600 calls), where media
dominates.  ``--signalling-only`` sends no RTP at all (a 200 ms notice for recproxy,
``--duration`` from ACK to BYE): CPU per call set-up and tear-down, for every system.
``--catalog postgresql`` puts recproxy's catalog on a PostgreSQL server the run starts
(``benchmarks/catalog_server.py``, fsync on) and reports the server's CPU apart
(``catalog_server_cpu_ms_per_call``) and added to recproxy's
(``cpu_ms_per_call_with_catalog_server``).

    python benchmarks/load.py --rate 10 --calls 200                # recproxy + installed peers
    python benchmarks/load.py --install-peers                      # apt + pip, once
    python benchmarks/load.py --systems recproxy --rate 40 --calls 400
    python benchmarks/load.py --profile long                       # 60 s calls, 200 at once
    python benchmarks/load.py --signalling-only --duration 0.5 --rate 20 --calls 400
    python benchmarks/load.py --systems recproxy --workers 2       # media worker processes
    python benchmarks/load.py --systems recproxy --signalling-only --duration 0.5 \
        --rate 20 --calls 400 --catalog postgresql   # the catalog on PostgreSQL (issue 20)

Loopback only; every run is bounded (--calls, and a timeout).  Not part of the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PEERS = SHARED / "benchmark-peers"
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
PEER_VENV = Path(__file__).resolve().parent / ".peers-venv"
SIPP_PCAP = Path("/usr/share/sip-tester/g711a.pcap")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

UAS_PORT = 5170  # kamailio.cfg sends every call here
UAC_PORT = 5171


@dataclass(frozen=True)
class Load:
    """What SIPp offers each system: ``calls`` calls started at ``rate`` a second, at most
    ``limit`` at once, each ``duration`` seconds from ACK to BYE, with G.711 both ways or
    (``signalling_only``) no RTP at all."""

    rate: float
    calls: int
    limit: int
    duration: float
    signalling_only: bool = False
    timeout: int = 300  # seconds, per system (SIPp's -timeout)

    @property
    def packets(self) -> int:
        """RTP packets each side sends per call (30 ms each; 167 in today's 5 s)."""
        return 0 if self.signalling_only else round(self.duration * 1000 / 30)


#: ``--profile``: the defaults each profile gives the flags left unset.  ``long`` ramps at
#: 5 calls a second to 200 concurrent 60 s calls (reached after 40 s) and holds there
#: until 600 calls have been placed (about 4 minutes a system).
PROFILES: dict[str, dict[str, float]] = {
    "short": {"rate": 10.0, "calls": 200, "limit": 500, "duration": 5.0},
    "long": {"rate": 5.0, "calls": 600, "limit": 200, "duration": 60.0},
}


# ---------------------------------------------------------------------------------------
# process accounting from /proc


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime (and reaped children's) of the processes, in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return total / CLK_TCK


def thread_times(pids: list[int]) -> dict[str, tuple[float, float]]:
    """Per thread of the processes (``pid/tid name``): user and system CPU seconds, from
    ``/proc/PID/task/TID/stat``; the split says how much of a process's CPU is the
    kernel's and which thread spends it."""
    found: dict[str, tuple[float, float]] = {}
    for pid in pids:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                head, _, tail = (task / "stat").read_text().rpartition(")")
            except OSError:
                continue
            fields = tail.split()
            name = head.partition("(")[2]
            found[f"{pid}/{task.name} {name}"] = (
                int(fields[11]) / CLK_TCK,
                int(fields[12]) / CLK_TCK,
            )
    return found


def cpu_split(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, object]:
    """User and system CPU between two ``thread_times`` readings, in total and per thread
    (busiest first; a thread that ended between the readings is not counted)."""
    threads = {
        key: (user - before.get(key, (0.0, 0.0))[0], system - before.get(key, (0.0, 0.0))[1])
        for key, (user, system) in after.items()
    }
    busy = sorted(threads.items(), key=lambda item: -(item[1][0] + item[1][1]))
    processes: dict[str, float] = {}  # "pid name" (its main thread's name): user + system
    names = {key.split("/")[0]: key.split(" ", 1)[1] for key in after if _main_thread(key)}
    for key, (user, system) in threads.items():
        pid = key.split("/")[0]
        label = f"{pid} {names.get(pid, '?')}"
        processes[label] = processes.get(label, 0.0) + user + system
    return {
        "cpu_user_seconds": round(sum(user for user, _ in threads.values()), 2),
        "cpu_system_seconds": round(sum(system for _, system in threads.values()), 2),
        "cpu_by_process": {
            label: round(seconds, 2)
            for label, seconds in sorted(processes.items(), key=lambda item: -item[1])
            if seconds > 0
        },
        "cpu_by_thread": {
            key: {"user": round(user, 2), "system": round(system, 2)}
            for key, (user, system) in busy
            if user + system > 0
        },
    }


def _main_thread(key: str) -> bool:
    """Whether ``pid/tid name`` is a process's main thread (tid == pid)."""
    pid, _, rest = key.partition("/")
    return rest.split(" ", 1)[0] == pid


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        except OSError:
            continue
    return total


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (kamailio forks its workers)."""
    found = [pid]
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    i = 0
    while i < len(found):
        found.extend(children.get(found[i], []))
        i += 1
    return found


class Sampler(threading.Thread):
    """Samples RSS of the system's processes while the load runs."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak_rss = 0
        self.idle_rss = rss_bytes(pids)
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.5):
            self.peak_rss = max(self.peak_rss, rss_bytes(self.pids))

    def stop(self) -> None:
        self._halt.set()
        self.join()


# ---------------------------------------------------------------------------------------
# the systems under test


@dataclass
class System:
    name: str
    port: int
    workdir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    uac_scenario: Path = PEERS / "uac5.xml"
    uas_scenario: Path = SCENARIOS / "uas_pcma_play.xml"

    def start(self) -> None:
        raise NotImplementedError

    def pids(self) -> list[int]:
        out: list[int] = []
        for proc in self.procs:
            out.extend(descendants(proc.pid))
        return out

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()

    def extras(self) -> dict[str, object]:
        return {}

    def _spawn(self, args: list[str], log: str, **kwargs: object) -> subprocess.Popen[bytes]:
        out = open(self.workdir / log, "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(  # type: ignore[call-overload]
            args, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir, **kwargs
        )  # in the work folder: sippy's rtpproxy writes its accounting file there
        self.procs.append(proc)
        return proc


class Recproxy(System):
    fsync = "chunk"
    workers = 0  # [media] workers: media worker processes (--workers)
    extra_config = ""  # TOML appended to the config (retention_sweep.py adds [retention])
    notice_seconds = 1.0  # build_system: SHORTEST_NOTICE when no RTP is sent
    catalog_url = ""  # [catalog] url: a PostgreSQL catalog (--catalog postgresql)

    def start(self) -> None:
        notice = self.workdir / "notice.wav"
        _write_notice(notice, seconds=self.notice_seconds)
        config = self.workdir / "recproxy.toml"
        config.write_text(
            f"""
[sip]
listen = "127.0.0.1:{self.port}"
advertise = "127.0.0.1"
trusted_peers = ["127.0.0.1/32"]
transports = ["udp"]
[routing]
call_taker = "sip:desk@127.0.0.1:{UAS_PORT}"
[notice]
prompt = "{notice}"
[media]
rtp_ports = "40000-49999"
workers = {self.workers}
[recording]
fsync = "{self.fsync}"
[http]
listen = "127.0.0.1:18281"
[records]
child = "off"  # the call proxy alone is measured
[shutdown]
grace_seconds = 10
[limits]
max_calls = 2000
max_calls_per_source = 2000
{f'[catalog]{chr(10)}url = "{self.catalog_url}"' if self.catalog_url else ""}
{self.extra_config}"""
        )
        self._spawn(
            [str(ROOT / ".venv/bin/recproxy"), "serve", "--config", str(config)], "recproxy.log"
        )
        _wait_http("http://127.0.0.1:18281/healthz", 20)
        self.metrics_before = _metrics("http://127.0.0.1:18281/metrics")

    def extras(self) -> dict[str, object]:
        after = _metrics("http://127.0.0.1:18281/metrics")
        before = self.metrics_before

        def delta(name: str) -> float:
            return after.get(name, 0.0) - before.get(name, 0.0)

        relayed = delta('recproxy_rtp_packets_total{direction="out"}')
        received = delta('recproxy_rtp_packets_total{direction="in"}')
        dropped = dropped_by_reason(after)
        return {
            "rtp_packets_received": int(received),
            "rtp_packets_relayed": int(relayed),
            "rtp_packets_dropped": sum(dropped.values()),
            "rtp_dropped_by_reason": dropped,
        }

    def recordings(self) -> dict[str, object]:
        """Every recording's length (from its chunks on disk) against its bridged time."""
        sys.path.insert(0, str(ROOT))
        from proxy.storage.reader import recover

        db = self._catalog()
        rows = db.execute(
            "SELECT r.id, c.bridged_at, c.ended_at, r.state FROM recordings r"
            " JOIN calls c ON c.id = r.call_id"
            " WHERE r.state NOT IN ('deleting', 'deleted')"  # no audio left to measure
        ).fetchall()
        calls = db.execute("SELECT COUNT(*) FROM calls WHERE bridged_at IS NOT NULL").fetchone()[0]
        errors: list[float] = []
        states: dict[str, int] = {}
        recorded = 0.0
        for rid, bridged, ended, state in rows:
            states[state] = states.get(state, 0) + 1
            seconds = recover(self.workdir / "data" / "recordings" / rid).duration_s
            recorded += seconds
            if bridged and ended:
                errors.append(seconds - (ended - bridged) / 1000)
        errors.sort()
        lost, late = db.execute(
            "SELECT COALESCE(SUM(lost_frames), 0), COALESCE(SUM(late_frames), 0)"
            " FROM recording_quality"
        ).fetchone()
        return {
            "bridged_calls": calls,
            "recorded_lost_frames": lost,  # both channels, all recordings
            "recorded_late_frames": late,
            "recordings": len(rows),
            "recording_states": states,
            "recorded_seconds": round(recorded, 1),
            "length_error_ms_p50": round(1000 * errors[len(errors) // 2], 1) if errors else None,
            "length_error_ms_max_abs": round(1000 * max(abs(e) for e in errors), 1)
            if errors
            else None,
            "within_20ms": sum(1 for e in errors if abs(e) <= 0.02),
        }

    def _catalog(self) -> Any:
        """The catalog serve wrote, for plain SQL reads: its SQLite file, or the
        PostgreSQL database (through the catalog's own connection, which takes the same
        SQL)."""
        if not self.catalog_url:
            return sqlite3.connect(self.workdir / "data" / "catalog.sqlite3")
        from proxy.storage.catalog.pg_connection import connect

        return connect(self.catalog_url, lock_timeout_ms=5000)


class Kamailio(System):
    def start(self) -> None:
        rec = self.workdir / "rec"
        rec.mkdir()
        self._spawn(
            [
                "rtpengine", "--config-file=none", "--table=-1", "--interface=127.0.0.1",
                "--listen-ng=127.0.0.1:2223", "--listen-cli=127.0.0.1:2224",
                "--port-min=31000", "--port-max=39799", "--delete-delay=0",
                f"--recording-dir={rec}", "--recording-method=pcap", "--foreground",
                "--log-stderr", "--log-level=5",
            ],
            "rtpengine.log",
        )  # fmt: skip
        time.sleep(1.0)
        self._spawn(
            [
                "kamailio", "-f", str(PEERS / "kamailio.cfg"), "-A", "WITH_REC", "-DD", "-E",
                "-m", "256", "-M", "16", "-P", str(self.workdir / "kamailio.pid"),
                "-Y", str(self.workdir),
            ],
            "kamailio.log",
        )  # fmt: skip
        time.sleep(2.0)


class Sippy(System):
    uac_scenario = PEERS / "uac5_norr.xml"
    uas_scenario = SCENARIOS / "uas_pcma_play_lc.xml"

    def start(self) -> None:
        b2bua = PEER_VENV / "bin" / "b2bua_radius"
        self._spawn(
            [
                str(b2bua), "-f", "-u", "-A", "0", "-l", "127.0.0.1", "-p", str(self.port),
                "-s", f"127.0.0.1:{UAS_PORT}",
                "-r", "rtp.io:-l;127.0.0.1;-m;31000;-M;33999;-d;info",
                "-c", str(self.workdir / "b2bua.sock"), "-P", str(self.workdir / "b2bua.pid"),
            ],
            "sippy.log",
        )  # fmt: skip
        time.sleep(2.0)


# ---------------------------------------------------------------------------------------
# helpers


def _write_notice(path: Path, seconds: float) -> None:
    import math
    import wave

    frames = int(8000 * seconds)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        samples = (int(6000 * math.sin(2 * math.pi * 440 * n / 8000)) for n in range(frames))
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))


def interrupt(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Stop ``proc`` as Ctrl-C would (SIPp writes its statistics, py-spy its profile);
    killed if it has not ended within ``timeout`` seconds."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()


def report(result: object, out: Path | None) -> None:
    """Print a benchmark's result as JSON, and keep it in ``out`` too (results-*.json)."""
    text = json.dumps(result, indent=2)
    print(text)
    if out is not None:
        out.write_text(text + "\n")


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def _metrics(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        try:
            values[name] = float(value)
        except ValueError:
            continue
    return values


def dropped_by_reason(metrics: dict[str, float]) -> dict[str, int]:
    """recproxy's ``recproxy_rtp_dropped_total`` by reason: ``late`` and ``duplicate`` are
    the recorder's jitter buffer (after their playout time), not the relay's; the relay
    drops ``unknown_source`` and ``malformed`` packets."""
    found: dict[str, int] = {}
    for name, value in metrics.items():
        reason = re.fullmatch(r'recproxy_rtp_dropped_total\{reason="([^"]*)"\}', name)
        if reason is not None:
            found[reason.group(1)] = int(value)
    return found


def make_pcap(workdir: Path, packets: int) -> Path:
    """A pcap of ``packets`` PCMA packets (30 ms each) for SIPp's ``play_pcap_audio``.

    The first packets are SIPp's own ``g711a.pcap`` unchanged (so 167 of them are the
    ``g711a_5s.pcap`` of today's 5 s runs); past its 236 the recording is replayed with
    the RTP sequence number, timestamp and capture time carried on, so that a 60 s call
    is one continuous stream to the receiver."""
    target = workdir / f"g711a_{packets}p.pcap"
    target.write_bytes(extend_pcap(SIPP_PCAP.read_bytes(), packets))
    return target


def extend_pcap(data: bytes, packets: int) -> bytes:
    """``packets`` records of the Ethernet/IPv4/UDP/RTP pcap ``data`` (see make_pcap)."""
    records: list[tuple[int, bytes]] = []  # (capture time in µs, frame)
    offset = 24
    while offset + 16 <= len(data):
        seconds, micros, caplen = struct.unpack_from("<III", data, offset)
        records.append((seconds * 1_000_000 + micros, data[offset + 16 : offset + 16 + caplen]))
        offset += 16 + caplen
    if not records:
        raise ValueError("no packets in the pcap")
    first_time, first = records[0]
    rtp = 14 + (first[14] & 0x0F) * 4 + 8  # Ethernet, IPv4 header, UDP header
    seq0, ts0 = struct.unpack_from("!HI", first, rtp + 2)
    period = (records[-1][0] - first_time) + 30_000  # one lap of the recording, in µs
    out = bytearray(data[:24])
    for n in range(packets):
        lap, index = divmod(n, len(records))
        when, frame = records[index]
        if lap:
            edited = bytearray(frame)
            edited[rtp + 1] &= 0x7F  # no marker bit: the stream goes on
            struct.pack_into(
                "!HI", edited, rtp + 2, (seq0 + n) & 0xFFFF, (ts0 + 240 * n) & 0xFFFFFFFF
            )
            frame, when = bytes(edited), when + lap * period
        out += struct.pack("<IIII", when // 1_000_000, when % 1_000_000, len(frame), len(frame))
        out += frame
    return bytes(out)


_PLAY = re.compile(r"\s*<nop>\s*<action>\s*<exec play_pcap_audio=\"[^\"]*\"/>\s*</action>\s*</nop>")
_PAUSE = re.compile(r'<pause milliseconds="\d+"/>')


def derive_scenario(template: str, pcap: str | None, pause_ms: int | None) -> str:
    """A SIPp scenario like ``template`` playing ``pcap`` instead of its own (None: no RTP
    at all, the ``play_pcap_audio`` action removed), and pausing ``pause_ms`` between ACK
    and BYE instead of its own pause (None: unchanged; the call taker has none)."""
    if len(_PLAY.findall(template)) != 1:
        raise ValueError("the scenario must play exactly one pcap")
    if pcap is None:
        text = _PLAY.sub("", template)
    else:
        text = _PLAY.sub(
            lambda m: re.sub(r'play_pcap_audio="[^"]*"', f'play_pcap_audio="{pcap}"', m.group(0)),
            template,
        )
    if pause_ms is not None:
        if len(_PAUSE.findall(text)) != 1:
            raise ValueError("the caller's scenario must have exactly one pause")
        text = _PAUSE.sub(f'<pause milliseconds="{pause_ms}"/>', text)
    return text


def scenarios(system: System, load: Load) -> tuple[Path, Path]:
    """The caller's and the call taker's scenario for ``load``, written in the work
    folder with the pcap they play."""
    pcap = None if load.signalling_only else make_pcap(system.workdir, load.packets).name
    uac = system.workdir / f"uac-{system.name}.xml"
    uas = system.workdir / f"uas-{system.name}.xml"
    pause = round(1000 * load.duration)
    uac.write_text(derive_scenario(system.uac_scenario.read_text(), pcap, pause))
    uas.write_text(derive_scenario(system.uas_scenario.read_text(), pcap, None))
    return uac, uas


class RtpCounters:
    """nftables counters on loopback: RTP packets the call taker's SIPp sent (from its
    media port) and the caller's SIPp was delivered (to its media port) — the callee →
    caller direction, which every system relays only once the call is up.  The kernel
    counts; no process of the benchmark touches a packet.  Without ``nft`` (or rights),
    nothing is counted."""

    TABLE = "recproxy_load_bench"

    def __init__(self, caller_port: int, callee_port: int) -> None:
        self.ports = caller_port, callee_port
        self.enabled = shutil.which("nft") is not None

    def __enter__(self) -> RtpCounters:
        if self.enabled:
            caller, callee = self.ports
            script = (
                f"table inet {self.TABLE} {{\n"
                f" counter from_callee {{}}\n counter to_caller {{}}\n"
                f" chain input {{ type filter hook input priority 0; policy accept;\n"
                f"  iif lo udp sport {callee} counter name from_callee\n"
                f"  iif lo udp dport {caller} counter name to_caller\n }}\n}}\n"
            )
            subprocess.run(["nft", "delete", "table", "inet", self.TABLE], capture_output=True)
            done = subprocess.run(["nft", "-f", "-"], input=script.encode(), capture_output=True)
            self.enabled = done.returncode == 0
        return self

    def read(self) -> dict[str, int]:
        if not self.enabled:
            return {}
        out = subprocess.run(
            ["nft", "-j", "list", "counters", "table", "inet", self.TABLE],
            capture_output=True, check=True,
        ).stdout  # fmt: skip
        return counters_from_json(out.decode())

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            subprocess.run(["nft", "delete", "table", "inet", self.TABLE], capture_output=True)


def counters_from_json(text: str) -> dict[str, int]:
    """``{name: packets}`` from ``nft -j list counters`` output."""
    found: dict[str, int] = {}
    for item in json.loads(text).get("nftables", []):
        counter = item.get("counter")
        if counter is not None:
            found[counter["name"]] = int(counter["packets"])
    return found


def sipp_stats(screen: str) -> dict[str, int]:
    def counter(name: str) -> int:
        found = re.findall(rf"{name}\s*\|\s*\d+\s*\|\s*(\d+)", screen)
        return int(found[-1]) if found else 0

    peak = re.findall(r"Peak was (\d+) calls", screen)
    return {
        "attempted": counter("Total Calls created") or counter("Outgoing calls created"),
        "completed": counter("Successful call"),
        "failed": counter("Failed call"),
        "peak_concurrent": int(peak[-1]) if peak else 0,
    }


#: What run_system calls once the system is up (its processes and work folder) and
#: whose returned callable it calls once the CPU has been read; that result joins the
#: system's (setup_cost.py's py-spy profile).
Watch = Callable[[list[int], Path], Callable[[], dict[str, object]]]


def run_system(system: System, load: Load, watch: Watch | None = None) -> dict[str, object]:
    work = system.workdir
    lc = SCENARIOS / "uas_pcma_play_lc.xml"
    if not lc.exists():  # sippy rejects an upper-case ;transport=UDP in a Contact
        lc.write_text((SCENARIOS / "uas_pcma_play.xml").read_text().replace(
            "transport=[transport]", "transport=udp"))  # fmt: skip
    uac_scenario, uas_scenario = scenarios(system, load)
    system.start()
    uas = subprocess.Popen(
        ["sipp", "-sf", str(uas_scenario), "-i", "127.0.0.1", "-p", str(UAS_PORT),
         "-mp", "17000", "-nostdin"],
        cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.5)
    pids = system.pids()
    finish = watch(pids, work) if watch is not None else None
    sampler = Sampler(pids)
    sampler.start()
    with RtpCounters(caller_port=16000, callee_port=17000) as counters:
        cpu_before = cpu_seconds(pids)
        threads_before = thread_times(pids)
        started = time.monotonic()
        screen = work / "uac_screen.log"
        uac = subprocess.run(
            ["sipp", f"127.0.0.1:{system.port}", "-sf", str(uac_scenario), "-s", "1000",
             "-i", "127.0.0.1", "-p", str(UAC_PORT), "-mp", "16000",
             "-r", str(load.rate), "-l", str(load.limit), "-m", str(load.calls),
             "-nostdin", "-timeout", str(load.timeout), "-timeout_error",
             "-trace_screen", "-screen_file", str(screen)],
            cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            timeout=load.timeout + 60,
        )  # fmt: skip
        wall = time.monotonic() - started
        time.sleep(6)  # let the last calls' BYEs, recordings and timewaits settle
        cpu = cpu_seconds(system.pids()) - cpu_before
        split = cpu_split(threads_before, thread_times(system.pids()))
        packets = counters.read()
    sampler.stop()
    watched = finish() if finish is not None else {}
    extras = system.extras()
    interrupt(uas, 10)
    system.stop()
    stats = sipp_stats(screen.read_text(errors="replace") if screen.exists() else "")
    completed = max(stats["completed"], 1)
    call_seconds = 0.0 if load.signalling_only else stats["completed"] * load.duration
    result: dict[str, object] = {
        "system": system.name,
        "workdir": str(work),
        **({"media_workers": system.workers} if isinstance(system, Recproxy) else {}),
        "sipp_rc": uac.returncode,
        **stats,
        "rate": load.rate,
        "limit": load.limit,
        "duration_seconds": load.duration,
        "signalling_only": load.signalling_only,
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 2),
        "cpu_ms_per_call": round(1000 * cpu / completed, 2),
        "cpu_ms_per_call_second": round(1000 * cpu / call_seconds, 3) if call_seconds else None,
        "peak_rss_mb": round(sampler.peak_rss / 2**20, 1),
        "rss_kb_per_active_call": round(
            (sampler.peak_rss - sampler.idle_rss) / 1024 / max(stats["peak_concurrent"], 1), 1
        ),
        **split,
        **rtp_delivery(packets, load, stats["completed"]),
        **extras,
        **watched,
    }
    if isinstance(system, Recproxy):
        recorded = system.recordings()
        result.update(recorded)
        seconds = float(recorded["recorded_seconds"])  # type: ignore[arg-type]
        result["cpu_ms_per_recorded_second"] = (
            None if load.signalling_only else round(1000 * cpu / max(seconds, 1), 3)
        )
        relayed = result.get("rtp_packets_relayed") or 0
        if isinstance(relayed, int) and relayed and not load.signalling_only:
            result["cpu_us_per_relayed_packet"] = round(1e6 * cpu / relayed, 1)
    else:
        result["cpu_ms_per_recorded_second"] = result["cpu_ms_per_call_second"]
    return result


def rtp_delivery(packets: dict[str, int], load: Load, completed: int) -> dict[str, object]:
    """The callee → caller RTP counts: sent by the call taker's SIPp, delivered to the
    caller's, and the shortfall as a share of what was sent.  For recproxy the delivered
    count also holds the notice it plays to the caller (its own loss is in its metrics)."""
    if not packets:
        return {}
    sent, delivered = packets.get("from_callee", 0), packets.get("to_caller", 0)
    return {
        "rtp_callee_expected": load.packets * completed,
        "rtp_callee_sent": sent,
        "rtp_caller_delivered": delivered,
        "rtp_callee_to_caller_loss_percent": round(100 * (sent - delivered) / sent, 3)
        if sent
        else None,
    }


def install_peers() -> None:
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "kamailio",
         "rtpengine-daemon", "sip-tester"],
        check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )  # fmt: skip
    if not PEER_VENV.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    subprocess.run([str(PEER_VENV / "bin/pip"), "install", "-q", "sippy", "rtp-io"], check=True)


def available(name: str) -> str | None:
    """None when the system can run here, else why not."""
    if name == "kamailio":
        missing = [t for t in ("kamailio", "rtpengine") if shutil.which(t) is None]
        return f"not installed: {', '.join(missing)}" if missing else None
    if name == "sippy":
        return None if (PEER_VENV / "bin/b2bua_radius").exists() else "not installed"
    return None


PORTS = {"recproxy": 5180, "kamailio": 5160, "sippy": 5165}
SHORTEST_NOTICE = 0.2  # seconds: the shortest prompt recproxy's start-up accepts


def build_system(
    name: str, load: Load, fsync: str = "chunk", workers: int = 0, catalog_url: str = ""
) -> System:
    """System ``name`` in a fresh work folder, configured for ``load``: recproxy plays the
    shortest notice when no RTP is sent (its set-up is what is measured), with its
    catalog at ``catalog_url`` when one is given (else its SQLite file)."""
    classes = {"recproxy": Recproxy, "kamailio": Kamailio, "sippy": Sippy}
    workdir = Path(tempfile.mkdtemp(prefix=f"recproxy-load-{name}-"))
    system = classes[name](name, PORTS[name], workdir)
    if isinstance(system, Recproxy):
        system.fsync = fsync
        system.workers = workers
        system.catalog_url = catalog_url
        if load.signalling_only:
            system.notice_seconds = SHORTEST_NOTICE
    return system


def closing_lines(results: list[dict[str, object]]) -> list[str]:
    """recproxy's figure against each peer's, one line each, in the form every run since
    issue 6 has printed (CPU per call set-up for a signalling-only run)."""
    ours = next((r for r in results if r["system"] == "recproxy"), None)
    if ours is None:
        return []
    if ours.get("signalling_only"):
        key, what = "cpu_ms_per_call", "CPU per call set-up"
    else:
        key, what = "cpu_ms_per_recorded_second", "CPU per recorded call-second"
    lines = []
    for peer in results:
        if peer is ours or not peer.get(key) or not ours.get(key):
            continue
        theirs = float(peer[key])  # type: ignore[arg-type]
        mine = float(ours[key])  # type: ignore[arg-type]
        lines.append(
            f"recproxy / {peer['system']}: {what} {mine:.3f} / {theirs:.3f} ms = "
            f"{mine / theirs:.2f}x"
        )
    return lines


def load_from(args: argparse.Namespace) -> Load:
    """The Load the flags ask for: the profile's values for every flag left unset."""
    profile = PROFILES[args.profile]
    rate = args.rate if args.rate is not None else profile["rate"]
    calls = args.calls if args.calls is not None else int(profile["calls"])
    duration = args.duration if args.duration is not None else profile["duration"]
    limit = args.limit if args.limit is not None else int(profile["limit"])
    paced = min(rate, limit / duration)  # calls a second once the limit holds them back
    timeout = args.timeout or int(calls / paced + duration + 120)
    return Load(
        rate=rate,
        calls=calls,
        limit=limit,
        duration=duration,
        signalling_only=args.signalling_only,
        timeout=timeout,
    )


def catalog_server() -> contextlib.AbstractContextManager[Any]:
    """``--catalog postgresql``: a PostgreSQL server for recproxy's catalog, fsync on
    (``benchmarks/catalog_server.py``)."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.catalog_server import PORT, running_server

    return running_server(PORT, durable=True)


def watch_catalog(server: Any) -> Watch:
    from benchmarks.catalog_server import watch_server

    watch: Watch = watch_server(server)
    return watch


def with_server(result: dict[str, object]) -> None:
    """The PostgreSQL server's CPU per call beside recproxy's own, and the two added."""
    completed = max(int(result["completed"]), 1)  # type: ignore[call-overload]
    server_ms = 1000 * float(result["catalog_server_cpu_seconds"]) / completed  # type: ignore[arg-type]
    result["catalog_server_cpu_ms_per_call"] = round(server_ms, 2)
    result["cpu_ms_per_call_with_catalog_server"] = round(
        float(result["cpu_ms_per_call"]) + server_ms,
        2,  # type: ignore[arg-type]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default="recproxy,kamailio,sippy")
    parser.add_argument(
        "--profile", choices=sorted(PROFILES), default="short",
        help="short: 5 s calls (default); long: 60 s calls, ramped to 200 concurrent",
    )  # fmt: skip
    parser.add_argument("--rate", type=float, help="new calls per second")
    parser.add_argument("--calls", type=int)
    parser.add_argument("--limit", type=int, help="most calls at once")
    parser.add_argument("--duration", type=float, help="seconds from ACK to BYE")
    parser.add_argument(
        "--signalling-only", action="store_true",
        help="no RTP: CPU per call set-up and tear-down (recproxy plays a 200 ms notice)",
    )  # fmt: skip
    parser.add_argument("--timeout", type=int, help="seconds, per system (default: derived)")
    parser.add_argument("--install-peers", action="store_true")
    parser.add_argument(
        "--recproxy-fsync", choices=("chunk", "segment", "none"), default="chunk",
        help="recproxy's recording.fsync (default chunk: at most ~1 s lost on power loss)",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=int, default=0,
        help="recproxy's [media] workers: media worker processes (default 0: none)",
    )  # fmt: skip
    parser.add_argument(
        "--catalog", choices=("sqlite", "postgresql"), default="sqlite",
        help="recproxy's catalog: its SQLite file (default), or a database on a PostgreSQL "
        "server the benchmark starts on 127.0.0.1:55420 (its CPU reported apart)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, help="write the results as JSON here too")
    args = parser.parse_args()
    load = load_from(args)
    if not (0 < load.rate <= 200 and 1 <= load.calls <= 5000 and 0 < load.duration <= 600):
        parser.error("--rate 0-200, --calls 1-5000, --duration 0-600")
    if args.install_peers:
        install_peers()
    names = [n for n in args.systems.split(",") if n]
    unknown = set(names) - set(PORTS)
    if unknown:
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
    results: list[dict[str, object]] = []
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(catalog_server()) if args.catalog == "postgresql" else None
        for name in names:
            why = available(name)
            if why is not None:
                print(f"{name}: skipped ({why}; run with --install-peers)", file=sys.stderr)
                continue
            url = server.fresh_database() if server is not None and name == "recproxy" else ""
            system = build_system(name, load, args.recproxy_fsync, args.workers, url)
            print(
                f"{name}: {load.calls} calls of {load.duration} s at {load.rate}/s, at most "
                f"{load.limit} at once … ({system.workdir})",
                file=sys.stderr,
            )
            try:
                results.append(run_system(system, load, watch_catalog(server) if url else None))
            finally:
                system.stop()
            if url:
                with_server(results[-1])
            print(json.dumps(results[-1], indent=2))
    for line in closing_lines(results):
        print(line)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
