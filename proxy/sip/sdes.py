"""SDES: SRTP master keys carried in SDP ``a=crypto`` lines (RFC 4568).

Sans-IO, like the rest of ``proxy.sip``: attribute values in, dataclasses out, and back.
It knows nothing of m= lines (``proxy.calls.srtp_policy`` decides which stream gets
which line); it reads and writes one line and pairs an offer's lines with an answer's.

``CryptoAttribute.parse(value)`` reads the value of one ``a=crypto`` line (what follows
``crypto:``).  It returns the line or raises ``RemoteSipError(488)`` with a
``Warning: 306`` header, nothing else, whatever the text: a peer's malformed key is a
refused offer, never a traceback.  A suite we do not know is not malformed: its key
parameters are kept as text and the line is simply not chosen (RFC 4568 section 7.1.1).

The suites we speak are ``SUITES`` (RFC 4568 section 6.2, RFC 7714 section 14.2 for
AES-GCM); a line of ours carries one ``inline:`` key, no lifetime, no MKI and no session
parameter, and a peer's line is usable only in that same form (libsrtp is given one
master key per direction; an MKI or a session parameter would change the packets).

Keys come from ``new_key`` (``secrets``) or from the caller's ``key_for``.  ``SrtpKeys``
and ``KeyParam`` never show their key bytes in a ``repr``: keys go into no log line.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .errors import RemoteSipError

__all__ = [
    "SUITES",
    "CryptoAttribute",
    "KeyParam",
    "SrtpKeys",
    "answer_crypto",
    "choose_crypto",
    "new_key",
    "offer_crypto",
    "pair_answer",
]

#: Suites we can protect with: name -> (master key length, master salt length) in bytes,
#: in our order of preference for an offer.
SUITES: dict[str, tuple[int, int]] = {
    "AEAD_AES_256_GCM": (32, 12),  # RFC 7714
    "AES_CM_128_HMAC_SHA1_80": (16, 14),  # RFC 4568 section 6.2.1
    "AES_CM_128_HMAC_SHA1_32": (16, 14),  # RFC 4568 section 6.2.2
}

# RFC 4568 section 9.2: tag = 1*9DIGIT, crypto-suite = 1*(ALPHA / DIGIT / "_"),
# key-params = key-param *(";" key-param), session-params follow after whitespace.
_LINE = re.compile(r"(\d{1,9})[ \t]+([A-Za-z0-9_]{1,64})[ \t]+(\S+)((?:[ \t]+\S+)*)[ \t]*")
# srtp-key-info = key-salt ["|" lifetime] ["|" mki]; lifetime = ["2^"] 1*DIGIT;
# mki = mki-value ":" mki-length (1..128)
_KEY_INFO = re.compile(
    r"([A-Za-z0-9+/]+={0,2})(?:\|((?:2\^)?\d{1,20}))?(?:\|(\d{1,20}):(\d{1,3}))?"
)


def _malformed(what: str) -> RemoteSipError:
    # the reason phrase and the warning text never quote the peer's bytes
    return RemoteSipError(
        488,
        "Not Acceptable Here",
        extra_headers=(("Warning", f'306 recproxy "{what}"'),),
    )


@dataclass(frozen=True)
class KeyParam:
    """One ``inline:<key||salt>[|lifetime][|MKI:length]`` of a known suite."""

    key_salt: bytes = field(repr=False)
    lifetime: str | None = None
    mki: tuple[int, int] | None = None  # (value, length in bytes)

    def to_text(self) -> str:
        text = "inline:" + base64.b64encode(self.key_salt).decode("ascii")
        if self.lifetime is not None:
            text += f"|{self.lifetime}"
        if self.mki is not None:
            text += f"|{self.mki[0]}:{self.mki[1]}"
        return text


def _key_param(text: str, suite: str) -> KeyParam:
    method, colon, info = text.partition(":")
    if not colon or method.lower() != "inline":
        raise _malformed("a=crypto key method must be inline")
    match = _KEY_INFO.fullmatch(info)
    if match is None:
        raise _malformed("malformed a=crypto key parameter")
    encoded, lifetime, mki_value, mki_length = match.groups()
    try:
        key_salt = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed("a=crypto key is not base64") from None
    key_length, salt_length = SUITES[suite]
    if len(key_salt) != key_length + salt_length:
        raise _malformed(f"a=crypto key of {suite} must be {key_length + salt_length} bytes")
    if lifetime is not None and lifetime.startswith("2^") and int(lifetime[2:]) > 64:
        raise _malformed("a=crypto lifetime out of range")
    mki = None
    if mki_value is not None:
        length = int(mki_length)
        if not 1 <= length <= 128:
            raise _malformed("a=crypto MKI length must be 1 to 128")
        mki = (int(mki_value), length)
    return KeyParam(key_salt, lifetime, mki)


@dataclass(frozen=True)
class CryptoAttribute:
    """One ``a=crypto`` line.  ``keys`` holds the parsed key parameters of a suite in
    ``SUITES``; a line of another suite keeps them as text in ``other_keys``."""

    tag: int
    suite: str
    keys: tuple[KeyParam, ...] = ()
    session_params: tuple[str, ...] = ()
    other_keys: str = field(default="", repr=False)

    @classmethod
    def parse(cls, value: str | None) -> CryptoAttribute:
        """Read one line's value; ``RemoteSipError(488)`` with a Warning if malformed."""
        match = _LINE.fullmatch((value or "").strip())
        if match is None:
            raise _malformed("malformed a=crypto line")
        tag, suite, key_params, session = match.groups()
        params = tuple(session.split())
        if suite not in SUITES:
            return cls(int(tag), suite, (), params, key_params)
        keys = tuple(_key_param(text, suite) for text in key_params.split(";"))
        return cls(int(tag), suite, keys, params)

    @property
    def usable(self) -> bool:
        """A suite we speak, one key, no MKI, no session parameter: what libsrtp is
        given.  Any other line is not malformed, just not one we can choose."""
        return (
            self.suite in SUITES
            and len(self.keys) == 1
            and self.keys[0].mki is None
            and not self.session_params
        )

    @property
    def key(self) -> bytes:
        """The master key and salt of a usable line."""
        if not self.usable:
            raise ValueError(f"a=crypto:{self.tag} is not usable")
        return self.keys[0].key_salt

    def to_text(self) -> str:
        keys = ";".join(k.to_text() for k in self.keys) if self.keys else self.other_keys
        return " ".join((str(self.tag), self.suite, keys, *self.session_params))


