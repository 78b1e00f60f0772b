"""INVITE flood benchmark: established recorded calls while one source floods INVITEs.

One ``recproxy serve`` with its default limits.  SIPp places ``--calls`` recorded calls
(from 127.0.0.1, PCMU both ways, the e2e scenarios ``uac_call`` / ``uas_answer``); once
they are all bridged, ``flood_sender.py`` — a separate process, bounded in count — sends
``--rate`` INVITE/s for ``--seconds`` from 127.0.0.2 (a trusted peer, so the INVITEs
are admitted until the limits hold them off).  A second SIPp caller places one call in
the middle of the flood.  Reported:

* RTP loss on the established calls: packets the proxy dropped, and frames the recorder
  filled for lost or late audio (its /metrics), with the same run's figures before the
  flood for comparison; every recording's state (target: all ``complete``);
* replies per flood INVITE and the amplification factor, reply bytes over request bytes
  (target: at most 1);
* RSS before, at the peak of, and 15 s and 40 s after the flood (by then the flood's
  transactions have ended), with the transactions, dialogs, calls and RTP ports left;
* whether the call placed during the flood connected.

    .venv/bin/python benchmarks/flood.py                       # 2,000/s for 10 s, 50 calls
    .venv/bin/python benchmarks/flood.py --rate 500 --seconds 3 --calls 10  # quick
    .venv/bin/python benchmarks/flood.py --untrusted           # from an untrusted peer

Loopback only, fixed ports (SIP 5360, HTTP 18381, RTP 40000-49999); every run bounded.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.load import Sampler, _metrics, _wait_http, _write_notice, rss_bytes  # noqa: E402
from tests.e2e import pcap, sipp  # noqa: E402

SIP_PORT, HTTP_PORT = 5360, 18381
TAKER_PORT, CALLER_PORT, LATE_PORT = 5361, 5362, 5363
HEALTH = f"http://127.0.0.1:{HTTP_PORT}/healthz"
METRICS = f"http://127.0.0.1:{HTTP_PORT}/metrics"
NOTICE_S = 1.0


def write_config(work: Path, untrusted: bool) -> Path:
    _write_notice(work / "notice.wav", seconds=NOTICE_S)
    trusted = '"127.0.0.1/32"' if untrusted else '"127.0.0.0/8"'
    config = work / "recproxy.toml"
    config.write_text(
        f"""
