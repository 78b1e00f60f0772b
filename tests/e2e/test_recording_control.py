"""The call taker's recording switch, the do-not-record list, outbound calls and
services (issue 5, policy clauses P1, P3, P13, P14) end to end: real ``recproxy serve``
processes, SIPp as the caller, the call taker and the trunk, tcpdump on loopback, and
the proxy's own commands and catalog to read back what it kept.

Each test states one acceptance criterion:

1. ``*0`` keyed (RFC 4733) on the call taker's phone stops the recording at the key:
   the exported recording ends within 40 ms of the event; the caller never receives
   the code's telephone-events; the call taker (only) hears two beeps; the recording
   is ``stopped`` during the call and ``complete`` after it, with a ``stop`` event from
   the ``dtmf`` channel;
2. ``*9`` destroys the recording: key and segments gone from disk, ``discarded`` in
   ``recordings list``, who and why in the catalog, nothing left to export;
3. ``*0`` then ``*1``: one recording of two spans, the stopped time left out, and the
   stop and the resume as events;
4. the same ``*0`` as two SIP INFOs (application/dtmf-relay) stops the recording, and
   neither INFO reaches the caller;
5. the HTTP API: the call's own operator can stop its recording; another operator
   (403), no token (401), an unknown call (404), no reason (422) cannot;
6. a caller on the do-not-record list hears the alternative prompt and is bridged
   unrecorded; the consent receipt says so;
7. an internal phone's call to an outside number goes out through the trunk at once
   (no notice) and is recorded, the outside party on the left; a service with
   ``record = false`` is bridged unrecorded, with its consent receipt and its service.

The calls are independent, so each runs against its own proxy, all at once (a module
fixture, in three phases: start the proxies; make the calls; stop everything and read
the results).  The tests then judge what each run left.  Times from tcpdump, SIPp's
message logs and the catalog are all the host's wall clock.

How the times are defined (all from one tcpdump capture of loopback per proxy):

* the bridge: the proxy's ACK to the call taker's 200 leaving it; the recording's first
  frame follows it at the next 20 ms tick;
* a key code's event: the last telephone-event packet of its last key (the third copy
  of the end packet) from the call taker reaching the proxy; for INFO, the INFO with
  ``Signal=0`` reaching it;
* so a recording stopped by a code must be ``event - bridge`` long, within 40 ms.

The call taker keys ``*0`` and ``*9`` with SIPp's own captures
(``/usr/share/sip-tester/dtmf_2833_*.pcap``), replayed as they are: their sequence
numbers and timestamps jump about between keys (SIPp does not renumber them), as a
restarted sender's would.  ``*0*1`` is one consistent stream written here, since a
capture replayed twice repeats its key's timestamp (to any receiver, the same event).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from proxy.storage.store import SERVE_LOCK, recording_folders

from . import audio, pcap, sipp
from .conftest import E2e, new_world, shared_data
from .pcap import Datagram, RtpPacket
from .proxy_process import (
    ProxyProcess,
    ProxySettings,
    export_command,
    export_wav,
    list_recordings,
    proxy_env,
    query,
    run_cli,
    write_config,
)

pytestmark = pytest.mark.sipp

RATE = audio.RATE
STOP_TOLERANCE_S = 0.040  # the recording ends within this of the stop code
SHIPPED_PCAPS = Path("/usr/share/sip-tester")  # SIPp's telephone-event captures
TELEPHONE_EVENT = 101
TOKENS = {"alice": f"alice-{uuid.uuid4().hex}", "bob": f"bob-{uuid.uuid4().hex}"}
DNR_NUMBER = "+44 (0)1632 960123"  # as the written request gave it (issue 12, defect 3)
DNR_E164 = "+441632960123"  # as the caller presents it, and as the list and catalog keep it
OUTSIDE_NUMBER = "01632960999"  # matches the outbound rule (in E.164)
ADVICE_NUMBER = "7000"  # the inbound rule for the unrecorded service


def seconds_of(ulaw: bytes, start: float, end: float) -> bytes:
    return ulaw[int(start * RATE) : int(end * RATE)]


# ---------------------------------------------------------------------------------------
# Configuration shared by every proxy here: two operators, alice answering (and
# placing) the calls, bob someone else.


def operators_toml(e2e: E2e) -> str:
    alice = hashlib.sha256(TOKENS["alice"].encode()).hexdigest()
    bob = hashlib.sha256(TOKENS["bob"].encode()).hexdigest()
    return f"""\
[[operators]]
name = "alice"
token_sha256 = "{alice}"
identities = ["sip:calltaker@127.0.0.1:{e2e.ports.taker_sip}", "2001"]
team = "reception"

