"""A real PostgreSQL server for the tests: Debian's ``initdb`` and ``pg_ctl`` in a
temporary directory, listening on a free loopback port of the test's own port block.

initdb and pg_ctl refuse to run as root (CI runs the suite as root), so as root they run
as the ``postgres`` user (``runuser``), in a directory handed to it.  The cluster is made
with the C locale and UTF-8, so that text sorts byte by byte, as SQLite sorts it.

Each test gets a fresh database cheaply: ``CREATE DATABASE ... TEMPLATE`` copies a
template the session migrated once (:meth:`PgServer.fresh_database`).
"""

from __future__ import annotations

import getpass
import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from tests.e2e.proxy_process import PortBlock, reserve_ports


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise AssertionError(f"{name} not found: install Debian's postgresql (scripts/setup.sh)")
    return found[-1]


class PgServer:
    """One PostgreSQL cluster; ``start()`` / ``stop()`` / ``url(database)``."""

    def __init__(self, root: Path, port: int | None = None, *, durable: bool = False) -> None:
        self.root = root
        self.durable = durable  # fsync and synchronous commit on: as in production
        self.data = root / "data"
        # tests take a port of their own block; a benchmark names a fixed one
        self._ports: PortBlock | None = reserve_ports() if port is None else None
        self.port = port if self._ports is None else self._ports.base + 98
        self._as_root = os.geteuid() == 0
        self.user = "postgres" if self._as_root else getpass.getuser()
        self._templates: set[str] = set()

    def _run(self, *argv: str) -> None:
        command = ["runuser", "-u", "postgres", "--", *argv] if self._as_root else list(argv)
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise AssertionError(f"{argv[0]} failed: {done.stdout}{done.stderr}")

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            _bin("initdb"),
            "-D",
            str(self.data),
            "-U",
            self.user,
            "--auth=trust",
            "--locale=C",
            "--encoding=UTF8",
            "--no-sync",
        )

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -c max_connections=60"
        if not self.durable:  # tests: a crash of the test server loses nothing of value
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(
            _bin("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-o", options,
            "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def close(self) -> None:
        try:
            self.stop("immediate")
        finally:
            if self._ports is not None:
                self._ports.release()
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.url(), autocommit=True)

    def create_database(self, name: str, template: str = "template0") -> str:
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY = FILE_COPY')
        return self.url(name)

    def fresh_database(self, template: str | None = None) -> str:
        """A new empty database (or a copy of ``template``, made by the caller once)."""
        return self.create_database(f"t{uuid.uuid4().hex[:16]}", template or "template0")

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.admin():
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def start_server(port: int | None = None, *, durable: bool = False) -> PgServer:
    """A started server in a new directory under /tmp (not under pytest's own temporary
    directory, which only root may enter)."""
    server = PgServer(Path(tempfile.mkdtemp(prefix="recproxy-pg-")), port, durable=durable)
    server.init()
    server.start()
    server.wait_ready()
    return server


@contextmanager
def running_server(port: int | None = None, *, durable: bool = False) -> Iterator[PgServer]:
    """``with running_server() as server:`` a started server, stopped and removed after."""
    server = start_server(port, durable=durable)
    try:
        yield server
    finally:
        server.close()
