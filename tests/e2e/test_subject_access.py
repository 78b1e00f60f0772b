"""A subject access request end to end (issue 16, P8, P17-P19), with the real commands.

Two SIPp calls come from the same number, 01632 960123: one is taken by ann (team red),
the other, dialled to 7002, by bob (team blue).  Each party says a different turn of the
test dialogue.  Then, as a records officer and the DPO would:

1. ``recproxy sar open`` (the records officer) finds both calls by the number as the
   requester gives it (``01632 960123``; the catalog holds E.164);
2. ``recproxy sar decide`` (the DPO) releases ann's call caller-only and refuses bob's;
3. ``recproxy sar export`` writes the bundle, and ``recproxy verify-bundle`` checks it.

The bundle holds ann's call alone (bob's recording id is in none of its files); its WAV
is mono and holds the caller's audio, and nothing correlates with what ann said where
she said it (below 0.1); the MP3 decodes to the WAV's length ±50 ms; the transcript
holds the caller's words under ``Caller`` and no ``Call taker``.  Then the bundle is
tampered with — a byte of each file changed, a file removed, one added, the whole
re-signed by another key — and each time verify-bundle fails naming the file.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from proxy.records.bundle import MANIFEST, SIGNATURE, SIGNING_KEY, canonical_json
from proxy.records.bundle.format import signature_document
from proxy.storage import crypto

from . import audio
from .conftest import E2e, end_world, new_world
from .proxy_process import proxy_env, recproxy_command
from .records_world import BOB_NUMBER, Person, add_users, start_proxy
from .test_recording_control import answering, dialling, play

pytestmark = pytest.mark.sipp

RATE = audio.RATE
NUMBER = "01632960123"  # both calls come from it; the requester writes it with a space
OFFICER = Person("officer", "records_officer")
DPO = Person("dpo", "dpo")
# Turns of the dialogue (seconds, from the testdata README): who says what in which call
ANN_SAYS = (0.00, 4.27)  # "Thanks for calling Acme support, this is Sam. How can I help?"
CALLER_TO_ANN = (4.67, 8.34)  # "Hi Sam, my internet keeps dropping since yesterday."
BOB_SAYS = (8.74, 11.77)  # "Sorry about that. What is your account number?"
CALLER_TO_BOB = (12.17, 14.88)  # "It is four five seven, two two nine."


def clip(dialogue: bytes, span: tuple[float, float]) -> bytes:
    return dialogue[int(span[0] * RATE) : int(span[1] * RATE)]


@dataclass
class Case:
    e2e: E2e
    id: str
    ann_recording: str
    bob_recording: str
    ann_audio: audio.Samples  # what ann sent (decoded µ-law)
    caller_audio: audio.Samples  # what the caller sent to ann
    bundle: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run(self.e2e, *args)


def run(e2e: E2e, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """A real ``recproxy`` command against the test's configuration."""
    return subprocess.run(
        recproxy_command(*args, "--config", str(e2e.config_path)),
        cwd=e2e.folder,
        env=proxy_env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, (done.args, done.stdout, done.stderr)
    return done.stdout


def two_calls(e2e: E2e, dialogue: bytes) -> None:
    """Ann's call and bob's, at the same time, from the same number.  Each caller starts
    talking about 0.5 s after the bridge and hangs up 5.5 s after starting (SIPp plays
    the audio alongside), so every turn is recorded whole."""
    ports = e2e.ports
    ann = answering(
        e2e, "ann", play(e2e.rtp_pcap("ann.pcap", clip(dialogue, ANN_SAYS))),
        sip_port=ports.taker_sip, media_port=ports.taker_rtp,
    )  # fmt: skip
    bob = answering(
        e2e, "bob", play(e2e.rtp_pcap("bob.pcap", clip(dialogue, BOB_SAYS))),
        sip_port=ports.spare_sip(1), media_port=ports.spare_media(3), user="bob",
    )  # fmt: skip
    to_ann = dialling(
        e2e, "caller_ann", from_user=NUMBER, dialled="7001",
        audio_pcap=e2e.rtp_pcap("to_ann.pcap", clip(dialogue, CALLER_TO_ANN)),
        pre_audio_ms=2800, hold_ms=5500,
        sip_port=ports.caller_sip, media_port=ports.caller_rtp,
    )  # fmt: skip
    to_bob = dialling(
        e2e, "caller_bob", from_user=NUMBER, dialled=BOB_NUMBER,
        audio_pcap=e2e.rtp_pcap("to_bob.pcap", clip(dialogue, CALLER_TO_BOB)),
        pre_audio_ms=2800, hold_ms=5500,
        sip_port=ports.spare_sip(2), media_port=ports.spare_media(2),
    )  # fmt: skip
    for sipp_run in (to_ann, to_bob, ann, bob):
        sipp_run.expect_success(timeout=45)


@pytest.fixture(scope="module")
def case(tools: None, dialogue: bytes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Case]:
    e2e = new_world(tmp_path_factory.mktemp("subject-access"))
    try:
        proxy = start_proxy(e2e, "")
        before = datetime.now(UTC) - timedelta(minutes=1)
        two_calls(e2e, dialogue)
        proxy.wait_idle()
        add_users(lambda *a, stdin=None: run(e2e, *a, stdin=stdin), (OFFICER, DPO))
        after = datetime.now(UTC) + timedelta(minutes=1)
        opened = ok(
            run(
                e2e, "sar", "open", "--requester", "Pat Jones", "--number", "01632 960123",
                "--from", before.isoformat(), "--to", after.isoformat(),
                "--identity-check", "passport seen at reception", "--by", OFFICER.name,
                "--json",
            )
        )  # fmt: skip
        case_id = json.loads(opened)["id"]
        shown = json.loads(ok(run(e2e, "sar", "show", case_id, "--json", "--by", OFFICER.name)))
        by_operator = {
            attached["call"]["parts"][0]["operator"]: attached["recording_id"]
            for attached in shown["recordings"]
        }
        assert sorted(by_operator) == ["ann", "bob"], shown
        ann_id, bob_id = by_operator["ann"], by_operator["bob"]
        why = "the caller's own words; the call taker's voice is not theirs"
        ok(run(e2e, "sar", "decide", case_id, ann_id, "--release", "caller", "--by", DPO.name,
               "--reason", why))  # fmt: skip
        ok(run(e2e, "sar", "decide", case_id, bob_id, "--release", "refuse", "--by", DPO.name,
               "--reason", "disclosure would reveal a third party's health details"))  # fmt: skip
        bundle = e2e.folder / "bundle"
        ok(run(e2e, "sar", "export", case_id, "--out", str(bundle), "--by", DPO.name))
        yield Case(
            e2e, case_id, ann_id, bob_id,
            audio.ulaw_decode(clip(dialogue, ANN_SAYS)),
            audio.ulaw_decode(clip(dialogue, CALLER_TO_ANN)),
            bundle,
        )  # fmt: skip
    finally:
        end_world(e2e)


def manifest(bundle: Path) -> dict[str, Any]:
    loaded = json.loads((bundle / MANIFEST).read_text())
    assert isinstance(loaded, dict)
    return loaded


def named(bundle: Path, suffix: str) -> Path:
    """The one file of the bundle whose name ends with ``suffix``."""
    (found,) = [f["name"] for f in manifest(bundle)["files"] if f["name"].endswith(suffix)]
    return bundle / str(found)


def test_the_case_found_both_calls_and_holds_them_while_open(case: Case) -> None:
    shown = json.loads(ok(case.run("sar", "show", case.id, "--json", "--by", DPO.name)))
    assert shown["numbers"] == ["01632 960123"]
    assert shown["state"] == "answered"  # a bundle was exported
    decisions = {r["recording_id"]: r["release"] for r in shown["recordings"]}
    assert decisions == {case.ann_recording: "caller", case.bob_recording: "refuse"}
    deadline = datetime.fromisoformat(shown["deadline_at"].replace("Z", "+00:00"))
    assert timedelta(days=27) < deadline - datetime.now(UTC) < timedelta(days=33)
    holds = json.loads(ok(case.run("holds", "list", "--json", "--active", "--by", DPO.name)))
    held = {h["recording_id"] for h in holds if h["kind"] == "subject_access"}
    assert held == {case.ann_recording, case.bob_recording}
    assert all(h["reference"] == case.id for h in holds if h["kind"] == "subject_access")


def test_the_bundle_verifies_and_holds_only_the_released_call(case: Case) -> None:
    done = case.run("verify-bundle", str(case.bundle))
    assert done.returncode == 0, (done.stdout, done.stderr)
    document = manifest(case.bundle)
    assert document["case_id"] == case.id
    assert document["exported_by"] == DPO.name
    assert [r["recording_id"] for r in document["recordings"]] == [case.ann_recording]
    names = {f["name"] for f in document["files"]}
    assert {n.rsplit(".", 1)[-1] for n in names} >= {"wav", "mp3", "txt", "vtt"}
    for path in case.bundle.rglob("*"):  # the refused call is nowhere, not even named
        if path.is_file():
            assert case.bob_recording.encode() not in path.read_bytes(), path


def test_the_caller_only_wav_holds_the_caller_and_none_of_the_call_taker(case: Case) -> None:
    wav = audio.read_wav(named(case.bundle, ".wav"))
    assert wav.channels == 1, "a caller-only file is mono: the call taker's channel is gone"
    mono = wav.channel(0)
    audio.place(mono, case.caller_audio)  # the caller's words, all of them
    # where ann spoke (found in the custodian's stereo export of the whole recording),
    # the caller-only file holds nothing like it
    stereo_path = case.e2e.folder / "whole.wav"
    ok(case.run("export", case.ann_recording, "--format", "wav", "--channels", "stereo",
                "--out", str(stereo_path), "--purpose",
                "subject_access", "--reason", "test: locate the call taker's words",
                "--by", DPO.name))  # fmt: skip
    taker_channel = audio.read_wav(stereo_path).channel(1)
    where = audio.best_match(taker_channel, case.ann_audio)
    assert where.ncc > 0.9, where  # ann's words are on the call taker's channel...
    start = max(where.offset, 0)
    window = mono[start : start + len(case.ann_audio)].astype(np.float64)
    said = case.ann_audio[: len(window)].astype(np.float64)
    ncc = float(np.dot(window, said) / (np.linalg.norm(window) * np.linalg.norm(said) or 1.0))
    assert abs(ncc) < 0.1, ncc  # ...and not in the caller-only file
    assert audio.absent(mono, case.ann_audio)


def test_the_mp3_decodes_to_the_wav_length(case: Case) -> None:
    wav = audio.read_wav(named(case.bundle, ".wav"))
    decoded = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(named(case.bundle, ".mp3")), "-f", "s16le",
         "-ac", "1", "-ar", str(RATE), "-"],
        capture_output=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert abs(len(decoded) / 2 / RATE - wav.seconds) <= 0.05, (len(decoded), wav.seconds)


