"""REGISTER against a running ``recproxy serve`` with ``[registrar] enabled`` (issue 18).

1. baresip (1.0) registers a call taker's AOR with the SIP password set by ``recproxy
   users sip-password``; the binding shows in ``/metrics`` and the log says which digest
   algorithm it answered with.
2. SIPp answers the challenge with a wrong password: 401 each time, then, past
   ``source_failures``, 503 with Retry-After without being checked.
3. A REGISTER brute force from a separate process (``benchmarks/register_sender.py``),
   bounded in count, while a recorded call runs: the recording is whole, the guesses
   are throttled, bindings stay bounded and the proxy's memory does not run away.
4. A call taker by its AOR: two SIPp phones register ``sip:desk@realm``; a call rings
   both, one answers, the other is CANCELled, and the recording is whole.
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

from tests.e2e import audio
from tests.e2e.conftest import E2e
from tests.e2e.phones import Baresip
from tests.e2e.proxy_process import (
    REPO_ROOT,
    ProxyProcess,
    ProxySettings,
    export_wav,
    list_recordings,
    proxy_env,
    recproxy_command,
)
from tests.e2e.sipp import play_pcap
from tests.e2e.test_media_addresses import assert_recorded
from tests.e2e.test_recorded_call import seconds_of

pytestmark = pytest.mark.sipp

REALM = "gp.example"
SIP_PASSWORD = "phone-secret-12345"  # no spaces: an accounts line parameter
FLOOD = REPO_ROOT / "benchmarks" / "register_sender.py"


def registrar(source_failures: int = 3, extra: str = "") -> ProxySettings:
    return ProxySettings(
        extra=f"""
