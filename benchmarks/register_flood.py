"""REGISTER brute-force benchmark: established recorded calls while one source guesses a
call taker's SIP password.

The same run as ``benchmarks/flood.py`` (its ``run``: SIPp places ``--calls`` recorded
calls, a calm period for the loss baseline, then the flood from 127.0.0.2, a call placed
in the middle of it, RSS sampled until 40 s after), with ``[registrar] enabled`` and a
user ``alice`` with a SIP password, and the flood being ``register_sender.py``: ``--rate``
wrong digest answers a second for ``--seconds``, each its own REGISTER transaction.
Reported besides ``flood.py``'s figures (RTP loss calm and during the flood, recording
states, RSS, state left): the replies by status (10 checked and refused with 401, the
rest 503 unchecked) and the registrar's counters from /metrics (``state_40s_after``).

    .venv/bin/python benchmarks/register_flood.py                        # 1,000/s, 10 s, 50 calls
    .venv/bin/python benchmarks/register_flood.py --rate 200 --seconds 3 --calls 10  # quick

Loopback only, fixed ports (those of ``flood.py``); every run bounded.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import flood  # noqa: E402

REALM = "bench.example"
REGISTRAR = f"""
[registrar]
enabled = true
realm = "{REALM}"
source_failures = 10
account_failures = 100000  # the source limit is the one measured
"""


def prepare(work: Path, config: Path) -> None:
    """The registrar on, and the account the flood guesses at (with a SIP password)."""
    config.write_text(config.read_text() + REGISTRAR)
    recproxy = str(ROOT / ".venv/bin/recproxy")
    for args, password in (
        (["users", "add", "alice", "--role", "staff"], "console password 1"),
        (["users", "sip-password", "alice"], "sip password 12345"),
    ):
        subprocess.run(
            [recproxy, *args, "--password-stdin", "--config", str(config)],
            cwd=work, input=password + "\n", text=True, check=True, timeout=60,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip


def brute_force(args: argparse.Namespace) -> list[str]:
    return [
        sys.executable, str(ROOT / "benchmarks" / "register_sender.py"),
        "--target", f"127.0.0.1:{flood.SIP_PORT}", "--source", "127.0.0.2",
        "--user", "alice", "--realm", REALM, "--rate", str(args.rate),
        "--count", str(int(args.rate * args.seconds)), "--linger", "3",
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=1000, help="guesses a second")
    parser.add_argument("--seconds", type=float, default=10, help="how long the flood lasts")
    parser.add_argument("--calls", type=int, default=50, help="recorded calls up meanwhile")
    args = parser.parse_args()
    args.untrusted = False
    print(json.dumps(flood.run(args, sender=brute_force, prepare=prepare), indent=2))


if __name__ == "__main__":
    main()
