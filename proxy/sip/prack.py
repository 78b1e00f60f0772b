"""Reliable provisional responses (RFC 3262, "100rel"), on both sides of a dialog.

As UAS we send a 1xx reliably only when the TU asks and the INVITE allows it
(``Supported`` or ``Require: 100rel``): it carries ``Require: 100rel`` and an ``RSeq``,
is retransmitted at T1, 2·T1, 4·T1 … until its PRACK arrives or 64·T1 have passed (§3),
and one reliable 1xx at a time is outstanding — a later one waits for the PRACK of the
one before.  A 2xx to the INVITE waits too while an unacknowledged reliable 1xx carried
a session description (§3).  A PRACK whose ``RAck`` matches nothing gets 481.

As UAC we PRACK each reliable 1xx whose RSeq is the first one of its early dialog or one
higher than the last; a retransmission (the same RSeq) and an RSeq out of order are not
PRACKed and not processed further (§4: our own PRACK is retransmitted by its
transaction).

Pure: the core gives ``now`` and does the sending; this keeps the sequence numbers and
the retransmission deadlines.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from . import abnf
from .errors import RemoteSipError
from .headers import offers_option, option_tags
from .message import Message, Response
from .resend import Resender

OPTION_TAG = "100rel"
#: RSeq and the RAck's response-num are 1 … 2**32 - 1 (RFC 3262 §7.1); a fresh RSeq
#: starts below 2**31 so that it never wraps (§3).
MAX_RSEQ = 2**32 - 1


def parse_rseq(text: str) -> int:
    """An ``RSeq`` value: a number 1 … 2**32-1; else a 400 for the peer."""
    return _number(text.strip(), "RSeq")


@dataclass(frozen=True, slots=True)
class RAck:
    """``RAck: response-num CSeq-num Method`` (RFC 3262 §7.2): which reliable 1xx a PRACK
    acknowledges."""

    rseq: int
    cseq: int
    method: str

    @classmethod
    def parse(cls, text: str) -> RAck:
        parts = text.split()
        if len(parts) != 3 or not abnf.is_token(parts[2]):
            raise RemoteSipError(400, f"Bad Request (bad RAck {text[:40]!r})")
        return cls(_number(parts[0], "RAck"), _number(parts[1], "RAck"), parts[2])

    def __str__(self) -> str:
        return f"{self.rseq} {self.cseq} {self.method}"


def _number(text: str, what: str) -> int:
    if not abnf.DIGITS.fullmatch(text) or len(text) > 10 or not 1 <= int(text) <= MAX_RSEQ:
        raise RemoteSipError(400, f"Bad Request (bad {what} {text[:40]!r})")
    return int(text)


def allows_reliable(message: Message) -> bool:
    """The INVITE says it supports (or requires) reliable provisional responses."""
    return offers_option(message.headers, OPTION_TAG)


def send_reliably(request: Message, mode: str) -> bool:
    """Whether our 1xx to ``request`` goes reliably under ``[sip] reliable_provisional``:
    always when the INVITE requires it, never with ``"off"`` otherwise."""
    return requires_reliable(request) or (mode != "off" and allows_reliable(request))


def requires_reliable(message: Message) -> bool:
    """``Require: 100rel`` (a garbled Require requires nothing: the core answered 400)."""
    try:
        return OPTION_TAG in (t.lower() for t in option_tags(message.headers, "require"))
    except RemoteSipError:
        return False


# ---------------------------------------------------------------------------------------
# UAS: our reliable 1xx


class Owner(Protocol):
    """What the retransmitter needs from the core."""

    def arm(self, owner: Resender, name: str, deadline: float) -> None: ...

    def count(self, what: str) -> None: ...


Send = Callable[[Response, float], None]


class ReliableResponse(Resender):
    """One reliable 1xx of ours, sent at ``start`` and resent at T1, 2·T1, 4·T1 … ("doubles
    for each retransmission", §3: no T2 cap) until PRACKed; after 64·T1 ``gave_up`` is
    called (the core rejects the INVITE with a 5xx, §3)."""

    def __init__(
        self,
        owner: Owner,
        response: Response,
        *,
        cseq: int,
        send: Send,
        gave_up: Callable[[float], None],
        t1: float,
    ) -> None:
        super().__init__(owner.arm, t1, cap=None)
        self.owner = owner
        self.response = response
        self.rseq = parse_rseq(response.headers.get("rseq") or "")
        self.cseq = cseq
        self.send = send
        self.gave_up = gave_up

    def start(self, now: float) -> None:
        self.send(self.response, now)
        super().start(now)

    @property
    def has_sdp(self) -> bool:
        return bool(self.response.body)

    def matches(self, rack: RAck) -> bool:
        return (rack.rseq, rack.cseq, rack.method.upper()) == (self.rseq, self.cseq, "INVITE")

    def resend(self, now: float) -> None:
        self.send(self.response, now)
        self.owner.count("retransmissions")

    def expired(self, now: float) -> None:
        self.owner.count("prack_timeouts")
        self.gave_up(now)


@dataclass(eq=False)
class ReliableSender:
    """The reliable 1xx of one INVITE server transaction (one early dialog): the one
    awaiting its PRACK, those queued behind it, and a 2xx held back until they are
    PRACKed."""

    next_rseq: int = field(default_factory=lambda: 1 + secrets.randbelow(2**31 - 1))
    outstanding: ReliableResponse | None = None
    queued: list[ReliableResponse] = field(default_factory=list)
    held_final: Callable[[float], None] | None = None  # the 2xx, sent once PRACKed

    def take_rseq(self) -> int:
        rseq = self.next_rseq
        self.next_rseq += 1
        return rseq

    def send(self, reliable: ReliableResponse, now: float) -> None:
        if self.outstanding is None:
            self.outstanding = reliable
            reliable.start(now)
        else:
            self.queued.append(reliable)

    def holds_2xx(self) -> bool:
        """§3: no 2xx while a reliable 1xx with a session description is unacknowledged."""
        pending = [self.outstanding, *self.queued]
        return any(r is not None and r.has_sdp for r in pending)

    def acknowledge(self, rack: RAck, now: float) -> bool:
        """A PRACK: True if it matched the outstanding 1xx (the next one is sent then,
        or the held 2xx once none is left)."""
        current = self.outstanding
        if current is None or not current.matches(rack):
            return False
        current.stop()
        self.outstanding = None
        if self.queued:
            self.send(self.queued.pop(0), now)
        elif self.held_final is not None:
            final, self.held_final = self.held_final, None
            final(now)
        return True

    def finish(self) -> None:
        """A final response went out (or was given up): nothing more is retransmitted."""
        if self.outstanding is not None:
            self.outstanding.stop()
        self.outstanding = None
        self.queued.clear()
        self.held_final = None


# ---------------------------------------------------------------------------------------
# UAC: the reliable 1xx we receive


@dataclass
class ReceivedRseqs:
    """The last RSeq PRACKed per early dialog of ours (§4)."""

    last: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def accept(self, dialog_id: tuple[str, str, str], response: Response) -> int | None:
        """The RSeq to PRACK, or None for a retransmission or an RSeq out of order (not
        PRACKed, not processed).  A missing or bad RSeq raises ``RemoteSipError``."""
        value = response.headers.get("rseq")
        if value is None:
            raise RemoteSipError(400, "Bad Request (reliable 1xx without RSeq)")
        rseq = parse_rseq(value)
        last = self.last.get(dialog_id)
        if last is not None and rseq != last + 1:
            return None
        self.last[dialog_id] = rseq
        return rseq

    def forget(self, dialog_id: tuple[str, str, str]) -> None:
        self.last.pop(dialog_id, None)
