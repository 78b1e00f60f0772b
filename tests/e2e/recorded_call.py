"""One recorded call for the records service's end-to-end tests: ``serve`` is up with
its records child listening, a SIPp caller sits through the 2 s notice and talks for a
while to a SIPp call taker, and the recording is catalogued.  And the check that a
call's recording is whole, for the tests of the paths RTP can take (kernel, workers)."""

from __future__ import annotations

from typing import Any

from . import audio
from .conftest import E2e
from .proxy_process import ProxyProcess, export_wav, list_recordings, wait_for

LENGTH_TOLERANCE_S = 0.02  # the recording against the bridged time in the catalog


def record_a_call(e2e: E2e, proxy: ProxyProcess) -> dict[str, Any]:
    """The recording (as ``recordings list --json`` shows it) of one SIPp call."""
    wait_for("the records service", lambda: "records service listening" in proxy.log_text(), 20)
    taker = e2e.call_taker(ring_ms=200)
    caller = e2e.caller(pre_audio_ms=0, hold_ms=4000)  # notice 2 s, then bridged
    caller.expect_success(timeout=30)
    taker.expect_success(timeout=10)
    proxy.wait_idle()
    [recording] = list_recordings(e2e.config_path)
    return recording


def check_whole_recording(
    e2e: E2e,
    call: dict[str, Any],
    recording: dict[str, Any],
    caller_audio: bytes,
    taker_audio: bytes,
) -> audio.Wav:
    """``recording`` (a ``recordings list --json`` row) of ``call`` (its ``calls`` row) is
    complete with nothing lost or late, as long as the bridged call (±20 ms), and holds
    the caller's µ-law audio on the left, the call taker's on the right, neither on the
    other's channel.  Its export, for more checks."""
    assert recording["state"] == "complete", recording
    for channel in recording["quality"].values():
        assert channel["frames"] > 0 and channel["lost_frames"] == channel["late_frames"] == 0
    out = e2e.folder / f"{recording['id']}.wav"
    wav = audio.read_wav(export_wav(e2e.config_path, str(recording["id"]), out))
    assert (wav.channels, wav.rate) == (2, audio.RATE)
    bridged = (call["ended_at"] - call["bridged_at"]) / 1000
    assert abs(wav.seconds - bridged) <= LENGTH_TOLERANCE_S, (wav.seconds, bridged)
    caller_pcm, taker_pcm = audio.ulaw_decode(caller_audio), audio.ulaw_decode(taker_audio)
    left = audio.place(wav.channel(0), caller_pcm)
    right = audio.place(wav.channel(1), taker_pcm)
    assert len(left.inside) == left.voiced and len(right.inside) == right.voiced, (left, right)
    assert audio.absent(wav.channel(0), taker_pcm), "the call taker is on the caller's channel"
    assert audio.absent(wav.channel(1), caller_pcm), "the caller is on the call taker's channel"
    return wav
