"""When a SIPREC recording session is over without a BYE: its session timer (RFC 4028)
and its media timeout, without I/O.

A recording client (SRC) that disappears without a BYE would otherwise hold the
session's RTP ports, its open recording and a ``max_calls_per_source`` slot until
shutdown.  Two deadlines end such a session:

- **The session timer.**  Each 2xx we send to the SRC's INVITE, re-INVITE or UPDATE
  grants an interval (``granted``: what :func:`proxy.sip.session_timer.as_uas` answers,
  its headers for the 2xx).  When the SRC is the refresher (it supports ``timer``, as
  SBCs do), the session expires unless its next refresh comes in time (RFC 4028 §10).
  When we are (an SRC without ``timer``, or one asking ``refresher=uas``), a refresh of
  ours is due at half the interval; the session expires if no 2xx to it (``refreshed``)
  comes by the end of the interval (and go on refreshing when its 2xx names no
  interval).
- **The media timeout** (``[siprec] media_timeout_seconds``; 0: none): no RTP or RTCP
  on any of its streams for that long.  Activity is a packet count read from the legs
  (``activity``), so the hot path never reads a clock.

Pure: ``now`` is passed in; the session's task waits until ``deadline()`` and asks
``due(now, activity)``.
"""

from __future__ import annotations

import enum

from ..sip import session_timer as st
from ..sip.message import Request, Response


class Due(enum.Enum):
    """What a deadline that has come asks for."""

    REFRESH = "refresh"  # we are the refresher: send a session refresh now
    EXPIRED = "expired"  # no refresh in the interval: the session is over (RFC 4028 §10)
    MEDIA_TIMEOUT = "media timeout"  # no packet on any stream for media_timeout seconds


class RecordingTimer:
    """The session timer and the media timeout of one recording session."""

    def __init__(self, policy: st.TimerPolicy | None, media_timeout: float, now: float) -> None:
        self.policy = policy  # None: no session timer ([sip] session_expires = 0)
        self.media_timeout = media_timeout  # 0: none
        self.interval: st.Interval | None = None
        self._since = now  # the interval's start (the last refresh)
        self._refresh_sent: float | None = None  # our refresh is out since then
        self._activity = 0
        self._active_at = now  # when the packet count last moved

    # -- the session timer -----------------------------------------------------------------

    def granted(self, request: Request, now: float) -> list[tuple[str, str]]:
        """Our 2xx to the SRC's INVITE, re-INVITE or UPDATE: the interval starts again;
        its headers (none without a session timer)."""
        if self.policy is None:
            return []
        interval = st.as_uas(request, self.policy)
        self._start(interval, now)
        return st.uas_headers(request, interval)

    def refreshed(self, response: Response, now: float) -> None:
        """A 2xx to our refresh: the interval it answers starts now.  A 2xx without
        ``Session-Expires`` (an SRC that does not know timers) keeps ours, and us its
        refresher: our refreshes are how we learn the SRC is still there, and cost it
        nothing (RFC 4028 would turn the timer off)."""
        min_se = self.policy.min_se if self.policy is not None else st.RFC_MIN_SE
        answered = st.as_uac(response, min_se)
        if answered is None and self.interval is not None:
            answered = st.Interval(self.interval.seconds, "uac", we_refresh=True)
        self._start(answered, now)

    def refresh_sent(self, now: float) -> None:
        self._refresh_sent = now

    def _start(self, interval: st.Interval | None, now: float) -> None:
        self.interval = interval
        self._since = now
        self._refresh_sent = None

    # -- deadlines --------------------------------------------------------------------------

    def deadline(self) -> float | None:
        """The earliest time something may be due (None: nothing ever is)."""
        deadlines = []
        session = self._session_deadline()
        if session is not None:
            deadlines.append(session)
        if self.media_timeout:
            deadlines.append(self._active_at + self.media_timeout)
        return min(deadlines, default=None)

    def _session_deadline(self) -> float | None:
        interval = self.interval
        if interval is None:
            return None
        if interval.we_refresh and self._refresh_sent is None:
            return interval.refresh_due(self._since)
        if interval.we_refresh:
            return self._since + interval.seconds  # our refresh's 2xx, at the latest
        return interval.expiry_due(self._since)

    def due(self, now: float, activity: int) -> Due | None:
        """What is due at ``now``, given the legs' packet count ``activity``."""
        if activity != self._activity:
            self._activity = activity
            self._active_at = now
        if self.media_timeout and now >= self._active_at + self.media_timeout:
            return Due.MEDIA_TIMEOUT
        session = self._session_deadline()
        if session is None or now < session:
            return None
        assert self.interval is not None
        if self.interval.we_refresh and self._refresh_sent is None:
            return Due.REFRESH
        return Due.EXPIRED
