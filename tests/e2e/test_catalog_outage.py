"""A recorded call through ``recproxy serve`` with its catalog on PostgreSQL, while the
server goes away for 5 s mid-call (issue 20): the call goes on, the recording is
complete (decrypted: both channels, the bridged length), and the catalog rows written
during the outage land once the server is back (the journal replays them)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from tests.pg_server import PgServer, running_server

from . import audio
from .conftest import E2e
from .proxy_process import ProxySettings, export_wav, list_recordings, wait_for

RATE = audio.RATE
LENGTH_TOLERANCE_S = 0.2


@pytest.fixture
def server() -> Iterator[PgServer]:
    """A server of the test's own: it is stopped and started mid-call."""
    with running_server() as started:
        yield started


def seconds_of(ulaw: bytes, start: float, end: float) -> bytes:
    return ulaw[int(start * RATE) : int(end * RATE)]


def call_row(url: str) -> dict[str, object] | None:
    with psycopg.connect(url, connect_timeout=2) as conn:
        found = conn.execute("SELECT bridged_at, ended_at, outcome FROM calls").fetchall()
    names = ("bridged_at", "ended_at", "outcome")
    return None if not found else dict(zip(names, found[0], strict=True))


def test_a_catalog_outage_mid_call_loses_nothing(
    e2e: E2e, server: PgServer, dialogue: bytes
) -> None:
    url = server.fresh_database()
    proxy = e2e.proxy(ProxySettings(catalog=f'url = "{url}"', segment_seconds=2))
    caller_audio = seconds_of(dialogue, 0, 8)  # all of it sent before the caller's BYE
    taker_audio = seconds_of(dialogue, 12, 20)
    taker = e2e.call_taker(audio_pcap=e2e.rtp_pcap("taker.pcap", taker_audio), ring_ms=300)
    caller = e2e.caller(
        audio_pcap=e2e.rtp_pcap("caller.pcap", caller_audio), pre_audio_ms=2800, hold_ms=11000
    )
    wait_for(
        "the call to be bridged", lambda: (call_row(url) or {}).get("bridged_at") is not None, 20
    )

    server.stop("fast")  # mid-call: segments sealed now are catalogued later
    time.sleep(5)
    server.start()

    caller.expect_success(timeout=30)
    taker.expect_success(timeout=10)
    proxy.wait_idle()

    def landed() -> bool:
        row = call_row(url)
        return row is not None and row["outcome"] == "completed"

    wait_for("the journalled rows to land", landed, timeout=30, interval=0.5)
    rows = list_recordings(e2e.config_path)
    assert [row["state"] for row in rows] == ["complete"], rows
    assert "catalog write journalled" in proxy.log_text()  # the outage was seen ...
    assert "landed" in proxy.log_text()  # ... and the journal replayed

    call = call_row(url)
    assert call is not None
    bridged_s = (int(call["ended_at"]) - int(call["bridged_at"])) / 1000  # type: ignore[call-overload]
    wav = audio.read_wav(export_wav(e2e.config_path, str(rows[0]["id"]), e2e.folder / "call.wav"))
    assert (wav.channels, wav.rate) == (2, RATE)
    assert abs(wav.seconds - bridged_s) <= LENGTH_TOLERANCE_S, (wav.seconds, bridged_s)
    assert abs(rows[0]["duration_ms"] / 1000 - wav.seconds) <= 0.05, rows
    left = audio.place(wav.channel(0), audio.ulaw_decode(caller_audio))
    right = audio.place(wav.channel(1), audio.ulaw_decode(taker_audio))
    # both parties, through the outage: every voiced second that fits the recording
    assert len(left.inside) == left.voiced and len(right.inside) == right.voiced, (left, right)
    assert left.inside_s >= 5 and right.inside_s >= 5, (left, right)
