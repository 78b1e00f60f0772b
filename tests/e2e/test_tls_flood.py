"""A TLS handshake flood against a running ``recproxy serve`` while recorded calls are
up, at a small bounded scale (``benchmarks/tls_flood.py`` is the full one): 5 SIPp calls
over UDP, and from 127.0.0.2, in a process of its own (``benchmarks/tls_flooder.py``),
300 full handshakes at 50/s, 20 at a time, 10 half-open connections and 5 slow ones.

What must hold: the source's token bucket and the per-source limit refuse most
handshakes before any crypto; every half-open and slow connection is closed by the
handshake timeout; the calls lose no more audio than in as long a calm stretch before;
memory and TLS connections come back down; every call's recording is complete.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.sip.tls_ca import CertAuthority

from .conftest import NOTICE_SECONDS, E2e
from .proxy_process import REPO_ROOT, ProxyProcess, ProxySettings, list_recordings

pytestmark = pytest.mark.sipp

FLOODER = REPO_ROOT / "benchmarks" / "tls_flooder.py"
CALLS = 5
HANDSHAKE_S = 1.0
FLOOD_S = 6.0
LIMITS = f"""
[limits]
request_burst = 40
requests_per_second = 20
tls_handshake_seconds = {HANDSHAKE_S}
"""
LOSS = ("recproxy_recorder_missing_frames_total", "recproxy_rtp_dropped_total")


def counters(proxy: ProxyProcess) -> dict[str, float]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{proxy.ports.http}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    values: dict[str, float] = {}
    for match in re.finditer(r"^(recproxy_[^\s]+) (\S+)$", text, re.M):
        values[match.group(1)] = float(match.group(2))
    return values


def loss(before: dict[str, float], after: dict[str, float]) -> float:
    """Frames the recorder filled for missing audio and packets the proxy dropped."""
    return sum(after[name] - before.get(name, 0.0) for name in after if name.startswith(LOSS))


def rss_mb(proxy: ProxyProcess) -> float:
    pages = int(Path(f"/proc/{proxy.process.pid}/statm").read_text().split()[1])
    return pages * 4096 / 2**20


def test_a_tls_handshake_flood_leaves_recorded_calls_untouched(
    e2e: E2e, tls_ca: CertAuthority
) -> None:
    tls_port = e2e.ports.spare_sip(5)
    proxy = e2e.proxy(
        ProxySettings(
            sip=(
                f'tls_listen = "127.0.0.1:{tls_port}"\n'
                f'tls_cert = "{tls_ca.server.cert}"\ntls_key = "{tls_ca.server.key}"\n'
            ),
            extra=LIMITS,
        )
    )
    hold_ms = int((2 * FLOOD_S + 10) * 1000)
    tone = bytes(range(0x20, 0x70)) * (8 * hold_ms // 80)
    taker = e2e.call_taker(
        audio_pcap=e2e.rtp_pcap("taker.pcap", tone), calls=CALLS, timeout_s=hold_ms / 1000 + 30
    )
    caller = e2e.caller(
        audio_pcap=e2e.rtp_pcap("caller.pcap", tone),
        pre_audio_ms=0,
        hold_ms=hold_ms,
        calls=CALLS,
        rate=10,
        limit=CALLS,
        timeout_s=hold_ms / 1000 + 30,
    )
    deadline = time.monotonic() + 20
    while proxy.health()["calls"] < CALLS and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(NOTICE_SECONDS + 1.5)  # all bridged and recording
    start = counters(proxy)
    time.sleep(FLOOD_S)  # as long a calm stretch, for the baseline
    calm = counters(proxy)
    rss_before = rss_mb(proxy)

    result = subprocess.run(
        [
            sys.executable, str(FLOODER), "--target", f"127.0.0.1:{tls_port}",
            "--source", "127.0.0.2", "--count", "300", "--rate", "50", "--concurrency", "20",
            "--half-open", "10", "--slow", "5", "--seconds", str(FLOOD_S),
        ],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    report = json.loads(result.stdout)
    during = counters(proxy)
    rss_peak = rss_mb(proxy)

    # the token bucket (burst 40, 20/s) let some handshakes through and refused the
    # rest at accept, before any crypto
    assert report["completed"] >= 20, report
    assert report["completed"] <= 40 + 20 * (report["seconds"] + 1), report
    assert report["refused"] >= 300 - 40 - 20 * (report["seconds"] + 1), report
    assert during['recproxy_sip_tls_handshakes_total{outcome="refused_rate"}'] > 0, report
    # every half-open and slow connection was closed by the handshake timeout
    for kind in ("half_open", "slow"):
        lingered = report[kind]
        assert lingered["closed_by_target"] == lingered["opened"], report
        assert lingered["max_seconds_open"] <= HANDSHAKE_S + 1.5, report
    # the calls lost no more audio during the flood than in the calm stretch before
    assert loss(calm, during) <= loss(start, calm) + 2, (start, calm, during)
    caller.expect_success(timeout=hold_ms / 1000 + 30)
    taker.expect_success(timeout=10)
    proxy.wait_idle(timeout=15)
    assert counters(proxy)["recproxy_sip_tls_connections"] == 0
    assert rss_peak - rss_before < 25, (rss_before, rss_peak)
    states = [row["state"] for row in list_recordings(e2e.config_path)]
    assert states == ["complete"] * CALLS, states
    assert "Traceback" not in proxy.log_text()
