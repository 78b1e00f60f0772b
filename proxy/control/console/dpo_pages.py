"""The DPO's pages on the records service (issue 17): subject access cases with a
decision per call and the signed bundle, the audit log with the check of its chain,
and the anomaly flags.  Records officers (and maintenance, admins) may check the chain
but not read the log (``verify_integrity`` without ``view_audit``): the audit page
shows them the check alone.

Every page is a view of what an API route already decides, through the same use case
(:class:`SarDesk`, :class:`SarExportJobs` — the very object the API's export routes
hold —, :class:`AuditView`, :class:`FlagDesk`), so the gate decides and audits each
action once whether it came from a page or the API, and a refusal names the policy's
rule as the API's problem document does (the same status table, ``problem_for``).
Whether a decision or close form is shown at all is the policy's pure answer
(``Gate.decide``: nothing written); the action itself still asks the gate.

A form with bad input is shown again alone, its errors next to their fields, and
nothing else is read: the use cases check input before asking the gate, so a refused
form leaves the catalog and the audit chain as they were.  The bundle is downloaded from
the API's own route (``.../bundle.zip``: audited ``sar.download``); an export's
progress is polled from the API's job route by ``static/dpo_export.js``, and without
JavaScript the page has a refresh link.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from ...records.audit_view import FILTERS as AUDIT_FILTERS
from ...records.audit_view import AuditView
from ...records.errors import AccessRequestConflict, InvalidAccessRequest, RecordNotFound
from ...records.flags import FlagDesk
from ...records.gate import Gate, require
from ...records.policy import AccessQuery, Action, Actor
from ...records.sar import RELEASES, CaseView, SarDesk, describe_deadline
from ...records.sar_export import SarExportError
from ...records.sar_jobs import ExportJob, ExportsBusy, JobState, SarExportJobs
from ...storage.catalog import SarCase, SarState, SearchHit, format_utc
from ...storage.catalog.anchor import AnchorFileError
from ..records.auth import actor_of
from ..records.sar import CASES as API_CASES
from . import render
from .page_errors import error_page, field_errors, status_of
from .session import Handler, page, page_context, page_user

#: The filters the audit page has a field for (``after`` and ``limit``, given by hand in
#: the address, are said above the form)
SHOWN_AUDIT_FILTERS = tuple(f for f in AUDIT_FILTERS if f not in ("after", "limit"))
SAR = "/console/sar"
AUDIT = "/console/audit"
FLAGS = "/console/flags"
OPEN_FIELDS = (
    "requester", "contact", "identity_check", "number", "from", "to", "operator", "received",
)  # fmt: skip
AUDIT_PAGE = 50
FLAGS_SHOWN = 200
RELEASE_LABELS = {
    "both": "Release both parties",
    "caller": "Release the caller only",
    "refuse": "Refuse",
}


#: Why an export may not start though the DPO may export: another one running on the
#: host (429), no signing key or transcript model (503), nothing released (422), a
#: closed case or a released call with no audio left (409).  A refusal by the policy
#: is the rule's page (:func:`refusing`).
_NOT_STARTED = (ExportsBusy, SarExportError, InvalidAccessRequest, AccessRequestConflict)


@dataclass(frozen=True)
class DpoDesks:
    """The use cases the pages act through: the API's own (``jobs`` is the very object
    the export routes hold, so a job started here is the API's job)."""

    gate: Gate
    sar: SarDesk
    jobs: SarExportJobs
    audit: AuditView
    flags: FlagDesk


DESKS: web.AppKey[DpoDesks] = web.AppKey("dpo desks", DpoDesks)


def add_routes(app: web.Application, desks: DpoDesks) -> None:
    """The DPO's pages on the records service's application ``app``."""
    app[DESKS] = desks
    app.router.add_get(SAR, page(refusing(sar_list)))
    app.router.add_post(SAR, page(refusing(sar_open)))
    app.router.add_get(f"{SAR}/{{id}}", page(refusing(sar_case)))
    app.router.add_post(f"{SAR}/{{id}}/decisions", page(refusing(sar_decide)))
    app.router.add_post(f"{SAR}/{{id}}/exports", page(refusing(sar_export)))
    app.router.add_post(f"{SAR}/{{id}}/close", page(refusing(sar_close)))
    app.router.add_get(AUDIT, page(refusing(audit_log)))
    app.router.add_get(FLAGS, page(refusing(flag_list)))
    app.router.add_post(f"{FLAGS}/{{flag_id}}/clear", page(refusing(flag_clear)))


