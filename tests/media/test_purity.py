"""The media cores are pure: no event loop, no sockets, no clock."""

from __future__ import annotations

import ast
import importlib

import pytest

CORES = ["rtp", "g711", "dtmf", "jitter", "announcer", "vad", "recorder", "srtp"]
FORBIDDEN = {"asyncio", "socket", "time", "selectors", "threading"}


def _imported_modules(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("name", CORES)
def test_core_module_imports_no_io_or_clock(name: str) -> None:
    module = importlib.import_module(f"proxy.media.{name}")
    assert module.__file__ is not None
    with open(module.__file__, encoding="utf-8") as file:
        imported = _imported_modules(file.read())
    assert not imported & FORBIDDEN, f"proxy.media.{name} imports {imported & FORBIDDEN}"


def test_the_check_itself_catches_an_import() -> None:
    assert _imported_modules("import time\nfrom asyncio import sleep\n") == {"time", "asyncio"}
