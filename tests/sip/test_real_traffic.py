"""Captured SIP from real devices and other stacks' test suites (sip/real/README.md).

Every ``*.sip`` file either parses and round-trips (serialise, parse again: same start
line, same headers in order except Content-Length, same body), or is one of Kamailio's
deliberately broken inputs listed in ``KAMAILIO_REJECTED`` with its status and reason.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from proxy.sip.errors import RemoteSipError
from proxy.sip.message import Message, Request, Response, error_response, parse_message

Loader = Callable[[Path], bytes]


@dataclass(frozen=True)
class Rejected:
    status: int
    reason: str  # a substring of RemoteSipError.reason
    answered: bool  # error_response gives a response (a request with a Via)
    why: str  # what is wrong with the file


KAMAILIO_REJECTED: dict[str, Rejected] = {
    "bad_uri": Rejected(400, "missing Via", False, "INVITE without any Via header"),
    "bad_via1": Rejected(
        400, "missing From", True, "folded Via (valid LWS) but no From/To/Call-ID/CSeq"
    ),
    "bad_via2": Rejected(
        400, "malformed SIP version", True, "Request-Line ends 'SIP/2.0/UDP'; has a v: header"
    ),
    "bad_via3": Rejected(
        400, "malformed SIP version", False, "Request-Line ends 'SIP/2.0/UDP'; no headers at all"
    ),
    "inv_srv": Rejected(400, "missing To", True, "INVITE without To"),
    "invite1": Rejected(400, "missing To", True, "INVITE without To"),
    "invite3-callid": Rejected(
        400, "missing Call-ID", True, "' Call-ID:' starts with SP, so it folds into To"
    ),
    "invite4-cseq": Rejected(400, "bad CSeq", True, "'CSeq:101' has no method"),
    "invite5-callid": Rejected(
        400, "malformed header line", True, "'Call-ID;' uses ';' instead of ':'"
    ),
    "message": Rejected(
        400, "Content-Length larger than message", True, "Content-Length: 4 but no body"
    ),
    "message02": Rejected(
        400, "malformed header line", True, "a bare 'text/plain' line (and xCall-ID, no Call-ID)"
    ),
    "no_eom_reply": Rejected(
        400, "missing From", False, "response cut off inside its second Via, no end of headers"
    ),
    "register04": Rejected(400, "URI without scheme", True, "To: poo <bear@iptel.org>"),
    "req-test1": Rejected(400, "malformed Request-Line", True, "two SP before SIP/2.0"),
    "req-tm1": Rejected(400, "malformed Request-Line", True, "two SP before SIP/2.0"),
    "req1": Rejected(400, "missing From", True, "only a Via: no From/To/Call-ID/CSeq"),
    "req2": Rejected(400, "missing From", True, "only a Via line: no From/To/Call-ID/CSeq"),
    "rport": Rejected(
        400, "malformed header line", True, "bare 'text/plain' line (the empty rport= is let by)"
    ),
    "short_reply": Rejected(400, "missing From", False, "response with only two Vias"),
}

# Folders extracted from pcaps, with an INDEX.tsv, and how many Call-IDs each holds.
CALL_IDS_PER_FOLDER: dict[str, int] = {
    "audiocodes_tcp_call": 1,
    "ipv6_prack_update_fragmented": 1,
    "ipv6_udp_call": 1,
    "nerosipps_cancel_auth": 6,
    "polycom_register_ipip": 3,
    "xlite_call_g711_rtp": 4,
}

# Responses whose request is not in the capture (the 403 answers another INVITE of the
# scanner, with another Call-ID).
ORPHAN_RESPONSES = frozenset({"poly_f0002_403-INVITE.sip"})

IN_DIALOG_OR_INVITE_BOUND = frozenset({"ACK", "BYE", "CANCEL", "PRACK", "UPDATE"})


def real_dir(testdata: Path) -> Path:
    return testdata / "sip" / "real"


def comparable_headers(message: Message) -> list[tuple[str, str]]:
    return [(n, v) for n, v in message.headers if n.lower() not in ("content-length", "l")]


def is_kamailio_rejected(rel: str) -> bool:
    folder, _, name = rel.partition("/")
    return folder == "kamailio_test_misc_sip" and name.removesuffix(".sip") in KAMAILIO_REJECTED


def test_rejected_table_names_existing_files(testdata: Path) -> None:
    folder = real_dir(testdata) / "kamailio_test_misc_sip"
    on_disk = {p.stem for p in folder.glob("*.sip")}
    assert set(KAMAILIO_REJECTED) <= on_disk
    assert len(on_disk) == 45


def test_message_parses_and_round_trips(
    testdata: Path, load_wire: Loader, real_sip_file: str
) -> None:
    data = load_wire(real_dir(testdata) / real_sip_file)
    if is_kamailio_rejected(real_sip_file):
        # Status and reason are checked by test_kamailio_broken_input_is_rejected.
        with pytest.raises(RemoteSipError):
            parse_message(data)
        return
    message = parse_message(data)
    wire = message.serialize()
    again = parse_message(wire)
    assert type(again) is type(message)
    assert again.start_line() == message.start_line()
    assert comparable_headers(again) == comparable_headers(message)
    assert again.body == message.body
    # Content-Length always states the real body length.
    assert again.headers.get_lines("content-length") == [str(len(message.body))]
    # The headers the core reads are all readable.
    assert message.call_id
    assert message.cseq.number >= 0
    assert message.vias
    _ = (message.from_, message.to, message.contacts)
    if isinstance(message, Request):
        assert message.cseq.method == message.method or message.method == "ACK"


@pytest.mark.parametrize("name", sorted(KAMAILIO_REJECTED))
def test_kamailio_broken_input_is_rejected(testdata: Path, load_wire: Loader, name: str) -> None:
    expected = KAMAILIO_REJECTED[name]
    data = load_wire(real_dir(testdata) / "kamailio_test_misc_sip" / f"{name}.sip")
    with pytest.raises(RemoteSipError) as info:
        parse_message(data)
    err = info.value
    assert err.status == expected.status
    assert expected.reason in err.reason
    response = error_response(err)
    assert (response is not None) is expected.answered
    if response is not None:
        assert response.status == expected.status
        assert response.headers.get_lines("via")


def test_kamailio_lf_files_are_converted(testdata: Path, load_wire: Loader) -> None:
    path = real_dir(testdata) / "kamailio_test_misc_sip" / "bye00.sip"
    raw = path.read_bytes()
    assert b"\r\n" not in raw
    wire = load_wire(path)
    assert wire.count(b"\r\n") == raw.count(b"\n")


def test_wire_exact_folders_use_crlf(testdata: Path) -> None:
    for path in real_dir(testdata).rglob("*.sip"):
        if path.parent.name != "kamailio_test_misc_sip":
            head = path.read_bytes().split(b"\r\n\r\n", 1)[0]
            assert b"\n" not in head.replace(b"\r\n", b""), path.name


# ---------------------------------------------------------------------------------------
# Captures in order (INDEX.tsv)


def read_index(folder: Path) -> list[dict[str, str]]:
    with (folder / "INDEX.tsv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_every_pcap_folder_has_an_expected_call_count(testdata: Path) -> None:
    indexed = {p.parent.name for p in real_dir(testdata).glob("*/INDEX.tsv")}
    assert indexed == set(CALL_IDS_PER_FOLDER)


@pytest.mark.parametrize("folder_name", sorted(CALL_IDS_PER_FOLDER))
def test_index_matches_files(testdata: Path, folder_name: str) -> None:
    folder = real_dir(testdata) / folder_name
    rows = read_index(folder)
    assert {r["file"] for r in rows} == {p.name for p in folder.glob("*.sip")}
    for row in rows:
        data = (folder / row["file"]).read_bytes()
        assert len(data) == int(row["bytes"]), row["file"]
        first_line = data.split(b"\r\n", 1)[0].decode("utf-8")
        assert first_line == row["start_line"], row["file"]


@pytest.mark.parametrize("folder_name", sorted(CALL_IDS_PER_FOLDER))
def test_call_id_is_kept_across_each_call(testdata: Path, folder_name: str) -> None:
    folder = real_dir(testdata) / folder_name
    requests: list[Request] = []
    call_ids: set[str] = set()
    for row in read_index(folder):
        message = parse_message((folder / row["file"]).read_bytes())
        call_ids.add(message.call_id)
        cseq = message.cseq
        if isinstance(message, Response):
            if row["file"] in ORPHAN_RESPONSES:
                continue
            # A response answers an earlier request: same Call-ID, CSeq number and method.
            assert any(r.call_id == message.call_id and r.cseq == cseq for r in requests), row[
                "file"
            ]
            continue
        if message.method in IN_DIALOG_OR_INVITE_BOUND:
            # ACK, CANCEL and in-dialog requests share the Call-ID of an earlier INVITE
            # and carry the caller's tag (as From tag, or as To tag when the callee
            # sends them).  ACK and CANCEL repeat an INVITE's CSeq number.
            invites = [r for r in requests if r.method == "INVITE" and r.call_id == message.call_id]
            assert invites, row["file"]
            caller_tag = invites[0].from_.tag
            assert caller_tag is not None
            assert caller_tag in (message.from_.tag, message.to.tag), row["file"]
            if message.method in ("ACK", "CANCEL"):
                assert any(r.cseq.number == cseq.number for r in invites), row["file"]
        requests.append(message)
    assert len(call_ids) == CALL_IDS_PER_FOLDER[folder_name]


def test_audiocodes_tcp_call_in_order(testdata: Path) -> None:
    folder = real_dir(testdata) / "audiocodes_tcp_call"
    summary = []
    for row in read_index(folder):
        message = parse_message((folder / row["file"]).read_bytes(), stream=True)
        summary.append(message.method if isinstance(message, Request) else message.status)
    assert summary == ["INVITE", 100, 180, 200, "ACK", "BYE", 200]


def test_polycom_403_without_content_length_has_empty_body(testdata: Path) -> None:
    path = real_dir(testdata) / "polycom_register_ipip" / "poly_f0002_403-INVITE.sip"
    data = path.read_bytes()
    message = parse_message(data)
    assert isinstance(message, Response) and message.status == 403
    assert "content-length" not in message.headers
    assert message.body == b""
    assert message.serialize().endswith(b"Content-Length: 0\r\n\r\n")
