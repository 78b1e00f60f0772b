"""The recorder's block store: every recording's block in one array, one write a tick."""

from __future__ import annotations

import numpy as np
import pytest

from proxy.media.blocks import BlockStore

FRAME = 4  # samples a frame: small, so expected blocks are easy to write out


def frame_of(value: int) -> np.ndarray:
    """One stereo frame: caller ``value``, call taker ``value + 1000``."""
    return np.array([[value] * FRAME, [value + 1000] * FRAME], dtype=np.uint16)


def write(store: BlockStore, writes: list[tuple[int, int, int]]) -> None:
    """(slot, frame, value) triples, in one assignment."""
    slots = np.array([slot for slot, _, _ in writes], dtype=np.intp)
    frames = np.array([frame for _, frame, _ in writes], dtype=np.intp)
    store.write(slots, frames, np.stack([frame_of(value) for _, _, value in writes]))


def test_a_block_comes_out_interleaved_caller_left_as_written() -> None:
    store = BlockStore(frames_per_block=3, frame_samples=FRAME)
    a, b = store.acquire(), store.acquire()
    for n in range(3):
        write(store, [(a, n, 10 + n), (b, n, 20 + n)])
    block = store.take(a, 3)
    assert block.shape == (3 * FRAME, 2) and block.dtype == np.uint16
    assert block[:, 0].tolist() == [10] * FRAME + [11] * FRAME + [12] * FRAME
    assert block[:, 1].tolist() == [1010] * FRAME + [1011] * FRAME + [1012] * FRAME
    assert store.take(b, 2)[:, 0].tolist() == [20] * FRAME + [21] * FRAME
    assert store.take(b, 0).shape == (0, 2)  # an empty final block


def test_a_taken_block_interleaves_every_sample_of_random_audio() -> None:
    """Sample by sample what a transposing copy gives, for a whole 1 s block of
    arbitrary wire samples (the copy out interleaves one channel at a time)."""
    rng = np.random.default_rng(19)
    store = BlockStore(frames_per_block=50, frame_samples=160)
    slot = store.acquire()
    wire = rng.integers(0, 2**16, size=(50, 2, 160), dtype=np.uint16)
    store.write(np.full(50, slot, np.intp), np.arange(50, dtype=np.intp), wire)
    block = store.take(slot, 50)
    assert block.flags.c_contiguous and block.shape == (8000, 2)
    assert np.array_equal(block, wire.transpose(0, 2, 1).reshape(-1, 2))
    assert np.array_equal(store.take(slot, 7), block[: 7 * 160])


def test_a_taken_block_is_a_copy_the_next_writes_do_not_touch() -> None:
    store = BlockStore(frames_per_block=2, frame_samples=FRAME)
    slot = store.acquire()
    write(store, [(slot, 0, 1), (slot, 1, 2)])
    block = store.take(slot, 2)
    write(store, [(slot, 0, 7), (slot, 1, 8)])
    assert block[:, 0].tolist() == [1] * FRAME + [2] * FRAME


def test_the_store_grows_without_losing_blocks_being_filled() -> None:
    store = BlockStore(frames_per_block=2, frame_samples=FRAME)
    first = store.capacity
    slots = [store.acquire() for _ in range(first)]
    write(store, [(slot, 0, slot) for slot in slots])
    extra = store.acquire()  # no slot free: the array doubles
    assert store.capacity == 2 * first and extra not in slots
    assert store.in_use == first + 1
    write(store, [(slot, 1, slot + 100) for slot in slots] + [(extra, 0, 5)])
    for slot in slots:
        assert store.take(slot, 2)[:, 0].tolist() == [slot] * FRAME + [slot + 100] * FRAME


def test_a_released_slot_is_handed_out_again() -> None:
    store = BlockStore(frames_per_block=2, frame_samples=FRAME)
    a = store.acquire()
    store.acquire()
    store.release(a)
    assert store.acquire() == a
    assert store.in_use == 2


def test_an_empty_block_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one frame"):
        BlockStore(frames_per_block=0, frame_samples=FRAME)
