"""Digest authentication's sans-IO core (RFC 8760 algorithms, RFC 7616 qop=auth)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.sip.digest import (
    Algorithm,
    Credentials,
    DigestAuthority,
    NonceSigner,
    Verdict,
    expected_response,
    ha1,
    parse_credentials,
)
from proxy.sip.errors import RemoteSipError

REALM = "gp.example"


def test_responses_match_rfc_7616_examples() -> None:
    """RFC 7616 §3.9.1: the same request answered with MD5 and with SHA-256."""
    common = {
        "method": "GET",
        "uri": "/dir/index.html",
        "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        "nc": "00000001",
        "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    }
    for algorithm, expected in (
        (Algorithm.MD5, "8ca523f5e9506fed4657c9700eebdbec"),
        (Algorithm.SHA256, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ):
        secret = ha1(algorithm, "Mufasa", "http-auth@example.org", "Circle of Life")
        assert expected_response(algorithm, secret, **common) == expected


def answer(
    challenge: str,
    *,
    password: str = "correct horse",
    user: str = "alice",
    nc: str = "00000001",
    method: str = "REGISTER",
) -> Credentials:
    """What a phone sends back for ``challenge`` (parsed as the registrar would)."""
    params = dict(
        part.strip().split("=", 1) for part in challenge.removeprefix("Digest ").split(",")
    )
    nonce = params["nonce"].strip('"')
    algorithm = Algorithm(params["algorithm"])
    uri = "sip:gp.example"
    response = expected_response(
        algorithm,
        ha1(algorithm, user, REALM, password),
        method=method,
        uri=uri,
        nonce=nonce,
        nc=nc,
        cnonce="abc123",
    )
    return parse_credentials(
        f'Digest username="{user}", realm="{REALM}", nonce="{nonce}", uri="{uri}", '
        f'response="{response}", algorithm={algorithm.value}, cnonce="abc123", qop=auth, '
        f"nc={nc}"
    )


def stored(algorithm: Algorithm) -> str:
    return ha1(algorithm, "alice", REALM, "correct horse")


def test_challenges_offer_sha256_before_md5_with_one_nonce() -> None:
    sha, md5 = DigestAuthority(REALM).challenges(now=100.0)
    assert "algorithm=SHA-256" in sha and "algorithm=MD5" in md5
    assert sha.split("nonce=")[1].split(",")[0] == md5.split("nonce=")[1].split(",")[0]
    assert 'qop="auth"' in sha and "stale" not in sha
    assert "stale=true" in DigestAuthority(REALM).challenges(now=1.0, stale=True)[0]


@pytest.mark.parametrize("index", [0, 1])
def test_the_right_password_is_accepted_with_either_algorithm(index: int) -> None:
    authority = DigestAuthority(REALM)
    credentials = answer(authority.challenges(now=100.0)[index])
    verdict = authority.check(
        credentials, method="REGISTER", stored_ha1=stored(credentials.algorithm), now=101.0
    )
    assert verdict is Verdict.OK


def test_a_wrong_password_an_unknown_user_or_another_method_is_wrong() -> None:
    authority = DigestAuthority(REALM)
    challenge = authority.challenges(now=100.0)[0]
    wrong = answer(challenge, password="guess")
    assert (
        authority.check(wrong, method="REGISTER", stored_ha1=stored(Algorithm.SHA256), now=101)
        is Verdict.WRONG
    )
    right = answer(challenge)
    assert authority.check(right, method="REGISTER", stored_ha1=None, now=101) is Verdict.WRONG
    assert (
        authority.check(right, method="INVITE", stored_ha1=stored(Algorithm.SHA256), now=101)
        is Verdict.WRONG
    )


def test_a_nonce_is_good_for_its_lifetime_then_stale() -> None:
    authority = DigestAuthority(REALM, lifetime=60)
    credentials = answer(authority.challenges(now=100.0)[0])
    secret = stored(Algorithm.SHA256)
    assert authority.check(credentials, method="REGISTER", stored_ha1=secret, now=161) is (
        Verdict.STALE
    )


def test_a_nonce_not_ours_or_for_another_realm_is_refused() -> None:
    ours = DigestAuthority(REALM)
    theirs = DigestAuthority(REALM)  # another key: as if forged, or from another process
    credentials = answer(theirs.challenges(now=100.0)[0])
    secret = stored(Algorithm.SHA256)
    assert ours.check(credentials, method="REGISTER", stored_ha1=secret, now=101) is (
        Verdict.BAD_NONCE
    )
    signer = NonceSigner(b"k" * 32)
    assert signer.issued_at(signer.make("other.example", 5.0), REALM) is None
    assert signer.issued_at(signer.make(REALM, 5.0), REALM) == 5.0
    assert signer.issued_at("not base64 at all!", REALM) is None
    future = DigestAuthority(REALM, signer=signer)
    ahead = answer(future.challenges(now=500.0)[0])
    assert future.check(ahead, method="REGISTER", stored_ha1=secret, now=100) is (Verdict.BAD_NONCE)


def test_a_captured_answer_cannot_be_replayed() -> None:
    authority = DigestAuthority(REALM)
    challenge = authority.challenges(now=100.0)[0]
    secret = stored(Algorithm.SHA256)
    first = answer(challenge, nc="00000001")
    assert authority.check(first, method="REGISTER", stored_ha1=secret, now=101) is Verdict.OK
    assert authority.check(first, method="REGISTER", stored_ha1=secret, now=102) is (
        Verdict.REPLAYED
    )
    second = answer(challenge, nc="00000002")
    assert authority.check(second, method="REGISTER", stored_ha1=secret, now=103) is Verdict.OK


def test_a_forgotten_nonce_is_never_accepted_again() -> None:
    """Past ``remembered`` nonces the oldest is forgotten; a nonce made no later than it
    is then stale, not accepted a second time with the same count."""
    authority = DigestAuthority(REALM, remembered=2)
    secret = stored(Algorithm.SHA256)
    used = [answer(authority.challenges(now=100.0 + i)[0]) for i in range(3)]
    for i, credentials in enumerate(used):
        verdict = authority.check(credentials, method="REGISTER", stored_ha1=secret, now=110 + i)
        assert verdict is Verdict.OK
    assert authority.check(used[0], method="REGISTER", stored_ha1=secret, now=120) is (
        Verdict.STALE
    )
    fresh = answer(authority.challenges(now=130.0)[0])
    assert authority.check(fresh, method="REGISTER", stored_ha1=secret, now=131) is Verdict.OK


@pytest.mark.parametrize(
    "value",
    [
        "Basic YWxpY2U6c2VjcmV0",
        "Digest",
        'Digest username="alice", realm="r", nonce="n", uri="u"',  # no response
        'Digest username="alice", realm="r", nonce="n", uri="u", response="x", '
        'algorithm=SHA-512, qop=auth, cnonce="c", nc=00000001',  # not offered
        'Digest username="alice", realm="r", nonce="n", uri="u", response="x"',  # no qop
        'Digest username="alice", realm="r", nonce="n", uri="u", response="x", '
        'qop=auth, cnonce="c", nc=1',  # nc not 8 hex digits
        'Digest username="alice", username="bob", realm="r", nonce="n", uri="u", '
        'response="x", qop=auth, cnonce="c", nc=00000001',
        'Digest username="alice, realm="r"',
        "Digest " + "x=" * 3000,
        # a byte that is not UTF-8 arrives as a surrogate (surrogateescape): no store takes it
        'Digest username="al\udcffx", realm="r", nonce="n", uri="u", response="x", '
        'qop=auth, cnonce="c", nc=00000001',
        'Digest username="alice", realm="r\udc80", nonce="n", uri="u", response="x", '
        'qop=auth, cnonce="c", nc=00000001',
        f'Digest username="{"a" * 65}", realm="r", nonce="n", uri="u", response="x", '
        'qop=auth, cnonce="c", nc=00000001',  # longer than any user name
    ],
)
def test_malformed_credentials_are_a_400(value: str) -> None:
    with pytest.raises(RemoteSipError) as caught:
        parse_credentials(value)
    assert caught.value.status == 400


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_parses_or_is_a_400(text: str) -> None:
    try:
        parse_credentials(text)
    except RemoteSipError as exc:
        assert exc.status == 400


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            ["username", "realm", "nonce", "uri", "response", "algorithm", "qop", "nc", "cnonce"]
        ),
        st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    )
)
def test_any_parameters_are_checked_not_crashed_on(params: dict[str, str]) -> None:
    authority = DigestAuthority(REALM)
    value = "Digest " + ", ".join(f'{k}="{v}"' for k, v in params.items())
    try:
        credentials = parse_credentials(value)
    except RemoteSipError as exc:
        assert exc.status == 400
        return
    verdict = authority.check(credentials, method="REGISTER", stored_ha1="00", now=1.0)
    assert verdict is not Verdict.OK
