"""The app factory: ``open_server`` builds the same app the command runs, and closes
whatever it opened — after a start-up failure too — leaving no thread, socket or
database file open; the hold routes and hold metrics are wired in it."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import wave
from dataclasses import replace
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from proxy.app import StartupError, open_server
from proxy.config import (
    CatalogSettings,
    Config,
    HttpSettings,
    MediaSettings,
    NoticeSettings,
    OperatorSettings,
    RecordingSettings,
    RoutingSettings,
    ShutdownSettings,
    SipSettings,
)
from proxy.control.api import token_hash
from proxy.events import NoticeStarted
from proxy.recording_state import RecordingState
from proxy.storage.catalog import Attribution
from tests.e2e.proxy_process import reserve_ports
from tests.storage.test_catalog import new_call, new_recording


def config_for(tmp_path: Path, *, sip_port: int, http_port: int, rtp: tuple[int, int]) -> Config:
    t = np.arange(3200) / 8000
    with wave.open(str(tmp_path / "notice.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes((6000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes())
    return Config(
        sip=SipSettings(listen=("127.0.0.1", sip_port), transports=("udp",)),
        routing=RoutingSettings(call_taker="sip:calltaker@127.0.0.1:9"),
        notice=NoticeSettings(prompt=tmp_path / "notice.wav"),
        media=MediaSettings(rtp_ports=rtp),
        recording=RecordingSettings(
            dir=tmp_path / "recordings",
            public_key=tmp_path / "keys" / "recording.pub",
            private_key=tmp_path / "keys" / "recording.key",
            fsync="none",
        ),
        catalog=CatalogSettings(path=tmp_path / "catalog.sqlite3"),
        http=HttpSettings(listen=("127.0.0.1", http_port)),
        shutdown=ShutdownSettings(grace_seconds=1),
    )


def open_files_under(folder: Path) -> list[str]:
    """Files below ``folder`` this process holds open (Linux: /proc/self/fd)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return found


def writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "recording-writer" and t.is_alive()]


def udp_port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


async def test_a_port_in_use_stops_start_up_and_closes_everything_opened(tmp_path: Path) -> None:
    ports = reserve_ports()
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        taken.bind(("127.0.0.1", ports.http))
        taken.listen()
        config = config_for(tmp_path, sip_port=ports.sip, http_port=ports.http, rtp=ports.rtp_range)
        threads_before = len(writer_threads())
        with pytest.raises(StartupError, match=rf"^http\.listen .*{ports.http}"):
            async with open_server(config):
                pytest.fail("the body must not run when start-up failed")
        # the HTTP listener is the last part: every part before it was opened and closed
        assert (tmp_path / "catalog.sqlite3").exists()
        assert open_files_under(tmp_path) == []  # catalog, segment files, journal
        assert len(writer_threads()) == threads_before  # the writer thread stopped
        assert udp_port_free(ports.sip)  # the SIP transport closed
    finally:
        taken.close()
        ports.release()


async def test_leaving_drains_and_closes_every_part(tmp_path: Path) -> None:
    ports = reserve_ports()
    try:
        config = config_for(tmp_path, sip_port=0, http_port=0, rtp=ports.rtp_range)
        threads_before = len(writer_threads())
        async with open_server(config) as server:
            assert server.health()["ok"] is True
            assert server.sip_port != 0  # port 0: the bound port is advertised
            sip_port = server.sip_port
            server.bus.publish(NoticeStarted("c1", 400))  # the metrics subscribed to its bus
            assert b'recproxy_notices_total{result="started"} 1.0' in server.metrics.render()
            assert len(writer_threads()) == threads_before + 1
            assert any(f.endswith("catalog.sqlite3") for f in open_files_under(tmp_path))
        assert server.health()["ok"] is False  # drained: not ready
        assert server.b2bua.accepting is False
        assert len(writer_threads()) == threads_before
        assert open_files_under(tmp_path) == []
        assert udp_port_free(sip_port)
    finally:
        ports.release()


async def test_the_call_proxy_serves_no_holds_but_counts_them(tmp_path: Path) -> None:
    """Holds moved to the records service (issue 15): the call proxy's API has no hold
    route, and its metrics count the holds of the shared catalog."""
    ports = reserve_ports()
    try:
        config = config_for(tmp_path, sip_port=0, http_port=0, rtp=ports.rtp_range)
        config = replace(config, operators=(OperatorSettings("alice", token_hash("t")),))
        async with open_server(config) as server:
            catalog = server.catalog
            rec_id = await new_recording(catalog, await new_call(catalog))
            await catalog.recordings.set_recording_state(
                rec_id, RecordingState.COMPLETE, Attribution()
            )
            assert server.http.bound is not None
            base = f"http://127.0.0.1:{server.http.bound[1]}/api"
            async with aiohttp.ClientSession() as http:
                for method, path in (
                    ("POST", f"/recordings/{rec_id}/holds"),
                    ("GET", "/holds"),
                    ("POST", "/holds/x/release"),
                ):
                    response = await http.request(
                        method,
                        base + path,
                        json={"kind": "complaint", "reference": "C-1", "reason": "r"},
                        headers={"Authorization": "Bearer t"},
                    )
                    assert response.status == 404, (path, await response.text())
            assert await catalog.holds.holds() == []
            # counted at start (nothing held) and every 30 s
            for _ in range(50):  # bounded: the first count lands within moments of start
                if b"recproxy_holds_due_for_review 0.0" in server.metrics.render():
                    break
                await asyncio.sleep(0.02)
            assert b'recproxy_holds_active{kind="complaint"}' in server.metrics.render()
    finally:
        ports.release()
