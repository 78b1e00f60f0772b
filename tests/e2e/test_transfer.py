"""Blind and attended transfer end to end (issue 15, issue 18, P9): real ``recproxy
serve``, SIPp as the caller and as two call takers, and the proxy's own export to read
back what it recorded.

1. Call taker 1 (ann, team red) sends REFER mid-call to call taker 2's phone (bob, team
   blue): 202, NOTIFY ``100 Trying``, bob is invited and answers, NOTIFY ``200 OK``
   ends the subscription, ann gets BYE.  Attended (RFC 5589 §7): ann's ``Refer-To``
   embeds ``Replaces`` naming her consultation call with bob, and bob's INVITE carries
   it with ``Require: replaces``; the rest is the same.  One complete recording with two
   parts (ann's, then bob's, meeting at the transfer); in the export the call-taker
   channel holds ann's audio in part 1 only and bob's in part 2 only, and the caller's
   channel is continuous across the transfer.
2. The target is busy (486): the NOTIFY says so, the caller stays with ann, the
   recording has one part, ann's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from . import audio, sipp
from .conftest import E2e
from .proxy_process import ProxySettings, export_wav, list_recordings, query
from .test_recording_control import KEEP_DIALOG, pause, play

pytestmark = pytest.mark.sipp

RATE = audio.RATE


def operators(e2e: E2e) -> str:
    ann, bob = (hashlib.sha256(name.encode()).hexdigest() for name in ("ann-token", "bob-token"))
    return f"""\
[[operators]]
name = "ann"
token_sha256 = "{ann}"
identities = ["sip:calltaker@127.0.0.1:{e2e.ports.taker_sip}"]
team = "red"

