"""A SIPREC recording session (RFC 7866), top to bottom: recproxy as the recording
server (SRS) of a trusted SBC or PBX, the recording client (SRC).

The SRC has a call of its own, and sends us a copy of its media: one stream per
participant, described by its SDP offer and by the recording metadata (RFC 7865) in
the same ``multipart/mixed`` body.  So, unlike a :class:`~proxy.calls.call.Call`,
there is no notice to play (telling the parties was the SRC's job: the consent receipt
says so), no call taker to invite and nothing to relay: each stream arrives on a leg
of its own and goes, as it is, to its channel of the recording (left and right, see
:mod:`.siprec_offer`).  The recording is the same encrypted segment format as a call's,
so states, the writer, crash recovery, retention and export work unchanged.

``SiprecSession.run``::

    accept (answer 200, catalogue) → record (until BYE, or a deadline) → teardown

A re-INVITE with new SDP or a new metadata snapshot (RFC 7866 §9.2) is answered, the
streams' addresses followed and the snapshot stored; it cannot change which streams
are recorded (488, the session goes on as it was).  An UPDATE without a body, and a
re-INVITE without one (answered with our description as the offer), are session
refreshes: 200.

A session whose SRC is gone without a BYE ends by its session timer (RFC 4028: the
interval goes in every 2xx we send; without the SRC's refresh, or a 2xx to ours when we
are the refresher, it expires) or its media timeout (:mod:`.siprec_timer`), with the
outcome ``session_expired``: BYE to the SRC, ports back, the recording closed.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NoReturn

from ..media.relay import MediaSession, NoPortsAvailable, RtpLeg
from ..sip import sdes, sdp
from ..sip import session_timer as st
from ..sip.dialog import DialogState
from ..sip.errors import RemoteSipError
from ..sip.events import (
    AckTimedOut,
    Event,
    RequestCancelled,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
)
from ..sip.message import Request
from ..sip.transaction import ClientTransaction
from ..storage.catalog import (
    CallDirection,
    CallKind,
    CallOutcome,
    NewCall,
    SiprecParticipant,
    SiprecSession,
)
from .consent import store_src_receipt
from .ending import call_end, close_recording_and_call
from .media_wiring import G711_NAMES, check_family
from .parties import party
from .phases import CallOver
from .sip_legs import SipLegs
from .siprec_offer import (
    RecordedStream,
    SiprecOffer,
    answer,
    number_of,
    operator_of,
    read_offer,
)
from .siprec_offer import recorded_streams as plan_streams
from .siprec_timer import Due, RecordingTimer

if TYPE_CHECKING:
    from ..media.recorder import RecordingDirection
    from .b2bua import B2bua
    from .recording import ActiveRecording

log = logging.getLogger(__name__)


class SiprecHangup:
    """Put on a session's queue to end it from outside (shutdown)."""


