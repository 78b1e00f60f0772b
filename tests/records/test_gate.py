"""The gate: the policy asked with the catalog's facts, every decision audited once; and
the layer rule that nothing else asks the policy."""

from __future__ import annotations

import ast
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

import proxy
from proxy.recording_state import RecordingState
from proxy.records.errors import AccessDenied, InvalidAccessRequest, RecordNotFound
from proxy.records.gate import ALLOWED, REFUSED, require
from proxy.records.policy import Action, Actor, Decision
from proxy.roles import Role
from proxy.storage.catalog import NewAccessRequest

from .access_world import ADAM, ALICE, BOB, DEE, MAX, MONA, OLIVE, World, world

__all__ = ["world"]

PLAY = {"purpose": "complaint", "reason": "case 17"}


async def decisions(w: World) -> list[tuple[str, str, str | None, str]]:
    return [
        (e.actor, e.action, e.object, e.detail["rule"])
        for e in await w.audit()
        if e.action in (ALLOWED, REFUSED)
    ]


async def test_staff_hear_their_own_part_and_the_entry_says_so(world: World) -> None:
    rid = world.transferred
    decision = await world.gate.check(ALICE, Action.PLAY, recording_id=rid, part=1, **PLAY)
    assert decision == Decision(True, "audio.own_call", decision.reason)
    [entry] = await world.audit()
    assert (entry.actor, entry.action, entry.object, entry.reason) == (
        "alice",
        ALLOWED,
        f"recording:{rid}",
        "case 17",
    )
    assert entry.detail == {
        "action": "play",
        "rule": "audio.own_call",
        "purpose": "complaint",
        "part": 1,
        "parts": {"1": "audio.own_call"},
    }
    assert entry.at == world.clock.now


async def test_the_whole_of_a_transferred_call_needs_every_part(world: World) -> None:
    rid = world.transferred
    decision = await world.gate.check(ALICE, Action.PLAY, recording_id=rid, **PLAY)
    assert (decision.allowed, decision.rule) == (False, "grant.none")
    [entry] = await world.audit()
    assert entry.action == REFUSED
    assert entry.detail["parts"] == {"1": "audio.own_call", "2": "grant.none"}
    assert entry.detail["part"] is None


async def test_a_managers_team_part_only(world: World) -> None:
    rid = world.transferred
    first = await world.gate.check(MONA, Action.EXPORT, recording_id=rid, part=1, **PLAY)
    second = await world.gate.check(MONA, Action.EXPORT, recording_id=rid, part="2", **PLAY)
    whole = await world.gate.check(MONA, Action.EXPORT, recording_id=rid, **PLAY)
    assert [(d.allowed, d.rule) for d in (first, second, whole)] == [
        (True, "audio.team_call"),
        (False, "grant.none"),
        (False, "grant.none"),
    ]
    assert [d[1] for d in await decisions(world)] == [ALLOWED, REFUSED, REFUSED]


async def test_metadata_shows_when_any_part_may_be_seen(world: World) -> None:
    seen = await world.gate.check(BOB, Action.VIEW_METADATA, recording_id=world.transferred)
    unseen = await world.gate.check(BOB, Action.VIEW_METADATA, recording_id=world.single)
    officer = await world.gate.check(OLIVE, Action.VIEW_METADATA, recording_id=world.single)
    assert [(d.allowed, d.rule) for d in (seen, unseen, officer)] == [
        (True, "metadata.own_call"),
        (False, "metadata.not_yours"),
        (True, "metadata.all"),
    ]


async def test_a_grant_opens_audio_until_it_expires(world: World) -> None:
    rid = world.single
    refused = await world.gate.check(OLIVE, Action.PLAY, recording_id=rid, **PLAY)
    assert refused.rule == "grant.none"
    asked = await world.catalog.access_requests.request(
        NewAccessRequest(rid, "olive", "complaint", "case 17")
    )
    await world.catalog.access_requests.decide(
        asked.id, approve=True, by="dee", reason="ok", expires_at=world.clock.now + timedelta(1)
    )
    granted = await world.gate.check(OLIVE, Action.PLAY, recording_id=rid, **PLAY)
    other_purpose = await world.gate.check(
        OLIVE, Action.PLAY, recording_id=rid, purpose="training", reason="x"
    )
    world.tick(86400)
    expired = await world.gate.check(OLIVE, Action.PLAY, recording_id=rid, **PLAY)
    assert [d.rule for d in (granted, other_purpose, expired)] == [
        "audio.granted",
        "grant.none",
        "grant.expired",
    ]


@pytest.mark.parametrize(
    ("purpose", "reason", "rule"),
    [
        (None, "x", "purpose.missing"),
        ("  ", "x", "purpose.missing"),
        ("curiosity", "x", "purpose.unknown"),
        ("complaint", None, "reason.missing"),
        ("complaint", " ", "reason.missing"),
    ],
)
async def test_audio_without_purpose_or_reason_is_refused(
    world: World, purpose: str | None, reason: str | None, rule: str
) -> None:
    decision = await world.gate.check(
        ALICE, Action.PLAY, recording_id=world.transferred, part=1, purpose=purpose, reason=reason
    )
    assert (decision.allowed, decision.rule) == (False, rule)
    [entry] = await world.audit()
    assert entry.action == REFUSED and entry.detail["rule"] == rule
    assert entry.reason == (reason if reason and reason.strip() else None)


