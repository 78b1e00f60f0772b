"""Fixtures for the end-to-end tests: one ``E2e`` harness per test.

The harness gives the test its own folder and block of ports, writes the short notice
prompt, and starts what the test asks for — ``recproxy serve`` processes, SIPp callers
and call takers, tcpdump captures — and ends every one of them when the test is over.
A proxy that exited with a non-zero status (one the test did not kill itself) or logged
a traceback fails the test there.  A missing tool fails the test, never skips it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import audio, pcap, sipp
from .phones import PHONE_TOOLS, Phones
from .proxy_process import PortBlock, ProxyProcess, ProxySettings, reserve_ports, write_config

TESTDATA_ENV = "RECPROXY_TESTDATA"
NOTICE_SECONDS = 2.0
TOOLS = {
    "sipp": "apt-get install sip-tester",
    "tcpdump": "apt-get install tcpdump",
    "ip": "apt-get install iproute2",  # loopback up in a private network namespace
}


def shared_data(*parts: str) -> Path:
    """A file or folder of the shared test data; the test fails if it is not there."""
    override = os.environ.get(TESTDATA_ENV)
    root = (
        Path(override) if override else Path(__file__).resolve().parents[3] / "shared" / "testdata"
    )
    path = root.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"test data {path} not found (set {TESTDATA_ENV})", pytrace=False)
    return path


@pytest.fixture(scope="session")
def tools() -> None:
    missing = [f"{tool} ({fix})" for tool, fix in TOOLS.items() if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"end-to-end tests need: {', '.join(missing)}", pytrace=False)
    if os.geteuid() != 0:
        pytest.fail(
            "end-to-end tests capture loopback (tcpdump) and make network namespaces: "
            "run them as root",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def dialogue() -> bytes:
    """Two-speaker speech, headerless µ-law, 8 kHz (21.8 s)."""
    return shared_data("audio", "dialogue_8k.ulaw").read_bytes()


@dataclass(frozen=True)
class Notice:
    path: Path
    samples: audio.Samples

    @property
    def seconds(self) -> float:
        return len(self.samples) / audio.RATE


class E2e:
    """One test's world: folder, ports, notice, and the processes it started."""

    def __init__(self, folder: Path, ports: PortBlock, notice: Notice) -> None:
        self.folder = folder
        self.ports = ports
        self.notice = notice
        self.proxies: list[ProxyProcess] = []
        self.sipps: list[sipp.Sipp] = []
        self.captures: list[pcap.LoopbackCapture] = []
        self.config: Path | None = None

    @property
    def config_path(self) -> Path:
        assert self.config is not None, "no proxy started yet"
        return self.config

    def proxy(
        self, settings: ProxySettings | None = None, *, restart: bool = False
    ) -> ProxyProcess:
        """Start ``recproxy serve`` and wait until /healthz says it is ready.  With
        ``restart``, the same config (and data) as the last one."""
        if not restart or self.config is None:
            self.config = write_config(
                self.folder, self.ports, self.notice.path, settings or ProxySettings()
            )
        proxy = ProxyProcess(
            self.config, self.ports, self.folder / f"recproxy-{len(self.proxies)}.log"
        )
        self.proxies.append(proxy)
        proxy.wait_healthy()
        return proxy

    def rtp_pcap(self, name: str, g711: bytes, *, codec: str = "PCMU") -> str:
        """A pcap of ``g711`` (bytes of the ``codec``'s law) as 20 ms RTP packets, for a
        scenario to play."""
        pcap.write_rtp_pcap(self.folder / name, g711, payload_type=sipp.PAYLOAD_TYPES[codec])
        return name

    def run_sipp(
        self,
        label: str,
        scenario: str,
        values: dict[str, object],
        *,
        local_port: int,
        media_port: int,
        remote: tuple[str, int] | None = None,
        calls: int = 1,
        rate: float | None = None,
        limit: int | None = None,
        timeout_s: float = 30,
        extra: tuple[str, ...] = (),
    ) -> sipp.Sipp:
        """Start SIPp on ``scenarios/SCENARIO.xml`` with ``values`` filled in (``extra``:
        more SIPp options, e.g. ``-aa`` to answer OPTIONS keepalives)."""
        path = sipp.render_scenario(
            scenario, self.folder, rendered_name=f"{label}.{scenario}.xml", **values
        )
        run = sipp.Sipp(
            self.folder,
            label,
            path,
            local_port=local_port,
            media_port=media_port,
            remote=remote,
            calls=calls,
            rate=rate,
            limit=limit,
            timeout_s=timeout_s,
            extra=extra,
        )
        self.sipps.append(run)
        return run

    def call_taker(
        self,
        *,
        audio_pcap: str | None = None,
        ring_ms: int = 500,
        calls: int = 1,
        timeout_s: float = 30,
        codec: str = "PCMU",
    ) -> sipp.Sipp:
        values = {
            "ring_ms": ring_ms,
            "audio": sipp.play_pcap(audio_pcap) if audio_pcap else "",
            "codec": codec,
        }
        return self.run_sipp(
            "taker",
            "uas_answer",
            values,
            local_port=self.ports.taker_sip,
            media_port=self.ports.taker_rtp,
            calls=calls,
            timeout_s=timeout_s,
        )

    def caller(
        self,
        scenario: str = "uac_call",
        *,
        audio_pcap: str | None = None,
        label: str = "caller",
        local_port: int | None = None,
        media_port: int | None = None,
        timeout_s: float = 30,
        calls: int = 1,
        rate: float | None = None,
        limit: int | None = None,
        **values: object,
    ) -> sipp.Sipp:
        values["audio"] = sipp.play_pcap(audio_pcap) if audio_pcap else ""
        return self.run_sipp(
            label,
            scenario,
            values,
            local_port=local_port or self.ports.caller_sip,
            media_port=media_port or self.ports.caller_rtp,
            remote=("127.0.0.1", self.ports.sip),
            timeout_s=timeout_s,
            calls=calls,
            rate=rate,
            limit=limit,
        )

    def capture(self, name: str, capture_filter: str) -> pcap.LoopbackCapture:
        capture = pcap.LoopbackCapture(self.folder / name, capture_filter)
        self.captures.append(capture)
        return capture

    def finish(self) -> None:
        """End everything; then fail if a proxy misbehaved."""
        for capture in self.captures:
            capture.stop()
        for run in self.sipps:
            run.stop()
        problems: list[str] = []
        for proxy in self.proxies:
            try:
                proxy.stop(timeout=30)
                proxy.check_clean_exit()
            except AssertionError as exc:
                problems.append(str(exc))
            finally:
                proxy.close()
        if problems:
            pytest.fail("\n\n".join(problems), pytrace=False)


