"""The access policy's role matrix, cell by cell, and the rules around it: nobody
approves their own request, grants expire and cover one recording and one purpose, a
disabled account does nothing, and (a property) no input ever hands out audio without a
configured purpose and a reason."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.config import DEFAULT_PURPOSES
from proxy.records.policy import (
    AUDIO_ACTIONS,
    PART_ACTIONS,
    RULES,
    AccessQuery,
    Action,
    Actor,
    BulkApproval,
    Decision,
    Grant,
    Role,
    Target,
    decide,
)

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
PURPOSE, BAD_PURPOSE, REASON = "complaint", "browsing", "complaint ref 4711 from the caller"
RECORDING = "rec-1"

# The actor in every cell is "me": operator op-me, on team red.  The part is the one I
# took (own), a teammate's (team), or another team's (other).
PARTS = {
    "own": Target(RECORDING, 0, operator="op-me", team="red"),
    "team": Target(RECORDING, 0, operator="op-mate", team="red"),
    "other": Target(RECORDING, 0, operator="op-far", team="blue"),
}
GRANT = Grant(RECORDING, PURPOSE, NOW + timedelta(days=7), approved_by="officer")

# One block per group of actions that share their answers.  A row is a role, for both
# grant states, or ``role-grant`` / ``role+grant`` for one.  Its cells are the rule for
# the own, team and other part with a valid purpose, then for the other purpose ``=``
# (the same three) or one rule for all three; a row of one cell holds for all of them.
# ``+`` allowed, ``-`` refused.
MATRIX = """
search view_metadata
staff-grant        +metadata.own_call   -metadata.not_yours  -metadata.not_yours  =
staff+grant        +metadata.own_call   +metadata.granted    +metadata.granted    =
manager-grant      +metadata.team_call  +metadata.team_call  -metadata.not_yours  =
manager+grant      +metadata.team_call  +metadata.team_call  +metadata.granted    =
records_officer    +metadata.all
dpo                +metadata.all
admin-grant        -metadata.not_yours
admin+grant        +metadata.granted
maintenance-grant  -metadata.not_yours
maintenance+grant  +metadata.granted

play export
staff-grant            +audio.own_call   -grant.none       -grant.none     -purpose.unknown
staff+grant            +audio.own_call   +audio.granted    +audio.granted  -purpose.unknown
manager-grant          +audio.team_call  +audio.team_call  -grant.none     -purpose.unknown
manager+grant          +audio.team_call  +audio.team_call  +audio.granted  -purpose.unknown
records_officer-grant  -grant.none       -grant.none       -grant.none     -purpose.unknown
records_officer+grant  +audio.granted    +audio.granted    +audio.granted  -purpose.unknown
dpo-grant              -grant.none       -grant.none       -grant.none     -purpose.unknown
dpo+grant              +audio.granted    +audio.granted    +audio.granted  -purpose.unknown
admin-grant            -grant.none       -grant.none       -grant.none     -purpose.unknown
admin+grant            +audio.granted    +audio.granted    +audio.granted  -purpose.unknown
maintenance-grant      -grant.none       -grant.none       -grant.none     -purpose.unknown
maintenance+grant      +audio.granted    +audio.granted    +audio.granted  -purpose.unknown

request_access
staff            +request.allowed  +request.allowed  +request.allowed  -purpose.unknown
manager          +request.allowed  +request.allowed  +request.allowed  -purpose.unknown
records_officer  +request.allowed  +request.allowed  +request.allowed  -purpose.unknown
dpo              +request.allowed  +request.allowed  +request.allowed  -purpose.unknown
admin            +request.allowed  +request.allowed  +request.allowed  -purpose.unknown
maintenance      +request.allowed  +request.allowed  +request.allowed  -purpose.unknown

approve_access
staff            -approve.not_officer
manager          -approve.not_officer
records_officer  +approve.allowed
dpo              +approve.allowed
admin            -approve.not_officer
maintenance      -approve.not_officer

