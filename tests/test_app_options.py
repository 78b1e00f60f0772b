"""OPTIONS as a dispatcher's health probe (issue 20): 200 while the node can take calls,
503 once it cannot (draining, not ready, its media clock stalled), so Kamailio's
dispatcher marks it down and sends new calls to the other nodes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from proxy.app import open_server
from tests.e2e.proxy_process import reserve_ports
from tests.e2e.sip_client import SipSocket
from tests.test_app import config_for


async def test_options_say_whether_the_node_takes_calls(tmp_path: Path) -> None:
    ports = reserve_ports()
    try:
        config = config_for(tmp_path, sip_port=0, http_port=0, rtp=ports.rtp_range)
        async with open_server(config) as server:
            probe = SipSocket(("127.0.0.1", server.sip_port))
            try:
                ready = await asyncio.to_thread(probe.options)
                assert ready.status == 200
                assert "INVITE" in (ready.header("Allow") or "")
                server.health.ready = False  # what draining does first
                draining = await asyncio.to_thread(probe.options)
                assert draining.status == 503
                assert draining.header("Retry-After") == "5"
                server.health.ready = True
                assert (await asyncio.to_thread(probe.options)).status == 200
            finally:
                probe.close()
    finally:
        ports.release()
