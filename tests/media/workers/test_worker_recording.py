"""Recordings run by a media worker (issue 19, step 2), with real worker processes, real
loopback sockets, a real writer thread and real AES-GCM: the audio the call process
relays is handed down, the audio the worker relays is recorded there, and the recording
on disk holds both, in order, decryptable with the private key the worker never saw; a
worker killed mid-recording leaves its complete chunks on disk and says so."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from proxy.media.relay import MediaSession
from proxy.media.workers import WorkerPool
from proxy.media.workers import pool as pool_module
from proxy.media.workers.recording_messages import RecorderSetup, Report
from proxy.media.workers.remote import RemotePair
from proxy.storage.reader import RecordingReader
from tests.media.loopback_phone import rtp
from tests.media.workers.test_pool import Call, loopback_session, running_pool

SILENCE = 0xFF  # PCMU
KEY = X25519PrivateKey.generate()
PUBLIC = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@pytest.fixture
async def pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[WorkerPool]:
    monkeypatch.setattr(pool_module, "RESTART_SECONDS", 0.0)
    async with running_pool(RecorderSetup(str(tmp_path), "chunk", 10.0, "silence", 3)) as workers:
        yield workers


@pytest.fixture
async def session() -> AsyncIterator[MediaSession]:
    async with loopback_session(21100) as media:
        yield media


class Recorded:
    """A call whose recording a worker runs, and the reports it sent up."""

    def __init__(self, pool: WorkerPool, call: Call) -> None:
        self.id = str(uuid.uuid4())
        self.reports: list[Report] = []
        self.lost: list[str] = []
        pair = pool.open_recording(
            self.id, PUBLIC, ("PCMU", "PCMU"), encoding="g711", segment_seconds=10,
            start_time_ms=0, on_report=self.reports.append, lost=self.lost.append,
        )  # fmt: skip
        assert isinstance(pair, RemotePair)
        self.pair = pair
        call.a.sink, call.b.sink = pair.caller.push, pair.taker.push

    def kinds(self) -> list[str]:
        return [report.kind for report in self.reports]

    async def written(self) -> Report:
        for _ in range(100):  # 5 s at most
            if "written" in self.kinds():
                return self.reports[-1]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no written report: {self.reports}")


class Talk:
    """Both parties sending at the pace of their stream (20 ms a packet) from sequence
    number 1, in a task, while the test moves the call about."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.sent = 0
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        call, loop = self.call, asyncio.get_running_loop()
        start = loop.time()
        for seq in range(1, 1000):  # 20 s at most
            call.caller.send(rtp(seq), call.a.port)
            call.taker.send(rtp(seq), call.b.port)
            self.sent = seq
            await asyncio.sleep(max(0.0, start + seq * 0.02 - loop.time()))
            call.caller.drain()
            call.taker.drain()

    async def until(self, seq: int) -> None:
        for _ in range(1000):
            if self.sent >= seq:
                return
            await asyncio.sleep(0.01)

    async def stop(self) -> int:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.call.settle()
        return self.sent


def codes(channel: np.ndarray) -> list[int]:
    """The packets of a channel, in the order they were recorded: each packet's payload
    is its sequence number's low byte, and PCMU silence (0xFF) fills the rest."""
    values = (channel & 0xFF).tolist()
    return [v for i, v in enumerate(values) if v != SILENCE and (i == 0 or values[i - 1] != v)]


async def test_audio_relayed_here_and_there_is_recorded_whole_in_the_worker(
    pool: WorkerPool, session: MediaSession, tmp_path: Path
) -> None:
    call = Call(pool, await session.open_leg("caller"), await session.open_leg("call_taker"))
    recording = Recorded(pool, call)
    recording.pair.command("commit", None)  # its catalog row is committed
    talk = Talk(call)
    await talk.until(10)  # the call process relays: handed down
    pool.offer(call.a, call.b, call.lost.append)
    await talk.until(40)  # the worker relays and records
    assert pool.on_worker(call.a)
    pool.withdraw(call.a)
    relayed = talk.sent
    back = asyncio.get_running_loop().create_future()
    pool.when_back(call.a, lambda: back.set_result(None))
    await asyncio.wait_for(back, 2)
    # the worker's count is back, added to what this process counted since: each once
    assert relayed - 1 <= call.a.stats.packets_in <= talk.sent
    await talk.until(60)  # the call process relays again: handed down
    sent = await talk.stop()
    recording.pair.command("counters", None)  # the call's summary, before the close
    for _ in range(50):
        if "counters" in recording.kinds():
            break
        await asyncio.sleep(0.01)
    (counted,) = [report for report in recording.reports if report.kind == "counters"]
    assert [channel["received"] for channel in counted.body["channels"]] == [sent, sent]
    recording.pair.command("close", None)
    written = await recording.written()
    assert written.body["state"] == "complete" and recording.lost == []
    assert "segment" in recording.kinds()
    caller, taker = written.body["channels"]
    assert caller["received"] == taker["received"] == sent
    recording.pair.settle(written.body["channels"])
    assert recording.pair.caller.jitter.stats.received == sent
    audio = RecordingReader(tmp_path / recording.id, KEY).read()
    assert audio.wire is not None
    frames = written.body["frames"]
    assert audio.wire.shape == (frames, 2) and frames >= sent * 160
    # each channel holds every packet once, in order, whichever process relayed it
    for channel in (0, 1):
        assert codes(audio.wire[:, channel]) == list(range(1, sent + 1))


async def test_a_killed_worker_leaves_its_complete_chunks_and_says_so(
    pool: WorkerPool, session: MediaSession, tmp_path: Path
) -> None:
    call = Call(pool, await session.open_leg("caller"), await session.open_leg("call_taker"))
    recording = Recorded(pool, call)
    recording.pair.command("commit", None)
    talk = Talk(call)
    await talk.until(3)
    pool.offer(call.a, call.b, call.lost.append)
    await talk.until(90)  # 1.8 s: the first 1 s chunk is sealed
    assert pool.on_worker(call.a)
    worker = next(w for w in pool._places if w is not None and w.recordings)
    os.kill(worker.process.pid, signal.SIGKILL)
    for _ in range(100):
        if recording.lost:
            break
        await asyncio.sleep(0.05)
    await talk.stop()
    assert len(recording.lost) == 1 and "exited, exit -9" in recording.lost[0]
    assert call.lost == recording.lost and "written" not in recording.kinds()
    kept = RecordingReader(tmp_path / recording.id, KEY).recover()
    assert kept.report.frames >= 8000  # at least its first complete chunk
    assert kept.wire is not None
    assert codes(kept.wire[:, 0])[:3] == [1, 2, 3]
