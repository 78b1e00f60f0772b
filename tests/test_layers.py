"""The layers import downward only (ARCHITECTURE.md): the sans-IO SIP stack, the media
relay and storage know nothing of calls, the use cases or the HTTP API; calls know
nothing of the HTTP API; metrics take events and snapshots, never a call, a leg, a
jitter buffer or the clock; nothing leans on aiosqlite's private names, which a release
may change without notice; callers take the catalog's protocols, and only the
composition roots name its SQLite implementation; and storage and calls modules stay
under 800 lines.  An AST walk over every module, like ``tests/sip/test_sans_io.py``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import proxy

PROXY_DIR = Path(proxy.__file__).parent

# package -> packages it must not import (itself or anything inside them)
FORBIDDEN = {
    "proxy.sip": ("proxy.calls", "proxy.control", "proxy.records"),
    "proxy.media": ("proxy.calls", "proxy.control", "proxy.records"),
    "proxy.storage": ("proxy.calls", "proxy.control", "proxy.records"),
    "proxy.calls": ("proxy.control",),
}

# Pure cores (issue 15): the access policy and the anomaly rules decide from their inputs
# alone, like the SIP cores (tests/sip/test_sans_io.py): no sockets, threads, files,
# clock or catalog, and no reading of the clock through datetime either.
PURE_MODULES = (
    "proxy.records.policy",
    "proxy.records.anomaly",
    "proxy.records.transcripts.transcript",  # issue 16: cues, gaps, text and WebVTT
)
PURE_MAY_NOT_IMPORT = (
    "asyncio",
    "socket",
    "time",
    "os",
    "threading",
    "sqlite3",
    "aiosqlite",
    "proxy.storage",
    "proxy.calls",
    "proxy.control",
)
CLOCK_READS = frozenset({"now", "utcnow", "today", "time_ns", "monotonic"})

# Metrics (issue 13) are an event subscriber reading snapshots: from the call and media
# layers they may import only the snapshot types, and they name none of the attributes
# through which a call, a leg, a jitter buffer or the clock was reached before.
METRICS_MODULE = "proxy.control.metrics"
METRICS_MAY_NOT_IMPORT = (
    "proxy.calls",
    "proxy.media.jitter",
    "proxy.media.relay",
    "proxy.media.clock",
)
METRICS_MAY_NOT_READ = frozenset(
    {
        "a_leg",
        "b_leg",
        "b2bua",
        "closed_totals",
        "jitter",
        "last_tick_age",
        "on_lag",
        "on_phase",
        "on_recording_action",
        "open_legs",
        "pacer",
        "pair",
        "phase",
        "recording",
        "speech",
    }
)

# aiosqlite 0.22's private attributes of Connection and Cursor
AIOSQLITE_PRIVATE = frozenset(
    {
        "_conn",
        "_connect",
        "_connection",
        "_connector",
        "_execute",
        "_execute_fetchall",
        "_execute_insert",
        "_fetch_chunked",
        "_iter_chunk_size",
        "_running",
        "_thread",
        "_tx",
    }
)

# (module, private name) allowed for now, each with the issue that removes it; empty
# since the catalog runs the standard library's sqlite3 in its own thread (issue 13).
# test_each_allowance_is_still_needed says when an entry can go.
ALLOWED_PRIVATE: frozenset[tuple[str, str]] = frozenset()

# Layers whose modules must stay small enough to read (issue 13).
MAX_LINES = 800
SIZE_LIMITED = ("proxy.storage", "proxy.calls")


def module_name(path: Path) -> str:
    parts = path.relative_to(PROXY_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every module ``source`` imports, relative imports resolved against ``module``;
    ``from a import b`` counts as both ``a`` and ``a.b`` (``b`` may be a module)."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            prefix = resolved(node, package)
            found.add(prefix)
            found.update(f"{prefix}.{alias.name}" for alias in node.names)
    return found


def resolved(node: ast.ImportFrom, package: str) -> str:
    """The absolute module of ``from <module> import ...`` inside ``package``."""
    if not node.level:
        return node.module or ""
    base = package.split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def private_aiosqlite_uses(source: str) -> set[str]:
    """aiosqlite private names read off anything but ``self`` (``conn._conn``), imported
    (``from aiosqlite.core import _x``) or fetched with ``getattr(conn, "_conn")``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in AIOSQLITE_PRIVATE:
            if not (isinstance(node.value, ast.Name) and node.value.id == "self"):
                found.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("aiosqlite"):
            found.update(a.name for a in node.names if a.name.startswith("_"))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in AIOSQLITE_PRIVATE
        ):
            found.add(str(node.args[1].value))
    return found


def modules() -> list[tuple[str, Path]]:
    found = [(module_name(p), p) for p in sorted(PROXY_DIR.rglob("*.py"))]
    assert len(found) > 40, f"no modules found in {PROXY_DIR}"
    return found


