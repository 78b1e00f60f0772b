"""The SIP package is sans-IO: only ``transport.py`` (the asyncio shell) may import
``asyncio``, ``socket`` or ``time``.  Everything else takes ``now`` as an argument and
hands bytes back, so it runs on a fake clock in tests (STYLE.md, aioquic section)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import proxy.sip

FORBIDDEN = frozenset({"asyncio", "socket", "time"})
ALLOWED_FILES = frozenset({"transport.py"})
SIP_DIR = Path(proxy.sip.__file__).parent


def forbidden_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) for every import of a forbidden module or of anything inside it,
    wherever it is (module level, functions, ``if TYPE_CHECKING``), and for
    ``__import__("x")`` / ``importlib.import_module("x")`` with a literal name."""
    found: list[tuple[int, str]] = []

    def check(line: int, module: str | None) -> None:
        if module and module.split(".")[0] in FORBIDDEN:
            found.append((line, module))

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                check(node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:  # ``from . import time`` would be our own module
                check(node.lineno, node.module)
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else None
            )
            arg = node.args[0]
            if (
                name in ("__import__", "import_module")
                and isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
            ):
                check(node.lineno, arg.value)
    return found


def sip_modules() -> list[Path]:
    """Every module of the package but the asyncio shell."""
    files = [p for p in sorted(SIP_DIR.glob("*.py")) if p.name not in ALLOWED_FILES]
    assert len(files) > 5, f"no SIP modules found in {SIP_DIR}"
    return files


@pytest.mark.parametrize("path", sip_modules(), ids=lambda p: p.name)
def test_sip_module_does_no_io(path: Path) -> None:
    assert forbidden_imports(path.read_text(encoding="utf-8")) == []


def test_the_core_modules_are_among_those_checked() -> None:
    names = {p.name for p in sip_modules()}
    assert {"core.py", "transaction.py", "dialog.py", "events.py", "message.py"} <= names


@pytest.mark.parametrize(
    "source",
    [
        "import asyncio",
        "import time as clock",
        "import os, socket",
        "from time import monotonic",
        "from asyncio.events import AbstractEventLoop",
        "import socket.x",
        "def f():\n    import time\n    return time.time()",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import asyncio",
        "t = __import__('time')",
        "import importlib\nm = importlib.import_module('socket')",
    ],
)
def test_the_checker_catches_each_form(source: str) -> None:
    assert forbidden_imports(source) != []


@pytest.mark.parametrize(
    "source",
    [
        "import timeit",
        "import datetime",
        "from .time_utils import x",
        "from . import transport",
        "import socketserver_like_name_but_not_socket",
        "x = 'import time'",
    ],
)
def test_the_checker_leaves_other_imports_alone(source: str) -> None:
    assert forbidden_imports(source) == []
