"""Real softphones for the end-to-end tests: Debian's ``baresip`` (1.0) and
``linphonec`` (linphone-cli 5.1), driven the way an operator's phone would be used.

Each phone runs in a folder of its own (its HOME, so no user configuration leaks in),
listens for SIP on 127.0.0.1 at a port of the test's block, talks straight to the proxy
(no registration), has no sound card and no video:

* baresip: ``aufile`` plays a WAV file as the microphone, ``sndfile`` writes what the
  phone decoded from the network to ``dump-*-dec.wav`` (the loudspeaker is ``aubridge``,
  a sink), and ``ctrl_tcp`` takes commands (dial, hangup, hold, resume, sndcode,
  transfer) as netstring JSON and reports call events the same way.  It sends DTMF as
  RFC 4733 telephone-events only (1.0 has no ``dtmfmode`` account parameter).
* linphonec: ``soundcard use files`` with ``play``/``record`` makes WAV files the sound
  card; commands go through its stdin, and its stdout says what happened.  Its default
  offer is IPv6 when the host has IPv6 (``c=IN IP6`` and the host's global address);
  ``ipv6=True`` keeps that offer but on loopback (``::1``), ``ipv6=False`` makes it
  IPv4 (127.0.0.1).  It sends DTMF as SIP INFO or RFC 4733, by configuration.

Every wait is bounded and fails with the phone's own log.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import audio
from .pcap import Datagram
from .proxy_process import PortBlock

PHONE_TOOLS = {
    "baresip": "apt-get install baresip-core",
    "linphonec": "apt-get install linphone-cli",
}
TONE_SECONDS = 30.0  # longer than any call here: a phone's microphone never runs dry


def tone_wav(path: Path, frequency: float, seconds: float = TONE_SECONDS) -> Path:
    """A mono 8 kHz WAV of one steady sine: a phone's voice that is easy to recognise."""
    t = np.arange(round(seconds * audio.RATE)) / audio.RATE
    audio.write_wav(path, np.sin(2 * np.pi * frequency * t) * 8000.0)
    return path


def dominant_frequency(samples: audio.Samples) -> float:
    """The frequency (Hz) that holds the most energy in ``samples``."""
    if len(samples) < audio.RATE // 10 or not np.any(samples):
        return 0.0
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * audio.RATE / len(samples))


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise AssertionError(f"{name} is not installed: {PHONE_TOOLS[name]}")
    return path


