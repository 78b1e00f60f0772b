"""Whether this process may use the kernel fast path, found once at start.

``auto`` uses it only when every one of these holds, and says which one did not:

- the process has ``CAP_NET_ADMIN`` (nftables) and ``CAP_NET_RAW`` (the packet ring);
- ``net.ipv4.ip_forward`` is 1, and ``net.ipv4.conf.all.accept_local`` is 1 (a rewritten
  packet arrives with one of our addresses as its source, which the kernel otherwise
  drops as a martian).  We never set a sysctl: a host set to forward packets is the
  operator's sign that the kernel may forward ours.  Both are 0 on a host (and in a new
  network namespace) until someone sets them, so the test suite, run as root on a host
  that does not forward, keeps today's relay; the fast path's own tests set them inside
  a network namespace they create.  IPv6 calls also need
  ``net.ipv6.conf.all.forwarding`` = 1, or they stay on the relay;
- libnftables loads and our tables can be made;
- the packet ring opens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .kernel_path import KernelPath
from .nft import Nftables, NftError
from .ring import PacketRing
from .rules import FAMILIES, setup_commands, teardown_commands

log = logging.getLogger(__name__)

CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
FORWARDING = Path("/proc/sys/net/ipv4/ip_forward")
ACCEPT_LOCAL = Path("/proc/sys/net/ipv4/conf/all/accept_local")
FORWARDING_V6 = Path("/proc/sys/net/ipv6/conf/all/forwarding")
STATUS = Path("/proc/self/status")


@dataclass(frozen=True)
class Detection:
    path: KernelPath | None
    reason: str  # why the path is, or is not, in use (logged once at start)


def capabilities(status: str) -> int:
    """The effective capability set in a ``/proc/self/status`` text."""
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def missing_permission(status: str, forwarding: str, accept_local: str) -> str | None:
    """What the host does not allow (None: everything needed), from the texts of
    ``/proc/self/status``, ``net.ipv4.ip_forward`` and ``accept_local``."""
    effective = capabilities(status)
    lacking = [
        name
        for name, bit in (("CAP_NET_ADMIN", CAP_NET_ADMIN), ("CAP_NET_RAW", CAP_NET_RAW))
        if not effective >> bit & 1
    ]
    if lacking:
        return f"the process lacks {' and '.join(lacking)}"
    if forwarding.strip() != "1":
        return "net.ipv4.ip_forward is not 1"
    if accept_local.strip() != "1":
        return "net.ipv4.conf.all.accept_local is not 1"
    return None


def detect(mode: str, rtp_ports: tuple[int, int]) -> Detection:
    """The fast path for ``[media] fast_path = mode``, or None and why not."""
    if mode == "off":
        return Detection(None, 'media.fast_path is "off"')
    try:
        missing = missing_permission(
            STATUS.read_text(), FORWARDING.read_text(), ACCEPT_LOCAL.read_text()
        )
    except OSError as exc:
        missing = f"cannot read {exc.filename}"
    if missing is not None:
        return Detection(None, missing)
    try:
        nft = Nftables()
    except OSError as exc:
        return Detection(None, f"libnftables did not load ({exc})")
    try:
        for family in FAMILIES:
            nft.run(setup_commands(family))
    except NftError as exc:
        nft.close()
        return Detection(None, f"nftables refused our table ({exc})")
    try:
        ring = PacketRing(*rtp_ports)
    except OSError as exc:
        remove_tables(nft)
        nft.close()
        return Detection(None, f"the packet ring did not open ({exc})")
    try:
        ipv6 = FORWARDING_V6.read_text().strip() == "1"
    except OSError:  # no IPv6 in this kernel
        ipv6 = False
    reason = "nftables forwarding and a TPACKET_V3 ring" + (
        "" if ipv6 else "; IPv6 calls stay on the relay (net.ipv6.conf.all.forwarding is 0)"
    )
    return Detection(KernelPath(nft, ring, ipv6=ipv6), reason)


def remove_tables(nft: Nftables) -> None:
    """Our tables, and every call's rules in them, gone (at stop)."""
    for family in FAMILIES:
        try:
            nft.run(teardown_commands(family))
        except NftError:
            log.warning("the %s %s table was already gone", family, "recproxy")
