"""The registrar's sans-IO core (RFC 3261 §10.3 with RFC 8760 digest): bytes in, bytes
out, on a fake clock.  A tiny transaction user wires it to a real ``SipCore`` with the
credentials in a dict where the proxy reads the catalog."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.sip.auth_throttle import FailureThrottle, ProvenSources
from proxy.sip.core import ALLOWED_METHODS, CoreSettings, SipCore
from proxy.sip.digest import Algorithm, expected_response, ha1
from proxy.sip.errors import RemoteSipError
from proxy.sip.events import Address, RequestReceived
from proxy.sip.flood import FloodSettings
from proxy.sip.message import Request, Response, parse_message
from proxy.sip.registrar import (
    Answer,
    Bindings,
    Lookup,
    Outcome,
    Registrar,
    RegistrarRules,
    Secrets,
)
from tests.sip.sipcore_helpers import raw_request

REALM = "gp.example"
PASSWORD = "phone secret 12345"
PHONE: Address = ("192.0.2.10", 5070)
RULES = RegistrarRules(
    realm=REALM,
    domains=frozenset({REALM, "127.0.0.2"}),
    min_expires=60,
    max_expires=3600,
    default_expires=1800,
    max_contacts_per_aor=3,
    source_failures=3,
    account_failures=5,
    failure_window=60.0,
)


def secrets_of(user: str, password: str = PASSWORD, realm: str = REALM) -> Secrets:
    return Secrets(
        realm,
        ha1(Algorithm.SHA256, user, realm, password),
        ha1(Algorithm.MD5, user, realm, password),
    )


def register(
    n: int = 1,
    *,
    user: str = "alice",
    contact: str | None = "<sip:alice@192.0.2.10:5070>",
    call_id: str = "reg-1@192.0.2.10",
    cseq: int | None = None,
    headers: tuple[tuple[str, str], ...] = (),
    host: str = REALM,
) -> bytes:
    return raw_request(
        "REGISTER",
        uri=f"sip:{host}",
        via=f"SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-reg-{n};rport",
        from_=f"<sip:{user}@{host}>;tag=reg-tag",
        to=f"<sip:{user}@{host}>",
        call_id=call_id,
        cseq=n if cseq is None else cseq,
        contact=contact,
        headers=headers,
    )


def authorization(
    challenge: str,
    *,
    user: str = "alice",
    password: str = PASSWORD,
    nc: str = "00000001",
    algorithm: Algorithm | None = None,
) -> tuple[str, str]:
    """What a phone answers ``challenge`` (a WWW-Authenticate value) with."""
    params = dict(
        part.strip().split("=", 1) for part in challenge.removeprefix("Digest ").split(",")
    )
    nonce = params["nonce"].strip('"')
    algorithm = algorithm or Algorithm(params["algorithm"])
    uri = f"sip:{REALM}"
    response = expected_response(
        algorithm,
        ha1(algorithm, user, REALM, password),
        method="REGISTER",
        uri=uri,
        nonce=nonce,
        nc=nc,
        cnonce="c0ffee",
    )
    value = (
        f'Digest username="{user}", realm="{REALM}", nonce="{nonce}", uri="{uri}", '
        f'response="{response}", algorithm={algorithm.value}, cnonce="c0ffee", qop=auth, nc={nc}'
    )
    return ("Authorization", value)


@dataclass
class Registry:
    """A core with the registrar behind it: the dict is the catalog."""

    now: float = 0.0
    users: dict[str, Secrets] = field(
        default_factory=lambda: {"alice": secrets_of("alice"), "bob": secrets_of("bob")}
    )
    flood: FloodSettings = field(default_factory=FloodSettings)

    def __post_init__(self) -> None:
        settings = CoreSettings(
            host="127.0.0.2", allowed_methods=(*ALLOWED_METHODS, "REGISTER"), flood=self.flood
        )
        self.core = SipCore(settings)
        self.registrar = Registrar(RULES)

    def send(self, data: bytes, source: Address = PHONE) -> list[Response]:
        """Deliver ``data``; the responses the core sends back."""
        self.core.receive_datagram(data, source, self.now)
        while (event := self.core.next_event()) is not None:
            assert isinstance(event, RequestReceived)
            answer = self.decide(event.request, event.source[0])
            self.core.respond(
                event.transaction,
                answer.status,
                answer.reason,
                now=self.now,
                headers=answer.headers,
            )
        out = []
        for o in self.core.datagrams_to_send():
            response = parse_message(o.data)
            assert isinstance(response, Response)
            out.append(response)
        return out

    def decide(self, request: Request, source: str) -> Answer:
        step = self.registrar.screen(request, source, self.now)
        if isinstance(step, Answer):
            return step
        assert isinstance(step, Lookup)
        return self.registrar.complete(
            step,
            request,
            source,
            self.users.get(step.username),
            aor_is_user=step.aor_user in self.users,
            now=self.now,
        )

    def one(self, data: bytes, source: Address = PHONE) -> Response:
        (response,) = self.send(data, source)
        return response

    def registered(self, n: int = 2, **kw: object) -> Response:
        """A REGISTER challenged, then answered right: the 200."""
        challenge = self.one(register(n * 100, **kw))  # type: ignore[arg-type]
        assert challenge.status == 401
        user = str(kw.get("user", "alice"))
        # one nonce per fake instant: each call counts on from its own nc
        value = challenge.headers.get_all("www-authenticate")[0]
        header = authorization(value, user=user, nc=f"{n:08x}")
        headers = (*kw.pop("headers", ()), header)  # type: ignore[misc]
        return self.one(register(n * 100 + 1, headers=headers, **kw))  # type: ignore[arg-type]


def contacts(response: Response) -> list[str]:
    return response.headers.get_all("contact")


# --- digest over bytes ---------------------------------------------------------------------


def test_a_register_is_challenged_with_sha256_first_then_md5() -> None:
    response = Registry().one(register())
    assert response.status == 401
    sha, md5 = response.headers.get_all("www-authenticate")
    assert "algorithm=SHA-256" in sha and "algorithm=MD5" in md5 and f'realm="{REALM}"' in sha


@pytest.mark.parametrize("algorithm", [Algorithm.SHA256, Algorithm.MD5])
def test_the_right_answer_registers_with_either_algorithm(algorithm: Algorithm) -> None:
    registry = Registry()
    challenge = registry.one(register(1))
    header = authorization(challenge.headers.get_all("www-authenticate")[0], algorithm=algorithm)
    ok = registry.one(register(2, headers=(header,)))
    assert ok.status == 200
    assert contacts(ok) == ["<sip:alice@192.0.2.10:5070>;expires=1800"]
    (bound,) = registry.registrar.bindings.contacts_for("sip:alice@gp.example", 0.0)
    assert str(bound.uri) == "sip:alice@192.0.2.10:5070" and bound.expires_at == 1800.0


def test_a_wrong_password_is_challenged_again_and_counted() -> None:
    registry = Registry()
    challenge = registry.one(register(1)).headers.get_all("www-authenticate")[0]
    wrong = registry.one(register(2, headers=(authorization(challenge, password="guess"),)))
    assert wrong.status == 401 and wrong.headers.get_all("www-authenticate")
    assert registry.registrar.outcomes["failed"] == 1
    assert registry.registrar.bindings.count(0.0) == 0


def test_an_unknown_user_is_answered_as_a_wrong_password() -> None:
    registry = Registry()
    challenge = registry.one(register(1, user="mallory")).headers.get_all("www-authenticate")[0]
    response = registry.one(
        register(2, user="mallory", headers=(authorization(challenge, user="mallory"),))
    )
    assert response.status == 401 and registry.registrar.outcomes["failed"] == 1


def test_a_stale_nonce_is_challenged_with_stale_true_and_not_counted() -> None:
    registry = Registry()
    challenge = registry.one(register(1)).headers.get_all("www-authenticate")[0]
    registry.now = RULES.nonce_seconds + 1
    response = registry.one(register(2, headers=(authorization(challenge),)))
    assert response.status == 401
    assert all("stale=true" in c for c in response.headers.get_all("www-authenticate"))
    assert registry.registrar.outcomes["failed"] == 0


def test_a_replayed_authorization_is_refused() -> None:
    registry = Registry()
    challenge = registry.one(register(1)).headers.get_all("www-authenticate")[0]
    header = authorization(challenge)
    assert registry.one(register(2, headers=(header,))).status == 200
    assert registry.one(register(3, headers=(header,))).status == 401  # same nc again
    assert registry.registrar.outcomes["failed"] == 1


def test_a_password_set_for_another_realm_does_not_authenticate() -> None:
    registry = Registry(users={"alice": secrets_of("alice", realm="old.example")})
    assert registry.registered().status == 401


def test_a_user_may_not_register_another_users_aor() -> None:
    registry = Registry()
    challenge = registry.one(register(1, user="bob")).headers.get_all("www-authenticate")[0]
    # alice's credentials, bob's To
    response = registry.one(register(2, user="bob", headers=(authorization(challenge),)))
    assert (response.status, response.reason) == (
        403,
        "Forbidden (another user's address of record)",
    )
    carol = registry.one(
        register(3, user="carol", headers=(authorization(challenge, nc="00000002"),))
    )
    assert carol.status == 404


def test_an_aor_outside_our_domains_is_404_before_any_challenge() -> None:
    response = Registry().one(register(host="elsewhere.example"))
    assert response.status == 404 and not response.headers.get_all("www-authenticate")


def test_the_aor_may_name_our_address() -> None:
    registry = Registry()
    assert registry.registered(host="127.0.0.2").status == 200
    assert registry.registrar.bindings.contacts_for("sip:alice@gp.example", 0.0)


# --- throttling ------------------------------------------------------------------------------


def test_after_n_failures_a_source_is_refused_unchecked_until_the_window_passes() -> None:
    registry = Registry()
    challenge = registry.one(register(1)).headers.get_all("www-authenticate")[0]
    statuses = []
    for n in range(2, 8):
        header = authorization(challenge, password="guess", nc=f"{n:08x}")
        statuses.append(registry.one(register(n, headers=(header,))).status)
    assert statuses == [401, 401, 401, 503, 503, 503]
    assert registry.registrar.outcomes["failed"] == 3
    assert registry.registrar.outcomes["throttled"] == 3
    refused = registry.one(register(9))
    assert refused.status == 503 and refused.headers.get("retry-after") == "60"
    # even the right password is not checked while throttled
    registry.now = 30.0
    blocked = registry.one(register(10, headers=(authorization(challenge, nc="00000010"),)))
    assert blocked.status == 503 and blocked.headers.get("retry-after") == "30"
    # another source is not affected; after the window the source is checked again
    assert registry.one(register(11), ("192.0.2.99", 5060)).status == 401
    registry.now = 61.0
    assert registry.registered(12).status == 200


def test_an_account_is_throttled_across_sources() -> None:
    registry = Registry()
    challenge = registry.one(register(1)).headers.get_all("www-authenticate")[0]
    statuses = []
    for n in range(2, 9):  # a different source each time: only the account counts up
        header = authorization(challenge, password="guess", nc=f"{n:08x}")
        source = (f"198.51.100.{n}", 5060)
        statuses.append(registry.one(register(n, headers=(header,)), source).status)
    assert statuses == [401] * 5 + [503] * 2
    # bob, from a source that failed once, is unaffected
    assert registry.registered(20, user="bob").status == 200


def test_a_username_that_is_not_utf8_is_400_before_any_look_up() -> None:
    registry = Registry()
    challenge = registry.one(register(1)).headers.get_all("www-authenticate")[0]
    header = authorization(challenge, user="alQx")
    data = register(2, headers=(header,)).replace(b'username="alQx"', b'username="al\xffx"')
    response = registry.one(data)
    assert (response.status, response.reason) == (400, "Bad Request (Authorization is not UTF-8)")
    assert registry.registrar.outcomes["refused"] == 1


def block_alice(registry: Registry, first: int) -> None:
    """A guesser's wrong answers for alice from many (perhaps spoofed) sources."""
    challenge = registry.one(register(first)).headers.get_all("www-authenticate")[0]
    for n in range(first + 1, first + 1 + RULES.account_failures):
        header = authorization(challenge, password="guess", nc=f"{n:08x}")
        registry.one(register(n, headers=(header,)), (f"198.51.100.{n % 250}", 5060))
    assert registry.one(register(first + 50, headers=(header,)), OTHER).status == 503


