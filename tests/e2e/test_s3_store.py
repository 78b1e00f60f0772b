"""Segments on S3-compatible storage end to end (issue 20): ``recproxy serve`` with
``[recording] store = "s3"`` against a real S3 server (moto in server mode, in the test
process), reached through a TCP gate the test closes for 30 s.

A SIPp call is recorded while the bucket is unreachable: the spool holds the key and the
segment, the metrics show them pending and the uploads failing, and nothing is lost.
When the gate opens the spool drains; the recording is then decrypted from the bucket's
objects alone (both channels, as long as the bridged call within 20 ms) and exported by
``recproxy export``, which reads it through the same store.
"""

from __future__ import annotations

import re
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from proxy.storage.crypto import load_private_key
from proxy.storage.reader import RecordingReader
from tests.s3_server import ACCESS_KEY, SECRET_KEY, TcpGate, admin, make_bucket, moto_server

from . import audio
from .conftest import E2e
from .proxy_process import ProxySettings, export_wav, list_recordings, query, wait_for

pytestmark = pytest.mark.sipp

RATE = audio.RATE
OUTAGE_S = 30.0
LENGTH_TOLERANCE_S = 0.02  # the recording against the bridged time in the catalog
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _metric(http_port: int, name: str) -> float:
    with _DIRECT.open(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert match is not None, f"{name} not in /metrics"
    return float(match.group(1))


def _download(endpoint: str, bucket: str, prefix: str, folder: Path) -> list[str]:
    """Every object under ``prefix`` into ``folder`` (named as on the disk)."""
    client = admin(endpoint)
    names = []
    for item in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", ()):
        name = item["Key"][len(prefix) :]
        body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        (folder / name).write_bytes(body)
        names.append(name)
    return sorted(names)


def test_a_call_recorded_through_a_30_s_bucket_outage_loses_nothing(
    e2e: E2e, dialogue: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)  # serve inherits the environment
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    moto_port, gate_port = e2e.ports.base + 5, e2e.ports.base + 6
    with moto_server(moto_port) as endpoint:
        bucket = f"rec-{uuid.uuid4().hex[:10]}"
        make_bucket(endpoint, bucket)
        gate = TcpGate(gate_port, ("127.0.0.1", moto_port))
        try:
            _outage_call(e2e, dialogue, endpoint, bucket, gate)
        finally:
            gate.close()


def _outage_call(e2e: E2e, dialogue: bytes, endpoint: str, bucket: str, gate: TcpGate) -> None:
    s3 = f'store = "s3"\n\n[recording.s3]\nendpoint = "{gate.endpoint}"\nbucket = "{bucket}"\n'
    proxy = e2e.proxy(ProxySettings(recording=s3, grace_seconds=1.0))
    assert f"segments: S3 bucket {bucket}" in proxy.log_text()
    gate.close()  # the bucket is unreachable from here on
    closed_at = time.monotonic()

    caller_audio = dialogue[: 6 * RATE]
    taker_audio = dialogue[12 * RATE : 18 * RATE]
    taker = e2e.call_taker(audio_pcap=e2e.rtp_pcap("taker.pcap", taker_audio), ring_ms=500)
    caller = e2e.caller(
        audio_pcap=e2e.rtp_pcap("caller.pcap", caller_audio), pre_audio_ms=3000, hold_ms=6500
    )
    caller.expect_success(timeout=30)
    taker.expect_success(timeout=10)
    proxy.wait_idle()
    [row] = list_recordings(e2e.config_path)
    rid = str(row["id"])
    spool = e2e.folder / "data" / "recordings" / rid

    # the outage: everything is in the spool, pending, and the uploads fail
    wait_for("the segment in the spool", lambda: (spool / "seg-000000.rec").exists(), 10)
    assert sorted(p.name for p in spool.iterdir()) == ["key", "seg-000000.rec"]
    wait_for(
        "failed uploads",
        lambda: _metric(e2e.ports.http, "recproxy_s3_upload_failures_total") > 0,
        10,
    )
    assert _metric(e2e.ports.http, "recproxy_s3_uploads_pending") == 2
    assert _metric(e2e.ports.http, "recproxy_s3_oldest_pending_seconds") > 1
    assert admin(endpoint).list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0

    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - closed_at)))
    gate.open()
    wait_for("the spool to drain", lambda: not spool.exists(), 30)
    assert _metric(e2e.ports.http, "recproxy_s3_uploads_pending") == 0
    assert _metric(e2e.ports.http, "recproxy_s3_uploads_total") == 2

    # the bucket alone holds the recording: decrypt its objects with the private key
    copied = e2e.folder / "from-bucket" / rid
    copied.mkdir(parents=True)
    assert _download(endpoint, bucket, f"{rid}/", copied) == ["key", "seg-000000.rec"]
    private_key = load_private_key(e2e.folder / "data" / "keys" / "recording.key", None)
    recording = RecordingReader(copied, private_key).read()
    (call,) = [dict(r) for r in query(proxy.catalog_path, "SELECT * FROM calls")]
    bridged = (call["ended_at"] - call["bridged_at"]) / 1000
    seconds = recording.report.frames / RATE
    assert abs(seconds - bridged) <= LENGTH_TOLERANCE_S, (seconds, bridged)
    caller_pcm, taker_pcm = audio.ulaw_decode(caller_audio), audio.ulaw_decode(taker_audio)
    left = audio.place(recording.audio[:, 0], caller_pcm)
    right = audio.place(recording.audio[:, 1], taker_pcm)
    assert len(left.inside) == left.voiced and len(right.inside) == right.voiced, (left, right)

    # and recproxy export reads it through the store, from the bucket
    wav = audio.read_wav(export_wav(e2e.config_path, rid, e2e.folder / "call.wav"))
    assert (wav.channels, wav.rate) == (2, RATE)
    assert abs(wav.seconds - seconds) < 1 / RATE
