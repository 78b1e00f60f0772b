"""SIPp (Debian package sip-tester), an independent SIP implementation, calls a small UAS
built on our stack over loopback; its built-in ``uac`` scenario must complete every call."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import pytest

from proxy.tools.uas import AnsweringUas

pytestmark = pytest.mark.sipp

SIPP = shutil.which("sipp")


def _stat(screen: str, name: str) -> int:
    """The cumulative value of a counter in SIPp's final statistics screen."""
    matches = re.findall(rf"{name}\s*\|\s*\d+\s*\|\s*(\d+)", screen)
    assert matches, f"no {name!r} in SIPp's screen:\n{screen[-2000:]}"
    return int(matches[-1])


async def _run_sipp(tmp_path: Path, target: tuple[str, int], *extra: str) -> tuple[int, str]:
    assert SIPP is not None, "sipp is not installed (apt-get install sip-tester)"
    screen = tmp_path / "screen.log"
    proc = await asyncio.create_subprocess_exec(
        SIPP, "-sn", "uac", f"{target[0]}:{target[1]}",
        "-i", "127.0.0.1", "-p", "0",
        "-m", "100", "-r", "50", "-l", "50", "-d", "200",
        "-nostdin", "-timeout", "60", "-timeout_error",
        "-trace_screen", "-screen_file", str(screen),
        *extra,
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert screen.exists(), stderr.decode(errors="replace")
    return proc.returncode or 0, screen.read_text(errors="replace")


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_sipp_uac_completes_100_calls(tmp_path: Path, transport: str) -> None:
    uas = AnsweringUas()
    target = await uas.start()
    try:
        extra = ("-t", "t1") if transport == "tcp" else ("-t", "u1")
        rc, screen = await _run_sipp(tmp_path, target, *extra)
    finally:
        await uas.close()
    assert rc == 0, screen[-3000:]
    assert _stat(screen, "Successful call") == 100
    assert _stat(screen, "Failed call") == 0
    # our side saw every call through: answered, ACKed, hung up
    assert (uas.answered, uas.acked, uas.byes) == (100, 100, 100)
    assert uas.ack_timeouts == 0
    assert uas.core.dialogs == []