OTHER: Address = ("203.0.113.9", 5060)


def test_a_guesser_cannot_lock_out_a_phone_that_proved_the_password() -> None:
    registry = Registry()
    registry.now = 0.0
    assert registry.registered(2, contact="<sip:alice@10.0.0.7:5070>").status == 200  # NAT
    registry.now = 10.0
    block_alice(registry, 100)
    # the phone that authenticated from PHONE within the window is still checked
    assert registry.registered(3, contact="<sip:alice@10.0.0.7:5070>").status == 200
    # a source that never proved the password is held off
    challenge = registry.one(register(4), OTHER).headers.get_all("www-authenticate")[0]
    header = authorization(challenge, nc="00000004")
    assert registry.one(register(5, headers=(header,)), OTHER).status == 503


def test_a_live_binding_exempts_its_address_from_the_account_block() -> None:
    registry = Registry()
    assert registry.registered(2).status == 200  # binds sip:alice@192.0.2.10:5070
    registry.now = 500.0  # the proof is long past the window; the binding (1800 s) lives
    block_alice(registry, 100)
    assert registry.registered(3).status == 200


def test_an_exempt_phone_is_still_subject_to_its_own_source_block() -> None:
    registry = Registry()
    assert registry.registered(2).status == 200
    challenge = registry.one(register(10)).headers.get_all("www-authenticate")[0]
    for n in range(11, 11 + RULES.source_failures):
        header = authorization(challenge, password="guess", nc=f"{n:08x}")
        registry.one(register(n, headers=(header,)))
    assert registry.one(register(30)).status == 503


