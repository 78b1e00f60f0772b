"""Whole-proxy load benchmark: SIPp drives recorded calls through recproxy, and — in the
same run, with the same load — through the systems a practice would otherwise pick:
Kamailio + rtpengine with recording on, and sippy's B2BUA with its in-process rtpproxy.

Each system gets the same SIPp caller (``shared/benchmark-peers/uac5.xml``: INVITE, 5 s
of PCMA in 30 ms packets, BYE) and the same call taker (``scenarios/uas_pcma_play.xml``:
answers PCMA and plays 5 s of PCMA back), at a fixed offered load.  Reported per system,
from the system's own CPU accounting (/proc) and SIPp's statistics: calls attempted,
completed and failed; peak concurrent calls; CPU-seconds per call and per call-second of
recorded audio; RSS per active call.  For recproxy also: packets relayed and dropped
inside the proxy (its /metrics), call set-up CPU, and recording completeness (every
recording's length against its bridged time).  Then the ratio of recproxy's CPU per
recorded call-second to each peer's.

    python benchmarks/load.py --rate 10 --calls 200                # recproxy + installed peers
    python benchmarks/load.py --install-peers                      # apt + pip, once
    python benchmarks/load.py --systems recproxy --rate 40 --calls 400

Loopback only; every run is bounded (--calls, and a timeout).  Not part of the tests.
"""

from __future__ import annotations

