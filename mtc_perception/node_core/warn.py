"""Bad frames: rate-limited warnings that still count everything."""

from __future__ import annotations

import time


class WarnLimiter:
    """At most one warning per ``key`` every ``period`` seconds; the ones held back are counted and
    mentioned in the next warning of that key."""

    def __init__(self, period: float) -> None:
        self.period = period
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def __call__(self, key: str, text: str, now: float | None = None) -> str | None:
        now = time.monotonic() if now is None else now
        last = self._last.get(key)
        if last is not None and now - last < self.period:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        held = self._held.pop(key, 0)
        return text + (f" ({held} more like this since the last warning)" if held else "")