def test_proven_sources_expire_and_bound_their_table() -> None:
    proven = ProvenSources(max_pairs=2)
    proven.prove("alice", "192.0.2.10", until=60.0)
    assert proven.proved("alice", "192.0.2.10", 59.0)
    assert not proven.proved("bob", "192.0.2.10", 0.0)
    assert not proven.proved("alice", "192.0.2.10", 60.0) and len(proven) == 0
    for source in ("a", "b", "c"):
        proven.prove("alice", source, until=100.0)
    assert len(proven) == 2 and not proven.proved("alice", "a", 0.0)


def test_failure_throttle_blocks_when_its_limit_is_reached_and_bounds_its_table() -> None:
    throttle = FailureThrottle(2, 10.0, max_keys=3)
    assert throttle.record("a", 0.0) is False and throttle.blocked_for("a", 0.0) == 0.0
    assert throttle.record("a", 1.0) is True  # just blocked: log now, once
    assert throttle.blocked_for("a", 5.0) == 5.0 and throttle.blocked_for("a", 10.0) == 0.0
    assert throttle.record("a", 12.0) is False  # the old failures left the window
    for key in "bcde":
        throttle.record(key, 0.0)
    assert len(throttle) == 3


# --- bindings (§10.3) ------------------------------------------------------------------------


