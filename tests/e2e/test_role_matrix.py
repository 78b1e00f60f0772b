"""The role matrix (issue 15, "Done when"): roles by actions by ownership over the real
HTTP API of a running records service, on recordings made by real SIPp calls.

The world (``records_world``): call **A** taken by ann (team red), call **B** by bob
(team blue), call **T** taken by ann and blind-transferred to bob — parts **T1** (ann's)
and **T2** (bob's).  One user per role; staff_ann and staff_bob are linked to the
operators ann and bob, mgr_red and mgr_blue manage the two teams.  Grants made before
the matrix runs (through the API: request, then approval by someone else):

* admin holds a grant for B (purpose ``complaint``): ownership "granted";
* officer holds a grant for A (``complaint``), approved by the DPO;
* maint held a grant for A (``complaint``) that has expired (set in the catalog).

Every cell below is asserted: ``+rule`` is allowed (2xx) by that policy rule, ``-rule``
is 403 with that rule in the problem body; and each decision leaves exactly one audit
entry (``access.allowed`` or ``access.refused``) naming the rule.  Audio is asked for
with purpose ``complaint``; "play" is the WAV, "export" the MP3 (the same decision).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import audio
from .records_world import PEOPLE, Answer, World, audio_path, items, running_world

pytestmark = pytest.mark.sipp

PURPOSE = "complaint"
REASON = "role matrix"
ROLES = [p.name for p in PEOPLE if p.name != "gone"]
OFFICERS = ("officer", "dpo")


def table(text: str) -> dict[str, dict[str, str]]:
    """``{user: {column: cell}}`` from a whitespace-aligned table."""
    lines = [line.split() for line in text.strip().splitlines()]
    header, rows = lines[0], lines[1:]
    parsed = {row[0]: dict(zip(header, row[1:], strict=True)) for row in rows}
    assert sorted(parsed) == sorted(ROLES), sorted(parsed)
    return parsed


SEARCH = table("""
             A    B    T
staff_ann    yes  no   yes
staff_bob    no   yes  yes
mgr_red      yes  no   yes
mgr_blue     no   yes  yes
officer      yes  yes  yes
dpo          yes  yes  yes
admin        no   yes  no
maint        no   no   no
""")

VIEW = table("""
             A                    B                    T
staff_ann    +metadata.own_call   -metadata.not_yours  +metadata.own_call
staff_bob    -metadata.not_yours  +metadata.own_call   +metadata.own_call
mgr_red      +metadata.team_call  -metadata.not_yours  +metadata.team_call
mgr_blue     -metadata.not_yours  +metadata.team_call  +metadata.team_call
officer      +metadata.all        +metadata.all        +metadata.all
dpo          +metadata.all        +metadata.all        +metadata.all
admin        -metadata.not_yours  +metadata.granted    -metadata.not_yours
maint        -metadata.not_yours  -metadata.not_yours  -metadata.not_yours
""")

# play (WAV) and export (MP3): the same decision
AUDIO = table("""
             A                 B                 T            T1                T2
staff_ann    +audio.own_call   -grant.none       -grant.none  +audio.own_call   -grant.none
staff_bob    -grant.none       +audio.own_call   -grant.none  -grant.none       +audio.own_call
mgr_red      +audio.team_call  -grant.none       -grant.none  +audio.team_call  -grant.none
mgr_blue     -grant.none       +audio.team_call  -grant.none  -grant.none       +audio.team_call
officer      +audio.granted    -grant.none       -grant.none  -grant.none       -grant.none
dpo          -grant.none       -grant.none       -grant.none  -grant.none       -grant.none
admin        -grant.none       +audio.granted    -grant.none  -grant.none       -grant.none
maint        -grant.expired    -grant.none       -grant.none  -grant.none       -grant.none
""")

REQUEST = table("""
             A                 B                 T
