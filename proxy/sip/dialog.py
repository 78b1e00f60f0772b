"""Dialogs (RFC 3261 §12): state, route set, CSeq, and building in-dialog requests.

A ``Dialog`` is plain data plus builders.  The core keeps the table of dialogs, routes
in-dialog requests and responses to them, and runs the 2xx retransmission timers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

from .errors import LocalSipError
from .headers import Headers, NameAddr, format_params
from .message import Request, Response, new_call_id, new_tag
from .uri import SipUri, Uri

DialogId = tuple[str, str, str]  # Call-ID, local tag, remote tag


class DialogState(enum.Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class Role(enum.Enum):
    UAC = "uac"
    UAS = "uas"


# Methods a dialog can build; ACK and CANCEL have their own builders.
IN_DIALOG_METHODS = frozenset(
    {"BYE", "INVITE", "UPDATE", "INFO", "REFER", "NOTIFY", "OPTIONS", "PRACK", "MESSAGE"}
)
# Requests whose 2xx refreshes the remote target (§12.2.1.2; RFC 3311, RFC 3515 §2.4.1).
TARGET_REFRESH = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})


def uri_destination(uri: Uri, default_transport: str = "UDP") -> tuple[str, int, str]:
    """(host, port, transport) to send a request for ``uri`` to (RFC 3263 without DNS:
    the host is used as it is, default port 5060, or 5061 for TLS).  Without a
    ``transport`` parameter, ``default_transport`` (the one the dialog was set up on).
    A ``sips:`` URI always goes over TLS, whatever its ``transport`` says (RFC 5630
    §3.1.3: never downgraded; ``transport=tcp`` there means TLS over TCP), and so does
    the legacy ``transport=tls`` of a ``sip:`` URI."""
    if not isinstance(uri, SipUri):
        raise LocalSipError(f"cannot route to a {uri.scheme}: URI")
    transport = (
        uri.transport
        if uri.param("transport") or uri.scheme == "sips"
        else (default_transport.upper())
    )
    if uri.scheme == "sips":
        transport = "TLS"
    host = uri.param("maddr") or uri.host
    default = 5061 if transport == "TLS" else 5060
    return host, uri.port or default, transport


@dataclass(eq=False)
class Dialog:
    role: Role
    call_id: str
    local_tag: str
    remote_tag: str
    local_party: str  # our From (UAC) / To (UAS) value, without tag
    remote_party: str
    remote_target: Uri
    route_set: list[str]
    local_seq: int
    remote_seq: int | None
    local_contact: str
    secure: bool = False
    state: DialogState = DialogState.EARLY
    transport: str = "UDP"
    # CSeq number of the INVITE whose ACK we sent (UAC) → that ACK, to resend on 2xx
    # retransmissions (§13.2.2.4).
    acks: dict[int, Request] = field(default_factory=dict)

    @property
    def id(self) -> DialogId:
        return self.call_id, self.local_tag, self.remote_tag

    # -- creation -------------------------------------------------------------------------

    @classmethod
    def from_request(
        cls, request: Request, *, local_tag: str, local_contact: str, transport: str = "UDP"
    ) -> Dialog:
        """The UAS side of a dialog created by ``request`` (§12.1.1)."""
        contacts = request.contacts
        # RFC 2543 allowed an INVITE without Contact (RFC 4475 §3.4.1): requests in the
        # dialog then go to the From URI, as they did then.
        remote_target = contacts[0].uri if contacts else request.from_.uri
        return cls(
            role=Role.UAS,
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_.tag or "",
            local_party=_without_tag(request.to),
            remote_party=_without_tag(request.from_),
            remote_target=remote_target,
            route_set=list(request.record_route),
            local_seq=0,
            remote_seq=request.cseq.number,
            local_contact=local_contact,
            secure=isinstance(request.uri, SipUri) and request.uri.scheme == "sips",
            transport=transport,
        )

    @classmethod
    def from_response(cls, request: Request, response: Response, transport: str) -> Dialog:
        """The UAC side of a dialog created by ``response`` to our ``request`` (§12.1.2)."""
        contacts = response.contacts
        remote_target = contacts[0].uri if contacts else request.uri
        return cls(
            role=Role.UAC,
            call_id=request.call_id,
            local_tag=request.from_.tag or "",
            remote_tag=response.to.tag or "",
            local_party=_without_tag(request.from_),
            remote_party=_without_tag(response.to),
            remote_target=remote_target,
            route_set=list(reversed(response.record_route)),
            local_seq=request.cseq.number,
            remote_seq=None,
            local_contact=request.headers.get("contact") or "",
            secure=isinstance(request.uri, SipUri) and request.uri.scheme == "sips",
            state=DialogState.CONFIRMED if 200 <= response.status < 300 else DialogState.EARLY,
            transport=transport,
        )

    # -- updates --------------------------------------------------------------------------

    def refresh_target(self, message: Request | Response) -> None:
        """A target refresh request or its 2xx carries a new Contact (§12.2)."""
        contacts = message.contacts
        if contacts and contacts[0].display != "*":
            self.remote_target = contacts[0].uri

    def update_from_response(self, response: Response) -> None:
        """Early → confirmed on a 2xx; route set is fixed once confirmed (§12.1.2)."""
        if self.state is DialogState.EARLY:
            self.route_set = list(reversed(response.record_route))
            if 200 <= response.status < 300:
                self.state = DialogState.CONFIRMED
        self.refresh_target(response)

    # -- building requests ----------------------------------------------------------------

    def create_request(
        self,
        method: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> Request:
        """A new in-dialog request with the next CSeq (§12.2.1.1).  The core adds the
        Via (with a fresh branch) and Max-Forwards when it sends it."""
        if method not in IN_DIALOG_METHODS:
            raise LocalSipError(f"{method} is not built by create_request")
        if self.state is DialogState.TERMINATED:
            raise LocalSipError("dialog is terminated")
        self.local_seq += 1
        return self._build(method, self.local_seq, body, content_type, headers)

    def create_ack(
        self, cseq: int, *, body: bytes = b"", content_type: str | None = None
    ) -> Request:
        """The ACK for a 2xx to our INVITE with CSeq ``cseq`` (§13.2.2.4)."""
        return self._build("ACK", cseq, body, content_type, None)

    def _build(
        self,
        method: str,
        cseq: int,
        body: bytes,
        content_type: str | None,
        extra: list[tuple[str, str]] | None,
    ) -> Request:
        uri, routes = self._request_uri_and_routes()
        h = Headers()
        h.add("From", self.local_party + format_params((("tag", self.local_tag),)))
        remote = self.remote_party
        if self.remote_tag:
            remote += format_params((("tag", self.remote_tag),))
        h.add("To", remote)
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{cseq} {method}")
        for route in routes:
            h.add("Route", route)
        if method in ("INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER") and self.local_contact:
            h.add("Contact", self.local_contact)
        for name, value in extra or ():
            h.add(name, value)
        if body:
            h.add("Content-Type", content_type or "application/sdp")
        return Request(method, uri, h, body)

    def _request_uri_and_routes(self) -> tuple[Uri, list[str]]:
        """Loose routing when the first route has ``lr``; else strict (§12.2.1.1)."""
        if not self.route_set:
            return self.remote_target, []
        first = NameAddr.parse(self.route_set[0])
        if isinstance(first.uri, SipUri) and first.uri.has_param("lr"):
            return self.remote_target, list(self.route_set)
        routes = [*self.route_set[1:], f"<{self.remote_target}>"]
        uri: Uri = first.uri
        if isinstance(uri, SipUri):
            # A Request-URI may carry any URI parameter but ``method``, and no headers
            # (§19.1.1, Table 1).
            uri = replace(uri.without_params("method"), headers=None)
        return uri, routes

    def next_hop(self) -> tuple[str, int, str]:
        """Where in-dialog requests go: the first route, or the remote target."""
        if self.route_set:
            return uri_destination(NameAddr.parse(self.route_set[0]).uri, self.transport)
        return uri_destination(self.remote_target, self.transport)

    def check_remote_cseq(self, request: Request) -> bool:
        """§12.2.2: a request with a CSeq lower than the last one is out of order."""
        number = request.cseq.number
        if self.remote_seq is not None and number <= self.remote_seq:
            return False
        self.remote_seq = number
        return True


def _without_tag(addr: NameAddr) -> str:
    return str(NameAddr(addr.uri, addr.display, tuple(p for p in addr.params if p[0] != "tag")))


def build_request(
    method: str,
    uri: Uri,
    *,
    from_: str,
    to: str,
    contact: str | None = None,
    call_id: str | None = None,
    cseq: int = 1,
    local_host: str = "localhost",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    content_type: str | None = None,
) -> Request:
    """An out-of-dialog request (§8.1.1).  ``from_`` gets a fresh tag if it has none.
    The core adds Via and Max-Forwards when it sends it."""
    from_addr = NameAddr.parse(from_)
    if from_addr.tag is None:
        from_addr = from_addr.with_params(tag=new_tag())
    h = Headers()
    h.add("From", str(from_addr))
    h.add("To", to)
    h.add("Call-ID", call_id or new_call_id(local_host))
    h.add("CSeq", f"{cseq} {method}")
    if contact:
        h.add("Contact", contact)
    for name, value in headers or ():
        h.add(name, value)
    if body:
        h.add("Content-Type", content_type or "application/sdp")
    return Request(method, uri, h, body)
