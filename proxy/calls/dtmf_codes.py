"""Recognising the call taker's recording codes (``*0`` stop, ``*9`` discard, ``*1``
resume) in the digits they key, and holding back the digits that might belong to one.

Pure: digits and times in, decisions out.  Each digit carries a ``key`` (the RTP
timestamp of its telephone-event, or the INFO that carried it) so that the caller of
``feed`` knows which held packets or requests to drop and which to pass on.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CodeDecision:
    action: str | None = None  # "stop" | "discard" | "resume" when a code completed
    dropped: tuple[Hashable, ...] = ()  # digits that made up the code: never passed on
    released: tuple[Hashable, ...] = ()  # held digits that turned out not to be a code


@dataclass
class CodeMatcher:
    codes: Mapping[str, str]  # code → action
    timeout: float = 3.0  # a started code must be completed within this time
    _held: list[tuple[str, Hashable]] = field(default_factory=list)
    _last: float = 0.0

    def __post_init__(self) -> None:
        if any(not code for code in self.codes):
            raise ValueError("empty DTMF code")
        self._prefixes = {code[:i] for code in self.codes for i in range(1, len(code) + 1)}

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def feed(self, digit: str, key: Hashable, now: float) -> CodeDecision:
        released: list[Hashable] = list(self.expire(now).released)
        self._held.append((digit, key))
        self._last = now
        while self._held:
            sequence = "".join(d for d, _ in self._held)
            if sequence in self.codes:
                dropped = tuple(k for _, k in self._held)
                self._held.clear()
                return CodeDecision(self.codes[sequence], dropped, tuple(released))
            if sequence in self._prefixes:
                break
            released.append(self._held.pop(0)[1])  # the oldest digit starts no code
        return CodeDecision(released=tuple(released))

    def expire(self, now: float) -> CodeDecision:
        """Release held digits whose code was not completed in time."""
        if self._held and now - self._last >= self.timeout:
            released = tuple(k for _, k in self._held)
            self._held.clear()
            return CodeDecision(released=released)
        return CodeDecision()
