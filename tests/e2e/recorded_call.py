"""One recorded call for the records service's end-to-end tests: ``serve`` is up with
its records child listening, a SIPp caller sits through the 2 s notice and talks for a
while to a SIPp call taker, and the recording is catalogued."""

from __future__ import annotations

from typing import Any

from .conftest import E2e
from .proxy_process import ProxyProcess, list_recordings, wait_for


def record_a_call(e2e: E2e, proxy: ProxyProcess) -> dict[str, Any]:
    """The recording (as ``recordings list --json`` shows it) of one SIPp call."""
    wait_for("the records service", lambda: "records service listening" in proxy.log_text(), 20)
    taker = e2e.call_taker(ring_ms=200)
    caller = e2e.caller(pre_audio_ms=0, hold_ms=4000)  # notice 2 s, then bridged
    caller.expect_success(timeout=30)
    taker.expect_success(timeout=10)
    proxy.wait_idle()
    [recording] = list_recordings(e2e.config_path)
    return recording