def _crosses(module: str, imports: set[str]) -> list[str]:
    for layer, forbidden in FORBIDDEN.items():
        if module == layer or module.startswith(layer + "."):
            return sorted(
                name
                for name in imports
                for bad in forbidden
                if name == bad or name.startswith(bad + ".")
            )
    return []


@pytest.mark.parametrize("module, path", modules(), ids=lambda v: str(v))
def test_module_imports_only_downward(module: str, path: Path) -> None:
    imports = imported_modules(path.read_text("utf-8"), module, is_package=path.stem == "__init__")
    assert _crosses(module, imports) == []


def impurities(source: str, module: str) -> list[str]:
    """What a pure module imports that does I/O or reaches a lower layer's state, and
    every call that reads the clock (``datetime.now()``, ``date.today()``)."""
    found = [
        name
        for name in imported_modules(source, module)
        for bad in PURE_MAY_NOT_IMPORT
        if name == bad or name.startswith(bad + ".")
    ]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
            if name in CLOCK_READS:
                found.append(f"{name}()")
    return sorted(set(found))


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_module_does_no_io(module: str) -> None:
    path = PROXY_DIR.joinpath(*module.split(".")[1:]).with_suffix(".py")
    assert impurities(path.read_text("utf-8"), module) == []


@pytest.mark.parametrize(
    "source",
    [
        "import asyncio",
        "from time import monotonic",
        "import os.path",
        "from ..storage.catalog import Catalog",
        "from ..calls.call import Call",
        "from ..control import api",
        "import sqlite3",
        "from datetime import datetime\nnow = datetime.now()",
        "import datetime\nd = datetime.date.today()",
        "from datetime import UTC, datetime\nx = datetime.now(UTC)",
    ],
)
def test_the_purity_checker_catches_each_form(source: str) -> None:
    assert impurities(source, "proxy.records.policy") != []


@pytest.mark.parametrize(
    "source",
    [
        "from ..config import AccessSettings",
        "from datetime import datetime, timedelta",
        "def f(query):\n    return query.now < query.grant.expires_at",
        "from .errors import RecordNotFound",
    ],
)
def test_the_purity_checker_leaves_pure_code_alone(source: str) -> None:
    assert impurities(source, "proxy.records.policy") == []


def metrics_crossings(source: str, module: str = METRICS_MODULE) -> list[str]:
    """What ``source`` imports from the call and media layers other than a snapshot
    type (``...Snapshot``), and the call/leg/jitter/clock attributes it reads."""

    def guarded(name: str) -> bool:
        return any(
            name == layer or name.startswith(layer + ".") for layer in METRICS_MAY_NOT_IMPORT
        )

    found: list[str] = []
    package = module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names if guarded(alias.name))
        elif isinstance(node, ast.ImportFrom):
            prefix = resolved(node, package)
            for alias in node.names:
                name = f"{prefix}.{alias.name}"
                snapshot = guarded(prefix) and alias.name.endswith("Snapshot")
                if guarded(name) and not snapshot:
                    found.append(name)
        elif isinstance(node, ast.Attribute) and node.attr in METRICS_MAY_NOT_READ:
            found.append(f".{node.attr}")
    return sorted(set(found))


def test_metrics_take_events_and_snapshots_only() -> None:
    path = PROXY_DIR / "control" / "metrics.py"
    assert metrics_crossings(path.read_text("utf-8")) == []


@pytest.mark.parametrize(
    "source",
    [
        "from ..calls.b2bua import CallPhase",
        "from ..calls.recording import RecordingService",
        "import proxy.calls.b2bua",
        "from ..media.jitter import JitterStats",
        "from ..media.relay import PortAllocator",
        "from ..media import clock",
        "def f(call):\n    return call.recording.pair.caller.jitter.stats",
        "def f(b2bua, metrics):\n    b2bua.on_phase = metrics",
        "def f(clock):\n    return clock.last_tick_age()",
    ],
)
def test_the_metrics_checker_catches_each_reach(source: str) -> None:
    assert metrics_crossings(source) != []


@pytest.mark.parametrize(
    "source",
    [
        "from ..media.clock import ClockSnapshot",
        "from ..media.relay import PortsSnapshot",
        "from ..sip.core import CoreSnapshot, KNOWN_METHODS",
        "from ..events import CallEnded",
        "def f(event):\n    return event.caller.late + event.bridged_seconds",
    ],
)
def test_the_metrics_checker_leaves_snapshots_and_events_alone(source: str) -> None:
    assert metrics_crossings(source) == []


@pytest.mark.parametrize("module, path", modules(), ids=lambda v: str(v))
def test_module_uses_no_private_aiosqlite_name(module: str, path: Path) -> None:
    used = private_aiosqlite_uses(path.read_text("utf-8"))
    assert {name for name in used if (module, name) not in ALLOWED_PRIVATE} == set()


