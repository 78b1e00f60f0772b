"""Media worker processes end to end (issue 19): ``recproxy serve`` with
``[media] workers = 2`` and SIPp calls that play real audio both ways.

Four calls at once go to the two workers (two each), each relayed and recorded by its
worker.  Mid-call one worker is killed with SIGKILL: its two calls end (the proxy sends
BYE to both parties) and their recordings are ``interrupted``, naming the worker, with
the audio its writer had sealed (decryptable, catalogued by the call process); the other
worker's two calls go on untouched and their recordings are complete — as long as the
bridged call (±20 ms), each channel holding its party's audio and not the other's.  The
killed worker is started again, and a fifth call, placed while the survivors still
talk, is relayed by it and recorded whole.

A call taker's recording code keyed while a worker relays the call: its
telephone-events reach the call flow and never the caller, the call comes back for the
beeps, and the recording stops at the code, as on the relay.
"""

from __future__ import annotations

import os
import re
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from . import audio, sipp
from .conftest import E2e
from .fast_path_net import metric
from .proxy_process import ProxySettings, export_wav, list_recordings, query, wait_for
from .recorded_call import LENGTH_TOLERANCE_S, check_whole_recording
from .test_recording_control import STOP_TOLERANCE_S, TELEPHONE_EVENT, StopByKeys

pytestmark = pytest.mark.sipp

RATE = audio.RATE
WORKERS = ProxySettings(media="workers = 2")
CALLS = 4
# what a killed worker's recording may lose: the recorder's 1 s block being filled and
# the writer's open chunk (aligned with it), a block waiting to be handed over (100 ms)
# and the jitter buffer (60 ms)
CRASH_LOSS_S = 1.2


def _worker_pids(log: str) -> dict[int, list[int]]:
    """Each worker place's pids, in the order they were started."""
    pids: dict[int, list[int]] = {}
    for place, pid in re.findall(r"media worker (\d+) started \(pid (\d+)\)", log):
        pids.setdefault(int(place), []).append(int(pid))
    return pids


def _worker_calls(world: E2e, place: int) -> float:
    return metric(world.ports.http, "recproxy_media_worker_calls", f'worker="{place}"')


def _worker_recordings(world: E2e, place: int) -> float:
    return metric(world.ports.http, "recproxy_media_worker_recordings", f'worker="{place}"')


def _worker_packets(world: E2e, place: int) -> float:
    return metric(world.ports.http, "recproxy_media_worker_packets_total", f'worker="{place}"')


def _caller(world: E2e, index: int, pcap_name: str, hold_ms: int) -> sipp.Sipp:
    """Caller ``index`` (0-3 on spare ports, 4 on the caller's own)."""
    spare = index < CALLS
    return world.caller(
        audio_pcap=pcap_name,
        label=f"caller{index}",
        local_port=world.ports.spare_sip(index) if spare else world.ports.caller_sip,
        media_port=world.ports.spare_media(index) if spare else world.ports.caller_rtp,
        pre_audio_ms=3000,
        hold_ms=hold_ms,
        timeout_s=40,
    )