def new_world(folder: Path) -> E2e:
    """A harness in ``folder`` with its own ports and the notice prompt: 2 s of the
    shared speech prompt, so that correlating with it means something."""
    ports = reserve_ports()
    source = audio.read_wav(shared_data("audio", "notice_8k_s16.wav"))
    prompt = source.channel(0)[: int(NOTICE_SECONDS * audio.RATE)]
    notice_path = folder / "notice.wav"
    audio.write_wav(notice_path, prompt)
    return E2e(folder, ports, Notice(notice_path, prompt))


def end_world(world: E2e) -> None:
    try:
        world.finish()
    finally:
        world.ports.release()


@pytest.fixture
def e2e(tools: None, tmp_path: Path) -> Iterator[E2e]:
    world = new_world(tmp_path)
    try:
        yield world
    finally:
        end_world(world)


@pytest.fixture
def phones(e2e: E2e) -> Iterator[Phones]:
    """Real softphones (baresip, linphonec) for the test, stopped before its proxies."""
    missing = [f"{tool} ({fix})" for tool, fix in PHONE_TOOLS.items() if not shutil.which(tool)]
    if missing:
        pytest.fail(f"the phone tests need: {', '.join(missing)}", pytrace=False)
    book = Phones(e2e.folder, e2e.ports)
    try:
        yield book
    finally:
        book.stop()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "phones: end-to-end tests with real softphones (baresip, linphone-cli)"
    )
