"""Anomaly flags raised from real accesses through the gate, read back from the audit
chain ([access] here: more than 3 playbacks or 2 refusals an hour)."""

from __future__ import annotations

from datetime import UTC, datetime

from proxy.records.flagging import CUSTODIAN_EXPORT, Flagger, access_of
from proxy.records.policy import Action

from .access_world import ALICE, BOB, MONA, SETTINGS, World, world

__all__ = ["world"]

PLAY = {"purpose": "complaint", "reason": "case 17"}


async def kinds(w: World) -> list[tuple[str, str, str | None]]:
    return [(f.kind, f.user, f.recording_id) for f in reversed(await w.catalog.flags.flags())]


async def test_more_playbacks_in_an_hour_than_allowed_raise_a_flag_each(world: World) -> None:
    rid = world.transferred
    for _ in range(3):
        world.tick(60)
        await world.gate.check(ALICE, Action.PLAY, recording_id=rid, part=1, **PLAY)
    assert await kinds(world) == []
    world.tick(60)
    await world.gate.check(ALICE, Action.PLAY, recording_id=rid, part=1, **PLAY)
    assert await kinds(world) == [("too_many_playbacks", "alice", rid)]
    world.tick(60)
    await world.gate.check(ALICE, Action.PLAY, recording_id=rid, part=1, **PLAY)
    assert len(await kinds(world)) == 2
    [flag, _] = await world.catalog.flags.flags()
    assert flag.detail["action"] == "play"
    raised = await world.catalog.audit.entries(action="flag.raise")
    assert [e.object for e in raised] == ["user:alice", "user:alice"]
    assert (await world.catalog.audit.verify()).intact


async def test_playbacks_older_than_an_hour_and_other_users_do_not_count(world: World) -> None:
    rid = world.transferred
    for _ in range(3):
        await world.gate.check(ALICE, Action.PLAY, recording_id=rid, part=1, **PLAY)
    world.tick(3601)
    for _ in range(3):
        await world.gate.check(ALICE, Action.PLAY, recording_id=rid, part=1, **PLAY)
        await world.gate.check(BOB, Action.PLAY, recording_id=rid, part=2, **PLAY)
    assert await kinds(world) == []


async def test_metadata_views_are_not_playbacks(world: World) -> None:
    for _ in range(6):
        await world.gate.check(ALICE, Action.VIEW_METADATA, recording_id=world.transferred)
    assert await kinds(world) == []


async def test_repeated_refusals_raise_a_flag(world: World) -> None:
    rid = world.single
    await world.gate.check(ALICE, Action.PLAY, recording_id=rid, **PLAY)
    await world.gate.check(ALICE, Action.VIEW_METADATA, recording_id=rid)
    assert await kinds(world) == []
    await world.gate.check(ALICE, Action.EXPORT, recording_id=rid, **PLAY)
    assert await kinds(world) == [("repeated_refusals", "alice", rid)]


async def test_an_export_outside_working_hours_raises_a_flag(world: World) -> None:
    rid = world.transferred
    await world.gate.check(MONA, Action.EXPORT, recording_id=rid, part=1, **PLAY)
    assert await kinds(world) == []  # Wednesday 11:30 in London
    world.clock.now = datetime(2024, 5, 4, 11, 0, tzinfo=UTC)  # a Saturday
    await world.gate.check(MONA, Action.EXPORT, recording_id=rid, part=1, **PLAY)
    assert await kinds(world) == [("outside_working_hours", "mona", rid)]


async def test_only_the_gates_decisions_count_as_accesses(world: World) -> None:
    await world.catalog.audit.append(actor="alice", action="export", object="recording:x")
    await world.gate.check(ALICE, Action.VIEW_METADATA, recording_id=world.transferred)
    await world.gate.check(ALICE, Action.PLAY, recording_id=world.single, **PLAY)
    found = [access_of(entry) for entry in await world.audit()]
    assert [None if access is None else access.kind.value for access in found] == [
        None,
        None,
        "refusal",
    ]


