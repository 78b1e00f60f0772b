"""The asyncio shell of RFC 3263 resolution: asks :func:`proxy.sip.resolve.resolution`'s
DNS questions with dnspython's asyncio resolver, off the loop's critical path.

Each lookup has a timeout (a slow or dead name server delays one call's ringing, never
the loop), and answers are cached as long as their TTL says (NXDOMAIN and empty answers
for :data:`NEGATIVE_TTL` seconds), in a bounded cache.  A failed lookup counts as no
records, so resolution falls through to its next step, as RFC 3263 §4 allows.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict
from collections.abc import Callable, Sequence

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver
from dns.rdtypes.IN.NAPTR import NAPTR
from dns.rdtypes.IN.SRV import SRV

from ..sip.resolve import Naptr, Query, Record, Srv, Target, resolution
from ..sip.uri import SipUri

log = logging.getLogger(__name__)

NEGATIVE_TTL = 30.0  # seconds a name without records stays so (RFC 2308 would read the SOA)
CACHE_SIZE = 512  # questions remembered


class Resolver:
    """RFC 3263 targets for SIP URIs, through ``nameservers`` (``host:port`` strings;
    empty: the system's) with ``timeout`` seconds per lookup."""

    def __init__(
        self,
        nameservers: Sequence[str] = (),
        *,
        timeout: float = 2.0,
        transports: Sequence[str] = ("UDP",),
        families: Sequence[int] = (4,),
        rng: random.Random | None = None,
        now: Callable[[], float] | None = None,
    ) -> None:
        self.transports = tuple(t.upper() for t in transports)
        self.families = tuple(families)
        self.rng = rng or random.Random()
        self._nameservers = tuple(nameservers)
        self._timeout = timeout
        self._now = now or (lambda: asyncio.get_running_loop().time())
        self._dns: dns.asyncresolver.Resolver | None = None
        self._cache: OrderedDict[Query, tuple[float, list[Record]]] = OrderedDict()

    async def resolve(self, uri: SipUri) -> list[Target]:
        """The ordered targets for ``uri`` (empty: none found)."""
        steps = resolution(uri, self.transports, self.rng, families=self.families)
        try:
            query = next(steps)
            while True:
                query = steps.send(await self.lookup(query))
        except StopIteration as done:
            targets: list[Target] = done.value
            return targets

    def known(self, uri: SipUri) -> list[Target] | None:
        """The targets for ``uri`` if no DNS question is needed (a numeric host, or every
        answer cached and fresh), found without awaiting; None: use :meth:`resolve`.
        Most calls go to an address: they then cost no lookup task and no timeout."""
        steps = resolution(uri, self.transports, self.rng, families=self.families)
        try:
            query = next(steps)
            while True:
                cached = self._cache.get(query)
                if cached is None or cached[0] <= self._now():
                    return None
                query = steps.send(cached[1])
        except StopIteration as done:
            targets: list[Target] = done.value
            return targets

    async def lookup(self, query: Query) -> list[Record]:
        """The records for one question, from the cache while its TTL lasts."""
        cached = self._cache.get(query)
        if cached is not None and cached[0] > self._now():
            return cached[1]
        records, ttl = await self._ask(query)
        self._cache[query] = (self._now() + ttl, records)
        self._cache.move_to_end(query)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return records

    async def _ask(self, query: Query) -> tuple[list[Record], float]:
        try:
            answer = await self._resolver().resolve(
                query.name, query.rdtype, lifetime=self._timeout, search=False
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return [], NEGATIVE_TTL
        except (dns.exception.DNSException, OSError) as exc:
            # not cached for long: the server may be back for the next call
            log.warning("DNS %s %s failed: %s", query.rdtype, query.name, exc)
            return [], 1.0
        ttl = float(answer.rrset.ttl) if answer.rrset is not None else NEGATIVE_TTL
        return [_record(rdata) for rdata in answer], ttl

    def _resolver(self) -> dns.asyncresolver.Resolver:
        if self._dns is None:
            if self._nameservers:
                resolver = dns.asyncresolver.Resolver(configure=False)
                resolver.nameservers = [_nameserver(text) for text in self._nameservers]
            else:
                resolver = dns.asyncresolver.Resolver()  # /etc/resolv.conf
            self._dns = resolver
        return self._dns


def _nameserver(text: str) -> dns.nameserver.Nameserver:
    """``"127.0.0.1:5353"``, ``"[::1]:53"`` or a bare address (port 53)."""
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 53
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text)
    return dns.nameserver.Do53Nameserver(host, port)


def _record(rdata: object) -> Record:
    if isinstance(rdata, NAPTR):
        return Naptr(
            rdata.order,
            rdata.preference,
            rdata.flags.decode(),
            rdata.service.decode(),
            rdata.replacement.to_text(omit_final_dot=True),
        )
    if isinstance(rdata, SRV):
        return Srv(
            rdata.priority, rdata.weight, rdata.port, rdata.target.to_text(omit_final_dot=True)
        )
    return str(rdata)  # A / AAAA: the address