staff_ann    +request.allowed  +request.allowed  +request.allowed
staff_bob    +request.allowed  +request.allowed  +request.allowed
mgr_red      +request.allowed  +request.allowed  +request.allowed
mgr_blue     +request.allowed  +request.allowed  +request.allowed
officer      +request.allowed  +request.allowed  +request.allowed
dpo          +request.allowed  +request.allowed  +request.allowed
admin        +request.allowed  +request.allowed  +request.allowed
maint        +request.allowed  +request.allowed  +request.allowed
""")

# deciding someone else's request on A, B, T — and one's own request on T
APPROVE = table("""
             A                     B                     T                     own
staff_ann    -approve.not_officer  -approve.not_officer  -approve.not_officer  -approve.not_officer
staff_bob    -approve.not_officer  -approve.not_officer  -approve.not_officer  -approve.not_officer
mgr_red      -approve.not_officer  -approve.not_officer  -approve.not_officer  -approve.not_officer
mgr_blue     -approve.not_officer  -approve.not_officer  -approve.not_officer  -approve.not_officer
officer      +approve.allowed      +approve.allowed      +approve.allowed      -approve.own_request
dpo          +approve.allowed      +approve.allowed      +approve.allowed      -approve.own_request
admin        -approve.not_officer  -approve.not_officer  -approve.not_officer  -approve.not_officer
maint        -approve.not_officer  -approve.not_officer  -approve.not_officer  -approve.not_officer
""")

HOLDS = table("""
             place_A            place_B            place_T            release
staff_ann    -holds.not_officer -holds.not_officer -holds.not_officer -holds.not_officer
staff_bob    -holds.not_officer -holds.not_officer -holds.not_officer -holds.not_officer
mgr_red      -holds.not_officer -holds.not_officer -holds.not_officer -holds.not_officer
mgr_blue     -holds.not_officer -holds.not_officer -holds.not_officer -holds.not_officer
officer      +holds.allowed     +holds.allowed     +holds.allowed     +holds.allowed
dpo          +holds.allowed     +holds.allowed     +holds.allowed     +holds.allowed
admin        -holds.not_officer -holds.not_officer -holds.not_officer -holds.not_officer
maint        -holds.not_officer -holds.not_officer -holds.not_officer -holds.not_officer
""")

# audit log, flags, the audit chain's check, and each recording's integrity check (A, B, T)
GOVERNANCE = table("""
             audit            flags            verify_chain             verify_recording
staff_ann    -audit.dpo_only  -flags.dpo_only  -integrity.not_permitted -integrity.not_permitted
staff_bob    -audit.dpo_only  -flags.dpo_only  -integrity.not_permitted -integrity.not_permitted
mgr_red      -audit.dpo_only  -flags.dpo_only  -integrity.not_permitted -integrity.not_permitted
mgr_blue     -audit.dpo_only  -flags.dpo_only  -integrity.not_permitted -integrity.not_permitted
officer      -audit.dpo_only  -flags.dpo_only  +integrity.allowed       +integrity.allowed
dpo          +audit.allowed   +flags.allowed   +integrity.allowed       +integrity.allowed
admin        -audit.dpo_only  -flags.dpo_only  +integrity.allowed       +integrity.allowed
maint        -audit.dpo_only  -flags.dpo_only  +integrity.allowed       +integrity.allowed
""")


# the list of every hold, and asking the DPO for a bulk export (of A and B)
LISTS = table("""
             list_holds         ask_bulk
