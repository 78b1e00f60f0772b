"""HTTP Digest authentication for SIP, as RFC 3261 §22.4 uses it with the algorithms of
RFC 8760 (SHA-256 preferred, MD5 for the phones that know nothing else).  Sans-IO:
challenges are made and answers checked with ``now`` passed in.

The server keeps no state per challenge.  A nonce is the time it was made and an HMAC
over that time and the realm under a key of the process (:class:`NonceSigner`), so any
nonce we did not make, or made too long ago, is recognised without a table.  What is
kept is small and bounded: the highest nonce-count seen per recent nonce, so that a
captured ``Authorization`` cannot be replayed (RFC 7616 §3.4.5: ``nc`` must grow).

Stored credentials are never passwords: a user's ``HA1`` for one realm and algorithm,
``H(username ":" realm ":" password)`` — what a registrar keeps (:func:`ha1`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from . import abnf
from .errors import RemoteSipError
from .headers import split_top_level


class Algorithm(StrEnum):
    """The digest algorithms of RFC 8760 §2.2 we offer, strongest first."""

    SHA256 = "SHA-256"
    MD5 = "MD5"


_HASHES: Mapping[Algorithm, Callable[[bytes], hashlib._Hash]] = {
    Algorithm.SHA256: hashlib.sha256,
    Algorithm.MD5: hashlib.md5,
}

#: The largest ``Authorization`` value looked at; anything longer is a 400.
MAX_CREDENTIALS_LENGTH = 4096
#: The longest ``username`` looked up (the catalog's user names are at most 64 characters);
#: a longer one is a 400 before any look-up.
MAX_USERNAME_LENGTH = 64
#: Parameters a digest ``response`` needs (RFC 3261 §22.4 with qop, RFC 7616 §3.4).
_REQUIRED = ("username", "realm", "nonce", "uri", "response")


def h(algorithm: Algorithm, text: str) -> str:
    """``H(text)``: the lower-case hex digest of the UTF-8 bytes."""
    return _HASHES[algorithm](text.encode("utf-8")).hexdigest()


def ha1(algorithm: Algorithm, username: str, realm: str, password: str) -> str:
    """``HA1`` for one user in one realm: what is stored instead of the password."""
    return h(algorithm, f"{username}:{realm}:{password}")


def expected_response(
    algorithm: Algorithm,
    ha1_value: str,
    *,
    method: str,
    uri: str,
    nonce: str,
    nc: str,
    cnonce: str,
) -> str:
    """The ``response`` a client with ``ha1_value`` sends for qop=auth (RFC 7616 §3.4.1)."""
    ha2 = h(algorithm, f"{method}:{uri}")
    return h(algorithm, f"{ha1_value}:{nonce}:{nc}:{cnonce}:auth:{ha2}")


@dataclass(frozen=True, slots=True)
class Credentials:
    """A parsed ``Authorization`` (or ``Proxy-Authorization``) Digest value."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: Algorithm
    cnonce: str
    nc: str
    qop: str
    opaque: str | None = None


def parse_credentials(value: str) -> Credentials:
    """Parse a Digest credentials value; ``RemoteSipError(400)`` when it is malformed,
    lacks a parameter qop=auth needs, or names an algorithm we do not offer (a client
    may only answer a challenge we sent), carries bytes that are not UTF-8 (they reach
    here as surrogates, which no store can take), or a ``username`` over
    :data:`MAX_USERNAME_LENGTH` characters."""
    if len(value) > MAX_CREDENTIALS_LENGTH:
        raise RemoteSipError(400, "Bad Request (Authorization too long)")
    if not _is_utf8(value):
        raise RemoteSipError(400, "Bad Request (Authorization is not UTF-8)")
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest" or not rest.strip():
        raise RemoteSipError(400, "Bad Request (not Digest credentials)")
    params: dict[str, str] = {}
    for item in split_top_level(rest, ","):
        name, eq, raw = item.strip(abnf.WSP).partition("=")
        name = name.strip(abnf.WSP).lower()
        if not eq or not abnf.is_token(name):
            raise RemoteSipError(400, "Bad Request (malformed Digest parameter)")
        if name in params:
            raise RemoteSipError(400, f"Bad Request (Digest parameter {name} repeated)")
        raw = raw.strip(abnf.WSP)
        quoted = len(raw) >= 2 and raw[0] == raw[-1] == '"'
        if not quoted and not abnf.is_token(raw):
            raise RemoteSipError(400, f"Bad Request (malformed Digest {name})")
        params[name] = abnf.unquote(raw) if quoted else raw
    missing = [name for name in _REQUIRED if not params.get(name)]
    if missing:
        raise RemoteSipError(400, f"Bad Request (Digest without {', '.join(missing)})")
    if len(params["username"]) > MAX_USERNAME_LENGTH:
        raise RemoteSipError(400, "Bad Request (Digest username too long)")
    try:
        algorithm = Algorithm(params.get("algorithm", "MD5").upper())
    except ValueError:
        raise RemoteSipError(400, "Bad Request (Digest algorithm not offered)") from None
    qop = params.get("qop", "")
    nc = params.get("nc", "")
    if qop.lower() != "auth" or not params.get("cnonce"):
        raise RemoteSipError(400, "Bad Request (Digest needs qop=auth with a cnonce)")
    if len(nc) != 8 or any(c not in "0123456789abcdefABCDEF" for c in nc):
        raise RemoteSipError(400, "Bad Request (Digest nc is not 8 hex digits)")
    return Credentials(
        username=params["username"],
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=params["response"].lower(),
        algorithm=algorithm,
        cnonce=params["cnonce"],
        nc=nc.lower(),
        qop="auth",
        opaque=params.get("opaque"),
    )


