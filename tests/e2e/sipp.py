"""SIPp, the independent caller and call taker: scenarios, processes, message logs.

Scenario files in ``scenarios/`` are ``string.Template``s (``${pre_audio_ms}``,
``${audio}``...), rendered into the test's folder.  SIPp runs there, so the pcap a
scenario plays is named relative to it.  Each run writes its SIP messages with their
times (``-trace_msg``), its errors and its final screen into that folder too.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from string import Template

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
SIPP = "sipp"


def sipp_binary() -> str:
    path = shutil.which(SIPP)
    if path is None:
        raise AssertionError("sipp is not installed: apt-get install sip-tester (Debian)")
    return path


def play_pcap(name: str) -> str:
    """The scenario step that starts playing a pcap's RTP (in the background)."""
    return (
        f'  <nop>\n    <action>\n      <exec play_pcap_audio="{name}"/>\n    </action>\n  </nop>\n'
    )


#: The G.711 codecs a scenario can offer or answer, by name, with their payload types.
PAYLOAD_TYPES = {"PCMU": 0, "PCMA": 8}


def render_scenario(
    name: str,
    folder: Path,
    *,
    rendered_name: str | None = None,
    codec: str = "PCMU",
    **values: object,
) -> Path:
    """``scenarios/NAME.xml`` with its placeholders filled, written into ``folder`` (as
    ``rendered_name``, by default ``NAME.xml``: two runs of one scenario with different
    values in one folder need different names).  ``codec`` fills ``${codec}`` and
    ``${payload_type}`` of the scenarios whose SDP names one G.711 codec."""
    # ${headers}: extra header lines of the scenarios that have the placeholder
    filled = {"codec": codec, "payload_type": PAYLOAD_TYPES[codec], "headers": "", **values}
    text = Template((SCENARIOS / f"{name}.xml").read_text()).substitute(
        {key: str(value) for key, value in filled.items()}
    )
    out = folder / (rendered_name or f"{name}.xml")
    out.write_text(text)
    return out


@dataclass(frozen=True)
class SipMessage:
    """One message from a SIPp message log."""

    time: float  # seconds since the epoch
    sent: bool  # sent by SIPp (else received)
    text: str

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    @property
    def method(self) -> str | None:
        """The request's method; None for a response."""
        first = self.first_line
        return None if first.startswith("SIP/2.0") else first.split(" ", 1)[0]

    @property
    def status(self) -> int | None:
        """The response's status code; None for a request."""
        first = self.first_line
        return int(first.split()[1]) if first.startswith("SIP/2.0") else None

    def header(self, name: str) -> str | None:
        match = re.search(rf"^{re.escape(name)}\s*:\s*(.*?)\s*$", self.text, re.I | re.M)
        return match.group(1) if match else None

    @property
    def call_id(self) -> str | None:
        return self.header("Call-ID") or self.header("i")

    @property
    def cseq_method(self) -> str | None:
        cseq = self.header("CSeq")
        return cseq.split()[-1] if cseq else None


_ENTRY = re.compile(
    r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n"
    r"(?:UDP|TCP) message (sent|received) [^\n]*\n\n",
    re.M,
)


def read_message_log(path: Path) -> list[SipMessage]:
    """The messages of a ``-trace_msg`` log, in order.  SIPp writes local times."""
    if not path.exists():
        return []
    text = path.read_text(errors="replace").replace("\r\n", "\n")
    entries = list(_ENTRY.finditer(text))
    messages: list[SipMessage] = []
    for index, entry in enumerate(entries):
        end = entries[index + 1].start() if index + 1 < len(entries) else len(text)
        when = datetime.strptime(entry.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        body = text[entry.end() : end].strip("\n")
        messages.append(SipMessage(when, entry.group(2) == "sent", body))
    return messages


class Sipp:
    """One SIPp process, run in ``folder`` and logging there under ``label``."""

    def __init__(
        self,
        folder: Path,
        label: str,
        scenario: Path,
        *,
        local_port: int,
        media_port: int,
        remote: tuple[str, int] | None = None,
        calls: int = 1,
        rate: float | None = None,
        limit: int | None = None,
        timeout_s: float = 30.0,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.folder = folder
        self.label = label
        self.messages_path = folder / f"{label}_messages.log"
        self.errors_path = folder / f"{label}_errors.log"
        self.screen_path = folder / f"{label}_screen.log"
        self.output_path = folder / f"{label}_output.log"
        command = [sipp_binary()]
        if remote is not None:
            command.append(f"{remote[0]}:{remote[1]}")
        command += [
            "-sf", str(scenario),
            "-i", "127.0.0.1",
            "-p", str(local_port),
            "-mp", str(media_port),
            "-s", "1000",
            "-m", str(calls),
            "-nostdin",
            "-trace_msg", "-message_file", str(self.messages_path),
            "-trace_err", "-error_file", str(self.errors_path),
            "-trace_screen", "-screen_file", str(self.screen_path),
            "-timeout", f"{int(timeout_s)}s", "-timeout_error",
        ]  # fmt: skip
        if rate is not None:
            command += ["-r", str(rate), "-rp", "1000"]
        if limit is not None:
            command += ["-l", str(limit)]
        command += list(extra)
        self.command = command
        self._output = self.output_path.open("wb")
        self.process = subprocess.Popen(
            command, cwd=folder, stdout=self._output, stderr=subprocess.STDOUT
        )

    def __repr__(self) -> str:
        return f"<Sipp {self.label} pid={self.process.pid}>"

    def diagnostics(self) -> str:
        parts = [f"SIPp {self.label}: {' '.join(self.command)}"]
        for path in (self.errors_path, self.screen_path, self.output_path):
            if path.exists():
                parts.append(f"--- {path.name}:\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def wait(self, timeout: float) -> int:
        """Its exit status; fails (after killing it) if it runs longer than ``timeout``."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(
                f"SIPp {self.label} still running after {timeout} s\n{self.diagnostics()}"
            ) from None

    def expect_success(self, timeout: float) -> None:
        """It exits 0: every call followed the scenario."""
        status = self.wait(timeout)
        assert status == 0, f"SIPp {self.label} exited {status}\n{self.diagnostics()}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
        self._output.close()

    def messages(self) -> list[SipMessage]:
        return read_message_log(self.messages_path)

    def first(
        self,
        *,
        sent: bool,
        method: str | None = None,
        status: int | None = None,
        cseq_method: str | None = None,
        call_id: str | None = None,
    ) -> SipMessage:
        """The first logged message that fits; fails if there is none."""
        for message in self.messages():
            if message.sent != sent:
                continue
            if method is not None and message.method != method:
                continue
            if status is not None and message.status != status:
                continue
            if cseq_method is not None and message.cseq_method != cseq_method:
                continue
            if call_id is not None and message.call_id != call_id:
                continue
            return message
        what = method or status
        raise AssertionError(
            f"SIPp {self.label} {'sent' if sent else 'received'} no {what}\n{self.diagnostics()}"
        )
