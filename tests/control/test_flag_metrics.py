"""The open anomaly flag gauge: counted from a real catalog by a refresh, never by a
scrape; every kind has a series (zeros included); the collector the records service
registers on its own registry shows the same.  (The refresh task is ``refresh_every``,
tested with the hold counter.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.control.flag_metrics import KINDS, FlagCounter
from proxy.storage.catalog import NewFlag, SqliteCatalog

from ..storage.test_catalog import FakeClock, at
from .metrics_helpers import fresh_metrics, value

NAME = "recproxy_access_flags_open"


@pytest.fixture
async def catalog(tmp_path: Path) -> AsyncIterator[SqliteCatalog]:
    async with SqliteCatalog(tmp_path / "catalog.db", clock=FakeClock(at(3600))) as opened:
        yield opened


async def test_the_gauge_shows_open_flags_by_kind_as_last_refreshed(
    catalog: SqliteCatalog,
) -> None:
    counter = FlagCounter(catalog.flags)
    metrics = fresh_metrics()
    metrics.attach(flags=counter.snapshot)
    assert value(metrics, NAME, kind="repeated_refusals") is None  # not counted yet
    await catalog.flags.raise_flag(NewFlag("repeated_refusals", "alice"))
    cleared = await catalog.flags.raise_flag(NewFlag("repeated_refusals", "bob"))
    await catalog.flags.raise_flag(NewFlag("too_many_playbacks", "bob"))
    await catalog.flags.clear(cleared.id, by="dee", reason="explained")
    await counter.refresh()
    assert {kind: value(metrics, NAME, kind=kind) for kind in KINDS} == {
        "too_many_playbacks": 1,
        "outside_working_hours": 0,
        "repeated_refusals": 1,
    }
    await catalog.flags.raise_flag(NewFlag("outside_working_hours", "carl"))
    assert value(metrics, NAME, kind="outside_working_hours") == 0  # until the next refresh
    await counter.refresh()
    assert value(metrics, NAME, kind="outside_working_hours") == 1


def test_the_interval_must_be_positive(catalog: SqliteCatalog) -> None:
    with pytest.raises(ValueError, match="positive"):
        FlagCounter(catalog.flags, interval=0)