import argparse
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
from dataclasses import dataclass, field
from pathlib import Path

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
    extra_config = ""  # TOML appended to the config (retention_sweep.py adds [retention])
    notice_seconds = 1.0  # setup_cost.py: 0.2

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
        dropped = sum(v for k, v in after.items() if k.startswith("recproxy_rtp_dropped_total"))
        return {
            "rtp_packets_received": int(received),
            "rtp_packets_relayed": int(relayed),
            "rtp_packets_dropped": int(dropped),
        }

    def recordings(self) -> dict[str, object]:
        """Every recording's length (from its chunks on disk) against its bridged time."""
        sys.path.insert(0, str(ROOT))
        from proxy.storage.reader import recover

        db = sqlite3.connect(self.workdir / "data" / "catalog.sqlite3")
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
        return {
            "bridged_calls": calls,
            "recordings": len(rows),
            "recording_states": states,
            "recorded_seconds": round(recorded, 1),
            "length_error_ms_p50": round(1000 * errors[len(errors) // 2], 1) if errors else None,
            "length_error_ms_max_abs": round(1000 * max(abs(e) for e in errors), 1)
            if errors
            else None,
            "within_20ms": sum(1 for e in errors if abs(e) <= 0.02),
        }


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


def make_pcap_5s(workdir: Path) -> Path:
    """g711a_5s.pcap: the first 167 packets (30 ms each) of SIPp's g711a.pcap."""
    target = workdir / "g711a_5s.pcap"
    data = SIPP_PCAP.read_bytes()
    out = bytearray(data[:24])
    offset, kept = 24, 0
    while offset + 16 <= len(data) and kept < 167:
        caplen = struct.unpack_from("<I", data, offset + 8)[0]
        out += data[offset : offset + 16 + caplen]
        offset += 16 + caplen
        kept += 1
    target.write_bytes(bytes(out))
    return target


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


def run_system(system: System, args: argparse.Namespace) -> dict[str, object]:
    work = system.workdir
    make_pcap_5s(work)
    lc = SCENARIOS / "uas_pcma_play_lc.xml"
    if not lc.exists():  # sippy rejects an upper-case ;transport=UDP in a Contact
        lc.write_text((SCENARIOS / "uas_pcma_play.xml").read_text().replace(
            "transport=[transport]", "transport=udp"))  # fmt: skip
    system.start()
    uas = subprocess.Popen(
        ["sipp", "-sf", str(system.uas_scenario), "-i", "127.0.0.1", "-p", str(UAS_PORT),
         "-mp", "17000", "-nostdin"],
        cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.5)
    pids = system.pids()
    sampler = Sampler(pids)
    sampler.start()
    cpu_before = cpu_seconds(pids)
    started = time.monotonic()
    screen = work / "uac_screen.log"
    uac = subprocess.run(
        ["sipp", f"127.0.0.1:{system.port}", "-sf", str(system.uac_scenario), "-s", "1000",
         "-i", "127.0.0.1", "-p", str(UAC_PORT), "-mp", "16000",
         "-r", str(args.rate), "-l", str(args.limit), "-m", str(args.calls),
         "-nostdin", "-timeout", str(args.timeout), "-timeout_error",
         "-trace_screen", "-screen_file", str(screen)],
        cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=args.timeout + 60,
    )  # fmt: skip
    wall = time.monotonic() - started
    time.sleep(6)  # let the last calls' BYEs, recordings and timewaits settle
    cpu = cpu_seconds(system.pids()) - cpu_before
    sampler.stop()
    extras = system.extras()
    interrupt(uas, 10)
    system.stop()
    stats = sipp_stats(screen.read_text(errors="replace") if screen.exists() else "")
    completed = max(stats["completed"], 1)
    call_seconds = stats["completed"] * 5.0  # uac5: 5 s of audio each
    result: dict[str, object] = {
        "system": system.name,
        "sipp_rc": uac.returncode,
        **stats,
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 2),
        "cpu_ms_per_call": round(1000 * cpu / completed, 2),
        "cpu_ms_per_call_second": round(1000 * cpu / max(call_seconds, 1), 3),
        "peak_rss_mb": round(sampler.peak_rss / 2**20, 1),
        "rss_kb_per_active_call": round(
            (sampler.peak_rss - sampler.idle_rss) / 1024 / max(stats["peak_concurrent"], 1), 1
        ),
        **extras,
    }
    if isinstance(system, Recproxy):
        recorded = system.recordings()
        result.update(recorded)
        seconds = float(recorded["recorded_seconds"])  # type: ignore[arg-type]
        result["cpu_ms_per_recorded_second"] = round(1000 * cpu / max(seconds, 1), 3)
        relayed = result.get("rtp_packets_relayed") or 0
        if isinstance(relayed, int) and relayed:
            result["cpu_us_per_relayed_packet"] = round(1e6 * cpu / relayed, 1)
    else:
        result["cpu_ms_per_recorded_second"] = result["cpu_ms_per_call_second"]
    return result


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default="recproxy,kamailio,sippy")
    parser.add_argument("--rate", type=float, default=10.0, help="new calls per second")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--limit", type=int, default=500, help="most calls at once")
    parser.add_argument("--timeout", type=int, default=300, help="seconds, per system")
    parser.add_argument("--install-peers", action="store_true")
    parser.add_argument(
        "--recproxy-fsync", choices=("chunk", "segment", "none"), default="chunk",
        help="recproxy's recording.fsync (default chunk: at most ~1 s lost on power loss)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, help="write the results as JSON here too")
    args = parser.parse_args()
    if not (0 < args.rate <= 200 and 1 <= args.calls <= 5000):
        parser.error("--rate 0-200, --calls 1-5000")
    if args.install_peers:
        install_peers()
    names = [n for n in args.systems.split(",") if n]
    unknown = set(names) - {"recproxy", "kamailio", "sippy"}
    if unknown:
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
    ports = {"recproxy": 5180, "kamailio": 5160, "sippy": 5165}
    classes = {"recproxy": Recproxy, "kamailio": Kamailio, "sippy": Sippy}
    results: list[dict[str, object]] = []
    for name in names:
        why = available(name)
        if why is not None:
            print(f"{name}: skipped ({why}; run with --install-peers)", file=sys.stderr)
            continue
        workdir = Path(tempfile.mkdtemp(prefix=f"recproxy-load-{name}-"))
        system = classes[name](name, ports[name], workdir)
        if isinstance(system, Recproxy):
            system.fsync = args.recproxy_fsync
        print(f"{name}: {args.calls} calls at {args.rate}/s … ({workdir})", file=sys.stderr)
        try:
            results.append(run_system(system, args))
        finally:
            system.stop()
        print(json.dumps(results[-1], indent=2))
    ours = next((r for r in results if r["system"] == "recproxy"), None)
    if ours is not None:
        for peer in results:
            if peer is ours:
                continue
            theirs = float(peer["cpu_ms_per_recorded_second"])  # type: ignore[arg-type]
            mine = float(ours["cpu_ms_per_recorded_second"])  # type: ignore[arg-type]
            print(
                f"recproxy / {peer['system']}: CPU per recorded call-second "
                f"{mine:.3f} / {theirs:.3f} ms = {mine / theirs:.2f}x"
            )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