class RecordingSession:
    """One recording session from an SRC: its dialog, its legs and its recording."""

    def __init__(self, b2bua: B2bua, invite: RequestReceived) -> None:
        self.b2bua = b2bua
        self.id = str(uuid.uuid4())
        self.invite = invite
        self.events: asyncio.Queue[Event | SiprecHangup] = asyncio.Queue()
        self.finished = False
        self.outcome = CallOutcome.FAILED
        self.started_at = datetime.now(UTC)
        self.sip = SipLegs(
            b2bua.core,
            invite.transaction,
            now=b2bua.now,
            flush=b2bua.flush,
            bind=lambda what: b2bua.routes.bind(what, self),
        )
        self.media: MediaSession = b2bua.new_session()
        self.streams: tuple[RecordedStream, ...] = ()
        self.legs: dict[int, RtpLeg] = {}  # m= line index → our leg for that stream
        self.catalog_id: str | None = None
        self.recording: ActiveRecording | None = None
        self._sdp_session = secrets.randbelow(2**31)
        self._sdp_version = 0
        # our SRTP key per suite, kept across re-INVITEs (as a call's leg keeps its own)
        self._own_keys: dict[str, bytes] = {}
        self._local: bytes | None = None  # our last answer: the offer of a refresh of ours
        sip_settings = b2bua.config.sip
        self.timer = RecordingTimer(
            st.TimerPolicy(sip_settings.session_expires, sip_settings.min_se)
            if sip_settings.session_expires
            else None,
            b2bua.config.siprec.media_timeout_seconds,
            b2bua.now(),
        )
        self.sip.answering = lambda request, dialog: self.timer.granted(request, b2bua.now())
        self._refresh: ClientTransaction | None = None  # our session refresh, if one is out

    async def run(self) -> None:
        try:
            await self._accept()
            await self._record()
        except CallOver as over:
            self.outcome = over.outcome
            log.info("SIPREC session %s ended by %s (%s)", self.id, over.by, over.why)
        except Exception:
            log.exception("SIPREC session %s failed", self.id)
        finally:
            await self._teardown()

    def hang_up(self) -> None:
        """End the session from outside its task (shutdown): BYE to the SRC."""
        self.events.put_nowait(SiprecHangup())

    # -- the session ---------------------------------------------------------------------

    async def _accept(self) -> None:
        """Read the offer and the metadata, take a leg per recorded stream, answer 200,
        catalogue the session and start recording."""
        request = self.invite.request
        try:
            offer = read_offer(request)
            address = self._media_host(offer.description)
            self.streams = plan_streams(offer, address, self.b2bua.config.siprec.srtp)
            remotes = {s.index: _remote(offer, s.index) for s in self.streams}
            if len({remote.family for remote in remotes.values()}) > 1:
                raise sdp.unusable_address("the streams' media addresses are of two families")
        except RemoteSipError as exc:
            self._refuse(exc)
        try:
            for stream in self.streams:
                self.legs[stream.index] = await self.media.open_leg(stream.channel, host=address)
        except NoPortsAvailable:
            self.sip.fail(503)
            raise CallOver(CallOutcome.FAILED, "proxy", "no RTP ports") from None
        body = self._answer(offer, address, remotes)
        dialog = self.sip.accept_a()
        self.sip.respond(self.sip.a_txn, 200, dialog=dialog, body=body)
        self.sip.a_answered = True
        await self._catalogue(offer)
        await self._start_recording(offer)

    def _refuse(self, exc: RemoteSipError) -> NoReturn:
        self.sip.fail(exc.status, exc.extra_headers, exc.reason)
        raise CallOver(CallOutcome.FAILED, "caller", exc.reason)

    def _media_host(self, description: sdp.SessionDescription) -> str:
        """Our media address in the family of the SRC's (488 if we have none)."""
        family = sdp.media_address(description).family
        host = self.b2bua.config.sip.media_host(family)
        if host is None:
            raise sdp.unusable_address(f"no IPv{family} media address here")
        return host

    def _answer(
        self, offer: SiprecOffer, address: str, remotes: dict[int, sdp.MediaAddress]
    ) -> bytes:
        """Our answer to ``offer``: our port for each recorded stream; and where each
        leg latches (it sends nothing: we only receive), its SRTP keys (it decrypts
        before recording) and what it records."""
        ports = [
            self.legs[i].port if i in self.legs else None
            for i in range(len(offer.description.media))
        ]
        description, keys = answer(
            offer,
            ports,
            address,
            self._sdp_session,
            self._sdp_version,
            srtp=self.b2bua.config.siprec.srtp,
            key_for=self._key,
        )
        self._sdp_version += 1
        self._local = description.serialize()
        for index, leg in self.legs.items():
            remote, port = remotes[index], offer.description.media[index].port
            if not remote.hold and port:
                leg.set_remote(remote.host, port)
            leg.audio_payload_type = int(description.media[index].formats[0])
            stream_keys = keys.get(index)
            if stream_keys is None:
                leg.secure(None)
            else:
                leg.secure(stream_keys.suite, stream_keys.send_key, stream_keys.receive_key)
        return self._local

    def _key(self, suite: str) -> bytes:
        """Our key for ``suite``: the one already given, else a fresh one."""
        if suite not in self._own_keys:
            self._own_keys[suite] = sdes.new_key(suite)
        return self._own_keys[suite]

    async def _catalogue(self, offer: SiprecOffer) -> None:
        """The call row (kind siprec: its numbers those of the participants on the
        left and right channels), the session's identifiers, the first metadata
        snapshot, and the consent receipt: the notice was the SRC's to give."""
        request = self.invite.request
        numbers = self.b2bua.config.numbers
        left = number_of(self.streams[0].sender) if self.streams else None
        right = number_of(self.streams[1].sender) if len(self.streams) > 1 else None
        catalog = self.b2bua.catalog
        row = await catalog.calls.create_call(
            NewCall(
                sip_call_id=request.call_id,
                caller=numbers.normalise(left or party(request.from_)),
                callee=numbers.normalise(right or party(request.to)),
                direction=CallDirection.INBOUND,
                started_at=self.started_at,
                config_version=self.b2bua.config_version,
                call_id=self.id,
                kind=CallKind.SIPREC,
                node=self.b2bua.config.node.name,
            )
        )
        self.catalog_id = row.id
        await catalog.calls.update_call(row.id, answered_at=datetime.now(UTC))
        session = offer.metadata.sessions[0] if offer.metadata and offer.metadata.sessions else None
        await catalog.siprec.add_session(
            SiprecSession(
                row.id,
                request.call_id,
                session.session_id if session else None,
                session.sip_session_ids[0] if session and session.sip_session_ids else None,
            )
        )
        await self._store_snapshot(offer)
        await store_src_receipt(catalog, row.id)

    async def _store_snapshot(self, offer: SiprecOffer) -> None:
        """A metadata snapshot and its participants, each with the channel it sends on."""
        if offer.metadata is None or offer.metadata_xml is None or self.catalog_id is None:
            return
        channels = {s.sender.participant_id: s.channel for s in self.streams if s.sender}
        people: Sequence[SiprecParticipant] = [
            SiprecParticipant(p.participant_id, p.aor, p.name, channels.get(p.participant_id))
            for p in offer.metadata.participants
        ]
        await self.b2bua.catalog.siprec.add_snapshot(
            self.catalog_id, datetime.now(UTC), offer.metadata_xml, people
        )

    async def _start_recording(self, offer: SiprecOffer) -> None:
        """Left and right channels in each stream's codec; each leg's audio to its own
        channel, and nothing relayed (the legs stay apart)."""
        assert self.catalog_id is not None
        codecs = [self._codec(offer, s.index) for s in self.streams]
        left = codecs[0]
        right = codecs[1] if len(codecs) > 1 else left
        recording = await self.b2bua.recordings.start(self.catalog_id, left, right)
        self.recording = recording
        directions = (recording.pair.caller, recording.pair.taker)
        for stream, direction in zip(self.streams, directions, strict=False):
            _feed(self.legs[stream.index], direction)
        operator = operator_of(self.b2bua.config.operators, self.streams)
        if operator is not None:
            await self.b2bua.catalog.calls.update_call(self.catalog_id, operator=operator.name)
        await self.b2bua.recordings.begin_part(
            recording,
            operator=operator.name if operator else None,
            team=operator.team if operator else None,
            at=datetime.now(UTC),
        )

    @staticmethod
    def _codec(offer: SiprecOffer, index: int) -> str:
        media = offer.description.media[index]
        rtpmap = next((r for f in media.formats if (r := media.rtpmap(f)) is not None), None)
        return rtpmap.name if rtpmap is not None and rtpmap.name in ("PCMU", "PCMA") else "PCMU"

    async def _record(self) -> None:
        """Until the SRC says BYE (or a deadline ends the session): answer its
        re-INVITEs, UPDATEs and whatever else comes."""
        while True:
            event = await self._next_event()
            if event is None:
                self._deadline()
                continue
            if isinstance(event, ResponseReceived | TransactionTimedOut):
                self._refresh_answered(event)
                continue
            if isinstance(event, SiprecHangup):
                raise CallOver(CallOutcome.COMPLETED, "proxy", "shutdown")
            if isinstance(event, RequestCancelled):
                raise CallOver(CallOutcome.FAILED, "caller", "CANCEL")
            if isinstance(event, AckTimedOut):
                raise CallOver(CallOutcome.FAILED, "caller", "never ACKed our answer")
            if not isinstance(event, RequestReceived):
                continue  # the ACK, or responses to our requests: nothing to do
            method = event.request.method
            if method == "BYE":
                self.sip.respond(event.transaction, 200, dialog=event.dialog)
                self.sip.hung_up(self.sip.a_dialog)
                raise CallOver(CallOutcome.COMPLETED, "caller", "BYE")
            if method in ("INVITE", "UPDATE") and not event.request.body:
                # a session refresh: our description again as the offer of a re-INVITE
                # (its answer comes in the ACK, and changes nothing); an UPDATE's 200 is bare
                body = (self._local or b"") if method == "INVITE" else b""
                self.sip.respond(event.transaction, 200, dialog=event.dialog, body=body)
            elif method in ("INVITE", "UPDATE"):
                await self._reinvite(event)
            else:
                self.b2bua.answer_other(event, event.dialog)

    async def _next_event(self) -> Event | SiprecHangup | None:
        """The next event, or None once the timer's next deadline has come."""
        deadline = self.timer.deadline()
        if deadline is None:
            return await self.events.get()
        try:
            return await asyncio.wait_for(self.events.get(), max(deadline - self.b2bua.now(), 0))
        except TimeoutError:
            return None

    def _deadline(self) -> None:
        """A deadline came: send our refresh, or end a session that is over."""
        activity = sum(leg.stats.packets_in + leg.stats.rtcp_in for leg in self.legs.values())
        due = self.timer.due(self.b2bua.now(), activity)
        if due is Due.REFRESH:
            self._send_refresh()
        elif due is Due.EXPIRED:
            raise CallOver(CallOutcome.SESSION_EXPIRED, "proxy", "no session refresh came")
        elif due is Due.MEDIA_TIMEOUT:
            seconds = self.timer.media_timeout
            raise CallOver(CallOutcome.SESSION_EXPIRED, "proxy", f"no media for {seconds} s")

    def _send_refresh(self) -> None:
        """We are the refresher: an UPDATE without a body if the SRC allows UPDATE, else a
        re-INVITE with the description it already has (RFC 4028 §7.4)."""
        dialog, interval, policy = self.sip.a_dialog, self.timer.interval, self.timer.policy
        if dialog is None or dialog.state is not DialogState.CONFIRMED:
            raise CallOver(CallOutcome.SESSION_EXPIRED, "proxy", "the dialog is gone")
        assert interval is not None and policy is not None
        headers = st.uac_headers(st.TimerPolicy(interval.seconds, policy.min_se), "uac")
        if _allows_update(self.invite.request) or self._local is None:
            request = dialog.create_request("UPDATE", headers=headers)
        else:
            headers = [("Allow", self.b2bua.core.allow), *headers]
            request = dialog.create_request("INVITE", body=self._local, headers=headers)
        self._refresh = self.sip.send(request, dialog=dialog)
        self.timer.refresh_sent(self.b2bua.now())
        log.info("SIPREC session %s: session refresh (%s) sent", self.id, request.method)

    def _refresh_answered(self, event: ResponseReceived | TransactionTimedOut) -> None:
        """The answer to our refresh: a 2xx starts the interval again; 408, 481 or no
        answer at all end the session (RFC 4028 §10); anything else leaves the expiry."""
        if event.transaction is not self._refresh:
            return
        if isinstance(event, TransactionTimedOut):
            raise CallOver(CallOutcome.SESSION_EXPIRED, "proxy", "the refresh got no answer")
        status = event.response.status
        if status < 200:
            return
        self._refresh = None
        if status < 300:
            if event.transaction.method == "INVITE":
                self.sip.ack(event)
            self.timer.refreshed(event.response, self.b2bua.now())
        elif status in (408, 481):
            raise CallOver(CallOutcome.SESSION_EXPIRED, "proxy", f"the refresh got {status}")

    async def _reinvite(self, event: RequestReceived) -> None:
        """A new offer or a new metadata snapshot: answered, followed and stored when it
        records the same streams; otherwise refused and nothing changes."""
        try:
            offer = read_offer(event.request)
            address = self._media_host(offer.description)
            streams = plan_streams(offer, address, self.b2bua.config.siprec.srtp)
            if [s.index for s in streams] != [s.index for s in self.streams]:
                raise RemoteSipError(
                    488,
                    "Not Acceptable Here",
                    extra_headers=(
                        ("Warning", '304 recproxy "the recorded streams cannot change"'),
                    ),
                )
            remotes = {
                s.index: check_family(self.legs[s.index], _remote(offer, s.index, in_call=True))
                for s in streams
            }
        except RemoteSipError as exc:
            headers = list(exc.extra_headers)
            self.sip.respond(event.transaction, exc.status, dialog=event.dialog, headers=headers)
            return
        body = self._answer(offer, address, remotes)
        await self._store_snapshot(offer)  # stored when the SRC hears it was taken
        self.sip.respond(event.transaction, 200, dialog=event.dialog, body=body)

    async def _teardown(self) -> None:
        """Whatever happened: end the dialog, give the ports back, close the recording,
        write the outcome."""
        ended_at = datetime.now(UTC)
        self.finished = True
        try:
            self.sip.end_a()
            self.b2bua.flush()
        except Exception:
            log.exception("SIPREC session %s: error while hanging up", self.id)
        for leg in self.legs.values():
            leg.sink = None
        self.media.close()
        end = None if self.catalog_id is None else call_end(self.catalog_id, ended_at, self.outcome)
        try:
            await close_recording_and_call(
                self.b2bua.recordings, self.recording, end, what=f"SIPREC session {self.id}"
            )
        finally:  # cancelled at shutdown too: nothing routes to the session any more
            self.b2bua.siprec_over(self)


def _remote(offer: SiprecOffer, index: int, *, in_call: bool = False) -> sdp.MediaAddress:
    """Where a stream comes from, checked (488 with a Warning when unusable)."""
    return sdp.media_address(offer.description, index, in_call=in_call)


def _allows_update(request: Request) -> bool:
    """The SRC's Allow lists UPDATE (a garbled Allow: it does not)."""
    try:
        return "UPDATE" in (m.upper() for m in request.headers.get_all("allow"))
    except RemoteSipError:
        return False


def _feed(leg: RtpLeg, direction: RecordingDirection) -> None:
    """A leg's audio to one channel, following a switch between PCMU and PCMA."""
    leg.sink = direction.push
    leg.on_codec_change = lambda pt: direction.set_codec(G711_NAMES[pt])