[[operators]]
name = "bob"
token_sha256 = "{bob}"
identities = ["2002"]
"""


# ---------------------------------------------------------------------------------------
# The call taker's steps (uas_actions.xml): what it does once the call is up


def play(pcap_name: str) -> str:
    return sipp.play_pcap(pcap_name)


def pause(ms: int) -> str:
    return f'  <pause milliseconds="{ms}"/>\n'


KEEP_DIALOG = """\
    <action>
      <ereg regexp="[^ ].*" search_in="hdr" header="From:" assign_to="from_hdr"/>
      <ereg regexp="[^ ].*" search_in="hdr" header="To:" assign_to="to_hdr"/>
    </action>"""


def info_dtmf(key: str, cseq: int) -> str:
    """An INFO application/dtmf-relay in the call's dialog, from the call taker (needs
    ``KEEP_DIALOG``), and its 200."""
    return f"""\
  <send retrans="500">
    <![CDATA[

      INFO [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: [$to_hdr];tag=[pid]SIPpTag01[call_number]
      To: [$from_hdr]
      Call-ID: [call_id]
      CSeq: {cseq} INFO
      Contact: <sip:calltaker@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal={key}
      Duration=160

    ]]>
  </send>
  <recv response="200"/>
"""


def answering(
    e2e: E2e,
    label: str,
    steps: str,
    *,
    sip_port: int,
    media_port: int,
    user: str = "calltaker",
    keep_dialog: bool = False,
    ring_ms: int = 300,
    timeout_s: float = 30,
) -> sipp.Sipp:
    values = {
        "ring_ms": ring_ms,
        "user": user,
        "actions": steps,
        "invite_actions": KEEP_DIALOG if keep_dialog else "",
    }
    return e2e.run_sipp(
        label, "uas_actions", values, local_port=sip_port, media_port=media_port,
        timeout_s=timeout_s,
    )  # fmt: skip


def dialling(
    e2e: E2e,
    label: str,
    *,
    from_user: str,
    dialled: str,
    audio_pcap: str,
    pre_audio_ms: int,
    hold_ms: int,
    sip_port: int,
    media_port: int,
) -> sipp.Sipp:
    values = {
        "from_user": from_user,
        "dialled": dialled,
        "audio": sipp.play_pcap(audio_pcap),
        "pre_audio_ms": pre_audio_ms,
        "hold_ms": hold_ms,
    }
    return e2e.run_sipp(
        label,
        "uac_dial",
        values,
        local_port=sip_port,
        media_port=media_port,
        remote=("127.0.0.1", e2e.ports.sip),
    )


# ---------------------------------------------------------------------------------------
# What tcpdump saw


@dataclass(frozen=True)
class SipDatagram:
    time: float
    source: tuple[str, int]
    destination: tuple[str, int]
    text: str

    @property
    def first_line(self) -> str:
        return self.text.split("\r\n", 1)[0]

    @property
    def method(self) -> str | None:
        first = self.first_line
        return None if first.startswith("SIP/2.0") else first.split(" ", 1)[0]

    @property
    def cseq(self) -> str | None:
        for line in self.text.split("\r\n\r\n", 1)[0].split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "cseq":
                return " ".join(value.split())
        return None


@dataclass(frozen=True)
class Wire:
    """One world's capture: SIP to and from the proxy, RTP to and from its ports."""

    datagrams: list[Datagram]
    sip_port: int

    def sip(self, *, to_port: int | None = None, from_port: int | None = None) -> list[SipDatagram]:
        out = []
        for d in self.datagrams:
            if self.sip_port not in (d.source[1], d.destination[1]):
                continue
            if to_port is not None and d.destination[1] != to_port:
                continue
            if from_port is not None and d.source[1] != from_port:
                continue
            text = d.payload.decode("utf-8", "replace")
            if text.startswith("SIP/2.0") or " sip:" in text.split("\r\n", 1)[0]:
                out.append(SipDatagram(d.time, d.source, d.destination, text))
        return out

    def first_request(self, method: str, *, to_port: int) -> SipDatagram:
        for message in self.sip(to_port=to_port):
            if message.method == method:
                return message
        raise AssertionError(f"no {method} to port {to_port} on the wire")

    def rtp(
        self, *, to_port: int | None = None, from_port: int | None = None
    ) -> list[tuple[float, RtpPacket]]:
        out = []
        for d in self.datagrams:
            if self.sip_port in (d.source[1], d.destination[1]):
                continue
            if to_port is not None and d.destination[1] != to_port:
                continue
            if from_port is not None and d.source[1] != from_port:
                continue
            packet = RtpPacket.parse(d.payload)
            if packet is not None:
                out.append((d.time, packet))
        return out

    def last_key_packet(self, key: str, *, from_port: int) -> float:
        """When the last telephone-event packet of ``key`` (its last end packet) from
        ``from_port`` reached the proxy."""
        code = pcap.TELEPHONE_EVENTS.index(key)
        times = [
            t
            for t, p in self.rtp(from_port=from_port)
            if p.payload_type == TELEPHONE_EVENT and p.payload[:1] == bytes([code])
        ]
        assert times, f"no telephone-event {key!r} from port {from_port} on the wire"
        return max(times)


def heard(packets: list[tuple[float, RtpPacket]], start: float, end: float) -> audio.Samples:
    """The PCMU audio of the packets sent in [start, end), in order of sending; a
    packet missing from a stream (by its sequence numbers) is heard as silence."""
    parts: list[bytes] = []
    last: RtpPacket | None = None
    for t, packet in packets:
        if not start <= t < end or packet.payload_type != 0:
            continue
        if last is not None and last.ssrc == packet.ssrc:
            missing = ((packet.sequence - last.sequence) & 0xFFFF) - 1
            if 0 < missing < 50:
                parts.append(b"\xff" * (missing * len(packet.payload)))
        parts.append(packet.payload)
        last = packet
    return audio.ulaw_decode(b"".join(parts))


def tone(seconds: float, frequency: float = 1000.0) -> audio.Samples:
    t = np.arange(round(seconds * RATE)) / RATE
    samples: audio.Samples = np.sin(2 * np.pi * frequency * t) * 4000.0
    return samples


def tone_bursts(samples: audio.Samples, frequency: float = 1000.0) -> list[float]:
    """Start times (s) of the bursts of a ``frequency`` tone in ``samples`` (20 ms
    windows whose energy is mostly at that frequency)."""
    window = RATE // 50
    reference = tone(window / RATE, frequency)
    quadrature = np.cos(2 * np.pi * frequency * np.arange(window) / RATE) * 4000.0
    starts: list[float] = []
    inside = False
    for index in range(len(samples) // window):
        chunk = samples[index * window : (index + 1) * window]
        energy = float(np.dot(chunk, chunk))
        if energy < window * 300.0**2:
            on = False
        else:
            projection = (np.dot(chunk, reference) ** 2 + np.dot(chunk, quadrature) ** 2) / (
                float(np.dot(reference, reference))
            )
            on = projection / energy > 0.8
        if on and not inside:
            starts.append(index * window / RATE)
        inside = on
    return starts


# ---------------------------------------------------------------------------------------
# Reading a live proxy


def catalog_rows(proxy: ProxyProcess, sql: str, *params: object) -> list[dict[str, Any]]:
    return [dict(row) for row in query(proxy.catalog_path, sql, *params)]


def audit_rows(run: Run, recording_id: str) -> list[dict[str, Any]]:
    """The audit entries about one recording, in chain order."""
    sql = "SELECT * FROM audit_log WHERE object = ? ORDER BY seq"
    return catalog_rows(run.p, sql, f"recording:{recording_id}")


def watch_states(
    proxy: ProxyProcess, running: Callable[[], bool], timeout: float
) -> list[tuple[float, str]]:
    """The recording's states, as they change, while ``running()`` (bounded)."""
    seen: list[tuple[float, str]] = []
    deadline = time.monotonic() + timeout
    while running() and time.monotonic() < deadline:
        if proxy.catalog_path.exists():
            rows = catalog_rows(proxy, "SELECT state FROM recordings")
            if rows and (not seen or seen[-1][1] != rows[0]["state"]):
                seen.append((time.time(), str(rows[0]["state"])))
        time.sleep(0.05)
    return seen


def wait_bridged(proxy: ProxyProcess, timeout: float = 15.0) -> float:
    """When the (first) call was bridged, by the catalog; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proxy.catalog_path.exists():
            rows = catalog_rows(proxy, "SELECT bridged_at FROM calls WHERE bridged_at IS NOT NULL")
            if rows:
                return float(rows[0]["bridged_at"]) / 1000
        time.sleep(0.05)
    raise proxy.fail(f"no call bridged within {timeout} s")


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: dict[str, Any]
    sent_at: float
    answered_at: float


def api(e2e: E2e, method: str, path: str, *, token: str | None, body: object = None) -> HttpAnswer:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{e2e.ports.http}{path}", data=data, method=method
    )
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    sent = time.time()
    try:
        with _DIRECT.open(request, timeout=5) as answer:
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    parsed = json.loads(raw) if raw else {}
    return HttpAnswer(status, parsed, sent, time.time())


# ---------------------------------------------------------------------------------------
# The runs


@dataclass
class Run:
    """One world and what its call left.  ``setup``, ``call`` and ``after`` run in
    three phases, every run's phase at once; a failure is kept and raised by the
    tests that look at this run."""

    world: E2e
    dialogue: bytes
    error: BaseException | None = None
    finished: bool = False
    proxy: ProxyProcess | None = None
    capture: pcap.LoopbackCapture | None = None
    sipps: dict[str, sipp.Sipp] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)
    wire: Wire | None = None
    states: list[tuple[float, str]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def p(self) -> ProxyProcess:
        assert self.proxy is not None
        return self.proxy

    @property
    def w(self) -> Wire:
        assert self.wire is not None
        return self.wire

    def settings(self) -> ProxySettings:
        return ProxySettings(extra=operators_toml(self.world))

    def start(self, settings: ProxySettings | None = None) -> None:
        self.proxy = self.world.proxy(settings or self.settings())
        low, high = self.world.ports.rtp_range
        self.capture = self.world.capture(
            "wire.pcap", f"udp and (port {self.world.ports.sip} or portrange {low}-{high})"
        )

    def setup(self) -> None:
        self.start()

    def call(self) -> None:
        raise NotImplementedError

    def after(self) -> None:
        """Stop everything, list the recordings, and export the call's (if one)."""
        self.finish()
        self.notes["recordings"] = self.recordings()
        if len(self.notes["recordings"]) == 1:
            self.notes["wav"] = self.export(str(self.notes["recordings"][0]["id"]))

    def wait_all(self, timeout: float = 30) -> None:
        for label, run in self.sipps.items():
            self.status[label] = run.wait(timeout)

    def finish(self) -> None:
        """Stop the world (the proxy must exit cleanly, without a traceback)."""
        assert self.capture is not None
        self.wire = Wire(self.capture.stop(), self.world.ports.sip)
        self.finished = True
        self.world.finish()

    def expect_calls_succeeded(self) -> None:
        for label, status in self.status.items():
            assert status == 0, f"SIPp {label} exited {status}\n{self.sipps[label].diagnostics()}"

    def recordings(self) -> list[dict[str, Any]]:
        return list_recordings(self.world.config_path)

    def events(self) -> list[dict[str, Any]]:
        return catalog_rows(self.p, "SELECT * FROM recording_events ORDER BY at, id")

    def export(self, recording_id: str, name: str = "call.wav") -> audio.Wav:
        return audio.read_wav(
            export_wav(self.world.config_path, recording_id, self.world.folder / name)
        )


class KeyedCode(Run):
    """The call taker keys a code on the phone (RFC 4733 telephone-events) 3.2 s after
    the bridge, after 3 s of its own speech; the caller talks on and hangs up 1.5 s
    after the code."""

    code: tuple[str, str] = ("*", "0")
    hold_ms = 5000  # the caller hangs up this long after it starts talking
    keep_dialog = False  # the call taker sends requests of its own (INFO)

    def caller_audio(self) -> bytes:
        return seconds_of(self.dialogue, 0, 6.5)

    def taker_audio(self) -> bytes:
        return seconds_of(self.dialogue, 12, 15)

    def key_pcaps(self) -> list[str]:
        names = {"*": "star", "#": "pound"}
        return [str(SHIPPED_PCAPS / f"dtmf_2833_{names.get(k, k)}.pcap") for k in self.code]

    def taker_steps(self) -> str:
        first, second = self.key_pcaps()
        steps = play(self.world.rtp_pcap("taker.pcap", self.taker_audio())) + pause(3200)
        return steps + play(first) + pause(300) + play(second) + pause(300)

    def call(self) -> None:
        e2e = self.world
        for path in self.key_pcaps():
            assert Path(path).exists(), f"{path} missing: apt-get install sip-tester"
        self.sipps["taker"] = answering(
            e2e, "taker", self.taker_steps(), keep_dialog=self.keep_dialog,
            sip_port=e2e.ports.taker_sip, media_port=e2e.ports.taker_rtp,
        )  # fmt: skip
        caller = e2e.caller(
            audio_pcap=e2e.rtp_pcap("caller.pcap", self.caller_audio()),
            pre_audio_ms=2500,
            hold_ms=self.hold_ms,
        )
        self.sipps["caller"] = caller
        self.during(caller)
        self.wait_all()
        self.p.wait_idle()

    def during(self, caller: sipp.Sipp) -> None:
        self.states = watch_states(self.p, lambda: caller.process.poll() is None, timeout=25)

    def bridge(self) -> float:
        """The proxy's ACK to the call taker's 200: the call is bridged, the recording's
        first frame follows."""
        return self.w.first_request("ACK", to_port=self.world.ports.taker_sip).time

    def event(self) -> float:
        """The code's last telephone-event packet reaching the proxy."""
        return self.w.last_key_packet(self.code[-1], from_port=self.world.ports.taker_rtp)


class StopByKeys(KeyedCode):
    """``*0``, with SIPp's own captures."""


class DiscardByKeys(KeyedCode):
    code = ("*", "9")

    def during(self, caller: sipp.Sipp) -> None:
        bridged = wait_bridged(self.p)
        time.sleep(max(bridged + 2.5 - time.time(), 0))
        folders = recording_folders(self.world.folder / "data" / "recordings")
        self.notes["before"] = {f.name: sorted(c.name for c in f.iterdir()) for f in folders}
        super().during(caller)
        self.notes["after_code"] = sorted(
            str(p.relative_to(self.world.folder))
            for p in (self.world.folder / "data" / "recordings").rglob("*")
            if p.name != SERVE_LOCK  # serve's lock on the folder (issue 20), not a recording's
        )

    def after(self) -> None:
        self.finish()
        self.notes["recordings"] = self.recordings()
        rows = catalog_rows(self.p, "SELECT id FROM recordings")
        if rows:
            rid = str(rows[0]["id"])
            self.notes["export"] = subprocess.run(
                export_command(self.world.config_path, rid, self.world.folder / "gone.wav"),
                cwd=self.world.folder,
                env=proxy_env(),
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )


class StopThenResume(KeyedCode):
    """``*0`` 2.7 s after the bridge (after 2.5 s of the call taker's speech), ``*1``
    1.5 s later, then 2.5 s more of the call taker's speech; the caller talks all the
    while.  The key presses are one stream, as a phone sends them."""

    code = ("*", "1")
    hold_ms = 8300
    SSRC = 0x7E1E0001

    def caller_audio(self) -> bytes:
        return seconds_of(self.dialogue, 0, 9.5)

    def taker_audio(self) -> bytes:
        return seconds_of(self.dialogue, 12, 14.5)

    def taker_audio_after(self) -> bytes:
        return seconds_of(self.dialogue, 15.5, 18)

    def taker_steps(self) -> str:
        folder = self.world.folder
        presses = []
        for index, key in enumerate("*0*1"):
            name = f"key{index}.pcap"
            pcap.write_key_press_pcap(
                folder / name,
                key,
                sequence=5000 + 100 * index,
                timestamp=800_000 + 16_000 * index,
                ssrc=self.SSRC,
            )
            presses.append(name)
        # the speech after the resume is a new stream (another SSRC, another clock)
        pcap.write_rtp_pcap(
            folder / "taker_after.pcap",
            self.taker_audio_after(),
            ssrc=0x7E1E0002,
            first_sequence=20_000,
            first_timestamp=4_000_000,
        )
        return (
            play(self.world.rtp_pcap("taker.pcap", self.taker_audio()))
            + pause(2700)
            + play(presses[0]) + pause(300) + play(presses[1]) + pause(1500)
            + play(presses[2]) + pause(300) + play(presses[3]) + pause(300)
            + play("taker_after.pcap")
            + pause(2700)
        )  # fmt: skip

    def key_pcaps(self) -> list[str]:
        return []

    def key_times(self) -> list[float]:
        """When the last packet of each key press (``*0*1``) reached the proxy."""
        times: dict[int, float] = {}
        for t, packet in self.w.rtp(from_port=self.world.ports.taker_rtp):
            if packet.payload_type == TELEPHONE_EVENT:
                times[packet.timestamp] = max(times.get(packet.timestamp, 0.0), t)
        assert len(times) == 4, f"expected 4 key presses on the wire, saw {sorted(times)}"
        return [times[800_000 + 16_000 * index] for index in range(4)]


class StopByInfo(KeyedCode):
    """The same ``*0`` as two SIP INFOs (application/dtmf-relay)."""

    keep_dialog = True

    def taker_steps(self) -> str:
        steps = play(self.world.rtp_pcap("taker.pcap", self.taker_audio())) + pause(3200)
        return steps + info_dtmf("*", 1) + pause(200) + info_dtmf("0", 2) + pause(300)

    def key_pcaps(self) -> list[str]:
        return []

    def infos(self) -> list[SipDatagram]:
        return [
            m
            for m in self.w.sip(to_port=self.world.ports.sip)
            if m.method == "INFO" and m.source[1] == self.world.ports.taker_sip
        ]

    def event(self) -> float:
        """The INFO with ``Signal=0`` reaching the proxy (its first copy)."""
        times = [m.time for m in self.infos() if "Signal=0" in m.text]
        assert times, "no INFO Signal=0 on the wire"
        return min(times)


class ApiControl(Run):
    """A bridged call; the test process uses the HTTP API while it lasts."""

    def call(self) -> None:
        e2e = self.world
        taker_audio = seconds_of(self.dialogue, 12, 18)
        self.sipps["taker"] = answering(
            e2e, "taker", play(e2e.rtp_pcap("taker.pcap", taker_audio)),
            sip_port=e2e.ports.taker_sip, media_port=e2e.ports.taker_rtp,
        )  # fmt: skip
        self.sipps["caller"] = e2e.caller(
            audio_pcap=e2e.rtp_pcap("caller.pcap", seconds_of(self.dialogue, 0, 8)),
            pre_audio_ms=2500,
            hold_ms=5500,
        )
        bridged = wait_bridged(self.p)
        time.sleep(max(bridged + 1.0 - time.time(), 0))
        alice, bob = TOKENS["alice"], TOKENS["bob"]
        answers: dict[str, HttpAnswer] = {}
        answers["list_alice"] = api(e2e, "GET", "/api/calls", token=alice)
        answers["list_bob"] = api(e2e, "GET", "/api/calls", token=bob)
        calls = answers["list_alice"].body.get("calls") or [{}]
        path = f"/api/calls/{calls[0].get('id', 'none')}/recording"
        stop = {"action": "stop", "reason": "the caller asked not to be recorded"}
        answers["no_token"] = api(e2e, "POST", path, token=None, body=stop)
        answers["bad_token"] = api(e2e, "POST", path, token="not-a-token", body=stop)
        answers["other_operator"] = api(e2e, "POST", path, token=bob, body=stop)
        answers["unknown_call"] = api(
            e2e, "POST", f"/api/calls/{uuid.uuid4()}/recording", token=alice, body=stop
        )
        answers["no_reason"] = api(e2e, "POST", path, token=alice, body={"action": "stop"})
        answers["blank_reason"] = api(
            e2e, "POST", path, token=alice, body={"action": "stop", "reason": "  "}
        )
        answers["bad_action"] = api(
            e2e, "POST", path, token=alice, body={"action": "pause", "reason": "x"}
        )
        self.notes["events_before"] = self.events()
        self.notes["state_before"] = catalog_rows(self.p, "SELECT state FROM recordings")
        answers["stop"] = api(e2e, "POST", path, token=alice, body=stop)
        answers["stop_again"] = api(e2e, "POST", path, token=alice, body=stop)
        self.notes["state_after"] = catalog_rows(self.p, "SELECT state FROM recordings")
        self.notes["answers"] = answers
        self.notes["bridged"] = bridged
        self.wait_all()
        self.p.wait_idle()


class DoNotRecord(Run):
    """A caller on the do-not-record list, with a 2 s alternative prompt of its own; the
    list was given the number in another form than the caller presents."""

    def setup(self) -> None:
        e2e = self.world
        prompt = audio.read_wav(shared_data("audio", "dialogue_8k_s16.wav")).channel(0)
        self.notes["prompt"] = prompt[int(3.0 * RATE) : int(5.0 * RATE)]
        path = e2e.folder / "no-record.wav"
        audio.write_wav(path, self.notes["prompt"])
        self.notes["prompt_path"] = path
        settings = ProxySettings(no_record_prompt=path, extra=operators_toml(e2e))
        e2e.config = write_config(e2e.folder, e2e.ports, e2e.notice.path, settings)
        self.notes["dnr_add"] = run_cli(
            e2e.config, "dnr", "add", DNR_NUMBER, "--reference", "letter of 2026-03-02"
        )
        self.proxy = e2e.proxy(restart=True)  # the configuration just written
        low, high = e2e.ports.rtp_range
        self.capture = e2e.capture(
            "wire.pcap", f"udp and (port {e2e.ports.sip} or portrange {low}-{high})"
        )

    def call(self) -> None:
        e2e = self.world
        self.sipps["taker"] = answering(
            e2e, "taker", play(e2e.rtp_pcap("taker.pcap", seconds_of(self.dialogue, 12, 14))),
            sip_port=e2e.ports.taker_sip, media_port=e2e.ports.taker_rtp,
        )  # fmt: skip
        self.sipps["caller"] = dialling(
            e2e, "caller", from_user=DNR_E164, dialled="1000",
            audio_pcap=e2e.rtp_pcap("caller.pcap", seconds_of(self.dialogue, 0, 2)),
            pre_audio_ms=2500, hold_ms=2500,
            sip_port=e2e.ports.caller_sip, media_port=e2e.ports.caller_rtp,
        )  # fmt: skip
        self.wait_all()
        self.p.wait_idle()


class OutboundAndService(Run):
    """Two calls at once on one proxy: an internal phone (2001) dialling an outside
    number, which goes out through the trunk (a SIPp UAS); and a caller dialling the
    number of a service that is not recorded."""

    def settings(self) -> ProxySettings:
        e2e = self.world
        rules = f"""\
[[routing.rules]]
match = '\\+44[0-9]{{9,10}}'
direction = "outbound"
service = "callback"

[[routing.rules]]
match = "{ADVICE_NUMBER}"
service = "advice"

[services.callback]

[services.advice]
record = false

{operators_toml(e2e)}"""
        return ProxySettings(
            internal_peers=("127.0.0.1/32",),
            trunk=f"sip:trunk@127.0.0.1:{e2e.ports.spare_sip(0)}",
            extra=rules,
        )

    def call(self) -> None:
        e2e = self.world
        ports = e2e.ports
        self.notes["outside_audio"] = seconds_of(self.dialogue, 12, 16)
        self.notes["inside_audio"] = seconds_of(self.dialogue, 0, 4)
        self.sipps["trunk"] = answering(
            e2e, "trunk", play(e2e.rtp_pcap("outside.pcap", self.notes["outside_audio"])),
            user="outside", sip_port=ports.spare_sip(0), media_port=ports.spare_media(0),
        )  # fmt: skip
        self.sipps["staff"] = dialling(
            e2e, "staff", from_user="2001", dialled=OUTSIDE_NUMBER,
            audio_pcap=e2e.rtp_pcap("inside.pcap", self.notes["inside_audio"]),
            pre_audio_ms=200, hold_ms=4600,
            sip_port=ports.caller_sip, media_port=ports.caller_rtp,
        )  # fmt: skip
        self.sipps["taker"] = answering(
            e2e, "taker", play(e2e.rtp_pcap("taker.pcap", seconds_of(self.dialogue, 16, 18))),
            sip_port=ports.taker_sip, media_port=ports.taker_rtp,
        )  # fmt: skip
        self.sipps["advice_caller"] = dialling(
            e2e, "advice_caller", from_user="01632960124", dialled=ADVICE_NUMBER,
            audio_pcap=e2e.rtp_pcap("advice.pcap", seconds_of(self.dialogue, 4, 6)),
            pre_audio_ms=2500, hold_ms=2500,
            sip_port=ports.spare_sip(1), media_port=ports.spare_media(1),
        )  # fmt: skip
        self.wait_all()
        self.p.wait_idle()

    def call_row(self, callee: str) -> dict[str, Any]:
        rows = catalog_rows(self.p, "SELECT * FROM calls WHERE callee = ?", callee)
        assert len(rows) == 1, (callee, catalog_rows(self.p, "SELECT * FROM calls"))
        return rows[0]


RUNS: dict[str, type[Run]] = {
    "stop": StopByKeys,
    "discard": DiscardByKeys,
    "resume": StopThenResume,
    "info": StopByInfo,
    "api": ApiControl,
    "dnr": DoNotRecord,
    "outbound": OutboundAndService,
}


def _phase(runs: list[Run], name: str, timeout: float) -> None:
    """Run one phase of every run at once (each in a thread), keeping failures."""

    def body(run: Run) -> None:
        try:
            getattr(run, name)()
        except BaseException as exc:  # kept for the tests of this run
            run.error = exc

    threads = [
        threading.Thread(target=body, args=(run,), name=f"{name}-{i}", daemon=True)
        for i, run in enumerate(runs)
        if run.error is None
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0.1))
    if any(thread.is_alive() for thread in threads):
        raise AssertionError(f"the {name} phase took over {timeout} s")


class Runs:
    def __init__(self, runs: dict[str, Run]) -> None:
        self.runs = runs

    def __getitem__(self, name: str) -> Run:
        run = self.runs[name]
        if run.error is not None:
            raise run.error
        return run


@pytest.fixture(scope="module")
def runs(tools: None, dialogue: bytes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    worlds = {
        name: kind(new_world(tmp_path_factory.mktemp(name)), dialogue)
        for name, kind in RUNS.items()
    }
    everyone = list(worlds.values())
    try:
        _phase(everyone, "setup", timeout=60)
        _phase(everyone, "call", timeout=60)
        _phase(everyone, "after", timeout=60)
        yield Runs(worlds)
    finally:
        for run in everyone:
            try:
                if not run.finished:
                    run.finished = True
                    run.world.finish()
            except BaseException:
                pass  # the run's own error (or the test) says what went wrong
            finally:
                run.world.ports.release()


# ---------------------------------------------------------------------------------------
# 1. *0 by RFC 4733: stop at the key


def _one_recording(run: Run) -> dict[str, Any]:
    rows: list[dict[str, Any]] = run.notes["recordings"]
    assert len(rows) == 1, rows
    return rows[0]


def test_star0_by_rtp_recording_ends_within_40ms_of_the_code(runs: Runs) -> None:
    run = runs["stop"]
    assert isinstance(run, StopByKeys)
    run.expect_calls_succeeded()
    bridge, event = run.bridge(), run.event()
    wav: audio.Wav = run.notes["wav"]
    assert (wav.channels, wav.rate) == (2, RATE)
    # the recording starts at the bridge; the code's last packet reaching the proxy
    # is when it is complete, and the stop takes effect at the next 20 ms tick
    expected = event - bridge
    assert abs(wav.seconds - expected) <= STOP_TOLERANCE_S, (
        f"recorded {wav.seconds:.3f} s; the code completed {expected:.3f} s after the bridge"
    )
    # what was recorded is the conversation up to the code, and nothing after it
    caller_pcm = audio.ulaw_decode(run.caller_audio())
    taker_pcm = audio.ulaw_decode(run.taker_audio())
    left = audio.place(wav.channel(0), caller_pcm)
    right = audio.place(wav.channel(1), taker_pcm)
    assert len(right.inside) == right.voiced, right  # all 3 s of the call taker
    # the caller's audio from 0.3 s after the code on (1 s and more of it) is absent
    after_code = event - bridge - left.start_s + 0.3
    assert audio.absent(wav.channel(0), caller_pcm[int(after_code * RATE) :])


def test_star0_by_rtp_code_never_reaches_the_caller_and_call_taker_hears_beeps(
    runs: Runs,
) -> None:
    run = runs["stop"]
    assert isinstance(run, StopByKeys)
    run.expect_calls_succeeded()
    ports = run.world.ports
    bridge, event = run.bridge(), run.event()
    to_caller = run.w.rtp(to_port=ports.caller_rtp)
    from_taker = run.w.rtp(from_port=ports.taker_rtp)
    keys = [p for _, p in from_taker if p.payload_type == TELEPHONE_EVENT]
    assert len(keys) == 20, f"the call taker's 20 telephone-events were not seen: {len(keys)}"
    # the caller heard the call taker (the relay works and the capture sees it) ...
    assert any(t > bridge and p.payload_type == 0 for t, p in to_caller)
    # ... but not one telephone-event packet
    leaked = [p for _, p in to_caller if p.payload_type == TELEPHONE_EVENT]
    assert not leaked, f"{len(leaked)} telephone-event packets reached the caller"
    # two beeps to the call taker, at once; none to the caller
    to_taker = run.w.rtp(to_port=ports.taker_rtp)
    beeps = tone_bursts(heard(to_taker, event, event + 1.0))
    assert len(beeps) == 2, f"the call taker heard {len(beeps)} beeps: {beeps}"
    assert beeps[0] <= 0.2 and 0.15 <= beeps[1] - beeps[0] <= 0.25, beeps
    assert tone_bursts(heard(to_caller, event, event + 1.0)) == []


def test_star0_by_rtp_recording_stopped_during_call_complete_after_with_dtmf_event(
    runs: Runs,
) -> None:
    run = runs["stop"]
    assert isinstance(run, StopByKeys)
    run.expect_calls_succeeded()
    event = run.event()
    bye = run.sipps["caller"].first(sent=True, method="BYE").time
    states = [state for _, state in run.states]
    assert states[:2] == ["recording", "stopped"], run.states
    stopped_at = run.states[1][0]
    assert event <= stopped_at < bye, (event, stopped_at, bye)
    row = _one_recording(run)
    assert row["state"] == "complete", row
    events = run.events()
    assert [e["action"] for e in events] == ["start", "stop", "complete"], events
    stop = events[1]
    assert (stop["channel"], stop["actor"]) == ("dtmf", "alice"), stop
    assert stop["reason"], stop
    assert event - 0.05 <= stop["at"] / 1000 <= event + 0.2, (event, stop)
    (call,) = catalog_rows(run.p, "SELECT * FROM calls")
    assert (call["operator"], call["outcome"]) == ("alice", "completed"), call


# ---------------------------------------------------------------------------------------
# 2. *9: discard


def test_star9_discards_key_and_segments_and_keeps_only_who_and_why(runs: Runs) -> None:
    run = runs["discard"]
    assert isinstance(run, DiscardByKeys)
    run.expect_calls_succeeded()
    event = run.event()
    (recording,) = catalog_rows(run.p, "SELECT * FROM recordings")
    rid = recording["id"]
    # before the code the recording was on disk: its wrapped key and a segment file
    before: dict[str, list[str]] = run.notes["before"]
    assert list(before) == [recording["directory"]], before
    assert "key" in before[rid] and any(n.endswith(".rec") for n in before[rid]), before
    # after it, nothing: no folder, no key, no segment, anywhere under the recordings
    assert run.notes["after_code"] == [], run.notes["after_code"]
    left = (run.world.folder / "data" / "recordings").rglob("*")
    assert [p.name for p in left] == [SERVE_LOCK]  # only serve's lock on the folder
    # the catalog keeps the fact, who, why and when; no segment rows
    assert recording["state"] == "discarded", recording
    assert recording["discarded_by"] == "alice", recording
    assert recording["discarded_reason"], recording
    assert event - 0.05 <= recording["discarded_at"] / 1000 <= event + 0.5, (event, recording)
    assert catalog_rows(run.p, "SELECT * FROM segments") == []
    events = run.events()
    assert [e["action"] for e in events] == ["start", "discard"], events
    assert (events[1]["channel"], events[1]["actor"]) == ("dtmf", "alice"), events
    # one audit entry, committed with the discard; the refused export below wrote none
    audited = audit_rows(run, rid)
    assert [(a["action"], a["actor"]) for a in audited] == [("recording.discard", "alice")]
    assert audited[0]["reason"] == recording["discarded_reason"], audited
    # recordings list says so, and there is nothing to export
    (listed,) = run.notes["recordings"]
    assert (listed["id"], listed["state"], listed["segments"]) == (rid, "discarded", 0), listed
    export: subprocess.CompletedProcess[str] = run.notes["export"]
    assert export.returncode != 0, export
    assert "discarded" in export.stdout + export.stderr, export
    assert "Traceback" not in export.stdout + export.stderr, export
    assert not (run.world.folder / "gone.wav").exists()


# ---------------------------------------------------------------------------------------
# 3. *0 then *1: two spans


def test_star0_then_star1_two_spans_of_the_right_audio_with_stop_and_resume_events(
    runs: Runs,
) -> None:
    run = runs["resume"]
    assert isinstance(run, StopThenResume)
    run.expect_calls_succeeded()
    bridge = run.bridge()
    _, stop, _, resume = run.key_times()
    bye = run.w.first_request("BYE", to_port=run.world.ports.sip).time
    row = _one_recording(run)
    assert row["state"] == "complete", row
    events = run.events()
    assert [e["action"] for e in events] == ["start", "stop", "resume", "complete"], events
    for recorded, keyed in ((events[1], stop), (events[2], resume)):
        assert (recorded["channel"], recorded["actor"]) == ("dtmf", "alice"), recorded
        assert keyed - 0.05 <= recorded["at"] / 1000 <= keyed + 0.2, (keyed, recorded)
    gap = (events[2]["at"] - events[1]["at"]) / 1000
    assert abs(gap - (resume - stop)) <= 0.1, (gap, resume - stop)
    audited = audit_rows(run, row["id"])  # the switches are audited; the export too
    assert [(a["action"], a["actor"], a["at"]) for a in audited[:2]] == [
        ("recording.stop", "alice", events[1]["at"]),
        ("recording.resume", "alice", events[2]["at"]),
    ], audited
    assert [a["action"] for a in audited[2:]] == ["custodian_export"], audited

    # the recording: from the bridge to the stop, then from the resume to the end
    wav: audio.Wav = run.notes["wav"]
    first_span = stop - bridge
    expected = first_span + (bye - resume)
    assert abs(wav.seconds - expected) <= 2 * STOP_TOLERANCE_S, (wav.seconds, expected)
    cut = round(first_span * RATE)
    caller_pcm = audio.ulaw_decode(run.caller_audio())
    before = audio.place(wav.channel(0)[:cut], caller_pcm)
    after = audio.place(wav.channel(0)[cut:], caller_pcm)
    # the caller's audio of the stopped time is what is left out, and only that
    end_of_first = first_span - before.start_s  # in the caller's audio
    start_of_second = -after.start_s
    assert abs((start_of_second - end_of_first) - (resume - stop)) <= 0.1, (
        f"{start_of_second - end_of_first:.3f} s of the caller's audio left out, "
        f"stopped for {resume - stop:.3f} s"
    )
    assert len(before.good) >= 8 and len(after.good) >= 8, (before, after)
    gap_audio = caller_pcm[int((end_of_first + 0.2) * RATE) : int((start_of_second - 0.2) * RATE)]
    assert audio.absent(wav.channel(0), gap_audio)
    # the call taker's speech before the stop in the first span, after the resume in
    # the second: all of each
    taker_before = audio.ulaw_decode(run.taker_audio())
    taker_after = audio.ulaw_decode(run.taker_audio_after())
    first = audio.place(wav.channel(1)[:cut], taker_before)
    second = audio.place(wav.channel(1)[cut:], taker_after)
    assert len(first.inside) == first.voiced and len(second.inside) == second.voiced
    assert audio.absent(wav.channel(1)[cut:], taker_before)
    assert audio.absent(wav.channel(1)[:cut], taker_after)


# ---------------------------------------------------------------------------------------
# 4. *0 by SIP INFO


def test_star0_by_info_stops_recording_and_neither_info_reaches_the_caller(runs: Runs) -> None:
    run = runs["info"]
    assert isinstance(run, StopByInfo)
    run.expect_calls_succeeded()
    ports = run.world.ports
    infos = run.infos()
    assert sorted({m.text.split("Signal=", 1)[1][:1] for m in infos}) == ["*", "0"], infos
    # each was answered 200 by the proxy
    answered = {
        m.cseq for m in run.w.sip(to_port=ports.taker_sip) if m.first_line.startswith("SIP/2.0 200")
    }
    assert {"1 INFO", "2 INFO"} <= answered, answered
    # none went on to the caller
    to_caller = [m.first_line for m in run.w.sip(to_port=ports.caller_sip)]
    assert not [line for line in to_caller if line.startswith("INFO")], to_caller
    assert not [m for m in run.sipps["caller"].messages() if m.method == "INFO"]
    # the recording stopped at the second INFO
    event = run.event()
    wav: audio.Wav = run.notes["wav"]
    expected = event - run.bridge()
    assert abs(wav.seconds - expected) <= STOP_TOLERANCE_S, (wav.seconds, expected)
    assert [state for _, state in run.states][:2] == ["recording", "stopped"], run.states
    assert _one_recording(run)["state"] == "complete"
    events = run.events()
    assert [e["action"] for e in events] == ["start", "stop", "complete"], events
    assert (events[1]["channel"], events[1]["actor"]) == ("dtmf", "alice"), events


# ---------------------------------------------------------------------------------------
# 5. The HTTP API


def test_api_only_the_calls_own_operator_stops_its_recording(runs: Runs) -> None:
    run = runs["api"]
    assert isinstance(run, ApiControl)
    run.expect_calls_succeeded()
    answers: dict[str, HttpAnswer] = run.notes["answers"]
    listed = answers["list_alice"]
    assert listed.status == 200, listed
    (call,) = listed.body["calls"]
    assert (call["operator"], call["recording"], call["phase"]) == (
        "alice",
        "recording",
        "bridged",
    ), call
    assert answers["list_bob"].status == 200 and answers["list_bob"].body == {"calls": []}
    expected = {
        "no_token": 401,
        "bad_token": 401,
        "other_operator": 403,
        "unknown_call": 404,
        "no_reason": 422,
        "blank_reason": 422,
        "bad_action": 422,
        "stop": 200,
        "stop_again": 409,
    }
    got = {name: answers[name].status for name in expected}
    assert got == expected, {name: (a.status, a.body) for name, a in answers.items()}
    # the refused requests changed nothing
    assert run.notes["state_before"] == [{"state": "recording"}]
    assert [e["action"] for e in run.notes["events_before"]] == ["start"]
    stopped = answers["stop"]
    assert stopped.body["recording"] == "stopped" and stopped.body["id"] == call["id"], stopped
    assert run.notes["state_after"] == [{"state": "stopped"}]
    events = run.events()
    assert [e["action"] for e in events] == ["start", "stop", "complete"], events
    assert (events[1]["channel"], events[1]["actor"], events[1]["reason"]) == (
        "api",
        "alice",
        "the caller asked not to be recorded",
    )
    # the stop took effect at the next tick after the request
    wav: audio.Wav = run.notes["wav"]
    bridge = run.w.first_request("ACK", to_port=run.world.ports.taker_sip).time
    earliest = stopped.sent_at - bridge - STOP_TOLERANCE_S
    latest = stopped.answered_at - bridge + STOP_TOLERANCE_S
    assert earliest <= wav.seconds <= latest, (earliest, wav.seconds, latest)


# ---------------------------------------------------------------------------------------
# 6. The do-not-record list


def test_do_not_record_caller_hears_alternative_prompt_bridged_unrecorded(runs: Runs) -> None:
    run = runs["dnr"]
    assert isinstance(run, DoNotRecord)
    run.expect_calls_succeeded()
    ports = run.world.ports
    assert DNR_E164 in run.notes["dnr_add"]
    # the caller heard the alternative prompt from the start, not the notice
    bridge = run.w.first_request("ACK", to_port=ports.taker_sip).time
    received = heard(run.w.rtp(to_port=ports.caller_rtp), 0, bridge)
    prompt = audio.best_match(received, run.notes["prompt"])
    assert prompt.ncc >= 0.9 and abs(prompt.offset_s) <= 0.1, prompt
    assert audio.absent(received, run.world.notice.samples)
    # bridged (the call taker was called and answered), but nothing recorded
    (call,) = catalog_rows(run.p, "SELECT * FROM calls")
    assert call["caller"] == DNR_E164 and call["outcome"] == "completed", call
    assert call["bridged_at"] is not None, call
    assert run.notes["recordings"] == []
    assert catalog_rows(run.p, "SELECT * FROM recordings") == []
    # no recording's folder: only serve's lock on the folder (issue 20)
    recordings = run.world.folder / "data" / "recordings"
    assert recording_folders(recordings) == []
    assert sorted(entry.name for entry in recordings.iterdir()) == [SERVE_LOCK]
    # the consent receipt says which prompt, all of it, and do-not-record
    (receipt,) = catalog_rows(run.p, "SELECT * FROM consent_receipts")
    path: Path = run.notes["prompt_path"]
    assert receipt["do_not_record"] == 1, receipt
    assert receipt["notice_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest(), receipt
    assert receipt["notice_version"] == path.name, receipt
    assert receipt["completed"] == 1 and receipt["notice_ms"] == 2000, receipt


# ---------------------------------------------------------------------------------------
# 7. Outbound calls and services


def test_outbound_call_goes_out_through_trunk_at_once_and_is_recorded(runs: Runs) -> None:
    run = runs["outbound"]
    assert isinstance(run, OutboundAndService)
    run.expect_calls_succeeded()
    staff, trunk = run.sipps["staff"], run.sipps["trunk"]
    invite = staff.first(sent=True, method="INVITE")
    out = trunk.first(sent=False, method="INVITE")
    assert out.time - invite.time < 0.5, "the outbound call waited (a notice?)"
    assert out.first_line.split()[1].startswith(f"sip:{OUTSIDE_NUMBER}@127.0.0.1:"), out
    # the member of staff heard no notice before the outside party answered
    bridge = run.w.first_request("ACK", to_port=run.world.ports.spare_sip(0)).time
    before = heard(run.w.rtp(to_port=run.world.ports.caller_rtp), 0, bridge)
    assert len(before) == 0 or audio.absent(before, run.world.notice.samples)
    call = run.call_row("+441632960999")
    assert (call["direction"], call["service"], call["outcome"]) == (
        "outbound",
        "callback",
        "completed",
    ), call
    assert call["operator"] == "alice", call
    (receipt,) = catalog_rows(run.p, "SELECT * FROM consent_receipts WHERE call_id = ?", call["id"])
    assert (receipt["mode"], receipt["played_ms"], receipt["do_not_record"]) == ("none", 0, 0)
    # recorded, complete, the outside party on the left and the member of staff right
    (recording,) = run.notes["recordings"]
    assert (recording["call_id"], recording["state"]) == (call["id"], "complete"), recording
    wav: audio.Wav = run.notes["wav"]
    outside = audio.ulaw_decode(run.notes["outside_audio"])
    inside = audio.ulaw_decode(run.notes["inside_audio"])
    left = audio.place(wav.channel(0), outside)
    right = audio.place(wav.channel(1), inside)
    assert len(left.inside) == left.voiced and len(right.inside) == right.voiced, (left, right)
    assert audio.absent(wav.channel(0), inside) and audio.absent(wav.channel(1), outside)


def test_service_with_record_false_is_bridged_unrecorded_with_receipt_and_service(
    runs: Runs,
) -> None:
    run = runs["outbound"]
    assert isinstance(run, OutboundAndService)
    run.expect_calls_succeeded()
    call = run.call_row(ADVICE_NUMBER)
    assert (call["direction"], call["service"], call["outcome"]) == (
        "inbound",
        "advice",
        "completed",
    ), call
    assert call["bridged_at"] is not None and call["caller"] == "+441632960124", call
    assert catalog_rows(run.p, "SELECT * FROM recordings WHERE call_id = ?", call["id"]) == []
    assert all(row["call_id"] != call["id"] for row in run.notes["recordings"])
    (receipt,) = catalog_rows(run.p, "SELECT * FROM consent_receipts WHERE call_id = ?", call["id"])
    assert receipt["mode"] == "answer" and receipt["completed"] == 1, receipt
    assert receipt["do_not_record"] == 0, receipt
    # the call taker was invited only after the notice
    invite = run.sipps["advice_caller"].first(sent=True, method="INVITE").time
    taker_invite = run.sipps["taker"].first(sent=False, method="INVITE").time
    assert taker_invite - invite >= run.world.notice.seconds
