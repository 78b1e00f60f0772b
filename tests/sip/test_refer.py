"""REFER's pieces (RFC 3515): reading ``Refer-To`` and building the sipfrag NOTIFYs of
the implicit subscription, bytes in and bytes out."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.sip import refer
from proxy.sip.errors import RemoteSipError
from proxy.sip.message import Request, parse_message

from .test_dialog import uas_dialog


def refer_with(*lines: str) -> Request:
    data = (
        "REFER sip:proxy@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n"
        "From: <sip:taker@127.0.0.1>;tag=t\r\nTo: <sip:p@127.0.0.1>;tag=p\r\nCall-ID: c\r\n"
        "CSeq: 2 REFER\r\nMax-Forwards: 70\r\n"
        + "".join(f"{line}\r\n" for line in lines)
        + "Content-Length: 0\r\n\r\n"
    ).encode()
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


@pytest.mark.parametrize(
    "line",
    [
        "Refer-To: <sip:bob@10.0.0.2:5080>",
        "r: sip:bob@10.0.0.2:5080",
        "Refer-To: Bob <sip:bob@10.0.0.2:5080>;x=1",
    ],
)
def test_refer_to_is_read_in_long_and_compact_form(line: str) -> None:
    target = refer.refer_to(refer_with(line))
    assert (target.user, target.host, target.port) == ("bob", "10.0.0.2", 5080)


def test_a_sips_refer_to_is_a_target() -> None:
    target = refer.refer_to(refer_with("Refer-To: <sips:bob@10.0.0.2:5061>"))
    assert (target.scheme, target.user, target.host, target.port) == (
        "sips", "bob", "10.0.0.2", 5061,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("lines", "status"),
    [
        ((), 400),  # missing
        (("Refer-To: <sip:a@h>", "Refer-To: <sip:b@h>"), 400),  # two targets
        (("Refer-To: <sip:bob@",), 400),  # malformed
        (("Refer-To: <tel:+441234567890>",), 403),  # not a phone we can INVITE by SIP
        (("Refer-To: <sip:bob@10.0.0.2?Replaces=abc%3Bto-tag%3Dx>",), 400),  # no from-tag
        (("Refer-To: <sip:bob@10.0.0.2?Subject=x>",), 403),  # no other header may steer us
        (("Refer-To: <sip:b@h?Replaces=a%3Bto-tag%3Db%3Bfrom-tag%3Dc&Priority=urgent>",), 403),
    ],
)
def test_a_bad_refer_to_is_a_remote_error_with_its_status(
    lines: tuple[str, ...], status: int
) -> None:
    with pytest.raises(RemoteSipError) as error:
        refer.refer_to(refer_with(*lines))
    assert error.value.status == status


def test_an_attended_transfers_refer_to_embeds_the_dialog_it_replaces() -> None:
    embedded = "12%4010.0.0.1%3Bto-tag%3Db%3Bfrom-tag%3Da"
    target = refer.refer_to(refer_with(f"Refer-To: <sip:bob@10.0.0.2?Replaces={embedded}>"))
    replaces = refer.replaces_of(target)
    assert replaces is not None
    assert (replaces.call_id, replaces.to_tag, replaces.from_tag) == ("12@10.0.0.1", "b", "a")
    assert refer.replaces_of(refer.refer_to(refer_with("Refer-To: <sip:bob@10.0.0.2>"))) is None


def test_notify_carries_a_sipfrag_and_ends_the_subscription_on_a_final_status() -> None:
    dialog = uas_dialog()
    trying = refer.notify(dialog, 100, "Trying")
    busy = refer.notify(dialog, 486, "Busy Here")
    for request in (trying, busy):
        assert request.method == "NOTIFY"
        assert request.headers.get("event") == "refer"
        assert request.headers.get("content-type") == "message/sipfrag;version=2.0"
        assert request.call_id == dialog.call_id
    assert trying.body == b"SIP/2.0 100 Trying\r\n"
    assert trying.headers.get("subscription-state") == "active;expires=60"
    assert busy.body == b"SIP/2.0 486 Busy Here\r\n"
    assert busy.headers.get("subscription-state") == "terminated;reason=noresource"
    assert busy.cseq.number == trying.cseq.number + 1


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(max_size=120),
        st.builds(
            lambda user, headers: f"<sip:{user}@10.0.0.2?{headers}>",
            st.text(alphabet="abc12", min_size=1, max_size=5),
            st.text(alphabet="Replacs=%3BDtog-fmaiy&;@x", max_size=80),
        ),
    )
)
def test_any_refer_to_is_a_target_or_a_400_or_403(value: str) -> None:
    """Fuzzing ``Refer-To`` (and an embedded ``Replaces``): a target, or the protocol
    error the REFER is answered with; never anything else."""
    try:
        request = refer_with(f"Refer-To: {value}")
    except RemoteSipError:
        return  # not even a message: the core answers 400 before any REFER logic
    try:
        target = refer.refer_to(request)
        refer.replaces_of(target)
    except RemoteSipError as error:
        assert error.status in (400, 403)