[sip]
listen = "127.0.0.1:{SIP_PORT}"
advertise = "127.0.0.1"
trusted_peers = [{trusted}]
transports = ["udp"]
[routing]
call_taker = "sip:desk@127.0.0.1:{TAKER_PORT}"
[notice]
prompt = "{work / "notice.wav"}"
[media]
rtp_ports = "40000-49999"
[http]
listen = "127.0.0.1:{HTTP_PORT}"
[records]
child = "off"  # the call proxy alone is measured
[shutdown]
grace_seconds = 5
"""
    )
    return config


def health() -> dict[str, object]:
    import urllib.request

    with urllib.request.urlopen(HEALTH, timeout=2) as response:
        result: dict[str, object] = json.loads(response.read())
    return result


def media_counters() -> dict[str, float]:
    """Packets in, packets dropped inside the proxy (late, duplicate...), and frames the
    recorder filled with silence because nothing arrived in time."""
    wanted = (
        "recproxy_rtp_packets_total",
        "recproxy_rtp_dropped_total",
        "recproxy_recorder_frames_total",
        "recproxy_recorder_missing_frames_total",
    )
    return {k: v for k, v in _metrics(METRICS).items() if k.startswith(wanted)}


def caller(work: Path, label: str, port: int, media: int, calls: int, hold_ms: int) -> sipp.Sipp:
    """SIPp placing ``calls`` calls, each sending ``hold_ms`` of audio then BYE."""
    pcap.write_rtp_pcap(work / f"{label}.pcap", b"\x55" * (8 * hold_ms))
    scenario = sipp.render_scenario(
        "uac_call", work, rendered_name=f"{label}.xml",
        pre_audio_ms=0, hold_ms=hold_ms, audio=sipp.play_pcap(f"{label}.pcap"),
    )  # fmt: skip
    return sipp.Sipp(
        work, label, scenario, local_port=port, media_port=media,
        remote=("127.0.0.1", SIP_PORT), calls=calls, rate=25, limit=calls,
        timeout_s=hold_ms / 1000 + 60,
    )  # fmt: skip


def call_outcome(work: Path, call_id: str | None) -> dict[str, object] | None:
    """The catalog's outcome of a call (``completed``: it was answered, bridged to the
    call taker, and ended normally), and how long after the end of its notice it was
    bridged (the notice, ringing and the catalog's work on the way)."""
    db = sqlite3.connect(work / "data" / "catalog.sqlite3")
    row = db.execute(
        "SELECT outcome, answered_at, bridged_at FROM calls WHERE sip_call_id = ?", (call_id,)
    ).fetchone()
    if row is None:
        return None
    outcome, answered, bridged = row
    after_notice = (bridged - answered) / 1000 - NOTICE_S if answered and bridged else None
    return {
        "outcome": str(outcome),
        "bridged_s_after_notice": None if after_notice is None else round(after_notice, 2),
    }


def recordings(work: Path) -> dict[str, object]:
    db = sqlite3.connect(work / "data" / "catalog.sqlite3")
    rows = db.execute(
        "SELECT r.state, c.caller FROM recordings r JOIN calls c ON c.id = r.call_id"
    ).fetchall()
    states: dict[str, int] = {}
    for state, who in rows:
        key = f"{'flood' if 'flood' in str(who) else 'calls'}:{state}"
        states[key] = states.get(key, 0) + 1
    return states


def invite_flood(args: argparse.Namespace) -> list[str]:
    """The flood's command: ``flood_sender.py`` at ``--rate`` for ``--seconds``."""
    return [
        sys.executable, str(ROOT / "benchmarks" / "flood_sender.py"),
        "--target", f"127.0.0.1:{SIP_PORT}", "--source", "127.0.0.2",
        "--rate", str(args.rate), "--seconds", str(args.seconds), "--linger", "3",
    ]  # fmt: skip


def start_proxy(work: Path, config: Path) -> tuple[subprocess.Popen[bytes], BinaryIO]:
    """``recproxy serve`` on ``config``, ready; its output in ``work/recproxy.log``."""
    log = (work / "recproxy.log").open("wb")
    proxy = subprocess.Popen(
        [str(ROOT / ".venv/bin/recproxy"), "serve", "--config", str(config)],
        cwd=work, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _wait_http(HEALTH, 20)
    except BaseException:
        proxy.kill()
        log.close()
        raise
    return proxy, log


def bridged_calls(work: Path, calls: int, hold_ms: int, spare: int) -> tuple[sipp.Sipp, sipp.Sipp]:
    """The call taker (answering ``calls`` + ``spare``) and ``calls`` callers talking
    ``hold_ms``, once all are bridged and recording."""
    pcap.write_rtp_pcap(work / "taker.pcap", b"\x55" * (8 * hold_ms))
    taker_scenario = sipp.render_scenario(
        "uas_answer", work, rendered_name="taker.xml", ring_ms=200,
        audio=sipp.play_pcap("taker.pcap"),
    )  # fmt: skip
    taker = sipp.Sipp(
        work, "taker", taker_scenario, local_port=TAKER_PORT, media_port=17000,
        calls=calls + spare, timeout_s=hold_ms / 1000 + 90,
    )  # fmt: skip
    callers = caller(work, "caller", CALLER_PORT, 16000, calls, hold_ms)
    deadline = time.monotonic() + 30
    while health()["calls"] != calls and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(NOTICE_S + 2)  # all bridged and recording
    return taker, callers


def stop_proxy(
    proxy: subprocess.Popen[bytes], log: BinaryIO, work: Path, result: dict[str, object]
) -> None:
    """SIGTERM (SIGKILL after 30 s); the recordings' states and the log's size into
    ``result``."""
    proxy.terminate()
    try:
        proxy.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proxy.kill()
    log.close()
    result["recordings"] = recordings(work)
    text = (work / "recproxy.log").read_text(errors="replace")
    result["log_lines"] = text.count("\n")
    result["log_tracebacks"] = text.count("Traceback")


def run(
    args: argparse.Namespace,
    *,
    sender: Callable[[argparse.Namespace], list[str]] = invite_flood,
    prepare: Callable[[Path, Path], None] | None = None,
) -> dict[str, object]:
    """One run; ``sender`` makes the flood's command (its stdout: one JSON report),
    ``prepare(work, config)`` readies the folder before the proxy starts (another
    flood's configuration and accounts: ``register_flood.py``)."""
    work = Path(tempfile.mkdtemp(prefix="recproxy-flood-"))
    config = write_config(work, args.untrusted)
    if prepare is not None:
        prepare(work, config)
    proxy, log = start_proxy(work, config)
    result: dict[str, object] = {"workdir": str(work)}
    try:
        hold_ms = int((2 * args.seconds + 12) * 1000)  # calm, flood, and after
        # spare answers for stray flood calls
        taker, calls = bridged_calls(work, args.calls, hold_ms, spare=20)
        pid = [proxy.pid]
        before = media_counters()
        time.sleep(args.seconds)  # the same length of calm, for the loss baseline
        calm = media_counters()
        rss_before = rss_bytes(pid)
        sampler = Sampler(pid)
        sampler.start()
        flooding = subprocess.Popen(sender(args), stdout=subprocess.PIPE, text=True)
        time.sleep(args.seconds / 2)
        # it talks for 10 s from its answer: time to hear the notice and be bridged
        late = caller(work, "late", LATE_PORT, 16100, 1, 10_000)
        flood_report = json.loads(flooding.communicate(timeout=args.seconds + 60)[0])
        during = media_counters()
        late.wait(timeout=60)
        flood_ended = time.monotonic()
        sampler.stop()
        rss_peak = max(sampler.peak_rss, rss_bytes(pid))
        calls_ok = calls.wait(timeout=hold_ms / 1000 + 60) == 0
        time.sleep(max(0.0, flood_ended + 15 - time.monotonic()))
        rss_15s = rss_bytes(pid)
        # the flood's transactions end by Timer J/L (64·T1 = 32 s after the last one)
        time.sleep(max(0.0, flood_ended + 40 - time.monotonic()))
        rss_after = rss_bytes(pid)
        state = _metrics(METRICS)
        taker.stop()

        def delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
            return {k: b[k] - a.get(k, 0.0) for k in b if b[k] - a.get(k, 0.0)}

        result.update(
            rate=args.rate,
            seconds=args.seconds,
            calls=args.calls,
            untrusted=args.untrusted,
            flood=flood_report,
            media_loss_calm=delta(before, calm),
            media_loss_during_flood=delta(calm, during),
            calls_completed=calls_ok,
            call_during_flood=call_outcome(work, late.first(sent=True, method="INVITE").call_id),
            rss_mb_before=round(rss_before / 2**20, 1),
            rss_mb_peak=round(rss_peak / 2**20, 1),
            rss_mb_15s_after=round(rss_15s / 2**20, 1),
            rss_mb_40s_after=round(rss_after / 2**20, 1),
            state_40s_after={
                k: v
                for k, v in state.items()
                if k in ("recproxy_sip_transactions", "recproxy_sip_dialogs")
                or k.startswith("recproxy_registrar_")  # register_flood.py's
            }
            | {"calls": health()["calls"], "rtp_port_pairs": health()["rtp"]},
        )
    finally:
        stop_proxy(proxy, log, work, result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=2000, help="flood INVITEs a second")
    parser.add_argument("--seconds", type=float, default=10, help="how long the flood lasts")
    parser.add_argument("--calls", type=int, default=50, help="recorded calls up meanwhile")
    parser.add_argument("--untrusted", action="store_true", help="flood from an untrusted peer")
    args = parser.parse_args()
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