place_hold release_hold view_holds
staff            -holds.not_officer
manager          -holds.not_officer
records_officer  +holds.allowed
dpo              +holds.allowed
admin            -holds.not_officer
maintenance      -holds.not_officer

view_audit
staff            -audit.dpo_only
manager          -audit.dpo_only
records_officer  -audit.dpo_only
dpo              +audit.allowed
admin            -audit.dpo_only
maintenance      -audit.dpo_only

view_flags
staff            -flags.dpo_only
manager          -flags.dpo_only
records_officer  -flags.dpo_only
dpo              +flags.allowed
admin            -flags.dpo_only
maintenance      -flags.dpo_only

verify_integrity
staff            -integrity.not_permitted
manager          -integrity.not_permitted
records_officer  +integrity.allowed
dpo              +integrity.allowed
admin            +integrity.allowed
maintenance      +integrity.allowed

manage_users
staff            -users.admin_only
manager          -users.admin_only
records_officer  -users.admin_only
dpo              -users.admin_only
admin            +users.allowed
maintenance      -users.admin_only

manage_config
staff            -config.admin_only
manager          -config.admin_only
records_officer  -config.admin_only
dpo              -config.admin_only
admin            +config.allowed
maintenance      -config.admin_only

open_sar view_sar export_sar close_sar
staff            -sar.not_officer
manager          -sar.not_officer
records_officer  +sar.allowed
dpo              +sar.allowed
admin            -sar.not_officer
maintenance      -sar.not_officer

decide_sar
staff            -sar.decide_dpo_only
manager          -sar.decide_dpo_only
records_officer  -sar.decide_dpo_only
dpo              +sar.decide_allowed
admin            -sar.decide_dpo_only
maintenance      -sar.decide_dpo_only
"""

# Bulk export and listening, about no one part: without an approval, with a DPO's, with
# an expired one, then with the other purpose (and the DPO's approval).
BULK = """
bulk_export bulk_play
staff            -bulk.not_permitted
manager          -bulk.not_permitted
records_officer  -bulk.no_approval  +bulk.approved  -bulk.no_approval  -purpose.unknown
dpo              -bulk.no_approval  +bulk.approved  -bulk.no_approval  -purpose.unknown
admin            -bulk.not_permitted
maintenance      -bulk.not_permitted

request_bulk
staff            -bulk.not_permitted
manager          -bulk.not_permitted
records_officer  +bulk.request_allowed +bulk.request_allowed +bulk.request_allowed -purpose.unknown
dpo              +bulk.request_allowed +bulk.request_allowed +bulk.request_allowed -purpose.unknown
admin            -bulk.not_permitted
maintenance      -bulk.not_permitted

