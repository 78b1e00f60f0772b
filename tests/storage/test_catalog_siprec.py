"""SIPREC sessions in the catalog: the call row's kind, the session's identifiers,
each metadata snapshot with its participants and channels, and search by the
participants' numbers.  (The receipt saying the notice was the recording client's is
checked where it is written: tests/calls/test_siprec_flow.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from proxy.storage.catalog import (
    CallDirection,
    CallKind,
    DuplicateError,
    InvalidFieldError,
    NewCall,
    NewRecording,
    NotFoundError,
    Scope,
    SearchFilters,
    SearchQuery,
    SiprecParticipant,
    SiprecSession,
    SqliteCatalog,
)
from tests.catalog_backends import Backend

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
ALICE = SiprecParticipant("p-a", "sip:+441632960001@sbc", "Alice", "left")
BOB = SiprecParticipant("p-b", "sip:+441632960002@sbc", None, "right")


async def _siprec_call(catalog: SqliteCatalog) -> str:
    call = await catalog.calls.create_call(
        NewCall(
            "src-call-id@sbc",
            "+441632960001",
            "+441632960002",
            CallDirection.INBOUND,
            T0,
            kind=CallKind.SIPREC,
        )
    )
    assert call.kind is CallKind.SIPREC
    return call.id


async def test_a_session_keeps_its_identifiers_and_every_snapshot(backend: Backend) -> None:
    async with backend.catalog() as catalog:
        call_id = await _siprec_call(catalog)
        session = SiprecSession(call_id, "src-call-id@sbc", "hVpd7YQg==", "ab30;remote=00")
        await catalog.siprec.add_session(session)
        first = await catalog.siprec.add_snapshot(call_id, T0, "<recording/>", [ALICE, BOB])
        later = T0 + timedelta(seconds=30)
        carol = SiprecParticipant("p-c", "sip:carol@sbc", "Carol", None)
        second = await catalog.siprec.add_snapshot(call_id, later, "<r2/>", [ALICE, BOB, carol])
        assert (first, second) == (1, 2)
        assert await catalog.siprec.session(call_id) == session
        snapshots = await catalog.siprec.snapshots(call_id)
        assert [(s.number, s.received_at, s.metadata) for s in snapshots] == [
            (1, T0, "<recording/>"),
            (2, later, "<r2/>"),
        ]
        assert snapshots[0].participants == (ALICE, BOB)
        assert snapshots[1].participants == (ALICE, BOB, carol)
        assert await catalog.siprec.session("no-such-call") is None


async def test_an_ordinary_call_is_of_kind_call(backend: Backend) -> None:
    async with backend.catalog() as catalog:
        call = await catalog.calls.create_call(
            NewCall("x@y", "+441632960001", "2001", CallDirection.INBOUND, T0)
        )
        assert call.kind is CallKind.CALL
        assert await catalog.siprec.snapshots(call.id) == []


async def test_refusals_change_nothing(backend: Backend) -> None:
    async with backend.catalog() as catalog:
        with pytest.raises(NotFoundError):
            await catalog.siprec.add_session(SiprecSession("missing", "x", None, None))
        call_id = await _siprec_call(catalog)
        with pytest.raises(NotFoundError):  # no session row yet
            await catalog.siprec.add_snapshot(call_id, T0, "<r/>", [])
        await catalog.siprec.add_session(SiprecSession(call_id, "x", None, None))
        with pytest.raises(DuplicateError):
            await catalog.siprec.add_session(SiprecSession(call_id, "x", None, None))
        wrong = SiprecParticipant("p", None, None, "middle")  # type: ignore[arg-type]
        with pytest.raises(InvalidFieldError):
            await catalog.siprec.add_snapshot(call_id, T0, "<r/>", [wrong])
        assert await catalog.siprec.snapshots(call_id) == []


async def test_search_by_number_finds_a_siprec_call_by_its_participants(backend: Backend) -> None:
    async with backend.catalog() as catalog:
        call_id = await _siprec_call(catalog)
        recording = await catalog.recordings.create_recording(
            NewRecording(call_id, "rec-dir", "g711", 8000, 2, T0 + timedelta(seconds=1))
        )
        everyone = Scope(now=T0 + timedelta(hours=1), everything=True)
        for number in ("+441632960001", "+441632960002"):
            query = SearchQuery(everyone, SearchFilters(numbers=(number,)))
            hits = await catalog.search.search(query)
            assert [hit.recording_id for hit in hits] == [recording.id], number
        nobody = SearchQuery(everyone, SearchFilters(numbers=("+441632960009",)))
        assert await catalog.search.search(nobody) == []
