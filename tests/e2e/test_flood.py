"""INVITE floods against a running ``recproxy serve``, at a small bounded scale: each
flood is sent by ``benchmarks/flood_sender.py`` in its own process from 127.0.0.2.

1. From a trusted source, 300 INVITEs in one burst: past its token bucket the source
   gets 503 (stateless, at most one reply per INVITE, never more bytes than it sent),
   then silence; the proxy keeps its RTP ports, and a real call from another source
   placed right after connects and is recorded (decrypted and checked).
2. From an untrusted source: exactly one 403 per INVITE, no 100 and no retransmission,
   and past the refusal rate nothing at all.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.e2e import audio
from tests.e2e.conftest import E2e
from tests.e2e.proxy_process import (
    REPO_ROOT,
    ProxySettings,
    export_wav,
    list_recordings,
)

pytestmark = pytest.mark.sipp

SENDER = REPO_ROOT / "benchmarks" / "flood_sender.py"
LIMITS = """
[limits]
request_burst = 40
requests_per_second = 20
refusal_burst = 20
refusals_per_second = 10
max_calls_per_source = 4
"""


def flood(e2e: E2e, *, count: int, rate: float, linger: float) -> dict[str, object]:
    """Send ``count`` INVITEs from 127.0.0.2 in a separate process; what came back."""
    result = subprocess.run(
        [
            sys.executable, str(SENDER), "--target", f"127.0.0.1:{e2e.ports.sip}",
            "--source", "127.0.0.2", "--count", str(count), "--rate", str(rate),
            "--seconds", str(count / rate), "--linger", str(linger),
        ],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    report: dict[str, object] = json.loads(result.stdout)
    assert report["invites"] == count, report
    return report


def test_a_trusted_flood_is_held_off_and_a_real_call_still_connects_and_records(
    e2e: E2e, dialogue: bytes
) -> None:
    proxy = e2e.proxy(ProxySettings(extra=LIMITS))
    report = flood(e2e, count=300, rate=30_000, linger=1.5)
    statuses = report["statuses"]
    assert isinstance(statuses, dict)
    # 4 INVITEs become calls (100, 200); the call cap refuses the next ones, then the
    # token bucket: each a stateless 503 while the source's refusal budget (20, and
    # 10/s) lasts, then nothing, whatever the flood's size
    assert set(statuses) <= {"100", "200", "503"}, json.dumps(report)
    # (a 200 whose ACK the loaded machine delayed is retransmitted: count calls, not 200s).
    # The sender ends each call it is answered at once: one ended before the flood's last
    # INVITE frees its slot for a later one, so the cap of 4 at a time admits 4 + those
    answered, ended_early = report["calls_answered"], report["calls_ended_mid_flood"]
    assert isinstance(answered, int) and isinstance(ended_early, int), report
    assert answered <= 4 + ended_early, json.dumps(report)
    assert 10 <= statuses.get("503", 0) <= 20 + 10 * 2.5, json.dumps(report)
    assert report["invites_answered"] <= 4 + 20 + 10 * 2.5, json.dumps(report)
    assert report["amplification"] <= 1.0, json.dumps(report)  # type: ignore[operator]
    health = proxy.health()
    assert health["ok"] and health["calls"] <= 4, health
    assert health["rtp"]["in_use"] <= 4 * 4, health

    # a real call from another source connects, and its recording holds the caller
    caller_audio = dialogue[: 4 * audio.RATE]
    taker = e2e.call_taker()
    caller = e2e.caller(
        audio_pcap=e2e.rtp_pcap("caller.pcap", caller_audio), pre_audio_ms=2500, hold_ms=5000
    )
    caller.expect_success(timeout=30)
    taker.expect_success(timeout=10)
    proxy.wait_idle(timeout=15)
    rows = [r for r in list_recordings(e2e.config_path) if "flood" not in str(r)]
    assert [row["state"] for row in rows] == ["complete"], rows
    wav = audio.read_wav(export_wav(e2e.config_path, str(rows[0]["id"]), e2e.folder / "call.wav"))
    placed = audio.place(wav.channel(0), audio.ulaw_decode(caller_audio))
    assert placed.voiced and len(placed.inside) == placed.voiced, placed
    assert "Traceback" not in proxy.log_text()


def test_an_untrusted_source_gets_one_403_per_invite_and_past_a_rate_nothing(
    e2e: E2e,
) -> None:
    proxy = e2e.proxy(ProxySettings(trusted_peers=("127.0.0.1/32",)))  # default limits
    # 10 INVITEs, within the refusal budget; listen past T1 and 2·T1 for retransmissions
    report = flood(e2e, count=10, rate=100, linger=2.5)
    assert report["statuses"] == {"403": 10}, report  # no 100 Trying, no retransmission
    assert report["max_replies_per_invite"] == 1, report
    assert report["amplification"] <= 1.0, report  # type: ignore[operator]
    # a burst of 200: the rest of the budget (10) and what refills while it lasts
    burst = flood(e2e, count=200, rate=20_000, linger=1.0)
    assert burst["statuses"].keys() <= {"403"}, burst  # type: ignore[union-attr]
    assert burst["replies"] <= 10 + 10 * (1.0 + 0.1 + 0.5), burst  # type: ignore[operator]
    log = proxy.log_text()
    assert log.count("INVITE from untrusted") <= 2, "every refusal was logged"
    assert proxy.health()["calls"] == 0
