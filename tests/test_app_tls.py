"""``open_server`` with ``[sip] tls_listen``: a key that is not the certificate's stops
start-up naming ``sip.tls_key`` (and leaves no port open); with good files it answers
OPTIONS over TLS with a Via of its own saying TLS, and its metrics count the TLS
connection and a failed handshake."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from proxy.app import StartupError, open_server
from proxy.config import Config, LimitsSettings
from tests.e2e.proxy_process import PortBlock, reserve_ports
from tests.sip.tls_ca import CertAuthority
from tests.test_app import config_for, udp_port_free

OPTIONS = (
    "OPTIONS sip:recproxy@127.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK-app-tls\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:probe@127.0.0.1>;tag=p1\r\n"
    "To: <sip:recproxy@127.0.0.1>\r\n"
    "Call-ID: app-tls@127.0.0.1\r\n"
    "CSeq: 1 OPTIONS\r\n"
    "Content-Length: 0\r\n\r\n"
)


def tls_config(tmp_path: Path, ports: PortBlock, ca: CertAuthority, key: Path) -> Config:
    """``test_app``'s config with TLS on at the block's first spare SIP port."""
    config = config_for(tmp_path, sip_port=ports.sip, http_port=ports.http, rtp=ports.rtp_range)
    sip = replace(
        config.sip,
        tls_listen=("127.0.0.1", ports.spare_sip(0)),
        tls_cert=ca.server.cert,
        tls_key=key,
        tls_ca=ca.ca,
    )
    return replace(config, sip=sip, limits=LimitsSettings(tls_handshake_seconds=0.5))


async def test_a_key_that_is_not_the_certificates_stops_start_up_naming_it(
    tmp_path: Path, tls_ca: CertAuthority
) -> None:
    ports = reserve_ports()
    try:
        config = tls_config(tmp_path, ports, tls_ca, tls_ca.client.key)
        with pytest.raises(StartupError, match=r"^sip\.tls_key: .*client-key\.pem is not the key"):
            async with open_server(config):
                pytest.fail("the body must not run when start-up failed")
        assert udp_port_free(ports.sip)
    finally:
        ports.release()


async def test_options_over_tls_is_answered_and_counted(
    tmp_path: Path, tls_ca: CertAuthority
) -> None:
    ports = reserve_ports()
    try:
        config = tls_config(tmp_path, ports, tls_ca, tls_ca.server.key)
        tls_port = ports.spare_sip(0)
        async with open_server(config) as server:
            assert server.core.settings.tls_port == tls_port
            context = ssl.create_default_context(cafile=tls_ca.ca)
            reader, writer = await asyncio.open_connection("127.0.0.1", tls_port, ssl=context)
            writer.write(OPTIONS.encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
            assert head.startswith(b"SIP/2.0 200 "), head
            # a handshake that never starts is dropped at tls_handshake_seconds
            _, plain = await asyncio.open_connection("127.0.0.1", tls_port)
            await asyncio.sleep(1.0)
            url = f"http://127.0.0.1:{ports.http}/metrics"
            async with aiohttp.ClientSession() as http, http.get(url) as answer:
                metrics = await answer.text()
            assert "recproxy_sip_tls_connections 1.0" in metrics
            assert 'recproxy_sip_tls_handshakes_total{outcome="failed"} 1.0' in metrics
            writer.close()
            plain.close()
    finally:
        ports.release()
