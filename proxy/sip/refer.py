"""REFER and its implicit subscription (RFC 3515), the pieces a blind transfer needs.

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
from .uri import SipUri

SIPFRAG = "message/sipfrag;version=2.0"
#: How long the implicit subscription lasts unless a final NOTIFY ends it first
#: (RFC 6665 leaves it to the notifier; RFC 3515 §2.4.6 asks for some value).
SUBSCRIPTION_SECONDS = 60


def refer_to(request: Request) -> SipUri:
    """The target of a REFER: the one ``Refer-To`` (compact ``r``), a SIP URI without
    embedded headers.  400 when it is missing, repeated or malformed; 403 when it names
    something a blind transfer cannot call (not ``sip:``, or with ``?Replaces=``-style
    headers, which ask for an attended transfer)."""
    values = request.headers.get_all("refer-to")
    if len(values) != 1:
        raise RemoteSipError(400, "Bad Request (exactly one Refer-To needed)")
    try:
        target = NameAddr.parse(values[0]).uri
    except RemoteSipError:
        raise RemoteSipError(400, "Bad Request (malformed Refer-To)") from None
    if not isinstance(target, SipUri) or target.scheme != "sip" or target.headers:
        raise RemoteSipError(403, "Forbidden (only a plain sip: transfer target)")
    return target


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