def _is_utf8(text: str) -> bool:
    """Whether ``text`` came from valid UTF-8: the message was decoded with
    ``surrogateescape``, so any byte that was not is a lone surrogate here."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class NonceSigner:
    """Makes nonces that carry their own proof: ``base64(time ‖ HMAC(key, time ‖ realm))``.
    ``key`` is random per process unless given (several processes behind one address
    would share one)."""

    _TIME = struct.Struct(">d")

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def make(self, realm: str, now: float) -> str:
        stamp = self._TIME.pack(now)
        mac = hmac.new(self._key, stamp + realm.encode(), hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(stamp + mac).decode("ascii").rstrip("=")

    def issued_at(self, nonce: str, realm: str) -> float | None:
        """When ``nonce`` was made for ``realm``; None if we did not make it."""
        if len(nonce) > 64:
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (ValueError, TypeError):
            return None
        if len(raw) != self._TIME.size + 16:
            return None
        stamp, mac = raw[: self._TIME.size], raw[self._TIME.size :]
        good = hmac.new(self._key, stamp + realm.encode(), hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(mac, good):
            return None
        made: float = self._TIME.unpack(stamp)[0]
        return made


class Verdict(StrEnum):
    """What an answer to our challenge came to."""

    OK = "ok"
    STALE = "stale"  # our nonce, but too old: challenge again with stale=true
    BAD_NONCE = "bad_nonce"  # not a nonce of ours for this realm
    REPLAYED = "replayed"  # a nonce-count not above the last one seen
    WRONG = "wrong"  # the response does not match (bad password, or unknown user)


class DigestAuthority:
    """Challenges and checks Digest answers for one realm.  ``lifetime``: how long a
    nonce is good for; ``remembered``: how many recent nonces' counts are kept (the
    least recently used forgotten first; a nonce made no later than one forgotten is
    answered ``stale``, so none is ever accepted twice with one count)."""

    def __init__(
        self,
        realm: str,
        *,
        signer: NonceSigner | None = None,
        lifetime: float = 300.0,
        remembered: int = 10_000,
        algorithms: tuple[Algorithm, ...] = (Algorithm.SHA256, Algorithm.MD5),
    ) -> None:
        if not realm or '"' in realm or "\\" in realm:
            raise ValueError(f"a digest realm must be plain text; got {realm!r}")
        self.realm = realm
        self.signer = signer or NonceSigner()
        self.lifetime = lifetime
        self.remembered = remembered
        self.algorithms = algorithms
        # nonce -> (when made, highest nonce-count accepted), least recently used first
        self._counts: OrderedDict[str, tuple[float, int]] = OrderedDict()
        # a nonce made no later than this and not in _counts may have been forgotten
        self._forgotten_up_to = float("-inf")

    def challenges(self, now: float, *, stale: bool = False) -> list[str]:
        """``WWW-Authenticate`` values, one per algorithm, preferred first (RFC 8760
        §2.4: a client uses the first it supports).  One nonce serves them all."""
        nonce = self.signer.make(self.realm, now)
        extra = ", stale=true" if stale else ""
        return [
            f'Digest realm="{self.realm}", nonce="{nonce}", algorithm={algorithm.value}, '
            f'qop="auth"{extra}'
            for algorithm in self.algorithms
        ]

    def check(
        self,
        credentials: Credentials,
        *,
        method: str,
        stored_ha1: str | None,
        now: float,
    ) -> Verdict:
        """Whether ``credentials`` prove the password behind ``stored_ha1`` (the user's
        HA1 for ``credentials.algorithm`` in this realm; None for no such user, which is
        checked all the same and comes out ``WRONG``)."""
        if credentials.realm != self.realm or credentials.algorithm not in self.algorithms:
            return Verdict.BAD_NONCE
        issued = self.signer.issued_at(credentials.nonce, self.realm)
        if issued is None or issued > now + 1.0:
            return Verdict.BAD_NONCE
        if now - issued > self.lifetime:
            return Verdict.STALE
        expected = expected_response(
            credentials.algorithm,
            stored_ha1 or h(credentials.algorithm, secrets.token_hex(16)),
            method=method,
            uri=credentials.uri,
            nonce=credentials.nonce,
            nc=credentials.nc,
            cnonce=credentials.cnonce,
        )
        if not hmac.compare_digest(expected, credentials.response) or stored_ha1 is None:
            return Verdict.WRONG
        count = int(credentials.nc, 16)
        seen = self._counts.get(credentials.nonce)
        if seen is None and issued <= self._forgotten_up_to:
            return Verdict.STALE  # made before one we forgot: it may have been used
        if seen is not None and count <= seen[1]:
            return Verdict.REPLAYED
        self._counts[credentials.nonce] = (issued, count)
        self._counts.move_to_end(credentials.nonce)
        while len(self._counts) > self.remembered:
            _, (forgotten, _) = self._counts.popitem(last=False)
            self._forgotten_up_to = max(self._forgotten_up_to, forgotten)
        return Verdict.OK
