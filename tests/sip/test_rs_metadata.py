"""Recording metadata (RFC 7865) as an SRC sends it: RFC 8068's snapshot read, the
documents that must be refused refused with 400, and nothing else ever raised."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.sip.errors import RemoteSipError
from proxy.sip.rs_metadata import MAX_BYTES, MAX_ELEMENTS, NAMESPACE, parse_metadata

from .siprec_examples import ALICE, BOB, SESSION_ID, SIP_SESSION_ID, STREAM_96, metadata


def test_rfc_8068s_snapshot_gives_session_participants_streams_and_senders() -> None:
    found = parse_metadata(metadata().encode())
    assert found.datamode == "complete"
    assert [(s.session_id, s.sip_session_ids) for s in found.sessions] == [
        (SESSION_ID, (SIP_SESSION_ID,))
    ]
    assert [(p.participant_id, p.aor, p.name) for p in found.participants] == [
        (ALICE, "sip:alice@example.com", "Alice"),
        (BOB, "sip:bob@example.com", "Bob"),
    ]
    assert [(s.label, s.session_id) for s in found.streams] == [
        ("96", SESSION_ID),
        ("97", SESSION_ID),
    ]
    assert found.receives[BOB] == ("i1Pz3to5hGk8fuXl+PbwCw==",)
    alice = found.sender_of_label("97")
    bob = found.sender_of_label("96")
    assert alice is not None and alice.name == "Alice"
    assert bob is not None and bob.participant_id == BOB
    assert found.sender_of_label("98") is None


def test_extension_elements_of_other_namespaces_are_ignored() -> None:
    document = f"""<recording xmlns='{NAMESPACE}'><datamode>partial</datamode>
      <group group_id="g"><mydata xmlns='http://example.com/my'><participant
        participant_id="not-this-one"/></mydata></group>
      <stream stream_id="{STREAM_96}"><label>1</label></stream>
      <participant participant_id="p"><nameID aor="tel:+441632960001"/></participant>
      <participantstreamassoc participant_id="p"><send>{STREAM_96}</send>
      </participantstreamassoc></recording>"""
    found = parse_metadata(document.encode())
    assert found.datamode == "partial"
    assert [p.participant_id for p in found.participants] == ["p"]
    sender = found.sender_of_label("1")
    assert sender is not None and (sender.aor, sender.name) == ("tel:+441632960001", None)


@pytest.mark.parametrize(
    ("document", "why"),
    [
        (b"<recording xmlns='urn:ietf:params:xml:ns:recording:1'>", "not well-formed"),
        (b"<recording/>", "root element"),
        (b"<other xmlns='urn:ietf:params:xml:ns:recording:1'/>", "root element"),
        (
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]>'
            b"<recording xmlns='urn:ietf:params:xml:ns:recording:1'>&b;</recording>",
            "DOCTYPE",
        ),
        (
            b'<!DOCTYPE r SYSTEM "file:///etc/passwd"><recording/>',
            "DOCTYPE",
        ),
        (
            b"<recording xmlns='urn:ietf:params:xml:ns:recording:1'>"
            b"<datamode>sometimes</datamode></recording>",
            "datamode",
        ),
        (
            b"<recording xmlns='urn:ietf:params:xml:ns:recording:1'>"
            b"<participant><nameID aor='sip:a@b'/></participant></recording>",
            "participant_id",
        ),
        (b'<?xml version="1.0" encoding="utf-16"?><recording/>', "XML"),
        (b"<recording xmlns='urn:ietf:params:xml:ns:recording:1'>" + b" " * MAX_BYTES, "larger"),
        (
            b"<recording xmlns='urn:ietf:params:xml:ns:recording:1'>"
            + b"<x/>" * MAX_ELEMENTS
            + b"</recording>",
            "elements",
        ),
    ],
)
def test_a_document_we_refuse_is_a_400_saying_why(document: bytes, why: str) -> None:
    with pytest.raises(RemoteSipError) as caught:
        parse_metadata(document)
    assert caught.value.status == 400
    assert why in caught.value.reason
    assert "\n" not in caught.value.reason


@given(st.binary(max_size=300))
def test_any_bytes_give_metadata_or_the_protocol_error(data: bytes) -> None:
    try:
        parse_metadata(data)
    except RemoteSipError as exc:
        assert exc.status == 400


_TAGS = st.sampled_from(
    [
        "<recording xmlns='urn:ietf:params:xml:ns:recording:1'>",
        "</recording>",
        "<participant participant_id='p'>",
        "<participant>",
        "</participant>",
        "<nameID aor='sip:x@y'>",
        "</nameID>",
        "<name>",
        "</name>",
        "<stream stream_id='s'>",
        "</stream>",
        "<label>1</label>",
        "<participantstreamassoc participant_id='p'>",
        "</participantstreamassoc>",
        "<send>s</send>",
        "<recv>s</recv>",
        "<datamode>complete</datamode>",
        "<session session_id='x'><sipSessionID>a</sipSessionID></session>",
        "&amp;",
        "&nope;",
        "<!DOCTYPE x>",
        "<?pi?>",
        "text",
    ]
)


@given(st.lists(_TAGS, max_size=25))
def test_documents_made_of_its_elements_never_raise_anything_else(tags: list[str]) -> None:
    try:
        parse_metadata("".join(tags).encode())
    except RemoteSipError as exc:
        assert exc.status == 400
