"""The newest-frame slot between the camera subscription and the inference worker."""

from __future__ import annotations

import threading
from typing import Any


class FrameSlot:
    """A one-place mailbox: ``put`` replaces any frame not yet taken (counted as skipped), so
    inference slower than the camera never builds a queue of stale frames."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self.received = 0
        self.skipped = 0
        self.closed = False

    def put(self, item: Any) -> None:
        with self._cond:
            self.received += 1
            if self._item is not None:
                self.skipped += 1
            self._item = item
            self._cond.notify()

    def take(self, timeout: float | None = None) -> Any:
        """The newest frame, or None on timeout / after ``close()``."""
        with self._cond:
            if self._item is None and not self.closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
