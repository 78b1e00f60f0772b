"""The ``Replaces`` header (RFC 3891), as an attended transfer carries it.

A call taker who has spoken to a colleague first (the consultation call, phone to phone)
transfers the caller with a REFER whose ``Refer-To`` embeds the consultation's dialog:
``<sip:bob@10.0.0.22?Replaces=cid%3Bto-tag%3Db%3Bfrom-tag%3Da>``.  recproxy invites the
colleague with that ``Replaces`` header, so their phone swaps the consultation for the
recorded call instead of ringing a second time.  Sans-IO: parsing and formatting only.

    Replaces       = "Replaces" HCOLON callid *(SEMI replaces-param)
    replaces-param = to-tag / from-tag / early-flag / generic-param
    to-tag = "to-tag" EQUAL token     from-tag = "from-tag" EQUAL token
    early-flag = "early-only"

Exactly one to-tag and one from-tag (§6.1: both are needed to match a dialog).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import abnf
from .errors import RemoteSipError
from .headers import parse_params

#: The option tag an INVITE carrying ``Replaces`` requires, so that a phone that cannot
#: replace a dialog answers 420 instead of ringing as a second call (RFC 3891 §6.2).
OPTION_TAG = "replaces"
#: Longer than any Call-ID and two tags have reason to be.
MAX_LENGTH = 1024


@dataclass(frozen=True, slots=True)
class Replaces:
    """The dialog to replace, named as the phone receiving the INVITE knows it."""

    call_id: str
    to_tag: str
    from_tag: str
    early_only: bool = False

    def __str__(self) -> str:
        early = ";early-only" if self.early_only else ""
        return f"{self.call_id};to-tag={self.to_tag};from-tag={self.from_tag}{early}"


def parse_replaces(value: str) -> Replaces:
    """Parse a ``Replaces`` value; ``RemoteSipError(400)`` when it is malformed."""
    if len(value) > MAX_LENGTH:
        raise RemoteSipError(400, "Bad Request (Replaces too long)")
    call_id, semi, rest = value.strip(abnf.WSP).partition(";")
    call_id = call_id.strip(abnf.WSP)
    if abnf.CALL_ID.fullmatch(call_id) is None:
        raise RemoteSipError(400, "Bad Request (Replaces without a Call-ID)")
    params = parse_params(semi + rest) if semi else ()
    seen: dict[str, list[str | None]] = {}
    for name, param in params:
        seen.setdefault(name.lower(), []).append(param)
    tags: dict[str, str] = {}
    for name in ("to-tag", "from-tag"):
        values = seen.get(name, [])
        if len(values) != 1 or values[0] is None or not abnf.is_token(values[0]):
            raise RemoteSipError(400, f"Bad Request (Replaces needs exactly one {name})")
        tags[name] = values[0]
    early = seen.get("early-only")
    if early is not None and (len(early) != 1 or early[0] is not None):
        raise RemoteSipError(400, "Bad Request (malformed early-only in Replaces)")
    return Replaces(call_id, tags["to-tag"], tags["from-tag"], early_only=early is not None)
