"""The use cases' errors on the console's records and DPO pages: next to the field they
are about, or as the page's one message with the status the API gives the same error.

The use cases name the field first in their one-line messages ("from: not an ISO 8601
date", "days must be a whole number", "reference is required", "a case searches at
most 10 numbers"), and the access policy's refusals name it in their rule
(``purpose.missing``, ``reason.missing``), so every page maps an error to its field the
one way (:func:`field_errors`); anything else is the form's own message, shown above
it (``form_error`` in ``records_form.html``).  A page that shows nothing else says why
on one template (``not_done.html``: :func:`error_page`, :func:`message_page`).  The
status is :func:`~proxy.control.records.statuses.problem_for`'s: a page and the API
never disagree about what an error is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from typing import Any

from aiohttp import web

from ...records.errors import AccessDenied
from ..records.statuses import problem_for
from . import render
from .session import page_context

FORM = "form"  # the key of a form's own message (not about one field)
HOME = "/console"


def form_text(form: Mapping[str, Any], name: str) -> str:
    """A posted form's field ``name`` as text ("" when absent or a file)."""
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


def message_of(exc: Exception) -> str:
    """What the person reads: a refusal's reason, or the error's one line."""
    return exc.decision.reason if isinstance(exc, AccessDenied) else str(exc)


def field_errors(exc: Exception, fields: Mapping[str, str] | Collection[str]) -> dict[str, str]:
    """``exc`` as ``{field: message}``, at the field the message names first, else
    :data:`FORM`.  ``fields`` maps the words a message may name a field by (or a refusal's
    rule's first part) to the form's field; a plain collection names fields by their own
    names.  A message names a field by its leading words ("to must be after from" →
    ``to``; "review date must be ..." → ``review_at``), else by the first field word in
    its own words before any colon or parenthesis ("a case searches at most 10 numbers"
    → ``number``; but "unknown filter 'x' (known: from, to)" is no field's)."""
    named = fields if isinstance(fields, Mapping) else {name: name for name in fields}
    if isinstance(exc, AccessDenied):
        return {named.get(exc.decision.rule.partition(".")[0], FORM): message_of(exc)}
    text = message_of(exc)
    longest_first = sorted(named, key=len, reverse=True)
    for words in longest_first:
        if text == words or re.match(rf"{re.escape(words)}\b[ :]", text):
            return {named[words]: text}
    own_words = re.split(r"[(:]", text, maxsplit=1)[0]
    mentions = [
        (hit.start(), index, named[words])
        for index, words in enumerate(longest_first)
        if (hit := re.search(rf"\b{re.escape(words)}s?\b", own_words)) is not None
    ]
    return {min(mentions)[2] if mentions else FORM: text}


def status_of(exc: Exception) -> int:
    """The status the API answers ``exc`` with; ``exc`` itself when it is no use case's
    error (a bug: the server's 500)."""
    return _problem(exc).status


def error_page(request: web.Request, exc: Exception, *, back: str = HOME) -> web.Response:
    """The page saying why nothing was shown or done, as the API's problem document for
    ``exc`` says it: its status, its detail (never more: an integrity failure's is the
    API's generic one), and a refusal's rule; ``back`` leads on."""
    answered = _problem(exc)
    document = json.loads(answered.text or "{}")
    message = str(document.get("detail", "")) or message_of(exc)
    return message_page(request, message, answered.status, rule=document.get("rule"), back=back)


def message_page(
    request: web.Request,
    message: str,
    status: int,
    *,
    rule: str | None = None,
    back: str = HOME,
) -> web.Response:
    """One page for every "not done": ``message`` on top, the policy's ``rule`` when a
    refusal names one, and a link ``back``."""
    context = page_context(request, message=message, rule=rule, back=back)
    return render(request, "not_done.html", context, status=status)


def _problem(exc: Exception) -> web.Response:
    answered = problem_for(exc)
    if answered is None:
        raise exc
    return answered