async def test_a_custodian_export_outside_working_hours_is_flagged_too(world: World) -> None:
    saturday = datetime(2024, 5, 4, 23, 0, tzinfo=UTC)
    entry = await world.catalog.audit.append(
        actor="root (by dr_smith)",
        action=CUSTODIAN_EXPORT,
        object=f"recording:{world.single}",
        reason="court order",
        at=saturday,
    )
    flagger = Flagger(world.catalog.audit, world.catalog.flags, SETTINGS)
    [flag] = await flagger.after(entry)
    assert (flag.kind, flag.user, flag.recording_id) == (
        "outside_working_hours",
        "root (by dr_smith)",
        world.single,
    )


async def test_the_byte_ranges_of_one_listening_count_as_one_playback(world: World) -> None:
    rid = world.transferred
    for _ in range(3):
        await world.gate.check(ALICE, Action.PLAY, recording_id=rid, part=1, **PLAY)
        for _second in range(10):
            world.tick(1)
            await world.gate.check(
                ALICE, Action.PLAY, recording_id=rid, part=1, continuation=True, **PLAY
            )
    assert await kinds(world) == []
    plays = [e for e in await world.audit() if e.detail.get("action") == "play"]
    assert len(plays) == 33  # every range a decision of its own, audited
    assert sum(1 for e in plays if e.detail.get("continuation")) == 30
    await world.gate.check(ALICE, Action.PLAY, recording_id=rid, part=1, **PLAY)
    assert await kinds(world) == [("too_many_playbacks", "alice", rid)]


async def test_a_continuation_of_no_counted_listening_counts(world: World) -> None:
    # never asking for byte 0 does not dodge the count; another purpose is another
    # listening
    rid = world.transferred
    await world.gate.check(ALICE, Action.PLAY, recording_id=rid, part=1, **PLAY)
    other = {"purpose": "training", "reason": "case 17"}
    third = {"purpose": "quality", "reason": "case 17"}
    for asked in (other, PLAY, other, third, third):
        await world.gate.check(
            ALICE, Action.PLAY, recording_id=rid, part=1, continuation=True, **asked
        )
    assert await kinds(world) == []  # three listenings
    await world.gate.check(ALICE, Action.PLAY, recording_id=rid, continuation=True, **PLAY)
    assert await kinds(world) == []  # the whole recording: refused (part 2 is bob's)
    fourth = {"purpose": "accuracy", "reason": "case 17"}
    await world.gate.check(
        ALICE, Action.PLAY, recording_id=rid, part=1, continuation=True, **fourth
    )
    assert await kinds(world) == [("too_many_playbacks", "alice", rid)]


async def test_a_player_pages_waveform_is_audited_but_not_another_playback(world: World) -> None:
    # each page view: the player's request and the waveform beside it; three views are
    # three playbacks, not six, and every read is in the audit chain
    rid = world.transferred
    for _ in range(3):
        world.tick(60)
        await world.gate.check(ALICE, Action.PLAY, recording_id=rid, part=1, **PLAY)
        await world.gate.check(ALICE, Action.PLAY, recording_id=rid, part=1, waveform=True, **PLAY)
    assert await kinds(world) == []
    plays = [e for e in await world.audit() if e.detail.get("action") == "play"]
    assert [bool(e.detail.get("waveform")) for e in plays] == [False, True] * 3
    assert all(e.action == "access.allowed" for e in plays)
    world.tick(60)  # a fourth playback is one too many
    await world.gate.check(ALICE, Action.PLAY, recording_id=rid, part=1, **PLAY)
    assert await kinds(world) == [("too_many_playbacks", "alice", rid)]


async def test_a_refused_waveform_is_a_refusal_like_any_other(world: World) -> None:
    rid = world.single  # not alice's
    await world.gate.check(ALICE, Action.PLAY, recording_id=rid, waveform=True, **PLAY)
    await world.gate.check(ALICE, Action.PLAY, recording_id=rid, waveform=True, **PLAY)
    assert await kinds(world) == []
    await world.gate.check(ALICE, Action.PLAY, recording_id=rid, waveform=True, **PLAY)
    assert await kinds(world) == [("repeated_refusals", "alice", rid)]