def test_the_transcript_holds_the_callers_words_only(case: Case) -> None:
    text = named(case.bundle, "transcript.txt").read_text()
    vtt = named(case.bundle, "transcript.vtt").read_text()
    assert vtt.startswith("WEBVTT")
    assert "Caller:" in text and "<v Caller>" in vtt
    assert "Call taker" not in text and "Call taker" not in vtt
    words = set("".join(c if c.isalnum() else " " for c in text.lower()).split())
    assert len(words & {"internet", "keeps", "dropping", "yesterday", "sam"}) >= 2, text
    assert not words & {"acme", "support", "thanks"}, text  # ann's words are not in it


def tamper_copy(case: Case, name: str) -> Path:
    copy = case.e2e.folder / f"tampered-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(case.bundle, copy)
    return copy


def verify_fails_naming(case: Case, bundle: Path, name: str) -> None:
    done = case.run("verify-bundle", str(bundle))
    assert done.returncode == 1, (name, done.stdout, done.stderr)
    assert name in done.stdout + done.stderr, (name, done.stdout, done.stderr)


def test_changing_any_byte_of_any_file_fails_naming_it(case: Case) -> None:
    names = [f["name"] for f in manifest(case.bundle)["files"]] + [MANIFEST, SIGNATURE]
    for name in names:
        copy = tamper_copy(case, name)
        path = copy / name
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
        verify_fails_naming(case, copy, name)


