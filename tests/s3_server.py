"""A real S3 HTTP server for the tests: moto in server mode on a loopback port, and a TCP
gate in front of it that a test can close (connections refused, open ones cut) to stage
an outage of the bucket.

moto speaks the S3 HTTP API (signing, versions, object lock) in-process; a production
deployment uses MinIO, Ceph RGW or AWS S3 (docs/deployment.md).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
from moto.server import ThreadedMotoServer

ACCESS_KEY = "testing-access-key"  # moto accepts any credentials; these are no secret
SECRET_KEY = "testing-secret-key"
REGION = "us-east-1"


@contextlib.contextmanager
def moto_server(port: int) -> Iterator[str]:
    """moto on ``127.0.0.1:port``; yields its endpoint URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@dataclass(frozen=True)
class S3Server:
    """moto's endpoint, and the first of the spare ports after it in its block (for a
    :class:`TcpGate`, say)."""

    endpoint: str
    spare_port: int


@contextlib.contextmanager
def running_s3() -> Iterator[S3Server]:
    """moto on a loopback port block of its own (tests/e2e/proxy_process.reserve_ports)."""
    from tests.e2e.proxy_process import reserve_ports

    block = reserve_ports()
    try:
        with moto_server(block.base) as endpoint:
            yield S3Server(endpoint, block.base + 1)
    finally:
        block.release()


def admin(endpoint: str):  # type: ignore[no-untyped-def]
    """A plain boto3 client the tests use to look into (and tamper with) the bucket."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


def make_bucket(endpoint: str, name: str, *, object_lock: bool = False) -> None:
    admin(endpoint).create_bucket(Bucket=name, ObjectLockEnabledForBucket=object_lock)


def bucket_keys(endpoint: str, bucket: str, prefix: str = "") -> list[str]:
    answer = admin(endpoint).list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for item in answer.get("Contents", ()))


class TcpGate:
    """Forwards ``127.0.0.1:port`` to ``target``; :meth:`close` refuses new connections
    and cuts the open ones (an outage), :meth:`open` lets them through again."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port = port
        self.target = target
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.open()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
