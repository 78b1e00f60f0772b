"""The recording writer's CPU per recording (issue 19): what a call's recording costs
the process, apart from the call.

A real :class:`~proxy.storage.writer.RecordingWriter` over a real
:class:`~proxy.storage.store.LocalDiskStore` in a temporary folder: each recording is
opened (a fresh data key wrapped to a public key, the key file), handed its audio as the
recorder would (one block per ``--block-seconds``, the last one final) and closed —
``--rate`` recordings a second, one after another, the way calls arrive.  The audio is
filled silence by default (what ``setup_cost.py``'s calls record: no RTP is sent), or
received PCMU with ``--audio heard``.  Reported: CPU of the whole process (all threads,
``getrusage``) per recording, the writer's fsyncs per recording, and wall time.

    .venv/bin/python benchmarks/writer_cost.py --recordings 1000 --rate 100
    .venv/bin/python benchmarks/writer_cost.py --audio heard --seconds 5

Bounded by ``--recordings`` and a timeout; the folder is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from proxy.media.g711 import WIRE_SILENCE, wire_samples  # noqa: E402
from proxy.storage.crypto import generate_keypair  # noqa: E402
from proxy.storage.store import LocalDiskStore  # noqa: E402
from proxy.storage.write_reports import RecordingWritten, SegmentWritten  # noqa: E402
from proxy.storage.writer import RecordingWriter  # noqa: E402


class Done:
    """A listener that counts the recordings the writer has finished."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.ended = 0
        self.states: dict[str, int] = {}
        self.all_done = threading.Event()

    def segment_written(self, segment: SegmentWritten) -> None:
        pass

    def recording_written(self, recording: RecordingWritten) -> None:
        self.ended += 1
        state = recording.state.value
        self.states[state] = self.states.get(state, 0) + 1
        if self.ended >= self.expected:
            self.all_done.set()

    def audio_dropped(self, recording_id: object, reason: str) -> None:
        pass


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(args: argparse.Namespace) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="recproxy-writer-"))
    _, public_key = generate_keypair()
    frames, step = round(args.seconds * 8000), round(args.block_seconds * 8000)
    if args.audio == "heard":
        codes = np.random.default_rng(19).integers(0, 256, size=(frames, 2), dtype=np.uint8)
        audio = wire_samples(codes, "PCMU")
    else:
        audio = np.full((frames, 2), WIRE_SILENCE, dtype=np.uint16)
    blocks = [audio[start : start + step] for start in range(0, frames, step)]
    store = LocalDiskStore(fsync=args.fsync)
    writer = RecordingWriter(store)
    done = Done(args.recordings)
    writer.listen(done)
    started = time.monotonic()
    before = cpu_seconds()
    for n in range(args.recordings):
        due = started + n / args.rate
        time.sleep(max(0.0, due - time.monotonic()))
        rid = uuid.uuid4()
        writer.open(rid, work / "recordings", public_key, start_time_ms=1_765_000_000_000)
        for i, block in enumerate(blocks):
            writer.submit(rid, block, final=i == len(blocks) - 1)
    finished = done.all_done.wait(args.timeout)
    cpu = cpu_seconds() - before
    wall = time.monotonic() - started
    writer.stop(timeout=30)
    shutil.rmtree(work, ignore_errors=True)
    return {
        "recordings": args.recordings,
        "finished": finished,
        "states": done.states,
        "audio": args.audio,
        "seconds_per_recording": args.seconds,
        "fsync": args.fsync,
        "cpu_us_per_recording": round(1e6 * cpu / args.recordings),
        "fsyncs_per_recording": round(store.fsyncs / args.recordings, 2),
        "wall_seconds": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recordings", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="recordings opened a second")
    parser.add_argument("--seconds", type=float, default=0.3, help="audio per recording")
    parser.add_argument("--block-seconds", type=float, default=1.0, help="the recorder's block")
    parser.add_argument("--audio", choices=("filled", "heard"), default="filled")
    parser.add_argument("--fsync", choices=("chunk", "segment", "none"), default="chunk")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds")
    args = parser.parse_args()
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