approve_bulk
staff            -bulk.approve_dpo_only
manager          -bulk.approve_dpo_only
records_officer  -bulk.approve_dpo_only
dpo              +bulk.approve_allowed
admin            -bulk.approve_dpo_only
maintenance      -bulk.approve_dpo_only
"""
APPROVALS = (
    None,
    BulkApproval("dpo-2", NOW + timedelta(hours=1)),
    BulkApproval("dpo-2", NOW - timedelta(seconds=1)),
    BulkApproval("dpo-2", NOW + timedelta(hours=1)),
)
BULK_PURPOSES = (PURPOSE, PURPOSE, PURPOSE, BAD_PURPOSE)

Row = tuple[str, str, tuple[bool, ...], list[str]]  # action, role, grant states, cells
LABEL = re.compile(r"([a-z_]+)([+-]grant)?")


def rows(table: str) -> list[Row]:
    """Every row of ``table`` once per action of its block, with its grant states and
    its four cells (one cell written for all four is repeated)."""
    found: list[Row] = []
    for block in table.strip().split("\n\n"):
        header, *lines = block.splitlines()
        for line in lines:
            label, *cells = line.split()
            match = LABEL.fullmatch(label)
            assert match is not None and len(cells) in (1, 4), line
            grant_states = (False, True) if match[2] is None else (match[2] == "+grant",)
            found.extend(
                (action, match[1], grant_states, cells * 4 if len(cells) == 1 else cells)
                for action in header.split()
            )
    return found


def actor(role: str, *, name: str = "me", disabled: bool = False) -> Actor:
    return Actor(name, Role(role), frozenset({"red"}), "op-me", disabled)


def matrix_cases() -> list[tuple[str, str, bool, str, str, str]]:
    """(action, role, grant, part, purpose, expected) for every cell of MATRIX."""
    cases = []
    for action, role, grant_states, cells in rows(MATRIX):
        for grant in grant_states:
            for column, part in enumerate(PARTS):
                other_purpose = cells[column] if cells[3] == "=" else cells[3]
                cases.append((action, role, grant, part, PURPOSE, cells[column]))
                cases.append((action, role, grant, part, BAD_PURPOSE, other_purpose))
    return cases


def ask(role: str, action: str | Action, *, disabled: bool = False, **given: Any) -> str:
    """``+rule`` or ``-rule`` for "me" in ``role``: my own part, a valid purpose and a
    reason, someone else's request, unless ``given`` says otherwise."""
    fields: dict[str, Any] = {
        "target": PARTS["own"],
        "purpose": PURPOSE,
        "reason": REASON,
        "requester": "someone-else",
        **given,
    }
    query = AccessQuery(actor(role, disabled=disabled), Action(action), NOW, **fields)
    return show(decide(query, DEFAULT_PURPOSES))


def show(decision: Decision) -> str:
    return ("+" if decision.allowed else "-") + decision.rule


@pytest.mark.parametrize("action, role, grant, part, purpose, expected", matrix_cases())
def test_role_matrix(
    action: str, role: str, grant: bool, part: str, purpose: str, expected: str
) -> None:
    grants = (GRANT,) if grant else ()
    assert ask(role, action, target=PARTS[part], purpose=purpose, grants=grants) == expected


def test_the_matrix_covers_every_role_action_part_grant_and_purpose() -> None:
    cells = {(a, r, g, p, u) for a, r, g, p, u, _ in matrix_cases()}
    part_actions = {a for a in Action if a.value not in {row[0] for row in rows(BULK)}}
    assert len(cells) == len(part_actions) * len(Role) * 2 * len(PARTS) * 2
    assert len(cells) == len(matrix_cases()), "a cell is given twice"


@pytest.mark.parametrize(
    "action, role, column, expected",
    [(a, r, column, cells[column]) for a, r, _, cells in rows(BULK) for column in range(4)],
)
def test_bulk_needs_a_dpo_approval(action: str, role: str, column: int, expected: str) -> None:
    given = {"purpose": BULK_PURPOSES[column], "bulk_approval": APPROVALS[column]}
    assert ask(role, action, target=None, **given) == expected


@pytest.mark.parametrize("action", [Action.BULK_EXPORT, Action.BULK_PLAY])
def test_a_dpo_does_not_approve_their_own_bulk_export(action: Action) -> None:
    approval = BulkApproval("me", NOW + timedelta(hours=1))
    assert ask("dpo", action, target=None, bulk_approval=approval) == "-bulk.no_approval"


@pytest.mark.parametrize("role", ["records_officer", "dpo"])
def test_nobody_approves_their_own_request(role: str) -> None:
    assert ask(role, Action.APPROVE_ACCESS, requester="me") == "-approve.own_request"


def test_a_dpo_does_not_approve_their_own_bulk_request() -> None:
    assert ask("dpo", Action.APPROVE_BULK, requester="me") == "-approve.own_request"


def play(grant: Grant, *, purpose: str = PURPOSE) -> str:
    """A records officer (no call of their own) plays another team's part."""
    return ask("records_officer", "play", target=PARTS["other"], purpose=purpose, grants=(grant,))


@pytest.mark.parametrize("expires", [NOW, NOW - timedelta(seconds=1)])
def test_an_expired_grant_is_refused(expires: datetime) -> None:
    assert (play(Grant(RECORDING, PURPOSE, expires, "officer"))) == "-grant.expired"


