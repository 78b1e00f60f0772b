"""A small world for the access tests: a real SQLite catalog with a transferred call
(part 1 taken by alice of reception, part 2 by bob of nurses) and a call carl of nurses
took alone, one person of each role, and a clock the test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from proxy.config import AccessSettings
from proxy.records.gate import Gate
from proxy.records.policy import Actor
from proxy.roles import Role
from proxy.storage.catalog import SqliteCatalog
from proxy.storage.catalog.audit import AuditEntry

from ..storage.test_catalog import FakeClock, at, new_call, new_recording

ALICE = Actor("alice", Role.STAFF, frozenset({"reception"}), operator="alice")
BOB = Actor("bob", Role.STAFF, frozenset({"nurses"}), operator="bob")
MONA = Actor("mona", Role.MANAGER, frozenset({"reception"}))
OLIVE = Actor("olive", Role.RECORDS_OFFICER)
DEE = Actor("dee", Role.DPO)
ADAM = Actor("adam", Role.ADMIN)
MAX = Actor("max", Role.MAINTENANCE)

SETTINGS = AccessSettings(playbacks_per_hour=3, refusals_per_hour=2)


@dataclass
class World:
    catalog: SqliteCatalog
    clock: FakeClock
    gate: Gate
    transferred: str  # parts: 1 alice/reception, 2 bob/nurses
    single: str  # one part: carl/nurses

    def tick(self, seconds: float = 1) -> datetime:
        self.clock.now += timedelta(seconds=seconds)
        return self.clock.now

    async def audit(self) -> list[AuditEntry]:
        return await self.catalog.audit.entries()


async def make_world(path: Path) -> World:
    clock = FakeClock(at(3600))
    catalog = SqliteCatalog(path, clock=clock)
    await catalog.open()
    first = await new_call(catalog, caller="+441234567890")
    transferred = await new_recording(catalog, first)
    await catalog.parts.begin(transferred, operator="alice", team="reception", at=at(10))
    await catalog.parts.begin(transferred, operator="bob", team="nurses", at=at(60))
    second = await new_call(catalog, started=at(100), caller="+442079460000")
    single = await new_recording(catalog, second)
    await catalog.parts.begin(single, operator="carl", team="nurses", at=at(110))
    return World(catalog, clock, Gate(catalog, SETTINGS, clock=clock), transferred, single)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    made = await make_world(tmp_path / "catalog.db")
    try:
        yield made
    finally:
        await made.catalog.close()
