"""A small authoritative DNS server for tests: UDP on 127.0.0.1, port 0, in a thread,
answering from a dict with dnspython's message classes.  Used by the resolver's tests
and by the end-to-end failover tests (``[dns] nameservers = [server.address]``)."""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterable
from types import TracebackType

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class DnsServer:
    """``records[(name, type)] = ["rdata text", ...]``; other names get NXDOMAIN."""

    def __init__(self, records: dict[tuple[str, str], Iterable[str]], *, ttl: int = 60) -> None:
        self.records = {
            (name.rstrip(".").lower(), kind): list(v) for (name, kind), v in records.items()
        }
        self.ttl = ttl
        self.asked: list[tuple[str, str]] = []
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="test-dns", daemon=True)

    @property
    def address(self) -> str:
        host, port = self._socket.getsockname()
        return f"{host}:{port}"

    def __enter__(self) -> DnsServer:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._socket], [], [], 0.05)
            if not ready:
                continue
            data, peer = self._socket.recvfrom(4096)
            try:
                query = dns.message.from_wire(data)
            except Exception:  # not DNS: a test server ignores it
                continue
            self._socket.sendto(self._answer(query).to_wire(), peer)

    def _answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        kind = dns.rdatatype.to_text(question.rdtype)
        self.asked.append((name, kind))
        values = self.records.get((name, kind))
        if values:
            response.answer.append(
                dns.rrset.from_text_list(question.name, self.ttl, dns.rdataclass.IN, kind, values)
            )
        elif not any(owner == name for owner, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response