def test_expires_param_beats_the_header_which_beats_the_default() -> None:
    registry = Registry()
    ok = registry.registered(
        contact="<sip:alice@192.0.2.10:5070>;expires=120, <sip:alice@192.0.2.11>",
        headers=(("Expires", "600"),),
    )
    assert sorted(contacts(ok)) == [
        "<sip:alice@192.0.2.10:5070>;expires=120",
        "<sip:alice@192.0.2.11>;expires=600",
    ]


def test_too_brief_is_423_with_min_expires_and_changes_nothing() -> None:
    registry = Registry()
    registry.registered()
    response = registry.registered(3, contact="<sip:alice@192.0.2.12>;expires=30")
    assert response.status == 423 and response.reason == "Interval Too Brief"
    assert response.headers.get("min-expires") == "60"
    assert registry.registrar.bindings.count(0.0) == 1


def test_too_long_is_shortened_to_max_expires() -> None:
    ok = Registry().registered(headers=(("Expires", "999999"),))
    assert contacts(ok) == ["<sip:alice@192.0.2.10:5070>;expires=3600"]


@pytest.mark.parametrize(
    ("expires", "kept"),
    [
        ("9" * 5000, 3600),  # past Python's int-string limit: the maximum, not a traceback
        ("0" * 4400 + "120", 120),  # leading zeros are still the number they spell
        ("4294967296", 3600),  # above 2**32-1: treated as the largest
    ],
)
def test_an_overlong_expires_is_capped_not_a_crash(expires: str, kept: int) -> None:
    registry = Registry()
    ok = registry.registered(headers=(("Expires", expires),))
    assert ok.status == 200
    assert contacts(ok) == [f"<sip:alice@192.0.2.10:5070>;expires={kept}"]


