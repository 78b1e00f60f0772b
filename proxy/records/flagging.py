"""Anomaly flags from real accesses (P11, P21): after the gate audits a playback, an
export or a refusal (or the export command audits a custodian export), :class:`Flagger`
reads that actor's accesses of the hour before it back from the audit chain, asks the
pure rules (:func:`proxy.records.anomaly.anomalies`) and raises each flag they name
(``catalog.flags``, audited as ``flag.raise``).

The audit chain is the record read, not a counter in memory: every process that asks
the gate (the records service, a second one after a restart, the command line) sees the
same history, and a restart forgets nothing.

The console's player page draws the recording's waveform from the audio: a ``play``
decision of its own, audited and marked ``waveform``, that the rules do not count — the
page's playback is counted once, by the player's request, not twice per page view.  A
refused drawing is a refusal like any other.

A media player fetches one listening in many byte ranges, each a decision of its own
(audited).  The gate marks those that start past the first byte ``continuation``; one is
not counted again when the same listening (the same recording, part and purpose) was
counted in the hour before it.  A continuation with no listening before it counts: a
player cannot dodge the count by never asking for byte 0.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..config import AccessSettings
from ..storage.catalog import AccessFlag, FlagRepository, NewFlag
from ..storage.catalog.audit import AuditEntry, AuditLog
from .anomaly import WINDOW, Access, AccessKind, Anomaly, anomalies
from .policy import Action

#: The audit actions the gate writes for its decisions.
ALLOWED = "access.allowed"
REFUSED = "access.refused"
#: The audit action of an export by the key custodian on the command line: an export too.
CUSTODIAN_EXPORT = "custodian_export"

_KIND_OF_ACTION = {Action.PLAY.value: AccessKind.PLAYBACK, Action.EXPORT.value: AccessKind.EXPORT}


def access_of(entry: AuditEntry) -> Access | None:
    """The access an audit entry records, if the anomaly rules count it: every refusal
    of the gate, each playback (not a waveform's drawing) or export it allowed, and each
    custodian export."""
    if entry.action == REFUSED:
        return Access(AccessKind.REFUSAL, entry.at)
    if entry.action == CUSTODIAN_EXPORT:
        return Access(AccessKind.EXPORT, entry.at)
    if entry.action == ALLOWED:
        if entry.detail.get("waveform"):
            return None  # a drawing beside the player: its playback is counted, not this
        kind = _KIND_OF_ACTION.get(str(entry.detail.get("action")))
        return None if kind is None else Access(kind, entry.at)
    return None


class Flagger:
    """Raise the flags an access earns; see the module docstring."""

    def __init__(self, audit: AuditLog, flags: FlagRepository, settings: AccessSettings) -> None:
        self._audit = audit
        self._flags = flags
        self._settings = settings

    async def after(self, entry: AuditEntry) -> list[AccessFlag]:
        """The flags raised by the access ``entry`` records (none for an entry that is
        no counted access)."""
        if access_of(entry) is None:
            return []
        window = await self._audit.entries(since=entry.at - WINDOW, actor=entry.actor)
        counted = counted_accesses([*(e for e in window if e.seq != entry.seq), entry])
        latest = counted.pop(entry.seq, None)
        if latest is None:  # a continuation of a listening already counted
            return []
        earlier = list(counted.values())
        recording = _recording_of(entry)
        raised = []
        for anomaly in sorted(anomalies(latest, earlier, self._settings), key=lambda a: a.value):
            flag = NewFlag(anomaly.value, entry.actor, recording, self._detail(entry, anomaly))
            raised.append(await self._flags.raise_flag(flag, at=entry.at))
        return raised

    def _detail(self, entry: AuditEntry, anomaly: Anomaly) -> dict[str, object]:
        """What the DPO needs to judge the flag: the access (its audit entry, action,
        purpose), and for an out-of-hours one the local time and the working hours."""
        detail: dict[str, object] = {
            "audit_seq": entry.seq,
            "action": entry.detail.get("action", entry.action),
            "purpose": entry.detail.get("purpose"),
        }
        if anomaly is Anomaly.OUTSIDE_WORKING_HOURS:
            settings = self._settings
            start, end = settings.working_hours
            local = entry.at.astimezone(settings.timezone)
            detail |= {
                "local_time": local.isoformat(timespec="seconds"),
                "timezone": settings.timezone.key,
                "working_hours": f"{start:%H:%M}-{end:%H:%M}",
            }
        return detail


def counted_accesses(entries: Iterable[AuditEntry]) -> dict[int, Access]:
    """The accesses the anomaly rules count in ``entries`` (one actor's, in sequence
    order), by audit sequence number: each :func:`access_of`, less the continuations of
    a listening counted before them (see the module docstring)."""
    counted: dict[int, Access] = {}
    listenings: set[tuple[object, ...]] = set()
    for entry in entries:
        access = access_of(entry)
        if access is None:
            continue
        if access.kind is AccessKind.PLAYBACK:
            listening = (entry.object, entry.detail.get("part"), entry.detail.get("purpose"))
            if entry.detail.get("continuation") and listening in listenings:
                continue
            listenings.add(listening)
        counted[entry.seq] = access
    return counted


def _recording_of(entry: AuditEntry) -> str | None:
    kind, _, ident = (entry.object or "").partition(":")
    return ident if kind == "recording" and ident else None