def test_a_grant_lasts_until_it_expires() -> None:
    grant = Grant(RECORDING, PURPOSE, NOW + timedelta(microseconds=1), "officer")
    assert (play(grant)) == "+audio.granted"


def test_a_grant_for_another_recording_is_refused() -> None:
    grant = Grant("rec-2", PURPOSE, NOW + timedelta(days=1), "officer")
    assert (play(grant)) == "-grant.none"


def test_a_grant_for_another_purpose_is_refused() -> None:
    grant = Grant(RECORDING, "training", NOW + timedelta(days=1), "officer")
    assert (play(grant)) == "-grant.none"
    assert (play(grant, purpose="training")) == "+audio.granted"


def test_a_grant_approved_by_its_holder_counts_for_nothing() -> None:
    assert (play(Grant(RECORDING, PURPOSE, NOW + timedelta(days=1), "me"))) == "-grant.none"


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("role", [r.value for r in Role])
def test_a_disabled_user_is_refused_everything(action: Action, role: str) -> None:
    given = {"grants": (GRANT,), "bulk_approval": APPROVALS[1]}
    assert ask(role, action, disabled=True, **given) == "-account.disabled"


@pytest.mark.parametrize(
    "gone, rule", [("deleted", "recording.deleted"), ("discarded", "recording.discarded")]
)
@pytest.mark.parametrize(
    "action", [Action.PLAY, Action.EXPORT, Action.REQUEST_ACCESS, Action.APPROVE_ACCESS]
)
def test_no_audio_is_left_of_a_deleted_or_discarded_recording(
    gone: str, rule: str, action: Action
) -> None:
    target = Target(RECORDING, 0, "op-me", "red", **{gone: True})  # type: ignore[arg-type]
    for role in ("records_officer", "dpo"):  # granted: only the state refuses
        assert ask(role, action, target=target, grants=(GRANT,)) == "-" + rule


def test_a_deleted_recordings_metadata_is_still_listed() -> None:
    target = Target(RECORDING, 0, "op-me", "red", deleted=True)
    assert ask("staff", Action.SEARCH, target=target) == "+metadata.own_call"


@pytest.mark.parametrize(
    "purpose, reason, rule",
    [
        (None, REASON, "purpose.missing"),
        ("  ", REASON, "purpose.missing"),
        (PURPOSE, None, "reason.missing"),
        (PURPOSE, " \t", "reason.missing"),
        ("Complaint", REASON, "purpose.unknown"),
    ],
)
@pytest.mark.parametrize("action", [Action.PLAY, Action.EXPORT, Action.REQUEST_ACCESS])
def test_audio_and_requests_state_a_purpose_and_a_reason(
    purpose: str | None, reason: str | None, rule: str, action: Action
) -> None:
    assert ask("staff", action, purpose=purpose, reason=reason) == "-" + rule


def test_an_unknown_purpose_is_named_with_the_known_ones() -> None:
    query = AccessQuery(
        actor("staff"), Action.PLAY, NOW, target=PARTS["own"], purpose="fun", reason=REASON
    )
    decision = decide(query, ("legal", "training"))
    assert decision.reason == "'fun' is not a purpose (known: legal, training)"


def test_only_configured_purposes_count() -> None:
    query = AccessQuery(
        actor("staff"), Action.PLAY, NOW, target=PARTS["own"], purpose="audit", reason=REASON
    )
    assert show(decide(query, ("audit",))) == "+audio.own_call"
    assert show(decide(query, DEFAULT_PURPOSES)) == "-purpose.unknown"


def test_a_manager_hears_only_their_teams_part_of_a_transferred_call() -> None:
    first = Target(RECORDING, 0, operator="op-a", team="red")
    second = Target(RECORDING, 1, operator="op-b", team="blue")
    answers = [ask("manager", Action.EXPORT, target=part) for part in (first, second)]
    assert answers == ["+audio.team_call", "-grant.none"]  # I am on red