staff_ann    -holds.not_officer -bulk.not_permitted
staff_bob    -holds.not_officer -bulk.not_permitted
mgr_red      -holds.not_officer -bulk.not_permitted
mgr_blue     -holds.not_officer -bulk.not_permitted
officer      +holds.allowed     +bulk.request_allowed
dpo          +holds.allowed     +bulk.request_allowed
admin        -holds.not_officer -bulk.not_permitted
maint        -holds.not_officer -bulk.not_permitted
""")


# ---------------------------------------------------------------------------------------
# The world, once for the module


@pytest.fixture(scope="module")
def world(
    tools: None, dialogue: bytes, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with running_world(tmp_path_factory.mktemp("role-matrix"), dialogue) as built:
        _grant(built, "admin", built.recordings.bob, approver="officer")
        _grant(built, "officer", built.recordings.ann, approver="dpo")
        expired = _grant(built, "maint", built.recordings.ann, approver="officer")
        changed = built.catalog.write(
            "UPDATE access_requests SET expires_at = decided_at + 1 WHERE id = ?", expired
        )
        assert changed == 1
        time.sleep(1.1)  # past it whatever the unit of the catalog's times
        yield built


def _grant(world: World, requester: str, recording_id: str, *, approver: str) -> str:
    made = world.api.post(
        f"/api/v1/recordings/{recording_id}/access-requests",
        world.token(requester),
        {"purpose": PURPOSE, "reason": f"{requester} needs it"},
    )
    assert made.status == 201 and made.json["state"] == "pending", made
    decided = world.api.post(
        f"/api/v1/access-requests/{made.json['id']}/decision",
        world.token(approver),
        {"decision": "approve", "reason": "matrix setup"},
    )
    assert decided.status == 200, decided
    return str(made.json["id"])


def target_of(world: World, column: str) -> tuple[str, int | None]:
    """The recording id and part a column names (A, B, T, T1, T2)."""
    ids = {"A": world.recordings.ann, "B": world.recordings.bob, "T": world.recordings.transfer}
    return ids[column[0]], int(column[1:]) if len(column) > 1 else None


def decided(
    world: World,
    user: str,
    cell: str,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    recording_id: str | None = None,
    part: int | None = None,
    allowed_status: int = 200,
) -> Answer:
    """Send one request as ``user``; assert the cell (status, rule) and its one audit
    entry."""
    sign, rule = cell[0], cell[1:]
    before = world.catalog.last_seq()
    answer = world.api.request(method, path, token=world.token(user), body=body)
    where = f"{user} {cell} {recording_id or ''} part={part}"
    if sign == "+":
        assert answer.status == allowed_status, (where, answer)
    else:
        assert answer.status == 403, (where, answer)
        assert answer.is_problem and answer.json.get("rule") == rule, (where, answer)
    entries = [
        e
        for e in world.catalog.audit_since(before)
        if e["actor"] == user and e["action"] in ("access.allowed", "access.refused")
    ]
    assert len(entries) == 1, (where, entries)
    (entry,) = entries
    assert entry["action"] == ("access.allowed" if sign == "+" else "access.refused"), where
    assert entry["detail"]["rule"] == rule, (where, entry)
    if recording_id is not None:
        assert entry["object"] == f"recording:{recording_id}", (where, entry)
        assert entry["detail"]["part"] == part, (where, entry)
    return answer


# ---------------------------------------------------------------------------------------
# The cells


@pytest.mark.parametrize("user", ROLES)
def test_search_shows_each_role_its_scope_with_one_audit_entry(world: World, user: str) -> None:
    before = world.catalog.last_seq()
    answer = world.api.get("/api/v1/recordings", world.token(user))
    assert answer.status == 200, answer
    found = {row["id"] for row in items(answer, "recordings")}
    names = {"A": world.recordings.ann, "B": world.recordings.bob, "T": world.recordings.transfer}
    expected = {names[column] for column, cell in SEARCH[user].items() if cell == "yes"}
    assert found == expected, (user, found, expected)
    entries = [e for e in world.catalog.audit_since(before) if e["actor"] == user]
    assert [e["action"] for e in entries] == ["recordings.search"], entries


@pytest.mark.parametrize("user", ROLES)
def test_viewing_metadata(world: World, user: str) -> None:
    for column, cell in VIEW[user].items():
        rid, _ = target_of(world, column)
        decided(world, user, cell, "GET", f"/api/v1/recordings/{rid}", recording_id=rid)


@pytest.mark.parametrize("user", ROLES)
@pytest.mark.parametrize("fmt", ["wav", "mp3"], ids=["play", "export"])
def test_playing_and_exporting_each_part(world: World, user: str, fmt: str) -> None:
    for column, cell in AUDIO[user].items():
        rid, part = target_of(world, column)
        path = audio_path(rid, purpose=PURPOSE, reason=REASON, fmt=fmt, part=part)
        answer = decided(world, user, cell, "GET", path, recording_id=rid, part=part)
        if cell.startswith("+"):
            kind = "audio/wav" if fmt == "wav" else "audio/mpeg"
            assert answer.headers["content-type"].startswith(kind), answer.headers
            assert len(answer.body) > 1000


def test_requesting_deciding_and_holding(world: World) -> None:
    """Requests by everyone, then decisions, then holds — in one test because each step
    uses what the one before made (pending requests, placed holds)."""
    requests: dict[tuple[str, str], str] = {}
    for user in ROLES:
        for column, cell in REQUEST[user].items():
            rid, _ = target_of(world, column)
            answer = decided(
                world, user, cell,
                "POST", f"/api/v1/recordings/{rid}/access-requests",
                {"purpose": PURPOSE, "reason": f"{REASON} request"},
                recording_id=rid, allowed_status=201,
            )  # fmt: skip
            assert answer.json["state"] == "pending", answer
            requests[(user, column)] = str(answer.json["id"])

    # whose request each user decides: the officers staff_ann's and staff_bob's, the
    # others mgr_red's (mgr_red mgr_blue's); and, in the "own" column, their own on T
    subjects = {"officer": "staff_ann", "dpo": "staff_bob", "mgr_red": "mgr_blue"}
    for user in ROLES:
        for column, cell in APPROVE[user].items():
            owner, col = (user, "T") if column == "own" else (subjects.get(user, "mgr_red"), column)
            rid, _ = target_of(world, col)
            request_id = requests[(owner, col)]
            decided(
                world, user, cell,
                "POST", f"/api/v1/access-requests/{request_id}/decision",
                {"decision": "approve", "reason": f"{REASON} decision"},
                recording_id=rid,
            )  # fmt: skip
            state = world.catalog.rows("SELECT state FROM access_requests WHERE id = ?", request_id)
            assert state == [{"state": "approved" if cell[0] == "+" else "pending"}], (user, state)

    holds: dict[str, str] = {}
    for user in sorted(ROLES, key=lambda u: u not in OFFICERS):  # officers place first
        for column in ("place_A", "place_B", "place_T"):
            rid, _ = target_of(world, column[-1])
            answer = decided(
                world, user, HOLDS[user][column],
                "POST", f"/api/v1/recordings/{rid}/holds",
                {"kind": "complaint", "reference": "MATRIX"},
                recording_id=rid, allowed_status=201,
            )  # fmt: skip
            if answer.status == 201:
                holds[f"{user}:{column[-1]}"] = str(answer.json["id"])
    assert len(holds) == 6, holds
    for user in sorted(ROLES, key=lambda u: u in OFFICERS):  # officers release last
        hold = holds[f"{user}:A"] if user in OFFICERS else holds["officer:A"]
        decided(
            world, user, HOLDS[user]["release"],
            "POST", f"/api/v1/holds/{hold}/release", {"reason": f"{REASON} release"},
            recording_id=world.recordings.ann,
        )  # fmt: skip
    released = world.catalog.rows("SELECT released_by FROM holds WHERE released_at IS NOT NULL")
    assert sorted(r["released_by"] for r in released) == ["dpo", "officer"], released


@pytest.mark.parametrize("user", ROLES)
def test_audit_flags_and_integrity_checks(world: World, user: str) -> None:
    cells = GOVERNANCE[user]
    decided(world, user, cells["audit"], "GET", "/api/v1/audit")
    decided(world, user, cells["flags"], "GET", "/api/v1/flags")
    decided(world, user, cells["verify_chain"], "GET", "/api/v1/audit/verify")
    for column in ("A", "B", "T"):
        rid, _ = target_of(world, column)
        decided(world, user, cells["verify_recording"], "GET",
                f"/api/v1/recordings/{rid}/verify", recording_id=rid)  # fmt: skip


@pytest.mark.parametrize("user", ROLES)
def test_listing_holds_and_asking_for_a_bulk_export(world: World, user: str) -> None:
    cells = LISTS[user]
    decided(world, user, cells["list_holds"], "GET", "/api/v1/holds")
    ids = [world.recordings.ann, world.recordings.bob]
    body = {"recording_ids": ids, "purpose": PURPOSE, "reason": REASON}
    asked = decided(world, user, cells["ask_bulk"], "POST", "/api/v1/bulk-requests", body,
                    allowed_status=201)  # fmt: skip
    if asked.status == 201:
        assert asked.json["state"] == "pending", asked


ENDPOINTS = [
    ("GET", "/api/v1/recordings"),
    ("GET", "/api/v1/recordings/{A}"),
    ("GET", "/api/v1/recordings/{A}/audio?purpose=complaint&reason=r&format=wav"),
    ("POST", "/api/v1/recordings/{A}/access-requests"),
    ("GET", "/api/v1/access-requests?state=pending"),
    ("POST", "/api/v1/recordings/{A}/holds"),
    ("GET", "/api/v1/holds"),
    ("GET", "/api/v1/audit"),
    ("GET", "/api/v1/audit/verify"),
    ("GET", "/api/v1/flags"),
    ("GET", "/api/v1/recordings/{A}/verify"),
    ("POST", "/api/v1/bulk-requests"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_a_disabled_user_and_nobody_get_401_and_decide_nothing(
    world: World, method: str, path: str
) -> None:
    """The disabled row of the matrix (its token was issued before ``users disable``),
    and no token at all: 401 on every endpoint, no decision, nothing changed."""
    url = path.format(A=world.recordings.ann)
    body = {"purpose": PURPOSE, "reason": REASON, "kind": "complaint", "reference": "X"}
    for token in (world.token("gone"), None):
        before = world.catalog.last_seq()
        answer = world.api.request(method, url, token=token,
                                   body=body if method == "POST" else None)  # fmt: skip
        assert answer.status == 401, (url, answer)
        assert answer.is_problem and "bearer" in answer.headers["www-authenticate"].lower()
        assert world.catalog.audit_since(before) == [], url


def test_the_transferred_call_has_two_parts_with_their_operators(world: World) -> None:
    answer = world.api.get(f"/api/v1/recordings/{world.recordings.transfer}", world.token("dpo"))
    assert answer.status == 200, answer
    parts = answer.json["parts"]
    assert [(p["part"], p["operator"], p["team"]) for p in parts] == [
        (1, "ann", "red"),
        (2, "bob", "blue"),
    ], parts


def test_a_manager_of_the_first_team_hears_only_part_one_and_it_is_what_ann_sent(
    world: World, tmp_path: Path
) -> None:
    rid, token = world.recordings.transfer, world.token("mgr_red")
    whole = world.api.get(audio_path(rid, purpose=PURPOSE, reason=REASON), token)
    assert whole.status == 403 and whole.json["rule"] == "grant.none", whole
    second = world.api.get(audio_path(rid, purpose=PURPOSE, reason=REASON, part=2), token)
    assert second.status == 403 and second.json["rule"] == "grant.none", second
    first = world.api.get(audio_path(rid, purpose=PURPOSE, reason=REASON, part=1), token)
    assert first.status == 200, first
    (part_row,) = world.catalog.rows(
        "SELECT started_at, ended_at FROM recording_parts WHERE recording_id = ? AND part = 1",
        rid,
    )
    path = tmp_path / "part1.wav"
    path.write_bytes(first.body)
    wav = audio.read_wav(path)
    assert abs(wav.seconds - (part_row["ended_at"] - part_row["started_at"]) / 1000) <= 0.2
    ann_pcm = audio.ulaw_decode(world.ann_transfer_audio)
    found = audio.place(wav.channel(1), ann_pcm)  # the call taker's channel
    assert len(found.good) >= 0.9 * found.voiced, found
    assert audio.absent(wav.channel(1), audio.ulaw_decode(world.bob_transfer_audio))


def test_a_grant_shows_in_the_requesters_list(world: World) -> None:
    answer = world.api.get("/api/v1/access-requests?mine=1", world.token("admin"))
    assert answer.status == 200, answer
    approved = [r for r in items(answer, "access_requests") if r["state"] == "approved"]
    assert [(r["recording_id"], r["purpose"]) for r in approved] == [
        (world.recordings.bob, PURPOSE)
    ], approved
    assert all(r["expires_at"] and r["live"] for r in approved), approved
