"""A recording's files never exist before its catalog row: a real ``recproxy serve``
killed with SIGKILL while the catalog refuses writes (another process holds it with an
exclusive lock) leaves either no files, or files start-up reports as having no row.

1. killed while the recording's audio is held (within ``recording.hold_seconds`` of the
   bridge): no recording folder is on disk, and the restarted proxy finds nothing
   uncatalogued;
2. killed after the recording was written ahead of its row (held past
   ``hold_seconds``): the folder is kept, and the restarted proxy logs it as a folder no
   catalog row names and counts it.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from . import audio
from .conftest import E2e
from .proxy_process import ProxyProcess, ProxySettings, list_recordings, wait_for

pytestmark = pytest.mark.sipp

# records.child = "off": the records service opens the catalog on its own and would meet
# the test's lock at its start; these tests are about the call proxy alone


@contextmanager
def catalog_locked(path: Path) -> Iterator[None]:
    """Another process holds the catalog: every write of the proxy is refused (busy)."""
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def recording_folders(proxy: ProxyProcess) -> list[str]:
    root = proxy.folder / "data" / "recordings"
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def killed_in_a_call(e2e: E2e, dialogue: bytes, proxy: ProxyProcess, wait_log: str) -> None:
    """A call bridged while the catalog is locked; SIGKILL once ``wait_log`` is logged."""
    taker = e2e.call_taker(
        audio_pcap=e2e.rtp_pcap("taker.pcap", dialogue[: audio.RATE * 10]), ring_ms=300
    )
    with catalog_locked(proxy.catalog_path):
        caller = e2e.caller(
            audio_pcap=e2e.rtp_pcap("caller.pcap", dialogue[: audio.RATE * 10]),
            pre_audio_ms=2800,
            hold_ms=20000,
        )
        try:
            wait_for(f"the proxy to log {wait_log!r}", lambda: wait_log in proxy.log_text(), 30)
            time.sleep(0.5)  # mid-chunk: chunks are ~1 s
            proxy.send_signal(signal.SIGKILL)
            assert proxy.wait(timeout=5) == -signal.SIGKILL
        finally:
            caller.stop()
            taker.stop()


def test_killed_while_its_row_is_refused_a_recording_leaves_no_files(
    e2e: E2e, dialogue: bytes
) -> None:
    proxy = e2e.proxy(ProxySettings(recording="hold_seconds = 60", records_child="off"))
    # the bridge's write (call, receipt, recording) waited the busy timeout, then went
    # into the retry journal: the recording has begun, its audio is held
    killed_in_a_call(e2e, dialogue, proxy, "catalog write journalled (recording")
    assert recording_folders(proxy) == []  # nothing on disk without its row

    restarted = e2e.proxy(restart=True)
    assert (restarted.health()["calls"], list_recordings(e2e.config_path)) == (0, [])
    assert "has no catalog row" not in restarted.log_text()


def test_written_ahead_of_its_row_then_killed_the_folder_is_reported_at_start(
    e2e: E2e, dialogue: bytes
) -> None:
    proxy = e2e.proxy(ProxySettings(recording="hold_seconds = 1", records_child="off"))
    killed_in_a_call(e2e, dialogue, proxy, "written ahead of its catalog row")
    (orphan,) = recording_folders(proxy)  # the audio is kept...

    restarted = e2e.proxy(restart=True)
    restarted.wait_healthy()
    # ...and start-up tells an operator: no row names it, nothing is deleted
    assert f"{orphan} has no catalog row" in restarted.log_text()
    assert recording_folders(restarted) == [orphan]
    assert list_recordings(e2e.config_path) == []
