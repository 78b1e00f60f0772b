"""TLS handshake flood benchmark: established recorded calls while one source floods
recproxy's TLS listener with handshakes, half-open and slow connections.

One ``recproxy serve`` with its default limits and TLS on (certificates from the test CA,
``tests/sip/tls_ca.py``).  SIPp places ``--calls`` recorded calls over UDP (the same
callers and call taker as ``flood.py``); once they are all bridged and a calm stretch
as long as the flood has been measured, ``tls_flooder.py`` — a separate process,
bounded in count and time — opens ``--count`` handshakes at ``--rate`` a second,
``--half-open`` silent connections and ``--slow`` ones from 127.0.0.2.  Reported:

* RTP loss on the established calls during the flood (packets dropped in the proxy,
  frames the recorder filled), beside the calm stretch's, and recproxy's own CPU over
  each (the flooder and SIPp share the machine: loss with little added CPU is theirs);
* what the flooder saw (handshakes completed, refused at accept, failed; how long
  half-open and slow connections stayed open) and recproxy's TLS metrics;
* recproxy's RSS before, at the peak of, and 10 s after the flood, and the TLS
  connections left open;
* every recording's state (target: all ``complete``).

    .venv/bin/python benchmarks/tls_flood.py                    # 50 calls, 5,000 at 500/s
    .venv/bin/python benchmarks/tls_flood.py --calls 10 --count 1000 --rate 200  # quick

Loopback only, ``flood.py``'s fixed ports plus TLS on 5364; every run bounded.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.flood import (  # noqa: E402
    METRICS,
    bridged_calls,
    media_counters,
    start_proxy,
    stop_proxy,
    write_config,
)
from benchmarks.load import Sampler, _metrics, cpu_seconds, rss_bytes  # noqa: E402
from tests.sip.tls_ca import make_ca  # noqa: E402

TLS_PORT = 5364


def tls_config(work: Path) -> Path:
    """``flood.py``'s configuration (trusted 127.0.0.0/8) with TLS on."""
    config = write_config(work, untrusted=False)
    ca = make_ca(work / "tls")
    tls = (
        f'tls_listen = "127.0.0.1:{TLS_PORT}"\n'
        f'tls_cert = "{ca.server.cert}"\ntls_key = "{ca.server.key}"\n'
    )
    text = config.read_text().replace('transports = ["udp"]\n', f'transports = ["udp"]\n{tls}')
    config.write_text(text)
    return config


def tls_metrics() -> dict[str, float]:
    return {k: v for k, v in _metrics(METRICS).items() if "tls" in k}


def late_ticks() -> float:
    """Media clock ticks that ran more than 20 ms late (recproxy's own loop stalled)."""
    values = _metrics(METRICS)
    on_time = values['recproxy_event_loop_lag_seconds_bucket{le="0.02"}']
    return values["recproxy_event_loop_lag_seconds_count"] - on_time


def run(args: argparse.Namespace) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="recproxy-tls-flood-"))
    proxy, log = start_proxy(work, tls_config(work))
    result: dict[str, object] = {"workdir": str(work)}
    try:
        hold_ms = int((2 * args.seconds + 20) * 1000)  # calm, flood, and after
        taker, calls = bridged_calls(work, args.calls, hold_ms, spare=0)
        pid = [proxy.pid]
        before = media_counters()
        cpu_start, late_start = cpu_seconds(pid), late_ticks()
        time.sleep(args.seconds)  # the same length of calm, for the loss baseline
        calm = media_counters()
        cpu_calm, late_calm = cpu_seconds(pid), late_ticks()
        rss_before = rss_bytes(pid)
        sampler = Sampler(pid)
        sampler.start()
        flooded = subprocess.run(
            [
                sys.executable, str(ROOT / "benchmarks" / "tls_flooder.py"),
                "--target", f"127.0.0.1:{TLS_PORT}", "--source", "127.0.0.2",
                "--count", str(args.count), "--rate", str(args.rate),
                "--concurrency", str(args.concurrency), "--half-open", str(args.half_open),
                "--slow", str(args.slow), "--seconds", str(args.seconds),
            ],
            capture_output=True, text=True, timeout=args.seconds + 60, check=True,
        )  # fmt: skip
        during = media_counters()
        cpu_flood, late_flood = cpu_seconds(pid), late_ticks()
        tls_during = tls_metrics()
        sampler.stop()
        rss_peak = max(sampler.peak_rss, rss_bytes(pid))
        time.sleep(10)
        rss_after = rss_bytes(pid)
        tls_after = tls_metrics()
        calls_ok = calls.wait(timeout=hold_ms / 1000 + 60) == 0
        taker.stop()

        def delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
            return {k: b[k] - a.get(k, 0.0) for k in b if b[k] - a.get(k, 0.0)}

        result.update(
            calls=args.calls,
            flood=json.loads(flooded.stdout),
            media_loss_calm=delta(before, calm),
            media_loss_during_flood=delta(calm, during),
            calls_completed=calls_ok,
            # recproxy's own CPU, in seconds, over the calm stretch and over the flood
            cpu_s_calm=round(cpu_calm - cpu_start, 2),
            cpu_s_flood=round(cpu_flood - cpu_calm, 2),
            ticks_over_20ms_late_calm=late_calm - late_start,
            ticks_over_20ms_late_flood=late_flood - late_calm,
            tls_metrics_after_flood=tls_during,
            tls_connections_10s_after=tls_after.get("recproxy_sip_tls_connections"),
            rss_mb_before=round(rss_before / 2**20, 1),
            rss_mb_peak=round(rss_peak / 2**20, 1),
            rss_mb_10s_after=round(rss_after / 2**20, 1),
        )
    finally:
        stop_proxy(proxy, log, work, result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=50, help="recorded calls up meanwhile")
    parser.add_argument("--count", type=int, default=5000, help="full handshakes to try")
    parser.add_argument("--rate", type=float, default=500, help="handshakes started a second")
    parser.add_argument("--concurrency", type=int, default=50, help="handshakes at once")
    parser.add_argument("--half-open", type=int, default=100, help="silent connections")
    parser.add_argument("--slow", type=int, default=20, help="slow ClientHello connections")
    parser.add_argument("--seconds", type=float, default=10, help="how long the flood lasts")
    args = parser.parse_args()
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
