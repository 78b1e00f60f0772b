"""Where the SIP test data lives, and how a captured file becomes wire bytes.

The data sits beside the repository, in ``../shared/testdata`` (or wherever
``RECPROXY_TESTDATA`` points).  When it is missing the tests fail, loudly: a parser
test suite that silently skips its corpus proves nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

ENV_VAR = "RECPROXY_TESTDATA"

# Kamailio's test inputs are kept as in its repository, mostly with bare LF.
LF_ONLY_FOLDERS = frozenset({"kamailio_test_misc_sip"})


def _repo_root() -> Path:
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    raise RuntimeError(f"no pyproject.toml above {__file__}")


def _configured_root() -> Path:
    override = os.environ.get(ENV_VAR)
    return Path(override) if override else _repo_root().parent / "shared" / "testdata"


def testdata_root() -> Path:
    """The test data folder; ``pytest.fail`` (never skip) when it is not there."""
    root = _configured_root()
    if not (root / "sip").is_dir():
        pytest.fail(
            f"SIP test data not found at {root} (no sip/ folder). "
            f"Set {ENV_VAR} to the testdata folder.",
            pytrace=False,
        )
    return root


def wire_bytes(path: Path) -> bytes:
    """The file's bytes as they would be on the wire: bare-LF files of the folders
    that are not wire-exact get CRLF line ends."""
    data = path.read_bytes()
    if path.parent.name in LF_ONLY_FOLDERS and b"\r\n" not in data:
        data = data.replace(b"\n", b"\r\n")
    return data


@pytest.fixture(scope="session")
def testdata() -> Path:
    return testdata_root()


@pytest.fixture(scope="session")
def load_wire() -> Callable[[Path], bytes]:
    return wire_bytes


MISSING = "<no sip/real/*.sip: test data missing>"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``real_sip_file``: one test per captured message (path relative to sip/real).

    Without the data there is one test, which fails in the ``testdata`` fixture: the
    run reports it, and the other test modules still run.
    """
    if "real_sip_file" in metafunc.fixturenames:
        real = _configured_root() / "sip" / "real"
        rel = sorted(p.relative_to(real).as_posix() for p in real.rglob("*.sip"))
        if not rel:
            rel = [MISSING]
        metafunc.parametrize("real_sip_file", rel, ids=rel)
