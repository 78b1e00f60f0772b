"""Session timers (RFC 4028): the headers, the negotiation and the deadlines of one leg.

A dialog's session is kept alive by a refresh (re-INVITE or UPDATE) from the refresher
every half interval; if none arrives, the other side ends it shortly before the interval
runs out (minus min(32 s, interval/3), §10).  Here are the pure parts: parsing
``Session-Expires`` and ``Min-SE``, what a UAS answers to a request (or 422, §8.1), what a
UAC learns from a 2xx (§7.2), and when the next refresh or the expiry is due given the
time of the last refresh.  The call-side wiring (timers, requests) is in
``proxy.calls.session_refresh``.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import abnf
from .errors import RemoteSipError
from .headers import offers_option, parse_params
from .message import Message, Request, Response

OPTION_TAG = "timer"
#: RFC 4028 §4: Min-SE is never below 90 s (the default; tests may lower it by config)
RFC_MIN_SE = 90
_MAX_DELTA = 2**32 - 1


@dataclass(frozen=True, slots=True)
class SessionExpires:
    """``Session-Expires: delta-seconds [;refresher=uac|uas]`` (§4)."""

    seconds: int
    refresher: str | None = None  # "uac" or "uas"

    @classmethod
    def parse(cls, text: str) -> SessionExpires:
        value, _, rest = text.strip().partition(";")
        seconds = _delta(value.strip(), "Session-Expires")
        refresher = None
        for name, param in parse_params(";" + rest) if rest else ():
            if name.lower() == "refresher":
                if (param or "").lower() not in ("uac", "uas"):
                    raise RemoteSipError(400, "Bad Request (bad refresher parameter)")
                refresher = (param or "").lower()
        return cls(seconds, refresher)

    def __str__(self) -> str:
        return f"{self.seconds};refresher={self.refresher}" if self.refresher else str(self.seconds)


def parse_min_se(text: str) -> int:
    """``Min-SE: delta-seconds`` (parameters allowed and ignored, §5)."""
    return _delta(text.split(";", 1)[0].strip(), "Min-SE")


def _delta(text: str, what: str) -> int:
    if not abnf.DIGITS.fullmatch(text) or len(text) > 10 or int(text) > _MAX_DELTA:
        raise RemoteSipError(400, f"Bad Request (bad {what} {text[:40]!r})")
    return int(text)


def session_expires_of(message: Message) -> SessionExpires | None:
    value = message.headers.get("session-expires")
    return SessionExpires.parse(value) if value is not None else None


def min_se_of(message: Message) -> int | None:
    value = message.headers.get("min-se")
    return parse_min_se(value) if value is not None else None


def check_request(request: Request, min_se: int) -> None:
    """What a UAS refuses before anything else (§8.1, §5): a malformed Session-Expires
    or Min-SE (400) and an interval below our ``min_se`` (422 with our Min-SE)."""
    requested = session_expires_of(request)
    min_se_of(request)
    if requested is not None and requested.seconds < min_se:
        raise RemoteSipError(
            422,
            "Session Interval Too Small",
            extra_headers=(("Min-SE", str(min_se)),),
        )


@dataclass(frozen=True, slots=True)
class TimerPolicy:
    """Our side: the interval we ask for (or grant at most) and the least we accept."""

    session_expires: int = 1800
    min_se: int = RFC_MIN_SE


@dataclass(frozen=True, slots=True)
class Interval:
    """A negotiated session interval on one leg, and whether we are its refresher."""

    seconds: int
    refresher: str  # "uac" or "uas", as in the header
    we_refresh: bool

    def refresh_due(self, last: float) -> float:
        """When we send a refresh: half the interval after the last one (§7.4)."""
        return last + self.seconds / 2

    def expiry_due(self, last: float) -> float:
        """When the session ends without a refresh from the peer (§10)."""
        return last + self.seconds - min(32, self.seconds / 3)

    def next_deadline(self, last: float) -> float:
        return self.refresh_due(last) if self.we_refresh else self.expiry_due(last)

    def header(self) -> str:
        return str(SessionExpires(self.seconds, self.refresher))


def supports_timer(message: Message) -> bool:
    return offers_option(message.headers, OPTION_TAG)


def as_uas(request: Request, policy: TimerPolicy) -> Interval:
    """The interval we answer a dialog's INVITE, re-INVITE or UPDATE with (§9): what it
    asked for, at most ours and at least every Min-SE; the refresher it named, else the
    UAC if it supports timers, else us.  ``check_request`` has refused what is too small."""
    requested = session_expires_of(request)
    floor = max(min_se_of(request) or 0, policy.min_se)
    wanted = requested.seconds if requested is not None else policy.session_expires
    seconds = max(min(wanted, policy.session_expires), floor)
    if requested is not None and requested.refresher is not None:
        refresher = requested.refresher
    else:
        refresher = "uac" if supports_timer(request) else "uas"
    return Interval(seconds, refresher, we_refresh=refresher == "uas")


def uas_headers(request: Request, interval: Interval) -> list[tuple[str, str]]:
    """The 2xx's headers: Session-Expires, and Require: timer when the UAC refreshes."""
    headers = [("Session-Expires", interval.header())]
    if interval.refresher == "uac" and supports_timer(request):
        headers.append(("Require", OPTION_TAG))
    return headers


def uac_headers(policy: TimerPolicy, refresher: str | None = None) -> list[tuple[str, str]]:
    """What our dialog-forming or refreshing request asks for (§7.1, §7.4)."""
    return [
        ("Supported", OPTION_TAG),
        ("Session-Expires", str(SessionExpires(policy.session_expires, refresher))),
        ("Min-SE", str(policy.min_se)),
    ]


def as_uac(response: Response, min_se: int) -> Interval | None:
    """What a 2xx to our request set (§7.2): no Session-Expires (or a garbled one), no
    session timer; a refresher left out is ours (the UAC's).  An interval below the
    ``Min-SE`` we asked for (a 2xx must not go there, §9) is raised to it — to the RFC's
    90 s floor when ours is higher — so one bad header (``Session-Expires: 0``) cannot
    arm an expiry that ends the call at once."""
    try:
        answered = session_expires_of(response)
    except RemoteSipError:
        return None
    if answered is None:
        return None
    refresher = answered.refresher or "uac"
    seconds = max(answered.seconds, min(min_se, RFC_MIN_SE))
    return Interval(seconds, refresher, we_refresh=refresher == "uac")
