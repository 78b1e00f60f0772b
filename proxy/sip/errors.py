"""Errors of the SIP core, named for whose fault they are (as in h11).

``RemoteSipError``: the peer sent something we cannot accept.  It carries the status
code to answer with, so that bad bytes from the network always become a SIP response
(or a counted drop), never a traceback.

``LocalSipError``: our own code misused the API (a bug on our side).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .message import Request


class SipError(Exception):
    """Base class of every error raised by ``proxy.sip``."""


class RemoteSipError(SipError):
    """The peer sent something malformed or unacceptable.

    ``status`` is the response to send (400, 505, 501, 416, 420, 488, 513...).
    ``request`` is the request as far as it could be parsed, when it can be answered:
    it has at least one Via line (copied as it is into the answer, which goes back to
    the packet's source when that Via is unusable); otherwise None, and the message
    can only be dropped.  ``answerable`` is False for anything that
    is not a request (a garbled response is dropped and counted, never answered).
    ``extra_headers`` are headers the answer must carry (``Unsupported`` for 420,
    ``Allow`` for 405/501, ``Accept`` for 415...).
    """

    def __init__(
        self,
        status: int,
        reason: str,
        *,
        request: Request | None = None,
        answerable: bool = True,
        extra_headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.request = request
        self.answerable = answerable
        self.extra_headers = extra_headers

    def with_request(self, request: Request) -> RemoteSipError:
        """The same error, now knowing the (partly parsed) request it answers."""
        return RemoteSipError(
            self.status,
            self.reason,
            request=request,
            answerable=self.answerable,
            extra_headers=self.extra_headers,
        )


class LocalSipError(SipError):
    """We used the SIP core wrongly: a bug in our code, not the peer's fault."""