def _wait(what: str, check: Callable[[], bool], timeout: float, log: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{log()}")
        time.sleep(0.05)


@dataclass(frozen=True)
class PhoneEvent:
    time: float  # wall clock, as in tcpdump and the catalog
    kind: str  # established, closed, on_hold, transfer_failed, ...
    detail: str


class Phone(ABC):
    """What the tests ask of either softphone.  ``name`` labels its files and errors."""

    kind = "phone"

    def __init__(self, folder: Path, name: str, *, sip_port: int, tone_hz: float) -> None:
        self.name = name
        self.folder = folder / name
        self.folder.mkdir(parents=True)
        self.sip_port = sip_port
        self.tone_hz = tone_hz
        self.tone = tone_wav(self.folder / f"tone_{int(tone_hz)}.wav", tone_hz)
        self.log_path = self.folder / f"{self.kind}.log"
        self._log = self.log_path.open("wb")
        self.events: list[PhoneEvent] = []
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"sip:{self.name}@127.0.0.1:{self.sip_port}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.folder)}

    def log_text(self) -> str:
        self._log.flush()
        return (
            f"--- {self.kind} {self.name} ({self.log_path}):\n"
            + self.log_path.read_text(errors="replace")[-4000:]
        )

    def wait_event(self, kind: str, timeout: float = 10.0) -> PhoneEvent:
        """The first ``kind`` event the phone reported; fails after ``timeout``."""
        found: list[PhoneEvent] = []

        def seen() -> bool:
            self.poll()
            found[:] = [e for e in self.events if e.kind == kind]
            return bool(found)

        _wait(f"{self.name}: {kind}", seen, timeout, self.log_text)
        return found[0]

    def end_process(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def stop(self) -> None:
        self.end_process()
        self._log.close()

    @abstractmethod
    def poll(self) -> None:
        """Take in what the phone reported since the last call."""

    # the commands, in each phone's own words
    @abstractmethod
    def dial(self, uri: str) -> None: ...

    @abstractmethod
    def hangup(self) -> None: ...

    @abstractmethod
    def hold(self) -> None: ...

    @abstractmethod
    def resume(self) -> None: ...

    @abstractmethod
    def send_dtmf(self, keys: str) -> None: ...

    @abstractmethod
    def received(self) -> audio.Samples:
        """What the phone played out of its loudspeaker during the (last) call."""


# ---------------------------------------------------------------------------------------
# baresip


def _netstring(data: bytes) -> bytes:
    return b"%d:%s," % (len(data), data)


class Baresip(Phone):
    """``baresip -f FOLDER`` with ctrl_tcp on ``control_port``; RTP in
    ``rtp_ports`` (low, high).  ``auto_answer`` for the call taker."""

    kind = "baresip"
    # baresip 1.0 ends a call whose transfer failed with no CALL_CLOSED: only this
    EVENTS = {
        "CALL_ESTABLISHED": "established",
        "CALL_CLOSED": "closed",
        "TRANSFER_FAILED": "transfer failed",
    }

    def __init__(
        self,
        folder: Path,
        name: str,
        *,
        sip_port: int,
        control_port: int,
        rtp_ports: tuple[int, int],
        tone_hz: float,
        auto_answer: bool = False,
        account: str | None = None,
        tls: tuple[Path, Path] | None = None,
        mediaenc: str | None = None,
    ) -> None:
        """``account``: the accounts line (default: no registration, straight to the
        proxy), e.g. one that registers with ``auth_pass`` and ``regint``.  ``tls``:
        (its certificate and key in one PEM file, the CA it trusts): then it also speaks
        SIP over TLS, listening at ``sip_port`` + 1."""
        super().__init__(folder, name, sip_port=sip_port, tone_hz=tone_hz)
        self.control_port = control_port
        # SDES-SRTP (issue 18): "srtp" offers RTP/AVP with a=crypto (best effort),
        # "srtp-mand" RTP/SAVP; either needs the srtp module
        srtp_module = "module srtp.so\n" if mediaenc else ""
        low, high = rtp_ports
        tls_lines = f"sip_certificate {tls[0]}\nsip_cafile {tls[1]}\n" if tls else ""
        (self.folder / "config").write_text(
            f"""\
poll_method epoll
sip_listen 127.0.0.1:{sip_port}
net_interface 127.0.0.1
rtp_ports {low}-{high}
rtcp_mux no
audio_source aufile,{self.tone}
audio_player aubridge,{name}-speaker
audio_alert aubridge,{name}-alert
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module aubridge.so
module sndfile.so
{srtp_module}snd_path {self.folder}
module_app account.so
module_app menu.so
statmode_default off
module ctrl_tcp.so
ctrl_tcp_listen 127.0.0.1:{control_port}
{tls_lines}"""
        )
        answer = "auto" if auto_answer else "manual"
        encryption = f";mediaenc={mediaenc}" if mediaenc else ""
        line = account or f"<{self.uri}>;regint=0;answermode={answer}{encryption}"
        (self.folder / "accounts").write_text(line + "\n")
        self.process = subprocess.Popen(
            # line-buffered, so that its log is whole when a test fails
            ["stdbuf", "-oL", _binary("baresip"), "-f", str(self.folder)],
            cwd=self.folder,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._control = self._connect(timeout=10.0)
        self._buffer = b""
        self._token = 0

    def _connect(self, timeout: float) -> socket.socket:
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"baresip exited while starting\n{self.log_text()}")
            try:
                return socket.create_connection(("127.0.0.1", self.control_port), timeout=1)
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"baresip's ctrl_tcp not listening after {timeout} s\n{self.log_text()}"
                    ) from None
                time.sleep(0.05)

    def _read_message(self, timeout: float) -> dict[str, Any] | None:
        """One netstring JSON message from ctrl_tcp, or None if none came in time."""
        self._control.settimeout(timeout)
        while True:
            match = re.match(rb"(\d+):", self._buffer)
            if match:
                start = match.end()
                end = start + int(match.group(1))
                if len(self._buffer) > end:
                    body, self._buffer = self._buffer[start:end], self._buffer[end + 1 :]
                    message: dict[str, Any] = json.loads(body)
                    return message
            try:
                data = self._control.recv(65536)
            except TimeoutError:
                return None
            if not data:
                raise AssertionError(f"baresip closed its control connection\n{self.log_text()}")
            self._buffer += data

    def _take(self, message: dict[str, Any]) -> None:
        kind = self.EVENTS.get(str(message.get("type")))
        if message.get("event") and kind is not None:
            self.events.append(PhoneEvent(time.time(), kind, str(message.get("param", ""))))

    def poll(self) -> None:
        while (message := self._read_message(0.01)) is not None:
            self._take(message)

    def command(self, name: str, params: str = "", timeout: float = 5.0) -> str:
        """Run a baresip command; its answer's text.  Fails if baresip says it failed."""
        self._token += 1
        token = str(self._token)
        request = {"command": name, "params": params, "token": token}
        self._control.sendall(_netstring(json.dumps(request).encode()))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self._read_message(left)
            if message is None:
                break
            if message.get("response") and message.get("token") == token:
                if not message.get("ok"):
                    raise AssertionError(
                        f"baresip {name} {params}: {message.get('data')}\n{self.log_text()}"
                    )
                return str(message.get("data", ""))
            self._take(message)
        raise AssertionError(f"baresip did not answer {name} in {timeout} s\n{self.log_text()}")

    def dial(self, uri: str) -> None:
        self.command("dial", uri)

    def hangup(self) -> None:
        self.command("hangup")

    def hold(self) -> None:
        self.command("hold")

    def resume(self) -> None:
        self.command("resume")

    def send_dtmf(self, keys: str) -> None:
        self.command("sndcode", keys)

    def transfer(self, uri: str) -> None:
        """A blind transfer: baresip sends REFER to the other party."""
        self.command("transfer", uri)

    def received(self) -> audio.Samples:
        dumps = sorted(self.folder.glob("dump-*-dec.wav"))
        assert dumps, f"baresip {self.name} wrote no received audio\n{self.log_text()}"
        return audio.read_wav(dumps[-1]).channel(0)

    def stop(self) -> None:
        self._control.close()
        super().stop()


# ---------------------------------------------------------------------------------------
# linphonec


class Linphonec(Phone):
    """``linphonec -c FOLDER/linphonerc``, commands on stdin; RTP at ``rtp_port`` (RTCP
    the next).  ``dtmf``: "info" (SIP INFO) or "rfc4733"."""

    kind = "linphonec"
    # what linphonec prints, as events: "Call 1 with sip:... connected."
    PATTERNS = (
        (re.compile(r"Call \d+ with .* connected"), "established"),
        (re.compile(r"Call \d+ with .* ended"), "closed"),
        (re.compile(r"Call \d+ with .* error"), "closed"),
    )

    def __init__(
        self,
        folder: Path,
        name: str,
        *,
        sip_port: int,
        rtp_port: int,
        tone_hz: float,
        auto_answer: bool = False,
        ipv6: bool = False,
        dtmf: str = "rfc4733",
    ) -> None:
        if dtmf not in ("info", "rfc4733"):
            raise AssertionError(f"linphonec sends DTMF as info or rfc4733, not {dtmf!r}")
        super().__init__(folder, name, sip_port=sip_port, tone_hz=tone_hz)
        (self.folder / ".local" / "share" / "linphone").mkdir(parents=True)  # or no SIP at all
        self.record_path = self.folder / "received.wav"
        media_bind = "::1" if ipv6 else "127.0.0.1"
        info = dtmf == "info"
        (self.folder / "linphonerc").write_text(
            f"""\
[sip]
sip_port={sip_port}
sip_tcp_port=0
sip_tls_port=0
bind_address=127.0.0.1
use_ipv6={int(ipv6)}
use_info={int(info)}
use_rfc2833={int(not info)}
contact=<{self.uri}>
inc_timeout=30

[rtp]
audio_rtp_port={rtp_port}
bind_address={media_bind}

[video]
display=0
capture=0
automatically_initiate=0
automatically_accept=0
"""
        )
        self._lines: queue.Queue[tuple[float, str]] = queue.Queue()
        self.process = subprocess.Popen(
            [_binary("linphonec"), "-c", str(self.folder / "linphonerc")],
            cwd=self.folder,
            env=self.env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._reader = threading.Thread(target=self._read, name=f"linphonec-{name}", daemon=True)
        self._reader.start()
        self.send("soundcard use files")
        self.send(f"play {self.tone}")
        self.send(f"record {self.record_path}")
        if not ipv6:
            self.send("ipv6 disable")
        if auto_answer:
            self.send("autoanswer enable")

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in self.process.stdout:
            self._log.write(raw)
            self._lines.put((time.time(), raw.decode(errors="replace")))

    def poll(self) -> None:
        while True:
            try:
                at, line = self._lines.get_nowait()
            except queue.Empty:
                return
            for pattern, kind in self.PATTERNS:
                if pattern.search(line):
                    self.events.append(PhoneEvent(at, kind, line.strip()))
                    break

    def send(self, line: str) -> None:
        assert self.process is not None and self.process.stdin is not None
        if self.process.poll() is not None:
            raise AssertionError(f"linphonec exited\n{self.log_text()}")
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def dial(self, uri: str) -> None:
        self.send(f"call {uri}")

    def hangup(self) -> None:
        self.send("terminate")

    def hold(self) -> None:
        self.send("pause")

    def resume(self) -> None:
        self.send("resume")

    def send_dtmf(self, keys: str) -> None:
        for key in keys:  # linphonec sends a line of one DTMF character as that key
            self.send(key)
            time.sleep(0.3)

    def received(self) -> audio.Samples:
        assert self.record_path.exists(), f"linphonec {self.name} recorded nothing"
        return audio.read_wav(self.record_path).channel(0)

    def stop(self) -> None:
        """``quit`` (it hangs up first), else SIGTERM; then the rest of its output."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(AssertionError, OSError, subprocess.TimeoutExpired):
                self.send("quit")
                self.process.wait(timeout=5)
        self.end_process()
        self._reader.join(timeout=5)
        super().stop()


# ---------------------------------------------------------------------------------------
# A test's phones

CALLER_HZ = 500.0  # the caller's voice ...
TAKER_HZ = 1300.0  # ... and the call taker's: neither a harmonic of the other


class Phones:
    """The phones of one test, on its port block: the call taker at the call taker's SIP
    port (where the proxy's routing sends calls) and RTP ports; the caller at the
    caller's RTP ports and a spare SIP port, since baresip also listens for SIP over TLS
    at its SIP port + 1 (+3 is the call taker's; +4, +7 are kept for TLS).  ctrl_tcp at
    +5 (call taker) and +8 (caller)."""

    def __init__(self, folder: Path, ports: PortBlock) -> None:
        self.folder = folder
        self.ports = ports
        self.started: list[Phone] = []

    def _start(self, kind: str, name: str, sip_port: int, rtp_port: int, control: int,
               tone_hz: float, **options: Any) -> Phone:  # fmt: skip
        phone: Phone
        if kind == "baresip":
            phone = Baresip(
                self.folder, name, sip_port=sip_port, control_port=control,
                rtp_ports=(rtp_port, rtp_port + 9), tone_hz=tone_hz, **options,
            )  # fmt: skip
        elif kind == "linphonec":
            phone = Linphonec(
                self.folder, name, sip_port=sip_port, rtp_port=rtp_port, tone_hz=tone_hz,
                **options,
            )  # fmt: skip
        else:
            raise AssertionError(f"no such phone: {kind}")
        self.started.append(phone)
        return phone

    def caller(self, kind: str, **options: Any) -> Phone:
        ports = self.ports
        return self._start(
            kind, "caller", ports.spare_sip(2), ports.caller_rtp, ports.spare_sip(4), CALLER_HZ,
            **options,
        )  # fmt: skip

    def taker(self, kind: str, **options: Any) -> Phone:
        """The call taker: answers at once."""
        ports = self.ports
        return self._start(
            kind, "calltaker", ports.taker_sip, ports.taker_rtp, ports.spare_sip(1), TAKER_HZ,
            auto_answer=True, **options,
        )  # fmt: skip

    def stop(self) -> None:
        for phone in self.started:
            phone.stop()


# ---------------------------------------------------------------------------------------
# What went over the wire (a tcpdump capture of the proxy's SIP port)


@dataclass(frozen=True)
class SipPacket:
    time: float
    source_port: int
    destination_port: int
    text: str

    @property
    def first_line(self) -> str:
        return self.text.split("\r\n", 1)[0]

    @property
    def method(self) -> str | None:
        """The method of a request, None for a response."""
        first = self.first_line
        return None if first.startswith("SIP/2.0") else first.split(" ", 1)[0]

    @property
    def status(self) -> int | None:
        first = self.first_line
        return int(first.split(" ")[1]) if first.startswith("SIP/2.0 ") else None

    def header(self, name: str) -> str:
        for line in self.text.split("\r\n\r\n", 1)[0].split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return ""

    @property
    def cseq(self) -> str:
        return self.header("CSeq")

    @property
    def body(self) -> str:
        return self.text.split("\r\n\r\n", 1)[1] if "\r\n\r\n" in self.text else ""


def sip_packets(datagrams: list[Datagram]) -> list[SipPacket]:
    return [
        SipPacket(d.time, d.source[1], d.destination[1], d.payload.decode(errors="replace"))
        for d in datagrams
        if d.payload[:3] in (b"SIP", b"INV", b"ACK", b"BYE", b"CAN", b"REF", b"INF", b"OPT",
                             b"UPD", b"NOT", b"SUB", b"PRA")
    ]  # fmt: skip
