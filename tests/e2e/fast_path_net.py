"""A network namespace set up for the kernel fast path, and what the tests read of it.

The proxy, SIPp and tcpdump share the namespace's loopback.  The namespace forwards
(``net.ipv4.ip_forward = 1``: the fast path's ``auto`` needs it, and the host, which
does not forward, keeps every other test on the relay).  A table of the test's own
counts what reaches the call taker's RTP port after every rewrite — in the ``input``
hook, which a packet delivered here passes whether the relay sent it or the kernel
rewrote it — since tcpdump on loopback sees a packet before nftables rewrites it.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from pathlib import Path

COUNTER_TABLE = "recproxy_test"


def prepare(*, forward: bool = True) -> None:
    """Run in the test's private namespace (``in_private_network``)."""
    subprocess.run(
        ["sysctl", "-q", "-w", f"net.ipv4.ip_forward={int(forward)}",
         f"net.ipv4.conf.all.accept_local={int(forward)}"],
        check=True, timeout=10, capture_output=True,
    )  # fmt: skip


def count_arrivals(port: int, *also: tuple[int, int]) -> None:
    """Count UDP packets delivered to ``port`` (read with ``arrivals``); each of ``also``
    (port, RTP payload type) counts that port's packets of that payload type."""
    counters = [f"    udp dport {port} counter"] + [
        f"    udp dport {other} @th,73,7 {payload_type} counter" for other, payload_type in also
    ]
    rules = (
        f"table ip {COUNTER_TABLE} {{\n"
        "  chain input {\n"
        "    type filter hook input priority 0; policy accept;\n"
        + "\n".join(counters)
        + "\n  }\n}\n"
    )
    subprocess.run(["nft", "-f", "-"], input=rules.encode(), check=True, timeout=10)


def arrivals(index: int = 0) -> int:
    """The ``index``th counter of ``count_arrivals`` (0: all packets to its port)."""
    listing = nft_json("list", "table", "ip", COUNTER_TABLE)
    counts = [
        int(expression["counter"]["packets"])
        for item in listing
        if (rule := item.get("rule")) is not None
        for expression in rule["expr"]
        if "counter" in expression
    ]
    return counts[index]


def proxy_sources() -> list[object]:
    """The legs in the proxy's ``sources`` set now (each a call's leg in the kernel);
    fails if the table is missing."""
    for item in nft_json("list", "set", "ip", "recproxy", "sources"):
        if "set" in item:
            return list(item["set"].get("elem", []))
    raise AssertionError("no sources set")


def nft_json(*command: str) -> list[dict[str, object]]:
    result = subprocess.run(
        ["nft", "-j", *command], check=True, timeout=10, capture_output=True, text=True
    )
    return list(json.loads(result.stdout)["nftables"])


def metric(http_port: int, name: str, labels: str = "") -> float:
    """One sample of the proxy's /metrics (``labels``: the text inside the braces)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        match = re.match(r"^(\S+) (\S+)$", line)
        if match and match.group(1) == wanted:
            return float(match.group(2))
    raise AssertionError(f"{wanted} not in /metrics")


def log_has(path: Path, text: str) -> bool:
    return text in path.read_text()