def test_each_allowance_is_still_needed() -> None:
    used = {
        (module, name)
        for module, path in modules()
        for name in private_aiosqlite_uses(path.read_text("utf-8"))
    }
    assert used >= ALLOWED_PRIVATE, f"no longer used, remove: {ALLOWED_PRIVATE - used}"


# Callers take the catalog's protocols; only these build the SQLite one (issue 13).
CATALOG_IMPLEMENTATION = "SqliteCatalog"
COMPOSITION_ROOTS = frozenset(
    {"proxy.app", "proxy.cli", "proxy.records_service", "proxy.catalog_setup"}  # issue 20
)


def names_used(source: str) -> set[str]:
    """Every name a module reads, imports or reads as an attribute."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.ImportFrom | ast.Import):
            found.update(alias.name.rpartition(".")[2] for alias in node.names)
    return found


@pytest.mark.parametrize("module, path", modules(), ids=lambda v: str(v))
def test_only_composition_roots_name_the_sqlite_catalog(module: str, path: Path) -> None:
    if module in COMPOSITION_ROOTS or module.startswith("proxy.storage.catalog"):
        return
    assert CATALOG_IMPLEMENTATION not in names_used(path.read_text("utf-8"))


@pytest.mark.parametrize(
    "source",
    [
        "from ..storage.catalog import SqliteCatalog",
        "from ..storage import catalog\nc = catalog.SqliteCatalog(path)",
        "def f(c: SqliteCatalog) -> None: ...",
    ],
)
def test_the_checker_catches_the_sqlite_catalog_named(source: str) -> None:
    assert CATALOG_IMPLEMENTATION in names_used(source)


def _size_limited(module: str) -> bool:
    return any(module == layer or module.startswith(layer + ".") for layer in SIZE_LIMITED)


@pytest.mark.parametrize(
    "module, path", [m for m in modules() if _size_limited(m[0])], ids=lambda v: str(v)
)
def test_module_is_at_most_max_lines(module: str, path: Path) -> None:
    lines = len(path.read_text("utf-8").splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines; split it by job"


def test_the_size_limit_covers_the_catalog_package_and_the_calls() -> None:
    limited = {module for module, _ in modules() if _size_limited(module)}
    assert {
        "proxy.storage.writer",
        "proxy.storage.catalog.recordings",
        "proxy.calls.call",
        "proxy.calls.b2bua",
    } <= limited


def test_every_layer_is_checked() -> None:
    names = {module for module, _ in modules()}
    for layer in FORBIDDEN:
        assert layer in names
    assert "proxy.calls.b2bua" in names and "proxy.storage.catalog" in names


@pytest.mark.parametrize(
    "module, source",
    [
        ("proxy.calls.b2bua", "from ..control.api import RecordingActionError"),
        ("proxy.calls.b2bua", "from ..control import api"),
        ("proxy.calls.b2bua", "import proxy.control.metrics"),
        ("proxy.sip.core", "from ..calls.b2bua import Call"),
        ("proxy.media.relay", "from proxy.records import export"),
        ("proxy.storage.catalog", "def f():\n    from ..calls import recording"),
        ("proxy.storage.writer", "from ..control import api"),
    ],
)
def test_the_checker_catches_each_crossing(module: str, source: str) -> None:
    assert _crosses(module, imported_modules(source, module)) != []


@pytest.mark.parametrize(
    "module, source",
    [
        ("proxy.calls.b2bua", "from ..records.errors import RecordingActionError"),
        ("proxy.calls.b2bua", "from ..storage.catalog import Catalog"),
        ("proxy.control.api", "from ..calls.b2bua import Call"),
        ("proxy.sip.core", "from .transaction import ClientTransaction"),
        ("proxy.storage.writer", "from ..media.g711 import ulaw_decode"),
        ("proxy.media.relay", "import controlled_vocabulary"),
    ],
)
def test_the_checker_leaves_downward_imports_alone(module: str, source: str) -> None:
    assert _crosses(module, imported_modules(source, module)) == []


@pytest.mark.parametrize(
    "source",
    [
        "raw = conn._conn",
        "await self.db._execute(run)",
        "from aiosqlite.core import _connect",
        "raw = getattr(conn, '_conn')",
    ],
)
def test_the_checker_catches_private_aiosqlite_names(source: str) -> None:
    assert private_aiosqlite_uses(source) != set()


@pytest.mark.parametrize(
    "source",
    ["self._conn = None", "await conn.execute('SELECT 1')", "x = obj._other", "from a import _b"],
)
def test_the_checker_leaves_public_and_own_names_alone(source: str) -> None:
    assert private_aiosqlite_uses(source) == set()