def refusing(handler: Handler) -> Handler:
    """``handler``, a use case's error shown as a page with the API's status for it (a
    refusal naming the policy's rule); anything else is a bug (500)."""

    async def shown(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Exception as exc:
            return error_page(request, exc, back=_back(request))

    return shown


def _back(request: web.Request) -> str:
    """Where a refused page leads back to: the case, else the section."""
    case_id = request.match_info.get("id")
    if case_id is not None and request.path.startswith(SAR):
        return f"{SAR}/{case_id}"
    return f"/{'/'.join(request.path.split('/')[1:3])}"


def _desks(request: web.Request) -> DpoDesks:
    return request.app[DESKS]


def _actor(request: web.Request) -> Actor:
    return actor_of(page_user(request))


def may(request: web.Request, action: Action) -> bool:
    """The policy's answer for the signed-in user, pure (nothing audited): whether to
    show the form at all.  Acting still asks the gate."""
    gate = _desks(request).gate
    return gate.decide(AccessQuery(_actor(request), action, gate.now())).allowed


async def _form(request: web.Request) -> dict[str, str]:
    """The posted form's text fields, trimmed (files and repeated fields are not used)."""
    posted = await request.post()
    return {k: v.strip() for k, v in posted.items() if isinstance(v, str)}


def _again(
    request: web.Request, form: str, values: Mapping[str, Any], errors: Mapping[str, str]
) -> web.Response:
    """The form ``form`` alone with its values and errors (422): nothing else is read."""
    context = page_context(request, form=form, values=dict(values), errors=dict(errors))
    return render(request, "dpo_form_again.html", context, status=422)


# -- subject access cases ---------------------------------------------------------------


async def sar_list(request: web.Request) -> web.StreamResponse:
    desks = _desks(request)
    state = request.query.get("state") or None
    try:
        cases = await desks.sar.cases(_actor(request), state)
    except InvalidAccessRequest as exc:
        context = page_context(request, cases=[], state=state, errors={"state": str(exc)})
        return render(request, "dpo_sar_list.html", context | _open_form(), status=422)
    now = desks.gate.now()
    rows = [_case_row(case, now) for case in cases]
    context = page_context(request, cases=rows, state=state, errors={})
    return render(request, "dpo_sar_list.html", context | _open_form())


def _open_form() -> dict[str, Any]:
    return {"states": [s.value for s in SarState], "values": {}, "form_errors": {}}


def _case_row(case: SarCase, now: datetime) -> dict[str, Any]:
    return {
        "id": case.id,
        "requester": case.requester,
        "numbers": ", ".join(case.numbers),
        "state": case.state.value,
        "deadline": describe_deadline(case, now),
        "overdue": case.state is SarState.OPEN and case.deadline_at < now,
        "calls": len(case.recordings),
        "undecided": len(case.undecided),
    }


async def sar_open(request: web.Request) -> web.StreamResponse:
    values = await _form(request)
    numbers = [n.strip() for n in re.split(r"[,;\n]", values.get("number", "")) if n.strip()]
    try:
        view = await _desks(request).sar.open(
            _actor(request),
            requester=values.get("requester", ""),
            identity_check=values.get("identity_check", ""),
            number=numbers,
            window_from=values.get("from") or None,
            window_to=values.get("to") or None,
            operator=values.get("operator") or None,
            contact=values.get("contact") or None,
            received=values.get("received") or None,
        )
    except InvalidAccessRequest as exc:
        return _again(request, "open", values, field_errors(exc, OPEN_FIELDS))
    raise web.HTTPSeeOther(f"{SAR}/{view.case.id}")


async def sar_case(request: web.Request) -> web.StreamResponse:
    return await _case_page(request)


async def _case_page(
    request: web.Request, *, export_error: str = "", status: int = 200
) -> web.Response:
    """The case's page; ``export_error``: why the export just asked for was not started
    (said in the export section, with the API's status for it)."""
    desks = _desks(request)
    case_id = request.match_info["id"]
    view = await desks.sar.show(_actor(request), case_id)
    case = view.case
    job, job_error = None, export_error
    if not export_error and (job_id := request.query.get("job")):
        try:
            job = _job_view(desks.jobs.job(_actor(request), case.id, job_id))
        except RecordNotFound as exc:
            job_error = str(exc)
    context = page_context(
        request,
        case=case,
        deadline=describe_deadline(case, desks.gate.now()),
        calls=_calls(view),
        times=_case_times(case),
        exports=_exports(case),
        open=case.state is not SarState.CLOSED,
        may_decide=may(request, Action.DECIDE_SAR),
        may_close=may(request, Action.CLOSE_SAR),
        releases=[(r, RELEASE_LABELS[r]) for r in RELEASES],
        job=job,
        job_error=job_error,
        values={},
        errors={},
    )
    return render(request, "dpo_sar_case.html", context, status=status)


def _case_times(case: SarCase) -> dict[str, str]:
    return {
        "from": format_utc(case.window_from),
        "to": format_utc(case.window_to),
        "received": format_utc(case.received_at),
        "opened": format_utc(case.opened_at),
        "closed": "" if case.closed_at is None else format_utc(case.closed_at),
    }


def _exports(case: SarCase) -> list[dict[str, Any]]:
    """The bundles exported for the case so far (the catalog's record of them)."""
    return [
        {"number": e.number, "by": e.exported_by, "at": format_utc(e.exported_at),
         "manifest": e.manifest_sha256, "calls": len(e.releases)}
        for e in case.exports
    ]  # fmt: skip


def _calls(view: CaseView) -> list[dict[str, Any]]:
    """Each call of the case as the page shows it, in the case's order."""
    return [
        _call(attached.recording_id, attached.position, view.calls.get(attached.recording_id))
        | {
            "release": None if attached.release is None else attached.release.value,
            "decision": "undecided"
            if attached.release is None
            else RELEASE_LABELS[attached.release.value],
            "decision_reason": attached.decision_reason or "",
            "decided_by": attached.decided_by or "",
        }
        for attached in view.case.recordings
    ]


def _call(recording_id: str, position: int, hit: SearchHit | None) -> dict[str, Any]:
    if hit is None:
        return {"recording_id": recording_id, "position": position, "when": "not in the "
                "catalog", "caller": "", "operators": "", "duration": "", "state": ""}  # fmt: skip
    operators = sorted({p.operator for p in hit.parts if p.operator})
    return {
        "recording_id": recording_id,
        "position": position,
        "when": format_utc(hit.call_started_at),
        "caller": hit.caller,
        "operators": ", ".join(operators) or "—",
        "duration": "" if hit.duration_ms is None else f"{hit.duration_ms / 1000:.1f} s",
        "state": hit.state.value,
    }


def _job_view(job: ExportJob) -> dict[str, Any]:
    """The job as the page shows it, with the API's URLs for its progress and ZIP."""
    url = f"{API_CASES}/{job.case_id}/exports/{job.id}"
    return job.as_dict() | {
        "url": url,
        "bundle": f"{url}/bundle.zip" if job.state is JobState.DONE else "",
        "running": job.state is JobState.RUNNING,
    }


async def sar_decide(request: web.Request) -> web.StreamResponse:
    values = await _form(request)
    case_id = request.match_info["id"]
    recording_id = values.get("recording_id", "")
    if not recording_id:
        raise InvalidAccessRequest("recording_id: name a recording of the case")
    try:
        await _desks(request).sar.decide(
            _actor(request),
            case_id,
            recording_id,
            values.get("release") or None,
            values.get("reason", ""),
        )
    except InvalidAccessRequest as exc:
        errors = field_errors(exc, ("release", "reason"))
        context = {**values, "case_id": case_id, "releases": list(RELEASE_LABELS.items())}
        return _again(request, "decide", context, errors)
    raise web.HTTPSeeOther(f"{SAR}/{case_id}#call-{recording_id}")


async def sar_export(request: web.Request) -> web.StreamResponse:
    values = await _form(request)
    case_id = request.match_info["id"]
    try:
        job = await _desks(request).jobs.start(
            _actor(request), case_id, values.get("transcripts") == "on"
        )
    except _NOT_STARTED as exc:  # no job, nothing written: said where the export is
        return await _case_page(request, export_error=str(exc), status=status_of(exc))
    raise web.HTTPSeeOther(f"{SAR}/{case_id}?job={job.id}#export")


async def sar_close(request: web.Request) -> web.StreamResponse:
    values = await _form(request)
    case_id = request.match_info["id"]
    try:
        await _desks(request).sar.close(_actor(request), case_id, values.get("reason", ""))
    except InvalidAccessRequest as exc:
        errors = field_errors(exc, ("reason",))
        return _again(request, "close", {**values, "case_id": case_id}, errors)
    raise web.HTTPSeeOther(f"{SAR}/{case_id}")


# -- the audit log ------------------------------------------------------------------------


async def audit_log(request: web.Request) -> web.StreamResponse:
    view = _desks(request).audit
    actor = _actor(request)
    given = {k: v for k, v in request.query.items() if k in AUDIT_FILTERS and v.strip()}
    raw: dict[str, object] = {"limit": str(AUDIT_PAGE), **given}
    check, check_error = None, ""
    if request.query.get("verify") == "1":
        try:
            check = await view.verify(actor)
        except AnchorFileError:
            check_error = "The anchor file cannot be read; see the service's log."
    if not may(request, Action.VIEW_AUDIT) and may(request, Action.VERIFY_INTEGRITY):
        # a records officer (or maintenance, an admin) checks the chain, as over the
        # API, but reads no entry: the page has the check alone
        context = page_context(
            request, may_read=False, values={}, errors={}, entries=[], more=False,
            next_page="", check=check, check_error=check_error,
        )  # fmt: skip
        return render(request, "dpo_audit.html", context)
    try:
        found = await view.entries(actor, raw)
    except InvalidAccessRequest as exc:
        context = page_context(
            request, may_read=True, values=given,
            errors=field_errors(exc, SHOWN_AUDIT_FILTERS),
            entries=[], more=False, next_page="", check=check, check_error=check_error,
        )  # fmt: skip
        return render(request, "dpo_audit.html", context, status=422)
    entries = [
        e.as_dict() | {"detail_text": json.dumps(dict(e.detail), sort_keys=True)}
        for e in found.entries
    ]
    next_page = ""
    if found.more and found.entries:
        after = {k: v for k, v in given.items() if k != "after"}
        next_page = f"{AUDIT}?{urlencode(after | {'after': found.entries[-1].seq})}"
    context = page_context(
        request, may_read=True, values=given, errors={}, entries=entries, more=found.more,
        next_page=next_page, check=check, check_error=check_error,
    )  # fmt: skip
    return render(request, "dpo_audit.html", context)


# -- anomaly flags ------------------------------------------------------------------------


async def _may_see_flags(request: web.Request, reason: str | None = None) -> None:
    """The API's decision for flags (``view_flags``, the DPO's), asked of the gate."""
    require(await _desks(request).gate.check(_actor(request), Action.VIEW_FLAGS, reason=reason))


async def flag_list(request: web.Request) -> web.StreamResponse:
    await _may_see_flags(request)
    flags = await _desks(request).flags.listing(open_only=True, limit=FLAGS_SHOWN)
    rows = [
        flag.as_dict() | {"detail_items": sorted((k, str(v)) for k, v in flag.detail.items())}
        for flag in flags
    ]
    return render(request, "dpo_flags.html", page_context(request, flags=rows))


async def flag_clear(request: web.Request) -> web.StreamResponse:
    values = await _form(request)
    flag_id = request.match_info["flag_id"]
    reason = values.get("reason", "")

    async def authorise() -> None:
        await _may_see_flags(request, reason)

    try:
        await _desks(request).flags.clear(
            flag_id, by=page_user(request).name, reason=reason, authorise=authorise
        )
    except InvalidAccessRequest as exc:
        errors = field_errors(exc, ("reason",))
        return _again(request, "clear", {**values, "flag_id": flag_id}, errors)
    raise web.HTTPSeeOther(f"{FLAGS}#cleared-{flag_id}")