def test_bindings_expire_and_q_orders_them() -> None:
    registry = Registry()
    registry.registered(
        contact="<sip:alice@192.0.2.10>;q=0.5;expires=100, <sip:alice@192.0.2.11>;q=0.9"
    )
    found = registry.registrar.bindings.contacts_for("sip:alice@gp.example", 50.0)
    assert [str(c.uri) for c in found] == ["sip:alice@192.0.2.11", "sip:alice@192.0.2.10"]
    assert [
        c.uri.host for c in registry.registrar.bindings.contacts_for("sip:alice@gp.example", 100.0)
    ] == ["192.0.2.11"]
    assert registry.registrar.snapshot(2000.0).bindings == 0


def test_a_register_without_contact_lists_the_bindings() -> None:
    registry = Registry()
    registry.registered()
    listed = registry.registered(3, contact=None, call_id="query@192.0.2.10")
    assert listed.status == 200 and contacts(listed) == ["<sip:alice@192.0.2.10:5070>;expires=1800"]


def test_star_with_expires_zero_removes_every_binding() -> None:
    registry = Registry()
    registry.registered(contact="<sip:alice@192.0.2.10>, <sip:alice@192.0.2.11>")
    assert registry.registrar.bindings.count(0.0) == 2
    ok = registry.registered(3, contact="*", headers=(("Expires", "0"),))
    assert ok.status == 200 and contacts(ok) == []
    assert registry.registrar.bindings.count(0.0) == 0


@pytest.mark.parametrize(
    ("contact", "headers"),
    [
        ("*", ()),  # no Expires: 0
        ("*", (("Expires", "10"),)),
        ("*, <sip:alice@192.0.2.10>", (("Expires", "0"),)),
        ("<sip:alice@192.0.2.10>;expires=soon", ()),
        ("<sip:alice@192.0.2.10>;q=2", ()),
        ("<sip:alice@192.0.2.10>", (("Expires", "-1"),)),
        ("<tel:+441234567>", ()),
    ],
)
def test_malformed_registers_are_400_and_change_nothing(
    contact: str, headers: tuple[tuple[str, str], ...]
) -> None:
    registry = Registry()
    registry.registered()
    response = registry.registered(3, contact=contact, headers=headers)
    assert response.status == 400, response.reason
    assert registry.registrar.bindings.count(0.0) == 1


def test_expires_zero_removes_one_binding() -> None:
    registry = Registry()
    registry.registered(contact="<sip:alice@192.0.2.10>, <sip:alice@192.0.2.11>")
    ok = registry.registered(3, contact="<sip:alice@192.0.2.10>;expires=0")
    assert contacts(ok) == ["<sip:alice@192.0.2.11>;expires=1800"]