def test_a_removed_or_added_file_fails_naming_it(case: Case) -> None:
    removed = named(case.bundle, ".mp3").relative_to(case.bundle).as_posix()
    copy = tamper_copy(case, "removed")
    (copy / removed).unlink()
    verify_fails_naming(case, copy, removed)
    copy = tamper_copy(case, "added")
    (copy / "calls" / "extra.txt").parent.mkdir(parents=True, exist_ok=True)
    (copy / "calls" / "extra.txt").write_text("an extra file\n")
    verify_fails_naming(case, copy, "calls/extra.txt")


def test_a_bundle_re_signed_by_another_key_fails(case: Case) -> None:
    copy = tamper_copy(case, "re-signed")
    other = crypto.generate_signing_key()
    document = manifest(copy)
    document["signing_key_sha256"] = crypto.public_key_sha256(other.public_key())
    forged = canonical_json(document)
    (copy / MANIFEST).write_bytes(forged)
    (copy / SIGNATURE).write_bytes(signature_document(forged, other))
    (copy / SIGNING_KEY).write_bytes(crypto.public_key_pem(other.public_key()))
    done = case.run("verify-bundle", str(copy))  # trusts export.signing_public_key
    assert done.returncode == 1, (done.stdout, done.stderr)
    said = done.stdout + done.stderr
    assert SIGNING_KEY in said and "not the trusted key" in said, said