[registrar]
enabled = true
realm = "{REALM}"
min_expires = 60
source_failures = {source_failures}
account_failures = 50
failure_window_seconds = 60
{extra}"""
    )


def add_user_with_sip_password(config: Path, name: str) -> None:
    for args, password in (
        (("users", "add", name, "--role", "staff", "--password-stdin"), "console secret 123"),
        (("users", "sip-password", name, "--password-stdin"), SIP_PASSWORD),
    ):
        result = subprocess.run(
            recproxy_command(*args, "--config", str(config)),
            cwd=config.parent, env=proxy_env(), input=password + "\n",
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr


def scrape(proxy: ProxyProcess, port: int) -> dict[str, float]:
    """The registrar's samples from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = {}
    for line in text.splitlines():
        if line.startswith("recproxy_registrar_"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def wait_for(what: str, check: object, timeout: float, log: ProxyProcess) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise log.fail(f"{what} not within {timeout} s")


def registering_baresip(e2e: E2e) -> Baresip:
    """baresip registering alice's AOR (named by the proxy's address) with her SIP
    password, at a spare port of the test's block."""
    ports = e2e.ports
    return Baresip(
        e2e.folder, "alice", sip_port=ports.spare_sip(2), control_port=ports.spare_sip(4),
        rtp_ports=(ports.caller_rtp, ports.caller_rtp + 9), tone_hz=440.0,
        account=f"<sip:alice@127.0.0.1:{ports.sip}>;auth_pass={SIP_PASSWORD};regint=600",
    )  # fmt: skip


def test_baresip_registers_with_its_sip_password(e2e: E2e) -> None:
    # baresip 1.0's libre refuses a 401 that names SHA-256 at all: offer MD5 alone
    proxy = e2e.proxy(registrar(extra='algorithms = ["MD5"]\n'))
    add_user_with_sip_password(e2e.config_path, "alice")
    ports = e2e.ports
    phone = registering_baresip(e2e)
    try:
        wait_for(
            "a binding",
            lambda: scrape(proxy, ports.http).get("recproxy_registrar_bindings") == 1,
            20,
            proxy,
        )
        samples = scrape(proxy, ports.http)
        assert samples['recproxy_registrar_requests_total{outcome="registered"}'] >= 1
        assert samples['recproxy_registrar_requests_total{outcome="failed"}'] == 0
        line = re.search(
            r"REGISTER sip:alice@gp\.example from .* \(digest ([A-Z0-9-]+)\)", proxy.log_text()
        )
        assert line is not None, proxy.log_text()
        assert line.group(1) == "MD5"
    finally:
        phone.stop()


def test_baresip_1_0_refuses_a_challenge_that_names_sha256(e2e: E2e) -> None:
    """What the interop matrix says: libre 1.1 fails on the first algorithm it does not
    know instead of skipping it (RFC 8760 §2.4), so the default offer does not do."""
    proxy = e2e.proxy(registrar())
    add_user_with_sip_password(e2e.config_path, "alice")
    ports = e2e.ports
    phone = registering_baresip(e2e)
    try:
        wait_for(
            "baresip's refusal", lambda: "Function not implemented" in phone.log_text(), 20, proxy
        )
        samples = scrape(proxy, ports.http)
        assert samples["recproxy_registrar_bindings"] == 0
        assert samples['recproxy_registrar_requests_total{outcome="challenged"}'] == 1
    finally:
        phone.stop()


def test_a_wrong_password_gets_401_then_503_unchecked(e2e: E2e) -> None:
    proxy = e2e.proxy(registrar(source_failures=3))
    add_user_with_sip_password(e2e.config_path, "alice")
    run = e2e.run_sipp(
        "guesser", "register_wrong", {"realm": REALM, "user": "alice"},
        local_port=e2e.ports.spare_sip(0), media_port=e2e.ports.spare_rtp,
        remote=("127.0.0.1", e2e.ports.sip),
    )  # fmt: skip
    run.expect_success(timeout=30)
    statuses = [m.status for m in run.messages() if m.status is not None]
    # the first unauthenticated REGISTER and 3 wrong answers get 401; then 503
    assert statuses == [401, 401, 401, 401, 503, 503], statuses
    last = [m for m in run.messages() if m.status == 503][-1]
    assert last.header("Retry-After") is not None
    samples = scrape(proxy, e2e.ports.http)
    assert samples['recproxy_registrar_requests_total{outcome="failed"}'] == 3
    assert samples['recproxy_registrar_requests_total{outcome="throttled"}'] == 2
    assert proxy.log_text().count("REGISTER throttled") == 1


def rss_mb(proxy: ProxyProcess) -> float:
    pages = int(Path(f"/proc/{proxy.process.pid}/statm").read_text().split()[1])
    return pages * 4096 / 2**20


def test_a_register_brute_force_leaves_a_recorded_call_whole(e2e: E2e, dialogue: bytes) -> None:
    proxy = e2e.proxy(registrar(source_failures=10))
    add_user_with_sip_password(e2e.config_path, "alice")
    caller_audio = dialogue[: 6 * audio.RATE]
    taker = e2e.call_taker()
    caller = e2e.caller(
        audio_pcap=e2e.rtp_pcap("caller.pcap", caller_audio), pre_audio_ms=2500, hold_ms=7000
    )
    wait_for("the call", lambda: proxy.health()["calls"] == 1, 20, proxy)
    time.sleep(1.5)  # past the notice: bridged and recording
    rss_before = rss_mb(proxy)
    result = subprocess.run(
        [
            sys.executable, str(FLOOD), "--target", f"127.0.0.1:{e2e.ports.sip}",
            "--source", "127.0.0.2", "--user", "alice", "--realm", REALM,
            "--count", "400", "--rate", "200", "--linger", "1",
        ],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    report = json.loads(result.stdout)
    assert report["guesses"] == 400, report
    statuses = report["statuses"]
    # 10 wrong answers are checked (401); the rest refused unchecked (503), whether by
    # the registrar's throttle or, past the source's token bucket, by the core
    assert statuses.get("401") == 10 and set(statuses) <= {"401", "503"}, report
    assert report["amplification"] <= 1.5, report
    caller.expect_success(timeout=30)
    taker.expect_success(timeout=10)
    proxy.wait_idle(timeout=15)
    samples = scrape(proxy, e2e.ports.http)
    assert samples['recproxy_registrar_requests_total{outcome="failed"}'] == 10
    assert samples["recproxy_registrar_bindings"] == 0
    assert rss_mb(proxy) - rss_before < 20, (rss_before, rss_mb(proxy))
    assert proxy.log_text().count("REGISTER throttled") == 1
    rows = list_recordings(e2e.config_path)
    assert [row["state"] for row in rows] == ["complete"], rows
    wav = audio.read_wav(export_wav(e2e.config_path, str(rows[0]["id"]), e2e.folder / "call.wav"))
    placed = audio.place(wav.channel(0), audio.ulaw_decode(caller_audio))
    assert placed.voiced and len(placed.inside) == placed.voiced, placed
    assert "Traceback" not in proxy.log_text()


def register_phone(e2e: E2e, label: str, port: int) -> None:
    """SIPp at ``port`` registers the AOR of user desk with desk's SIP password: the
    call taker started at that port next is a registered phone of ``sip:desk@realm``."""
    run = e2e.run_sipp(
        label, "register_ok", {"user": "desk", "password": SIP_PASSWORD},
        local_port=port, media_port=e2e.ports.spare_rtp, remote=("127.0.0.1", e2e.ports.sip),
    )  # fmt: skip
    run.expect_success(timeout=20)


def test_a_call_to_an_aor_rings_every_registered_phone_and_one_answers(
    e2e: E2e, dialogue: bytes
) -> None:
    """Two phones registered for ``sip:desk@realm``, the hunt group's one entry: both are
    invited at once, bob answers, ann is CANCELled; the recording holds the caller and
    bob, each whole on its channel."""
    ports = e2e.ports
    proxy = e2e.proxy(
        ProxySettings(
            call_takers=(f"sip:desk@{REALM}",),
            extra=f'[registrar]\nenabled = true\nrealm = "{REALM}"\nalgorithms = ["MD5"]\n',
        )
    )
    add_user_with_sip_password(e2e.config_path, "desk")
    ann_port, bob_port = ports.taker_sip, ports.spare_sip(0)
    register_phone(e2e, "ann-register", ann_port)
    register_phone(e2e, "bob-register", bob_port)
    wait_for(
        "two bindings",
        lambda: scrape(proxy, ports.http).get("recproxy_registrar_bindings") == 2,
        10,
        proxy,
    )
    caller_audio, taker_audio = seconds_of(dialogue, 0, 3), seconds_of(dialogue, 12, 15)
    ann = e2e.run_sipp("ann", "uas_no_answer", {}, local_port=ann_port, media_port=ports.taker_rtp)
    bob = e2e.run_sipp(
        "bob", "uas_answer",
        {"ring_ms": 1000, "audio": play_pcap(e2e.rtp_pcap("bob.pcap", taker_audio)),
         "codec": "PCMU"},
        local_port=bob_port, media_port=ports.spare_media(1),
    )  # fmt: skip
    # 2 s of notice, 1 s of both ringing, then the caller talks
    caller = e2e.caller(
        audio_pcap=e2e.rtp_pcap("caller.pcap", caller_audio), pre_audio_ms=3800, hold_ms=3500
    )
    caller.expect_success(timeout=40)
    ann.expect_success(timeout=10)
    bob.expect_success(timeout=10)
    proxy.wait_idle()

    invited_ann = ann.first(sent=False, method="INVITE")
    invited_bob = bob.first(sent=False, method="INVITE")
    assert abs(invited_ann.time - invited_bob.time) < 0.5  # rung together
    assert invited_ann.first_line.startswith(f"INVITE sip:desk@127.0.0.1:{ann_port} ")
    # ann is CANCELled only because bob answered. The two SIPp processes stamp their logs
    # around the send and the receipt, not at them, so a millisecond either way between
    # their clocks is noise (5 ms slack, as in test_failover)
    cancelled_after = (
        ann.first(sent=False, method="CANCEL").time - bob.first(sent=True, status=200).time
    )
    assert cancelled_after >= -0.005
    assert_recorded(e2e, proxy, 0, caller_audio, taker_audio)
    assert f"(sip:desk@{REALM})" in proxy.log_text()
