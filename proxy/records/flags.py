"""What the DPO does with anomaly flags (P11, P21): list them, and clear one they have
looked at, saying why.  The flags themselves are raised by
:class:`~proxy.records.flagging.Flagger`; clearing keeps the flag (the history is the
evidence) with who cleared it, when and why, and its ``flag.clear`` audit entry is
written in the same transaction (``catalog.flags``).

Values arrive as the person sent them and are checked here, before anything is
written; ``authorise`` (the records service: the gate) is asked once the request is
well formed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..storage.catalog import AccessFlag, FlagRepository, FlagStateError, NotFoundError
from .errors import FlagAlreadyCleared, InvalidFlagRequest, RecordNotFound
from .holds import MAX_TEXT

#: Asked before a flag is cleared; raises to refuse.
Authorise = Callable[[], Awaitable[object]]


class FlagDesk:
    """List and clear the flags of ``flags``."""

    def __init__(self, flags: FlagRepository) -> None:
        self._flags = flags

    async def listing(self, *, open_only: bool, limit: int) -> list[AccessFlag]:
        """Flags, newest first: every one or only the open ones, at most ``limit``."""
        return await self._flags.flags(open_only=open_only, limit=limit)

    async def clear(
        self, flag_id: str, *, by: str, reason: object, authorise: Authorise
    ) -> AccessFlag:
        """Clear flag ``flag_id`` (its number as text, as a path gives it).
        ``RecordNotFound`` for no such flag, ``FlagAlreadyCleared`` for a cleared one,
        ``InvalidFlagRequest`` without a reason."""
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidFlagRequest("reason is required: why the flag needs nothing more")
        why = " ".join(reason.split())
        if len(why) > MAX_TEXT:
            raise InvalidFlagRequest(f"reason is longer than {MAX_TEXT} characters")
        number = flag_id.strip()
        if not (number.isascii() and number.isdigit()) or len(number) > 18:
            raise RecordNotFound(f"flag {flag_id} does not exist")
        await authorise()
        try:
            return await self._flags.clear(int(number), by=by, reason=why)
        except NotFoundError as exc:
            raise RecordNotFound(str(exc)) from None
        except FlagStateError as exc:
            raise FlagAlreadyCleared(str(exc)) from None
