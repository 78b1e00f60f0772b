"""Who is on a call, read from its SIP messages: the parties' numbers, the operator
(member of staff) a phone belongs to, and whether an INVITE lets us answer with SDP."""

from __future__ import annotations

from collections.abc import Iterable

from ..config import OperatorSettings
from ..sip.errors import RemoteSipError
from ..sip.headers import NameAddr
from ..sip.message import Request, Response
from ..sip.uri import SipUri, Uri, parse_uri


def party(addr: NameAddr) -> str:
    """A From/To as the catalog names the party: its user part, else the whole URI."""
    uri = addr.uri
    if isinstance(uri, SipUri) and uri.user:
        return uri.user
    return str(uri)


def user(uri: Uri) -> str | None:
    return uri.user if isinstance(uri, SipUri) and uri.user else None


def identify(
    operators: Iterable[OperatorSettings], message: Request | Response, *extra: Uri
) -> OperatorSettings | None:
    """The operator whose configured identities match the answering (or calling)
    phone: its Contact, P-Asserted-Identity, From (for a caller) or target URI."""
    candidates: list[Uri] = []
    try:
        candidates += [c.uri for c in message.contacts if c.display != "*"]
        for value in message.headers.get_all("p-asserted-identity"):
            candidates.append(NameAddr.parse(value).uri)
        if isinstance(message, Request):
            candidates.append(message.from_.uri)
    except RemoteSipError:
        pass
    candidates += list(extra)
    for operator in operators:
        if any(identity_matches(i, u) for i in operator.identities for u in candidates):
            return operator
    return None


def identity_matches(identity: str, uri: Uri) -> bool:
    """``"2001"`` matches a URI whose user is 2001; ``"sip:2001@10.0.0.21"`` matches that
    user at that host (and port, if the identity names one)."""
    if not isinstance(uri, SipUri):
        return False
    if ":" not in identity and "@" not in identity:
        return uri.user == identity
    try:
        wanted = parse_uri(identity if ":" in identity else f"sip:{identity}")
    except RemoteSipError:
        return False
    if not isinstance(wanted, SipUri):
        return False
    if wanted.user is not None and wanted.user != uri.user:
        return False
    if wanted.host.lower() != uri.host.lower():
        return False
    return wanted.port is None or wanted.port == (uri.port or 5060)


def accepts_sdp(request: Request) -> bool:
    """Whether the INVITE's ``Accept`` lets us answer with SDP: no Accept means
    application/sdp (RFC 3261 §20.1); otherwise a range covering it with q above 0."""
    if not request.headers.get_lines("accept"):
        return True
    for value in request.headers.get_all("accept"):
        media_range, *params = (part.strip().lower() for part in value.split(";"))
        if media_range.replace(" ", "") not in ("application/sdp", "application/*", "*/*"):
            continue
        quality = next((p[2:].strip() for p in params if p.startswith("q=")), "1")
        try:
            if float(quality) > 0:
                return True
        except ValueError:
            continue
    return False