def test_an_older_cseq_of_the_same_call_id_is_out_of_order() -> None:
    bindings = Bindings(RULES)
    aor = "sip:alice@gp.example"

    def req(cseq: int, expires: str = "300") -> Request:
        message = parse_message(register(cseq, contact=f"<sip:alice@192.0.2.10>;expires={expires}"))
        assert isinstance(message, Request)
        return message

    bindings.update(aor, req(5), 0.0)
    with pytest.raises(RemoteSipError) as caught:
        bindings.update(aor, req(5, "0"), 1.0)  # a retransmission-like replay
    assert caught.value.status == 500
    assert bindings.count(1.0) == 1
    bindings.update(aor, req(6, "0"), 1.0)
    assert bindings.count(1.0) == 0
    # another Call-ID (another phone) may take the contact over whatever its CSeq
    other = parse_message(register(1, call_id="other@x", contact="<sip:alice@192.0.2.10>"))
    assert isinstance(other, Request)
    bindings.update(aor, req(7), 2.0)
    assert bindings.update(aor, other, 3.0)[0].call_id == "other@x"


def test_more_contacts_than_allowed_is_403_and_changes_nothing() -> None:
    registry = Registry()
    registry.registered(contact="<sip:alice@192.0.2.10>, <sip:alice@192.0.2.11>")
    response = registry.registered(3, contact="<sip:alice@192.0.2.12>, <sip:alice@192.0.2.13>")
    assert response.status == 403 and "more than 3 contacts" in (response.reason or "")
    assert registry.registrar.bindings.count(0.0) == 2


# --- the per-source token buckets count REGISTER, SUBSCRIBE and PRACK ------------------------


@pytest.mark.parametrize("method", ["REGISTER", "SUBSCRIBE", "PRACK"])
def test_out_of_dialog_requests_take_a_token_from_the_source(method: str) -> None:
    flood = FloodSettings(request_burst=3, requests_per_second=0.001, refusal_burst=2)
    core = SipCore(CoreSettings(host="127.0.0.2", flood=flood))
    statuses = []
    for n in range(8):
        data = raw_request(
            method,
            via=f"SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-{method}-{n}",
            call_id=f"{method}-{n}@x",
        )
        core.receive_datagram(data, PHONE, 0.0)
        while core.next_event() is not None:
            pass
        for out in core.datagrams_to_send():
            message = parse_message(out.data)
            assert isinstance(message, Response)
            statuses.append(message.status)
    assert statuses.count(503) == 2  # then silence: the refusal bucket is empty
    assert core.stats["refused_rate"] == 5
    assert core.transaction_count <= 3


# --- fuzzing ----------------------------------------------------------------------------------

_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(contact=_text, expires=_text, authorization_value=_text)
def test_any_contact_expires_or_authorization_gets_a_sip_answer(
    contact: str, expires: str, authorization_value: str
) -> None:
    """Whatever the headers say, the registrar answers with a status (or the parser
    refuses the message as a protocol error): nothing else is raised."""
    data = register(
        contact=contact or None,
        headers=(("Expires", expires or "0"), ("Authorization", authorization_value or "x")),
    )
    try:
        request = parse_message(data)
    except RemoteSipError:
        return
    assert isinstance(request, Request)
    registrar = Registrar(RULES)
    step = registrar.screen(request, "192.0.2.10", 0.0)
    if isinstance(step, Lookup):
        step = registrar.complete(
            step, request, "192.0.2.10", secrets_of("alice"), aor_is_user=True, now=0.0
        )
    assert isinstance(step, Answer) and 200 <= step.status < 700
    assert step.outcome in Outcome


@settings(max_examples=200, deadline=None)
@given(contact=_text, expires=_text)
def test_bindings_update_raises_only_the_protocol_error(contact: str, expires: str) -> None:
    try:
        request = parse_message(
            register(contact=contact or None, headers=(("Expires", expires or "0"),))
        )
    except RemoteSipError:
        return
    assert isinstance(request, Request)
    bindings = Bindings(RULES)
    try:
        bindings.update("sip:alice@gp.example", request, 0.0)
    except RemoteSipError as exc:
        assert exc.status in (400, 403, 423, 500)
    assert bindings.count(0.0) <= RULES.max_contacts_per_aor
