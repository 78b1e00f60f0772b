"""The holding area: a recording's items kept in order until its row, with a deadline."""

from __future__ import annotations

import uuid

import pytest

from proxy.storage.holding import HoldingArea


def test_items_come_back_after_their_opening_in_order() -> None:
    area: HoldingArea[str] = HoldingArea(10.0)
    rid, other = uuid.uuid4(), uuid.uuid4()
    area.hold(rid, "open", now=100.0)
    assert area.add(rid, "block 1") and area.add(rid, "block 2")
    assert not area.add(other, "block")  # not held: the writer processes it at once
    assert rid in area and len(area) == 1
    assert area.release(rid) == ["open", "block 1", "block 2"]
    assert area.release(rid) is None and rid not in area


def test_the_deadline_is_the_hold_after_the_opening() -> None:
    area: HoldingArea[str] = HoldingArea(10.0)
    first, second = uuid.uuid4(), uuid.uuid4()
    assert area.timeout(now=0.0) is None  # nothing held: wait for the queue alone
    area.hold(first, "open", now=100.0)
    area.hold(second, "open", now=104.0)
    assert area.timeout(now=101.0) == pytest.approx(9.0)
    assert area.expired(now=109.9) == []
    assert area.expired(now=110.0) == [first]
    assert area.timeout(now=112.0) == 0.0  # overdue: no waiting
    assert area.expired(now=120.0) == [first, second]
    assert area.held() == [first, second]


def test_a_negative_hold_is_refused() -> None:
    with pytest.raises(ValueError, match="hold_seconds"):
        HoldingArea(-1.0)
