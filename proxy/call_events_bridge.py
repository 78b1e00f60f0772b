"""TEMPORARY (issue 13, branch i13-metrics): the call events, published from the B2BUA's
phase hook until the call publishes them itself (branch i13-calls adds ``publish=`` to
``B2bua``).  Delete this module, and its one use in ``proxy.app``, when that lands.

It reads the call's attributes the way ``control/metrics.py`` did before it became an
event subscriber, so metrics keep their meaning end to end in the meantime.  It lives
beside the app factory (the composition root), never in ``control/``.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from .calls.b2bua import B2bua, Call, CallPhase
from .events import (
    CallBridged,
    CallEnded,
    CallTakerInvited,
    ChannelSummary,
    NoticeAbandoned,
    NoticeFinished,
    NoticeStarted,
    Publish,
)
from .media.recorder import RecordingDirection
from .media.relay import RtpLeg
from .storage.catalog import CallOutcome

log = logging.getLogger(__name__)


class PhaseEvents:
    """``B2bua.on_phase``: each phase change becomes the event metrics subscribe to."""

    def __init__(self, b2bua: B2bua, publish: Publish) -> None:
        self._b2bua = b2bua
        self._publish = publish
        self._bridged: dict[str, tuple[float, int, int]] = {}  # at, caller/taker packets

    def __call__(self, call: Call, old: CallPhase, new: CallPhase) -> None:
        try:
            self._changed(call, old, new)
        except Exception:  # never into the call flow
            log.exception("call events: the phase hook failed (%s -> %s)", old.value, new.value)

    def _changed(self, call: Call, old: CallPhase, new: CallPhase) -> None:
        publish = self._publish
        if new is CallPhase.NOTICE:
            publish(NoticeStarted(call.id, self._b2bua.notice.duration_ms))
        if old is CallPhase.NOTICE:
            played = call.pacer.played_ms if call.pacer is not None else 0
            if new is CallPhase.RINGING:
                publish(NoticeFinished(call.id, played))
            else:
                left = call.outcome is CallOutcome.CALLER_ABANDONED_DURING_NOTICE
                publish(NoticeAbandoned(call.id, played, caller_left=left))
        if new is CallPhase.RINGING:
            publish(CallTakerInvited(call.id, _since(call.started_at)))
        elif new is CallPhase.BRIDGED:
            packets = (_packets_in(call.a_leg), _packets_in(call.b_leg))
            self._bridged[call.id] = (time.monotonic(), *packets)
            publish(CallBridged(call.id, _since(call.started_at), call.operator))
        elif new is CallPhase.ENDED:
            publish(self._ended(call))

    def _ended(self, call: Call) -> CallEnded:
        bridged = self._bridged.pop(call.id, None)
        pair = call.recording.pair if call.recording is not None else None
        if bridged is None:
            caller = taker = None
            if pair is not None:
                caller, taker = _summary(0, pair.caller), _summary(0, pair.taker)
            return CallEnded(call.id, call.outcome.value, "unknown", None, caller, taker)
        at, caller_packets, taker_packets = bridged
        return CallEnded(
            call.id,
            call.outcome.value,
            "unknown",
            time.monotonic() - at,
            _summary(_packets_in(call.a_leg) - caller_packets, pair.caller if pair else None),
            _summary(_packets_in(call.b_leg) - taker_packets, pair.taker if pair else None),
        )


def _since(started_at: datetime) -> float:
    return (datetime.now(UTC) - started_at).total_seconds()


def _packets_in(leg: RtpLeg | None) -> int:
    return leg.stats.packets_in if leg is not None else 0


def _summary(packets: int, direction: RecordingDirection | None) -> ChannelSummary:
    if direction is None:
        return ChannelSummary(packets)
    jitter, speech = direction.jitter.stats, direction.speech
    return ChannelSummary(
        packets,
        speech.frames,
        speech.speech_frames,
        jitter.received,
        jitter.duplicates,
        jitter.late,
        jitter.lost,
    )