def test_bad_requests_get_a_clear_error_and_leave_no_bundle(case: Case) -> None:
    out = case.e2e.folder / "nothing"
    done = case.run("sar", "show", "SAR-1999-0001", "--by", DPO.name)
    assert done.returncode == 1 and "SAR-1999-0001" in done.stderr, done
    done = case.run("sar", "decide", case.id, "00000000-0000-4000-8000-000000000000",
                    "--release", "both", "--by", DPO.name, "--reason", "test")  # fmt: skip
    assert done.returncode == 1 and "not in case" in done.stderr, done
    # a records officer does not decide
    done = case.run("sar", "decide", case.id, case.bob_recording, "--release", "both",
                    "--by", OFFICER.name, "--reason", "test")  # fmt: skip
    assert done.returncode == 1 and "DPO" in done.stderr, done
    # a case whose only call is refused exports nothing
    now = datetime.now(UTC)
    second = json.loads(ok(case.run(
        "sar", "open", "--requester", "Pat Jones", "--number", NUMBER, "--operator", "bob",
        "--from", (now - timedelta(hours=1)).isoformat(), "--to", now.isoformat(),
        "--identity-check", "passport seen at reception", "--by", OFFICER.name, "--json",
    )))  # fmt: skip
    assert [r["recording_id"] for r in second["recordings"]] == [case.bob_recording]
    ok(case.run("sar", "decide", second["id"], case.bob_recording, "--release", "refuse",
                "--by", DPO.name, "--reason", "third party's details"))  # fmt: skip
    done = case.run("sar", "export", second["id"], "--out", str(out), "--by", DPO.name)
    assert done.returncode == 1 and "releases no call" in done.stderr, done
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]
