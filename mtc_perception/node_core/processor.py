"""What the perception node does with one camera message, without rclpy: the frame path
(:mod:`mtc_perception.frame`) plus the node's counters."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..frame import decode, infer
from ..messages import Types, perception_messages
from .diagnostics import Stats
from .params import check_class_filter


@dataclass
class FrameResult:
    messages: dict[str, Any] = field(default_factory=dict)  # output name -> message
    error: str = ""
    error_kind: str = ""
    perception: Any = None


class FrameProcessor:
    """Decode (any encoding, raw or compressed), run the Perceptor, build ``detections``,
    ``drivable_mask``, ``lane_mask`` and (when asked) ``overlay`` with the input's header, and
    count the frame in ``stats``. A bad frame never raises: it comes back as
    ``FrameResult.error`` and is counted as failed."""

    def __init__(
        self, perceptor: Any, types: Types, class_filter: Sequence[str] = (), stats: Stats | None = None
    ) -> None:
        self.perceptor = perceptor
        self.types = types
        self.class_filter = tuple(class_filter)
        self.stats = stats or Stats()
        if self.class_filter:
            check_class_filter(self.class_filter, perceptor.class_names)

    def __call__(self, msg: Any, received_at: float | None = None, overlay: bool = False) -> FrameResult:
        t0 = time.monotonic() if received_at is None else received_at
        frame = decode(msg)
        if frame.image is None:
            return self._fail(frame.error, frame.error_kind)
        r = infer(self.perceptor, frame.image)
        if r.error:
            return self._fail(r.error, r.error_kind)
        out = perception_messages(
            self.types, msg.header, r.perception, self.class_filter, frame.image if overlay else None
        )
        self.stats.ok((time.monotonic() - t0) * 1e3)
        return FrameResult(out, perception=r.perception)

    def _fail(self, text: str, kind: str) -> FrameResult:
        self.stats.fail(text)
        return FrameResult(error=text, error_kind=kind)