@pytest.mark.parametrize(
    ("state", "rule"),
    [
        (RecordingState.DISCARDED, "recording.discarded"),
        (RecordingState.DELETING, "recording.deleted"),
        (RecordingState.DELETED, "recording.deleted"),
    ],
)
async def test_no_audio_of_a_recording_whose_audio_is_gone(
    world: World, state: RecordingState, rule: str
) -> None:
    with sqlite3.connect(world.catalog.path) as db:
        db.execute("UPDATE recordings SET state = ? WHERE id = ?", (state.value, world.single))
    carl = Actor("carl", Role.STAFF, operator="carl")
    decision = await world.gate.check(carl, Action.PLAY, recording_id=world.single, **PLAY)
    assert (decision.allowed, decision.rule) == (False, rule)


async def test_a_disabled_account_is_refused_everything(world: World) -> None:
    gone = Actor("alice", Role.STAFF, operator="alice", disabled=True)
    decision = await world.gate.check(gone, Action.PLAY, recording_id=world.transferred, part=1)
    assert decision.rule == "account.disabled"


async def test_unknown_recordings_and_parts_are_not_found_and_not_audited(world: World) -> None:
    with pytest.raises(RecordNotFound, match="does not exist"):
        await world.gate.check(OLIVE, Action.VIEW_METADATA, recording_id="no-such-id")
    with pytest.raises(RecordNotFound, match="has no part 3"):
        await world.gate.check(ALICE, Action.PLAY, recording_id=world.transferred, part=3)
    assert await world.audit() == []


@pytest.mark.parametrize("part", [0, -1, "two", 1.5, True, "", "²", 2**40])
async def test_a_malformed_part_is_bad_input(world: World, part: object) -> None:
    with pytest.raises(InvalidAccessRequest, match="part must be a whole number"):
        await world.gate.check(ALICE, Action.PLAY, recording_id=world.transferred, part=part)
    assert await world.audit() == []


async def test_a_recording_action_needs_a_recording(world: World) -> None:
    with pytest.raises(InvalidAccessRequest, match="name one"):
        await world.gate.check(ALICE, Action.PLAY, **PLAY)
    assert await world.audit() == []


async def test_actions_on_no_recording_are_decided_and_audited_too(world: World) -> None:
    allowed = await world.gate.check(DEE, Action.VIEW_AUDIT)
    refused = await world.gate.check(OLIVE, Action.VIEW_AUDIT)
    assert [(d.allowed, d.rule) for d in (allowed, refused)] == [
        (True, "audit.allowed"),
        (False, "audit.dpo_only"),
    ]
    assert await decisions(world) == [
        ("dee", ALLOWED, None, "audit.allowed"),
        ("olive", REFUSED, None, "audit.dpo_only"),
    ]
    [_, entry] = await world.audit()
    assert "parts" not in entry.detail


async def test_require_raises_the_refusal_with_its_decision(world: World) -> None:
    with pytest.raises(AccessDenied) as denied:
        require(await world.gate.check(MAX, Action.PLAY, recording_id=world.single, **PLAY))
    assert denied.value.decision.rule == "grant.none"
    assert "(grant.none)" in str(denied.value)
    allowed = require(await world.gate.check(MAX, Action.VERIFY_INTEGRITY))
    assert allowed.rule == "integrity.allowed"


async def test_every_decision_leaves_exactly_one_entry_and_the_chain_verifies(
    world: World,
) -> None:
    asked = 0
    for actor in (ALICE, BOB, MONA, OLIVE, DEE, ADAM, MAX):
        for action in (Action.SEARCH, Action.VIEW_METADATA, Action.PLAY, Action.EXPORT):
            for rid in (world.transferred, world.single):
                for part in (None, 1):
                    await world.gate.check(actor, action, recording_id=rid, part=part, **PLAY)
                    asked += 1
                    assert len(await decisions(world)) == asked
    assert (await world.catalog.audit.verify()).intact  # flags raised on the way included


def _policy_decide_users(root: Path) -> list[str]:
    """Modules of ``root`` that import the policy's ``decide`` or call ``policy.decide``."""
    users = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            imported = (
                isinstance(node, ast.ImportFrom)
                and (node.module or "").endswith("policy")
                and any(alias.name == "decide" for alias in node.names)
            )
            called = (
                isinstance(node, ast.Attribute)
                and node.attr == "decide"
                and isinstance(node.value, ast.Name)
                and node.value.id == "policy"
            )
            if imported or called:
                users.append(path.relative_to(root).as_posix())
                break
    return users


def test_only_the_gate_asks_the_policy() -> None:
    assert _policy_decide_users(Path(proxy.__file__).parent) == ["records/gate.py"]


def test_the_rule_finds_a_second_asker(tmp_path: Path) -> None:
    (tmp_path / "gate.py").write_text("from .policy import decide\n")
    (tmp_path / "rogue.py").write_text("from . import policy\npolicy.decide(q, ())\n")
    (tmp_path / "fine.py").write_text("from .policy import Decision\n")
    assert _policy_decide_users(tmp_path) == ["gate.py", "rogue.py"]
