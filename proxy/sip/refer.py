"""REFER and its implicit subscription (RFC 3515), the pieces a transfer needs.

A REFER names its target in ``Refer-To`` (exactly one, RFC 3515 §2.4.1); the referee
accepts it with 202 and reports progress in NOTIFYs of the ``refer`` event package whose
bodies are ``message/sipfrag`` (RFC 3420): the status line of the referee's INVITE to
the target.  The last NOTIFY ends the subscription (§2.4.7).  Sans-IO: these build and
read messages; sending them is the caller's job.
"""

from __future__ import annotations

from .dialog import Dialog
from .errors import RemoteSipError
from .headers import NameAddr
from .message import Request
from .replaces import Replaces, parse_replaces
from .uri import SipUri, pct_decode

SIPFRAG = "message/sipfrag;version=2.0"
#: How long the implicit subscription lasts unless a final NOTIFY ends it first
#: (RFC 6665 leaves it to the notifier; RFC 3515 §2.4.6 asks for some value).
SUBSCRIPTION_SECONDS = 60


def refer_to(request: Request) -> SipUri:
    """The target of a REFER: the one ``Refer-To`` (compact ``r``), a SIP URI whose only
    embedded header may be ``Replaces`` (an attended transfer: :func:`replaces_of`).
    400 when it is missing, repeated or malformed; 403 when it names something we cannot
    call (not ``sip:`` or ``sips:``, or with any other embedded header: none may steer
    our INVITE).  A ``sips:`` target is accepted like a ``sip:`` one: our INVITE goes to
    the configured phone, whose own scheme decides whether it goes over TLS."""
    values = request.headers.get_all("refer-to")
    if len(values) != 1:
        raise RemoteSipError(400, "Bad Request (exactly one Refer-To needed)")
    try:
        target = NameAddr.parse(values[0]).uri
    except RemoteSipError:
        raise RemoteSipError(400, "Bad Request (malformed Refer-To)") from None
    if not isinstance(target, SipUri) or target.scheme not in ("sip", "sips"):
        raise RemoteSipError(403, "Forbidden (only a sip: or sips: transfer target)")
    replaces_of(target)  # any other header is refused here, before anything is done
    return target


def replaces_of(target: SipUri) -> Replaces | None:
    """The dialog an attended transfer's target replaces: the ``Replaces`` embedded in
    its ``Refer-To`` URI (RFC 3891 §4, RFC 5589 §7), or None for a blind transfer.
    403 for any other embedded header, or more than one; 400 for a malformed value."""
    if not target.headers:
        return None
    items = target.headers.split("&")
    name, _, value = items[0].partition("=")
    if len(items) != 1 or pct_decode(name).lower() != "replaces":
        raise RemoteSipError(403, "Forbidden (Refer-To may embed only one Replaces)")
    return parse_replaces(pct_decode(value))


def sipfrag(status: int, reason: str) -> bytes:
    """A NOTIFY body: the status line of our INVITE to the target (RFC 3515 §2.4.5)."""
    return f"SIP/2.0 {status} {reason}\r\n".encode()


def subscription_state(*, final: bool) -> str:
    """Active while the INVITE is pending; terminated with its final response."""
    return "terminated;reason=noresource" if final else f"active;expires={SUBSCRIPTION_SECONDS}"


def notify(dialog: Dialog, status: int, reason: str) -> Request:
    """The NOTIFY reporting ``status`` in the REFER's dialog; a final status (≥ 200)
    terminates the subscription."""
    return dialog.create_request(
        "NOTIFY",
        body=sipfrag(status, reason),
        content_type=SIPFRAG,
        headers=[
            ("Event", "refer"),
            ("Subscription-State", subscription_state(final=status >= 200)),
        ],
    )
