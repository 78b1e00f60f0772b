"""Where the console's pages (the records pages and the DPO's, one function) show a use
case's one-line error: at the field it names first, else above the form (a pure
function: no browser)."""

from __future__ import annotations

from proxy.control.console.dpo_pages import OPEN_FIELDS
from proxy.control.console.page_errors import FORM, field_errors
from proxy.records.errors import InvalidAccessRequest
from proxy.records.holds import InvalidHoldRequest


def errors(message: str, fields: object) -> dict[str, str]:
    return field_errors(InvalidAccessRequest(message), fields)  # type: ignore[arg-type]


def test_an_error_goes_to_the_field_it_names_first() -> None:
    assert errors("to must be after from", OPEN_FIELDS) == {"to": "to must be after from"}
    message = "identity_check: say how the requester's identity was checked"
    assert errors(message, OPEN_FIELDS) == {"identity_check": message}
    message = "each number must be a telephone number (text)"
    assert errors(message, OPEN_FIELDS) == {"number": message}
    message = "a case searches at most 10 numbers"
    assert errors(message, OPEN_FIELDS) == {"number": message}


def test_a_field_name_inside_a_word_is_not_a_match_and_none_goes_above_the_form() -> None:
    assert errors("totally wrong", ("to",)) == {FORM: "totally wrong"}
    message = "the body is not a form"
    assert errors(message, OPEN_FIELDS) == {FORM: message}


def test_a_list_of_alternatives_names_no_field() -> None:
    message = "unknown filter 'x' (known: from, to, number)"
    assert errors(message, ("from", "to", "number")) == {FORM: message}


def test_the_words_a_form_maps_lead_to_its_field() -> None:
    fields = {"review date": "review_at", "kind": "kind", "the decision": FORM}
    message = "review date must be YYYY-MM-DD, got 'x'"
    assert field_errors(InvalidHoldRequest(message), fields) == {"review_at": message}
    message = "the decision must be approve or refuse"
    assert errors(message, fields) == {FORM: message}
