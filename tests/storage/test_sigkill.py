"""A recording process killed with SIGKILL mid-call loses at most the chunk being filled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from proxy.storage.crypto import save_public_key
from proxy.storage.reader import Outcome, RecordingReader, recover
from proxy.storage.segment import ulaw_decode, ulaw_encode

from . import sigkill_child
from .conftest import repo_root

CHUNK_FRAMES = 8000  # the child records 1 s chunks
KILL_AFTER_FRAMES = 28_000  # 3.5 s of audio submitted


def test_sigkill_mid_recording_loses_at_most_the_last_second(
    tmp_path: Path, public_key: X25519PublicKey, private_key: X25519PrivateKey
) -> None:
    key_path = tmp_path / "org.pub.pem"
    save_public_key(key_path, public_key)
    root, rid = tmp_path / "recordings", uuid.uuid4()
    env = dict(os.environ, PYTHONPATH=str(repo_root()))
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.storage.sigkill_child", str(root), str(key_path), str(rid)],
        cwd=repo_root(),
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    submitted = 0
    deadline = time.monotonic() + 20
    try:
        for line in child.stdout:
            if line.startswith("submitted "):
                submitted = int(line.split()[1])
                if submitted >= KILL_AFTER_FRAMES:
                    break
            assert time.monotonic() < deadline, "the child does not record in real time"
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        rest = child.communicate(timeout=10)[0]
    assert child.returncode == -signal.SIGKILL
    for line in rest.splitlines():  # progress printed before the kill landed
        assert line.startswith("submitted "), line  # and nothing was ever dropped
        submitted = int(line.split()[1])
    assert submitted >= KILL_AFTER_FRAMES

    directory = root / str(rid)
    recording = RecordingReader(directory, private_key).recover()
    report = recording.report
    assert report.outcome is Outcome.INTERRUPTED and not report.final_seen
    assert report.frames % CHUNK_FRAMES == 0
    assert submitted - CHUNK_FRAMES <= report.frames <= submitted
    blocks = report.frames // sigkill_child.BLOCK_FRAMES
    expected = np.concatenate([sigkill_child.block(n) for n in range(blocks)])
    np.testing.assert_array_equal(recording.audio, ulaw_decode(ulaw_encode(expected)))
    # The proxy at start-up, without the private key, finds the same.
    keyless = recover(directory)
    assert (keyless.frames, keyless.outcome) == (report.frames, Outcome.INTERRUPTED)
