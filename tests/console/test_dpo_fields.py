"""Where the DPO pages show a use case's one-line error: at the field it names first,
else above the form (a pure function: no browser)."""

from __future__ import annotations

from proxy.control.console.dpo_pages import FORM_ERROR, OPEN_FIELDS, field_errors


def test_an_error_goes_to_the_field_it_names_first() -> None:
    assert field_errors("to must be after from", OPEN_FIELDS) == {"to": "to must be after from"}
    message = "identity_check: say how the requester's identity was checked"
    assert field_errors(message, OPEN_FIELDS) == {"identity_check": message}
    message = "each number must be a telephone number (text)"
    assert field_errors(message, OPEN_FIELDS) == {"number": message}
    assert field_errors("at most 10 numbers", OPEN_FIELDS) == {"number": "at most 10 numbers"}


def test_a_field_name_inside_a_word_is_not_a_match_and_none_goes_above_the_form() -> None:
    assert field_errors("totally wrong", ("to",)) == {FORM_ERROR: "totally wrong"}
    message = "the body is not a form"
    assert field_errors(message, OPEN_FIELDS) == {FORM_ERROR: message}
