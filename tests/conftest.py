"""Suite-wide: the slowest modules are collected first, so that with pytest-xdist
(``scripts/test.sh`` runs ``--dist loadscope``) they start at once on the workers instead
of being left for last, when one worker would carry them alone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.s3_server import S3Server, running_s3
from tests.sip.tls_ca import CertAuthority, make_ca

#: ``backend`` (SQLite and PostgreSQL) and ``pg_server``, for any test of the catalog.
pytest_plugins = ["tests.catalog_backends"]

#: Modules that take tens of seconds (a wheel built and installed, a clean clone set up,
#: worlds of real calls built once per module), in the order to start them.
SLOW_FIRST = (
    "tests/test_wheel.py",
    "tests/test_readme.py",
    "tests/e2e/test_role_matrix.py",
    "tests/e2e/test_records_security.py",
    "tests/e2e/test_subject_access.py",
    "tests/e2e/test_walkthrough.py",
    "tests/e2e/test_media_fuzz.py",
    "tests/e2e/test_phones.py",
    "tests/e2e/test_recording_control.py",
    "tests/e2e/test_call_flow.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return SLOW_FIRST.index(path) if path in SLOW_FIRST else len(SLOW_FIRST)

    items.sort(key=rank)  # stable: within a rank, the collection order stays


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    """Issue 20: a real S3 HTTP server (moto) for the module's tests (tests/s3_server.py)."""
    with running_s3() as server:
        yield server


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> CertAuthority:
    """A test CA and its certificates (``tests/sip/tls_ca.py``), made once per session."""
    return make_ca(tmp_path_factory.mktemp("tls-ca"))
