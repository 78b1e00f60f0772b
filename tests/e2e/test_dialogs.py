"""PRACK, UPDATE and session timers end to end (issue 18): a real ``recproxy serve``
between SIPp parties.

* A caller speaking 100rel gets the notice's early media in a reliable 183 and PRACKs
  it; the call taker sends its own reliable 183, which recproxy PRACKs on leg B; the
  caller's UPDATE refreshes the session and its 200 carries the interval.
* A caller who asks for a short session interval, says it will refresh, and then never
  does is a dead peer: recproxy ends both legs with BYE once the interval runs out, the
  call's outcome says so, and the recording is closed and decrypts to the audio so far.
"""

from __future__ import annotations

import numpy as np
import pytest

from . import audio
from .conftest import E2e
from .proxy_process import ProxySettings, export_wav, list_recordings
from .test_recorded_call import LENGTH_TOLERANCE_S, bridged_seconds, call_rows, seconds_of

pytestmark = pytest.mark.sipp


def test_prack_on_both_legs_and_an_update_refresh(e2e: E2e) -> None:
    proxy = e2e.proxy(ProxySettings(mode="early-media"))
    taker = e2e.run_sipp(
        "taker", "uas_reliable", {"ring_ms": 300},
        local_port=e2e.ports.taker_sip, media_port=e2e.ports.taker_rtp,
    )  # fmt: skip
    caller = e2e.caller("uac_prack_update", session_expires=1800, talk_ms=1500)
    caller.expect_success(timeout=30)
    taker.expect_success(timeout=10)

    reliable = caller.first(sent=False, status=183)
    assert reliable.header("Require") == "100rel"
    assert reliable.header("RSeq") is not None
    caller.first(sent=False, status=200, cseq_method="PRACK")
    assert (
        caller.first(sent=True, method="PRACK").time
        < caller.first(sent=False, status=200, cseq_method="INVITE").time
    )  # the 200 came after the PRACK
    taker_invite = taker.first(sent=False, method="INVITE")
    assert "100rel" in (taker_invite.header("Supported") or "")
    prack = taker.first(sent=False, method="PRACK")
    assert prack.header("RAck") == "1 1 INVITE"
    refreshed = caller.first(sent=False, status=200, cseq_method="UPDATE")
    assert refreshed.header("Session-Expires") == "1800;refresher=uac"
    proxy.wait_idle()
    (call,) = call_rows(proxy.catalog_path)
    assert call["outcome"] == "completed", call
    assert [row["state"] for row in list_recordings(e2e.config_path)] == ["complete"]


def test_a_dead_caller_is_torn_down_when_its_session_expires(e2e: E2e, dialogue: bytes) -> None:
    # session_expires 8 s: the caller refreshes (it says so) but never does; recproxy
    # ends the call 8 - min(32, 8/3) = 5.3 s after its 200.  min_se = 1 is the
    # documented test-only knob (RFC 4028's floor is 90 s).
    proxy = e2e.proxy(ProxySettings(sip="session_expires = 8\nmin_se = 1\n"))
    taker = e2e.call_taker(
        ring_ms=200, audio_pcap=e2e.rtp_pcap("taker.pcap", seconds_of(dialogue, 10, 20))
    )
    headers = "\n      Supported: timer\n      Session-Expires: 8;refresher=uac"
    caller = e2e.caller(
        "uac_expect_bye",
        headers=headers,
        audio_pcap=e2e.rtp_pcap("caller.pcap", seconds_of(dialogue, 0, 10)),
    )
    caller.expect_success(timeout=20)
    taker.expect_success(timeout=10)

    ok = caller.first(sent=False, status=200, cseq_method="INVITE")
    assert ok.header("Session-Expires") == "8;refresher=uac"
    assert "timer" in (ok.header("Require") or "")
    bye = caller.first(sent=False, method="BYE")
    assert 8 - 8 / 3 - 0.3 <= bye.time - ok.time <= 8 - 8 / 3 + 1.5, (ok.time, bye.time)
    taker.first(sent=False, method="BYE")
    proxy.wait_idle()
    (call,) = call_rows(proxy.catalog_path)
    assert call["outcome"] == "session_expired", call
    assert "session timer expired" in proxy.log_text()
    (row,) = list_recordings(e2e.config_path)
    assert row["state"] == "complete", row
    wav = audio.read_wav(export_wav(e2e.config_path, str(row["id"]), e2e.folder / "call.wav"))
    assert wav.seconds > 1.0
    assert abs(wav.seconds - bridged_seconds(call)) <= LENGTH_TOLERANCE_S
    assert float(np.abs(wav.channel(0)).max()) > 0.01  # the caller's speech is there