[[operators]]
name = "bob"
token_sha256 = "{bob}"
identities = ["sip:bob@127.0.0.1:{e2e.ports.spare_sip(0)}"]
team = "blue"
"""


def refer_and_follow(target: str) -> str:
    """Call taker 1's REFER in its dialog (needs ``KEEP_DIALOG``), the 202, and the two
    NOTIFYs answered 200 (their bodies are read from SIPp's message log)."""
    ok = """\
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
"""
    return f"""\
  <send retrans="500">
    <![CDATA[

      REFER [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: [$to_hdr];tag=[pid]SIPpTag01[call_number]
      To: [$from_hdr]
      Call-ID: [call_id]
      CSeq: 2 REFER
      Contact: <sip:calltaker@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Refer-To: <{target}>
      Referred-By: <sip:calltaker@[local_ip]:[local_port]>
      Content-Length: 0

    ]]>
  </send>
  <recv response="202"/>
  <recv request="NOTIFY"/>
{ok}  <recv request="NOTIFY"/>
{ok}"""


def taker(
    e2e: E2e, label: str, steps: str, *, sip_port: int, media_port: int, user: str
) -> sipp.Sipp:
    values = {
        "ring_ms": 300,
        "user": user,
        "actions": steps,
        "invite_actions": KEEP_DIALOG if "REFER" in steps else "",
    }
    return e2e.run_sipp(label, "uas_actions", values, local_port=sip_port, media_port=media_port)


def sipfrags(run: sipp.Sipp) -> list[tuple[str, str | None]]:
    """The NOTIFYs a SIPp call taker received: (sipfrag status line, Subscription-State)."""
    found = []
    for message in run.messages():
        if not message.sent and message.method == "NOTIFY":
            assert message.header("Event") == "refer", message.text
            assert message.header("Content-Type") == "message/sipfrag;version=2.0"
            body = message.text.split("\n\n", 1)[1].strip()
            found.append((body, message.header("Subscription-State")))
    return found


def parts_of(proxy_catalog: Path, recording_id: str) -> list[dict[str, object]]:
    rows = query(
        proxy_catalog, "SELECT * FROM recording_parts WHERE recording_id = ? ORDER BY part",
        recording_id,
    )  # fmt: skip
    return [dict(row) for row in rows]


#: The consultation call between ann's and bob's phones, as ann's Refer-To names it
CONSULTATION = "ann-to-bob@127.0.0.1;to-tag=bob-7;from-tag=ann-3"


@pytest.mark.parametrize("kind", ["blind", "attended"])
def test_a_transfer_records_two_parts_each_with_its_call_takers_audio(
    e2e: E2e, dialogue: bytes, kind: str
) -> None:
    proxy = e2e.proxy(ProxySettings(extra=operators(e2e)))
    bob_phone = f"sip:bob@127.0.0.1:{e2e.ports.spare_sip(0)}"
    refer_to = bob_phone
    if kind == "attended":
        embedded = CONSULTATION.replace("@", "%40").replace(";", "%3B").replace("=", "%3D")
        refer_to = f"{bob_phone}?Replaces={embedded}"
    caller_audio = dialogue[0 : 8 * RATE]
    ann_audio = dialogue[12 * RATE : 15 * RATE]
    bob_audio = dialogue[18 * RATE : 21 * RATE]
    bob = taker(
        e2e, "bob", play(e2e.rtp_pcap("bob.pcap", bob_audio)),
        sip_port=e2e.ports.spare_sip(0), media_port=e2e.ports.spare_media(1), user="bob",
    )  # fmt: skip
    ann = taker(
        e2e, "ann", play(e2e.rtp_pcap("ann.pcap", ann_audio)) + pause(3500)
        + refer_and_follow(refer_to),
        sip_port=e2e.ports.taker_sip, media_port=e2e.ports.taker_rtp, user="calltaker",
    )  # fmt: skip
    # the caller talks from 0.5 s after the bridge (2 s notice, 0.3 s ringing) for 8 s
    caller = e2e.caller(
        audio_pcap=e2e.rtp_pcap("caller.pcap", caller_audio), pre_audio_ms=2800, hold_ms=9500
    )
    caller.expect_success(timeout=40)
    ann.expect_success(timeout=10)
    bob.expect_success(timeout=10)
    proxy.wait_idle()

    # RFC 3515: 202, then the progress as sipfrag, the last one ending the subscription
    assert ann.first(sent=False, status=202, cseq_method="REFER")
    assert sipfrags(ann) == [
        ("SIP/2.0 100 Trying", "active;expires=60"),
        ("SIP/2.0 200 OK", "terminated;reason=noresource"),
    ]
    # bob was invited after the REFER, and ann's leg ended with our BYE only after bob
    # answered. Each comparison is causal (one process's send before another's receipt):
    # two receipts in two SIPp processes have no order to assert. Each SIPp stamps its
    # log around a send or a receipt, not at it: 5 ms of slack (as in test_failover).
    refer_sent = ann.first(sent=True, method="REFER").time
    bob_invite = bob.first(sent=False, method="INVITE")
    assert bob_invite.time >= refer_sent - 0.005
    if kind == "attended":  # bob's phone is asked to replace the consultation, not ring
        assert bob_invite.header("Replaces") == CONSULTATION, bob_invite.text
        assert "replaces" in (bob_invite.header("Require") or ""), bob_invite.text
    else:
        assert bob_invite.header("Replaces") is None, bob_invite.text
    bob_answered = bob.first(sent=True, status=200, cseq_method="INVITE").time
    assert ann.first(sent=False, method="BYE").time >= bob_answered - 0.005
    # the caller's call went on: it hung up itself, once
    assert caller.first(sent=True, method="BYE")

    (row,) = list_recordings(e2e.config_path)
    assert row["state"] == "complete", row
    rid = str(row["id"])
    parts = parts_of(proxy.catalog_path, rid)
    assert [(p["part"], p["operator"], p["team"]) for p in parts] == [
        (1, "ann", "red"),
        (2, "bob", "blue"),
    ], parts
    (recording,) = query(proxy.catalog_path, "SELECT * FROM recordings WHERE id = ?", rid)
    started, ended = int(recording["started_at"]), int(recording["ended_at"])
    first, second = parts
    assert first["started_at"] == started and first["ended_at"] == second["started_at"]
    assert second["ended_at"] is None  # the last part ends with the recording
    # the transfer happened when bob answered (SIPp's clock and the catalog's agree)
    bob_answered_ms = bob.first(sent=True, status=200, cseq_method="INVITE").time * 1000
    assert abs(int(str(second["started_at"])) - bob_answered_ms) < 300, (second, bob_answered_ms)
    events = query(
        proxy.catalog_path, "SELECT action, actor FROM recording_events WHERE recording_id = ?",
        rid,
    )  # fmt: skip
    assert ("transfer", "ann") in [(e["action"], e["actor"]) for e in events]

    wav = audio.read_wav(export_wav(e2e.config_path, rid, e2e.folder / "call.wav"))
    assert abs(wav.seconds - (ended - started) / 1000) <= 0.2
    cut = int((int(str(second["started_at"])) - started) / 1000 * RATE)
    taker_channel, caller_channel = wav.channel(1), wav.channel(0)
    ann_pcm, bob_pcm = audio.ulaw_decode(ann_audio), audio.ulaw_decode(bob_audio)
    # part 1 holds all of ann and none of bob; part 2 all of bob and none of ann
    in_part_1 = audio.place(taker_channel[:cut], ann_pcm)
    in_part_2 = audio.place(taker_channel[cut:], bob_pcm)
    assert len(in_part_1.good) >= 0.9 * in_part_1.voiced, in_part_1
    assert len(in_part_2.good) >= 0.9 * in_part_2.voiced, in_part_2
    assert audio.absent(taker_channel[:cut], bob_pcm), "bob's audio in part 1"
    assert audio.absent(taker_channel[cut:], ann_pcm), "ann's audio in part 2"
    # the caller's channel is one continuous stream across the transfer
    caller_pcm = audio.ulaw_decode(caller_audio)
    continuous = audio.place(caller_channel, caller_pcm)
    assert continuous.start_s * RATE < cut < (continuous.start_s + 8) * RATE, continuous
    assert len(continuous.inside) == continuous.voiced, continuous
    assert len(continuous.good) >= 0.9 * continuous.voiced, continuous


def test_a_busy_target_leaves_the_caller_with_the_first_call_taker(
    e2e: E2e, dialogue: bytes
) -> None:
    proxy = e2e.proxy(ProxySettings(extra=operators(e2e)))
    bob_phone = f"sip:bob@127.0.0.1:{e2e.ports.spare_sip(0)}"
    bob = e2e.run_sipp(
        "bob", "uas_busy", {},
        local_port=e2e.ports.spare_sip(0), media_port=e2e.ports.spare_media(1),
    )  # fmt: skip
    ann_audio = dialogue[12 * RATE : 18 * RATE]
    ann = taker(
        e2e, "ann", pause(1000) + refer_and_follow(bob_phone) + pause(500)
        + play(e2e.rtp_pcap("ann.pcap", ann_audio)),
        sip_port=e2e.ports.taker_sip, media_port=e2e.ports.taker_rtp, user="calltaker",
    )  # fmt: skip
    caller = e2e.caller(pre_audio_ms=2800, hold_ms=8500)
    caller.expect_success(timeout=40)
    ann.expect_success(timeout=10)
    bob.expect_success(timeout=10)
    proxy.wait_idle()

    assert sipfrags(ann) == [
        ("SIP/2.0 100 Trying", "active;expires=60"),
        ("SIP/2.0 486 Busy Here", "terminated;reason=noresource"),
    ]
    # ann kept the call until the caller hung up: our BYE to ann came with the caller's
    # (SIPp logs a message a fraction of a millisecond after it sends it), not at the 486
    ann_bye = ann.first(sent=False, method="BYE").time
    assert abs(ann_bye - caller.first(sent=True, method="BYE").time) < 0.1
    assert ann_bye - bob.first(sent=True, status=486).time > 5
    (row,) = list_recordings(e2e.config_path)
    assert row["state"] == "complete", row
    rid = str(row["id"])
    parts = parts_of(proxy.catalog_path, rid)
    assert [(p["part"], p["operator"], p["team"]) for p in parts] == [(1, "ann", "red")]
    # ann's audio after the failed transfer is on the call-taker channel
    wav = audio.read_wav(export_wav(e2e.config_path, rid, e2e.folder / "call.wav"))
    kept = audio.place(wav.channel(1), audio.ulaw_decode(ann_audio))
    assert len(kept.good) >= 0.9 * kept.voiced, kept
