"""Fixtures of the storage tests: keys, test audio, and recordings made to order.

The speech audio lives beside the repository in ``../shared/testdata/audio`` (or under
``RECPROXY_TESTDATA``); when it is missing the tests fail, never skip.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from proxy.storage.crypto import generate_keypair
from proxy.storage.segment import ulaw_decode
from proxy.storage.store import LocalDiskStore
from proxy.storage.writer import RecordingWriter

ENV_VAR = "RECPROXY_TESTDATA"
RATE = 8000

Audio = npt.NDArray[np.int16]


def repo_root() -> Path:
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    raise RuntimeError(f"no pyproject.toml above {__file__}")


def audio_dir() -> Path:
    override = os.environ.get(ENV_VAR)
    root = Path(override) if override else repo_root().parent / "shared" / "testdata"
    folder = root / "audio"
    if not (folder / "dialogue_8k.ulaw").is_file():
        pytest.fail(f"test audio not found in {folder}; set {ENV_VAR}", pytrace=False)
    return folder


def ulaw_file(name: str) -> Audio:
    """A headerless µ-law test file decoded to int16 (mono)."""
    codes = np.frombuffer((audio_dir() / name).read_bytes(), dtype=np.uint8)
    return ulaw_decode(codes)


def tiled(signal: Audio, frames: int) -> Audio:
    return np.resize(signal, frames).astype(np.int16)


def dialogue_call(seconds: float) -> Audio:
    """Caller: the dialogue; call taker: the notice; both µ-law on the wire."""
    frames = round(seconds * RATE)
    caller = tiled(ulaw_file("dialogue_8k.ulaw"), frames)
    taker = tiled(ulaw_file("notice_8k.ulaw")[::-1].copy(), frames)
    return np.stack([caller, taker], axis=1)


def random_ulaw_audio(frames: int, seed: int = 0) -> Audio:
    """Random audio that µ-law stores exactly (every sample a µ-law value)."""
    rng = np.random.default_rng(seed)
    return ulaw_decode(rng.integers(0, 256, size=(frames, 2), dtype=np.uint8))


@pytest.fixture(scope="session")
def keypair() -> tuple[X25519PrivateKey, X25519PublicKey]:
    return generate_keypair()


@pytest.fixture(scope="session")
def private_key(keypair: tuple[X25519PrivateKey, X25519PublicKey]) -> X25519PrivateKey:
    return keypair[0]


@pytest.fixture(scope="session")
def public_key(keypair: tuple[X25519PrivateKey, X25519PublicKey]) -> X25519PublicKey:
    return keypair[1]


MakeRecording = Callable[..., Path]


@pytest.fixture
def make_recording(tmp_path: Path, public_key: X25519PublicKey) -> MakeRecording:
    """Record ``audio`` (linear int16, or uint16 wire samples) through a RecordingWriter;
    returns the recording's directory."""

    def make(
        audio: npt.NDArray[np.integer[Any]],
        *,
        chunk_seconds: float = 1.0,
        segment_seconds: float = 10,
        encoding: str = "ulaw",
        block_frames: int = 160,
        root: Path | None = None,
        recording_id: uuid.UUID | None = None,
    ) -> Path:
        rid = recording_id or uuid.uuid4()
        root = root or tmp_path / "recordings"
        writer = RecordingWriter(LocalDiskStore(fsync="none"), chunk_seconds=chunk_seconds)
        try:
            writer.open(
                rid,
                root,
                public_key,
                encoding=encoding,
                segment_seconds=segment_seconds,
                start_time_ms=1_700_000_000_000,
            )
            for start in range(0, len(audio), block_frames):
                block = audio[start : start + block_frames]
                last = start + block_frames >= len(audio)
                assert writer.submit(rid, block, last)
            if not len(audio):
                assert writer.submit(rid, audio[:0], True)
        finally:
            writer.stop(timeout=30)
        status = writer.status(rid)
        assert status is not None
        assert status.state.value == "complete", status
        return root / str(rid)

    return make


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)