@dataclass(frozen=True)
class SrtpKeys:
    """What one leg agreed: the suite, our key (what we send is protected with it) and
    the party's (what it sends is checked and decrypted with it)."""

    suite: str
    send_key: bytes = field(repr=False)
    receive_key: bytes = field(repr=False)


def new_key(suite: str) -> bytes:
    """A fresh master key and salt for ``suite``."""
    key_length, salt_length = SUITES[suite]
    return secrets.token_bytes(key_length + salt_length)


KeySource = Callable[[str], bytes]  # suite -> our master key and salt for it


def offer_crypto(
    suites: Sequence[str] = tuple(SUITES), key_for: KeySource = new_key
) -> tuple[CryptoAttribute, ...]:
    """Our offer's lines: one per suite, tags from 1, each with ``key_for(suite)`` (a
    fresh key by default)."""
    return tuple(
        CryptoAttribute(tag, suite, (KeyParam(key_for(suite)),))
        for tag, suite in enumerate(suites, start=1)
    )


def choose_crypto(offered: Sequence[CryptoAttribute]) -> CryptoAttribute | None:
    """The first usable line of an offer, in the offerer's order of preference (RFC
    4568 section 7.1.1); None when there is none."""
    return next((line for line in offered if line.usable), None)


def answer_crypto(chosen: CryptoAttribute, key_for: KeySource = new_key) -> CryptoAttribute:
    """Our answer to the offered line we chose: same tag and suite, ``key_for(suite)``
    (a fresh key by default)."""
    return CryptoAttribute(chosen.tag, chosen.suite, (KeyParam(key_for(chosen.suite)),))


def pair_answer(
    ours: Sequence[CryptoAttribute], answered: Sequence[CryptoAttribute]
) -> SrtpKeys | None:
    """The keys agreed when a party answers our lines ``ours`` with ``answered``.

    None when the answer has no line (the party took plain RTP); 488 when it has more
    than one, names a tag we did not offer, changes the suite, or is not usable
    (RFC 4568 section 7.1.3)."""
    if not answered:
        return None
    if len(answered) != 1:
        raise _malformed("an answer takes one a=crypto line")
    line = answered[0]
    offered = next((o for o in ours if o.tag == line.tag), None)
    if offered is None or offered.suite != line.suite or not line.usable:
        raise _malformed("the answer's a=crypto does not match our offer")
    return SrtpKeys(line.suite, offered.key, line.key)
