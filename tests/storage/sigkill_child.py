"""A recording made in real time, for the SIGKILL test: run as a script, killed mid-call.

    python sigkill_child.py RECORDINGS_DIR PUBLIC_KEY_PEM RECORDING_ID

Submits a 100 ms block every 100 ms of wall clock (a deterministic signal, see ``block``)
and prints ``submitted <frames>`` after each, flushed, until killed.
"""

from __future__ import annotations

import sys
import time
import uuid

import numpy as np
import numpy.typing as npt

from proxy.storage.crypto import load_public_key
from proxy.storage.store import LocalDiskStore
from proxy.storage.writer import RecordingWriter

BLOCK_FRAMES = 800


def block(number: int) -> npt.NDArray[np.int16]:
    """Block ``number`` of the test signal: a ramp each channel can be checked against."""
    frames = np.arange(number * BLOCK_FRAMES, (number + 1) * BLOCK_FRAMES, dtype=np.int64)
    caller = (frames * 7) % 20000 - 10000
    taker = (frames * 13) % 16000 - 8000
    return np.stack([caller, taker], axis=1).astype(np.int16)


def main() -> None:
    root, key_path, rid = sys.argv[1], sys.argv[2], uuid.UUID(sys.argv[3])
    writer = RecordingWriter(LocalDiskStore(fsync="chunk"), chunk_seconds=1.0)
    start_ms = int(time.time() * 1000)
    writer.open(rid, root, load_public_key(key_path), encoding="ulaw", start_time_ms=start_ms)
    print("opened", flush=True)
    started = time.monotonic()
    number = 0
    while True:
        if not writer.submit(rid, block(number), False):
            print("dropped", flush=True)
        number += 1
        print(f"submitted {number * BLOCK_FRAMES}", flush=True)
        time.sleep(max(0.0, started + number * 0.1 - time.monotonic()))


if __name__ == "__main__":
    main()