def _recording_of(
    world: E2e, proxy_catalog: Path, run: sipp.Sipp
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the call's row, its recording's row) of the call SIPp ``run`` placed."""
    call_id = run.first(sent=True, method="INVITE").call_id
    (call,) = [
        dict(r) for r in query(proxy_catalog, "SELECT * FROM calls WHERE sip_call_id = ?", call_id)
    ]
    (row,) = [row for row in list_recordings(world.config_path) if row["call_id"] == call["id"]]
    return call, row


def test_calls_on_two_workers_and_a_killed_worker_ends_its_calls_only(
    e2e: E2e, dialogue: bytes
) -> None:
    world = e2e
    proxy = world.proxy(WORKERS)
    assert "2 media worker process(es)" in proxy.log_text()
    [first_pid], [second_pid] = _worker_pids(proxy.log_text()).values()
    caller_audio, taker_audio = dialogue[: 7 * RATE], dialogue[12 * RATE : 19 * RATE]
    caller_pcap = world.rtp_pcap("caller.pcap", caller_audio)
    taker = world.call_taker(
        audio_pcap=world.rtp_pcap("taker.pcap", taker_audio), ring_ms=500, calls=CALLS + 1,
        timeout_s=40,
    )  # fmt: skip
    callers = [_caller(world, index, caller_pcap, 7500) for index in range(CALLS)]
    wait_for(
        "two calls on each worker",
        lambda: _worker_calls(world, 0) == _worker_calls(world, 1) == 2,
        timeout=15,
    )
    assert _worker_recordings(world, 0) == _worker_recordings(world, 1) == 2
    time.sleep(2.0)  # two complete chunks for the killed worker's writer to leave
    os.kill(first_pid, signal.SIGKILL)
    wait_for("worker 0 started again", lambda: len(_worker_pids(proxy.log_text())[0]) == 2, 5)
    assert _worker_calls(world, 0) == 0 and _worker_calls(world, 1) == 2
    assert _worker_recordings(world, 0) == 0
    assert metric(world.ports.http, "recproxy_media_worker_restarts_total", 'worker="0"') == 1
    packets_before = _worker_packets(world, 0)
    # a fifth call while the survivors talk: the new worker (it has none) relays it
    fifth = _caller(world, CALLS, caller_pcap, 3500)
    wait_for("the fifth call on the new worker", lambda: _worker_calls(world, 0) == 1, 15)
    fifth.expect_success(timeout=30)
    statuses = [run.wait(timeout=30) for run in callers]
    taker.wait(timeout=20)
    proxy.wait_idle()
    assert _worker_packets(world, 0) > packets_before + 0.8 * 2 * 50 * 3
    assert _worker_pids(proxy.log_text())[1] == [second_pid], "the other worker was restarted"

    # the killed worker's two calls ended: SIPp's callers got a BYE they did not expect
    assert sorted(status == 0 for status in statuses) == [False, False, True, True], statuses
    for run, status in zip(callers, statuses, strict=True):
        call, row = _recording_of(world, proxy.catalog_path, run)
        if status == 0:
            check_whole_recording(world, call, row, caller_audio, taker_audio)
        else:
            _check_interrupted(world, proxy.catalog_path, call, row, first_pid)
    call, row = _recording_of(world, proxy.catalog_path, fifth)
    check_whole_recording(world, call, row, caller_audio[: 3 * RATE], taker_audio[: 3 * RATE])


def _check_interrupted(
    world: E2e, catalog: Path, call: dict[str, Any], row: dict[str, Any], pid: int
) -> None:
    """Interrupted, naming the worker, holding the audio its writer had sealed: the
    worker's writer died with it, so the audio of the last second (its recorder's
    block, its writer's open chunk) is lost, as in a crash of the whole process."""
    assert row["state"] == "interrupted", row
    events = query(catalog, "SELECT reason FROM recording_events WHERE recording_id = ?", row["id"])
    assert any(f"(pid {pid})" in (event["reason"] or "") for event in events), [
        dict(event) for event in events
    ]
    wav = audio.read_wav(
        export_wav(world.config_path, str(row["id"]), world.folder / f"{row['id']}.wav")
    )
    bridged = (call["ended_at"] - call["bridged_at"]) / 1000
    lost = bridged - wav.seconds
    assert wav.seconds >= 1.0, (wav.seconds, bridged)
    assert -LENGTH_TOLERANCE_S <= lost <= CRASH_LOSS_S, (wav.seconds, bridged)
    # what survived is catalogued, as start-up recovery would: segment rows, closed, as
    # long as the audio, and the recording's duration
    segments = query(
        catalog, "SELECT frames, closed FROM segments WHERE recording_id = ?", row["id"]
    )
    assert segments and all(segment["closed"] for segment in segments), segments
    frames = sum(segment["frames"] for segment in segments)
    assert frames == round(wav.seconds * RATE), (frames, wav.seconds)
    (recording,) = query(catalog, "SELECT duration_ms FROM recordings WHERE id = ?", row["id"])
    assert recording["duration_ms"] == frames * 1000 // RATE


def test_a_stop_code_on_a_worker_never_reaches_the_caller_and_stops_the_recording(
    e2e: E2e, dialogue: bytes
) -> None:
    run = StopByKeys(e2e, dialogue)
    run.start(replace(run.settings(), media="workers = 1"))
    run.call()
    handed = _worker_packets(e2e, 0)
    run.after()
    e2e.proxies.clear()  # run.after() stopped and checked them (a clean exit)
    run.expect_calls_succeeded()
    assert handed > 100, "the call never went to the worker"
    ports = e2e.ports
    to_caller = run.w.rtp(to_port=ports.caller_rtp)
    assert any(t > run.bridge() and p.payload_type == 0 for t, p in to_caller)
    leaked = [p for _, p in to_caller if p.payload_type == TELEPHONE_EVENT]
    assert not leaked, f"{len(leaked)} telephone-event packets reached the caller"
    wav: audio.Wav = run.notes["wav"]
    expected = run.event() - run.bridge()
    assert abs(wav.seconds - expected) <= STOP_TOLERANCE_S, (wav.seconds, expected)
