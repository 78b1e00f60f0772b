"""The open subject access case gauge: counted from a real catalog by a refresh, never by
a scrape; ``due`` is later, soon (within ``due_soon_days``) or overdue, each with a
series from the first refresh; an answered or closed case is not counted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from proxy.control.metrics import Metrics
from proxy.control.sar_metrics import DUE, SarCounter
from proxy.storage.catalog import NewSarCase, Release, SqliteCatalog
from tests.records.playback_world import catalogue

from ..storage.test_catalog import FakeClock, at
from .metrics_helpers import fresh_metrics, value

NAME = "recproxy_sar_cases_open"
NOW = at(3600)


@pytest.fixture
async def catalog(tmp_path: Path) -> AsyncIterator[SqliteCatalog]:
    async with SqliteCatalog(tmp_path / "catalog.db", clock=FakeClock(NOW)) as opened:
        yield opened


async def open_case(
    catalog: SqliteCatalog, deadline: datetime, recording_ids: tuple[str, ...] = ()
) -> str:
    new = NewSarCase(
        requester="Pat Caller",
        identity_check="passport seen",
        numbers=("+441632960001",),
        window_from=NOW - timedelta(days=60),
        window_to=NOW,
        received_at=NOW - timedelta(days=40),
        deadline_at=deadline,
        opened_by="olive",
        recording_ids=recording_ids,
    )
    return (await catalog.sar.open(new, at=NOW)).id


def shown(metrics: Metrics) -> dict[str, float | None]:
    return {due: value(metrics, NAME, due=due) for due in DUE}


async def test_open_cases_are_counted_by_how_near_their_deadline_is(
    catalog: SqliteCatalog,
) -> None:
    counter = SarCounter(catalog.sar, due_soon_days=7, clock=lambda: NOW)
    metrics = fresh_metrics()
    metrics.attach(sar=counter.snapshot)
    assert shown(metrics) == dict.fromkeys(DUE)  # not counted yet: no series
    await counter.refresh()
    assert shown(metrics) == dict.fromkeys(DUE, 0)  # zeros, not gaps
    await open_case(catalog, NOW + timedelta(days=20))
    await open_case(catalog, NOW + timedelta(days=7))  # the edge of soon: soon
    await open_case(catalog, NOW + timedelta(days=7, seconds=1))  # later
    await open_case(catalog, NOW + timedelta(hours=1))
    await open_case(catalog, NOW - timedelta(seconds=1))
    assert shown(metrics) == dict.fromkeys(DUE, 0)  # until the next refresh
    await counter.refresh()
    assert shown(metrics) == {"later": 2, "soon": 2, "overdue": 1}


async def test_answered_and_closed_cases_are_not_counted(catalog: SqliteCatalog) -> None:
    recording_id = "6f1c2f47-9a51-4c35-8a4e-2f3d8e1b1a01"
    await catalogue(catalog, recording_id)
    answered = await open_case(catalog, NOW - timedelta(days=1), (recording_id,))
    await catalog.sar.decide(answered, recording_id, release=Release.BOTH, by="dora",
                             reason="the caller's own call", at=NOW)  # fmt: skip
    await catalog.sar.record_export(answered, by="olive", bundle="SAR-bundle",
                                    manifest_sha256="ab" * 32,
                                    releases={recording_id: Release.BOTH}, at=NOW)  # fmt: skip
    closed = await open_case(catalog, NOW - timedelta(days=1))
    await catalog.sar.close(closed, by="olive", reason="withdrawn", at=NOW)
    await open_case(catalog, NOW - timedelta(days=1))
    counter = SarCounter(catalog.sar, due_soon_days=7, clock=lambda: NOW)
    metrics = fresh_metrics()
    metrics.attach(sar=counter.snapshot)
    await counter.refresh()
    assert shown(metrics) == {"later": 0, "soon": 0, "overdue": 1}


def test_the_interval_must_be_positive(catalog: SqliteCatalog) -> None:
    with pytest.raises(ValueError, match="positive"):
        SarCounter(catalog.sar, 7, interval=0)