def test_staff_without_an_operator_link_have_no_calls_of_their_own() -> None:
    staff = Actor("new", Role.STAFF, frozenset({"red"}))
    unlinked = Target(RECORDING, 0, operator=None, team="red")
    query = AccessQuery(staff, Action.VIEW_METADATA, NOW, target=unlinked)
    assert show(decide(query, DEFAULT_PURPOSES)) == "-metadata.not_yours"


@pytest.mark.parametrize("action", sorted(PART_ACTIONS, key=lambda a: a.value))
def test_a_part_action_without_a_part_is_a_programming_error(action: Action) -> None:
    with pytest.raises(ValueError, match=r"give a target|requester"):
        AccessQuery(actor("dpo"), action, NOW)


def test_a_decision_carries_a_known_rule_only() -> None:
    with pytest.raises(ValueError, match=r"unknown rule id 'made\.up'"):
        Decision(True, "made.up")


@pytest.mark.parametrize("role", ["records_officer", "dpo"])
def test_a_deleted_recording_is_not_exported_for_a_subject_access_case(role: str) -> None:
    gone = Target("rec-1", deleted=True)
    assert ask(role, Action.EXPORT_SAR, target=gone) == "-recording.deleted"
    assert ask(role, Action.EXPORT_SAR, target=None) == "+sar.allowed"


def test_every_rule_is_reached_by_some_test_table() -> None:
    reached = {cell[1:] for *_, cells in rows(MATRIX) + rows(BULK) for cell in cells} - {""}
    others = {
        "account.disabled",
        "recording.deleted",
        "recording.discarded",
        "purpose.missing",
        "reason.missing",
        "grant.expired",
        "approve.own_request",
    }
    assert reached | others == set(RULES)


# ------------------------------------------------------------------------------------
# The property: whatever the input, no audio without a configured purpose and a reason.

texts = st.one_of(st.none(), st.text(max_size=12), st.sampled_from(["", " ", "\t", PURPOSE]))
purposes = st.one_of(texts, st.sampled_from(DEFAULT_PURPOSES))
times = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
)
names = st.sampled_from(["me", "officer", "dpo-2"])
operators = st.one_of(st.none(), st.sampled_from(["op-me", "op-mate"]))
teams = st.one_of(st.none(), st.sampled_from(["red", "blue"]))
actors = st.builds(
    Actor,
    names,
    st.sampled_from(Role),
    st.frozensets(st.sampled_from(["red", "blue"])),
    operators,
    st.booleans(),
)
targets = st.builds(
    Target,
    st.sampled_from([RECORDING, "rec-2"]),
    st.integers(0, 2),
    operators,
    teams,
    st.booleans(),
    st.booleans(),
)
grants = st.builds(Grant, st.sampled_from([RECORDING, "rec-2"]), purposes.map(str), times, names)


@given(
    actor=actors,
    action=st.sampled_from(sorted(AUDIO_ACTIONS, key=lambda a: a.value)),
    target=targets,
    purpose=purposes,
    reason=texts,
    held=st.lists(grants, max_size=3),
    approval=st.one_of(st.none(), st.builds(BulkApproval, names, times)),
    now=times,
)
def test_no_input_hands_out_audio_without_a_purpose_and_a_reason(
    actor: Actor,
    action: Action,
    target: Target,
    purpose: str | None,
    reason: str | None,
    held: list[Grant],
    approval: BulkApproval | None,
    now: datetime,
) -> None:
    query = AccessQuery(
        actor,
        action,
        now,
        target=target,
        purpose=purpose,
        reason=reason,
        grants=tuple(held),
        bulk_approval=approval,
    )
    decision = decide(query, DEFAULT_PURPOSES)
    if decision.allowed:
        assert (purpose or "").strip() in DEFAULT_PURPOSES
        assert (reason or "").strip()
        assert not actor.disabled and not target.deleted and not target.discarded
