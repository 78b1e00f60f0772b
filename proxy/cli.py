"""The ``recproxy`` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence


def _hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recproxy", description="SIP/RTP recording proxy for recorded-call policies."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    uas = commands.add_parser(
        "test-uas",
        help="answer every SIP call (a loopback peer for SIPp, trunk and PBX checks)",
    )
    uas.add_argument(
        "--listen", type=_hostport, default=("127.0.0.1", 5070), metavar="HOST:PORT",
        help="address to listen on, UDP and TCP (default 127.0.0.1:5070)",
    )  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "test-uas":
        from .tools.uas import serve

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(*args.listen))
        return 0
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
