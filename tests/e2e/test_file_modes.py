"""Everything ``recproxy serve`` creates is owner-only (issue 12, defect 4): the catalog
holds caller numbers, the do-not-record list and the access log, and SQLite gives its
WAL and SHM files the catalog's own mode.  Checked while the server runs, when the WAL
and SHM exist."""

from __future__ import annotations

import stat
from pathlib import Path

from .conftest import E2e


def test_catalog_wal_shm_keys_and_folders_are_owner_only(e2e: E2e) -> None:
    proxy = e2e.proxy()  # the test process's umask (022) must not matter
    catalog = proxy.catalog_path
    sidecars = [Path(f"{catalog}-wal"), Path(f"{catalog}-shm")]
    assert all(path.exists() for path in sidecars), "the running server has no WAL/SHM"
    data = catalog.parent
    modes = {
        str(path.relative_to(data)): stat.S_IMODE(path.stat().st_mode)
        for path in [data, *data.rglob("*")]
        if path.suffix != ".pub"  # the public key is 0644 on purpose: it is not a secret
    }
    assert {"catalog.sqlite3", "catalog.sqlite3-wal", "catalog.sqlite3-shm"} <= set(modes)
    assert "keys/recording.key" in modes
    wrong = {
        name: oct(mode)
        for name, mode in modes.items()
        if mode != (0o700 if (data / name).is_dir() else 0o600)
    }
    assert wrong == {}
