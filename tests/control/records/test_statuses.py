"""The one table of the use cases' errors as problem documents: each error its status,
a refusal naming its rule, a range error its ``Content-Range``, an unreadable recording
a generic detail with its cause logged, and anything else left to reach the 500."""

from __future__ import annotations

import json
import logging

import pytest
from aiohttp import web

from proxy.control.body import BodyRefused
from proxy.control.records.statuses import (
    ENCODING_DETAIL,
    UNREADABLE_DETAIL,
    answer,
    answering,
    problem_for,
)
from proxy.records.errors import (
    AccessDenied,
    AccessRequestConflict,
    HoldRefused,
    InvalidAccessRequest,
    InvalidHoldRequest,
    RangeNotSatisfiable,
    RecordingActionError,
    RecordingUnreadable,
    RecordNotFound,
)
from proxy.records.policy import Decision
from proxy.storage.export import EncodingError


def _body(response: web.Response) -> dict[str, object]:
    assert response.content_type == "application/problem+json"
    assert isinstance(response.body, bytes)
    body: dict[str, object] = json.loads(response.body)
    return body


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (RecordNotFound("recording r1 does not exist"), 404),
        (AccessRequestConflict("access request a1 is approved"), 409),
        (RecordingActionError("recording r1 is still open"), 409),
        (HoldRefused("the hold was released"), 409),
        (InvalidAccessRequest("a decision needs a reason"), 422),
        (InvalidHoldRequest("a hold needs a kind"), 422),
        (BodyRefused(400, "the body is larger than 16384 bytes"), 400),
        (BodyRefused(422, "the body must be a JSON object"), 422),
    ],
)
def test_each_error_is_its_status_with_its_message(error: Exception, status: int) -> None:
    response = problem_for(error)
    assert response is not None
    assert response.status == status
    body = _body(response)
    assert body["status"] == status
    assert body["detail"] == str(error)


def test_a_refusal_names_the_rule_and_its_reason() -> None:
    decision = Decision(False, "grant.none", "no grant for this recording and purpose")
    response = problem_for(AccessDenied(decision))
    assert response is not None and response.status == 403
    body = _body(response)
    assert body["rule"] == "grant.none"
    assert body["detail"] == "no grant for this recording and purpose"


def test_an_unsatisfiable_range_names_the_length() -> None:
    response = problem_for(RangeNotSatisfiable("bytes 900- beyond the audio", 800))
    assert response is not None and response.status == 416
    assert response.headers["Content-Range"] == "bytes */800"


def test_an_unreadable_recording_hides_its_cause_and_logs_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cause = "recording r1 failed verification: segment 3 tag mismatch at /data/r1/3.seg"
    with caplog.at_level(logging.ERROR):
        response = problem_for(RecordingUnreadable(cause))
    assert response is not None and response.status == 500
    assert _body(response)["detail"] == UNREADABLE_DETAIL
    assert cause in caplog.text


def test_an_encoder_failure_is_the_hosts_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        response = problem_for(EncodingError("MP3 export needs ffmpeg, which is not on PATH"))
    assert response is not None and response.status == 500
    assert _body(response)["detail"] == ENCODING_DETAIL
    assert "needs ffmpeg" in caplog.text


def test_another_error_is_no_problem_of_the_table() -> None:
    assert problem_for(KeyError("a bug")) is None


async def test_answer_passes_a_response_and_maps_an_error() -> None:
    async def fine() -> web.StreamResponse:
        return web.json_response({"ok": True})

    async def missing() -> web.StreamResponse:
        raise RecordNotFound("recording r9 does not exist")

    async def bug() -> web.StreamResponse:
        raise KeyError("a bug")

    assert (await answer(fine)).status == 200
    assert (await answer(missing)).status == 404
    with pytest.raises(KeyError):
        await answer(bug)


async def test_a_handler_answering_maps_its_errors() -> None:
    @answering
    async def handler(request: web.Request) -> web.StreamResponse:
        raise AccessDenied(Decision(False, "grant.none"))

    response = await handler(None)  # type: ignore[arg-type]
    assert response.status == 403
    assert handler.__name__ == "handler"
