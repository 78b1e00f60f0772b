"""The use cases' errors on the records pages: next to the field they are about, or as
the page's one message with the status the API gives the same error.

The use cases name the field first in their one-line messages ("from: not an ISO 8601
date", "days must be a whole number", "reference is required"), and the access
policy's refusals name it in their rule (``purpose.missing``, ``reason.missing``), so a
form maps an error to its field by that leading name; anything else is the form's own
message.  The status is :func:`~proxy.control.records.statuses.problem_for`'s: a page
and the API never disagree about what an error is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ...records.errors import AccessDenied
from ..records.statuses import problem_for
from . import render
from .session import page_context

FORM = "form"  # the key of a form's own message (not about one field)
_LEADING = re.compile(r"[a-z_]+(?: [a-z_]+)?")


def form_text(form: Mapping[str, Any], name: str) -> str:
    """A posted form's field ``name`` as text ("" when absent or a file)."""
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


def message_of(exc: Exception) -> str:
    """What the person reads: a refusal's reason, or the error's one line."""
    return exc.decision.reason if isinstance(exc, AccessDenied) else str(exc)


def field_errors(exc: Exception, fields: Mapping[str, str]) -> dict[str, str]:
    """``exc`` as ``{field: message}``: ``fields`` maps the leading words a message may
    start with (or a refusal's rule's first part) to the form's field; else :data:`FORM`."""
    if isinstance(exc, AccessDenied):
        named = exc.decision.rule.partition(".")[0]
        return {fields.get(named, FORM): message_of(exc)}
    text = message_of(exc)
    for words in sorted(fields, key=len, reverse=True):
        if text == words or re.match(rf"{re.escape(words)}\b[ :]", text):
            return {fields[words]: text}
    found = _LEADING.match(text)
    return {fields.get(found.group(0) if found else "", FORM): text}


def status_of(exc: Exception) -> int:
    """The status the API answers ``exc`` with; ``exc`` itself when it is no use case's
    error (a bug: the server's 500)."""
    answered = problem_for(exc)
    if answered is None:
        raise exc
    return answered.status


def error_page(request: web.Request, exc: Exception, **extra: Any) -> web.Response:
    """The page saying why nothing was shown or done, with the API's status."""
    context = page_context(request, message=message_of(exc), **extra)
    return render(request, "records_error.html", context, status=status_of(exc))
