"""What the perception node does with one camera message, without rclpy: the frame path
(:mod:`mtc_perception.frame`) plus the node's counters and stage timings.

Two kinds of input: a message object (rclpy's or a rosbags typestore's), or the serialized CDR bytes
a raw subscription hands over (``serialized="raw"`` for ``sensor_msgs/Image``, ``"compressed"`` for
``CompressedImage``). The bytes are read in place (:mod:`mtc_perception.messages.cdr_image`): no
Python message is built for the 2.7 MB of a 1280x720 frame; the masks go out serialized from
buffers kept between frames (:class:`~mtc_perception.messages.MaskWriter`) and the detections
serialized in one pass (:mod:`~mtc_perception.messages.cdr_detections`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..frame import decode, infer
from ..imaging import ImageError
from ..messages import LABEL_TOPICS, MaskWriter, Types, compressed_view, image_view, perception_messages
from ..messages.build import bgr_image
from ..messages.cdr_detections import detections_cdr
from .diagnostics import Stats
from .params import check_class_filter

#: the stages a frame goes through in the node, in order (``<stage>_p50_ms`` in /diagnostics):
#: waiting in the newest-frame slot, reading the message and converting it to BGR, the Perceptor's
#: own stages, building the output messages, publishing them
STAGES = ("wait", "decode", "preprocess", "infer", "postprocess", "build", "publish")
#: ``serialized`` values: what a raw subscription's bytes hold
SERIALIZED = {"raw": image_view, "compressed": compressed_view}


@dataclass
class FrameResult:
    messages: dict[str, Any] = field(default_factory=dict)  # output name -> message (or serialized bytes)
    error: str = ""
    error_kind: str = ""
    perception: Any = None
    timings: dict[str, float] = field(default_factory=dict)  # ms per stage (STAGES)


class FrameProcessor:
    """Decode (any encoding, raw or compressed, a message or its serialized bytes), run the
    Perceptor, build ``detections``, ``drivable_mask``, ``lane_mask`` and (when asked) ``overlay``
    with the input's header, publish them (when given ``publish``) and count the frame and its stage
    times in ``stats``. A bad frame never raises: it comes back as ``FrameResult.error`` and is
    counted as failed."""

    def __init__(
        self,
        perceptor: Any,
        types: Types,
        class_filter: Sequence[str] = (),
        stats: Stats | None = None,
        serialized: str | None = None,
    ) -> None:
        if serialized is not None and serialized not in SERIALIZED:
            raise ValueError(f"serialized={serialized!r}: expected one of {sorted(SERIALIZED)} or None")
        self.perceptor = perceptor
        self.types = types
        self.class_filter = tuple(class_filter)
        self.stats = stats or Stats()
        self.serialized = serialized
        self._masks = {label: MaskWriter() for label in ("drivable", "lane")}
        if self.class_filter:
            check_class_filter(self.class_filter, perceptor.class_names)

    def __call__(
        self,
        msg: Any,
        received_at: float | None = None,
        overlay: bool = False,
        publish: Callable[[str, Any], None] | None = None,
    ) -> FrameResult:
        t_start = time.monotonic()
        t0 = t_start if received_at is None else received_at
        timings = {"wait": (t_start - t0) * 1e3}
        if self.serialized is not None:
            try:
                msg = SERIALIZED[self.serialized](msg)
            except ImageError as e:
                kind = "CompressedImage" if self.serialized == "compressed" else "Image"
                return self._fail(f"bad frame ({kind}): {e}", kind)
        frame = decode(msg)
        timings["decode"] = (time.monotonic() - t_start) * 1e3
        if frame.image is None:
            return self._fail(frame.error, frame.error_kind)
        r = infer(self.perceptor, frame.image)
        if r.error:
            return self._fail(r.error, r.error_kind)
        for k in ("preprocess", "infer", "postprocess"):
            timings[k] = float(r.perception.timings.get(k, 0.0))
        t_build = time.monotonic()
        image = frame.image if overlay else None
        if self.serialized is None:
            out = perception_messages(self.types, msg.header, r.perception, self.class_filter, image)
        else:
            out = self._serialized_outputs(msg, r.perception, image)
        t_publish = time.monotonic()
        timings["build"] = (t_publish - t_build) * 1e3
        if publish is not None:
            for name, m in out.items():
                publish(name, m)
        t_end = time.monotonic()
        timings["publish"] = (t_end - t_publish) * 1e3
        self.stats.ok((t_end - t0) * 1e3, stages=timings)
        return FrameResult(out, perception=r.perception, timings=timings)

    def _serialized_outputs(self, view: Any, p: Any, overlay_on: Any) -> dict[str, Any]:
        """Detections and masks as serialized bytes (what ``Publisher.publish`` sends as they are);
        the overlay, rendered only when asked, a message of ``types``."""
        out: dict[str, Any] = {
            LABEL_TOPICS["detections"]: detections_cdr(
                view.stamp, view.frame_id, p.boxes, p.scores, p.class_ids, p.class_names, self.class_filter
            )
        }
        for label, write in self._masks.items():
            out[LABEL_TOPICS[label]] = write(view.stamp, view.frame_id, getattr(p, label))
        if overlay_on is not None:
            from ..viz import draw

            header = self.types("std_msgs/msg/Header")(
                stamp=self.types("builtin_interfaces/msg/Time")(sec=view.stamp[0], nanosec=view.stamp[1]),
                frame_id=view.frame_id,
            )
            out["overlay"] = bgr_image(self.types, header, draw(overlay_on, p))
        return out

    def _fail(self, text: str, kind: str) -> FrameResult:
        self.stats.fail(text)
        return FrameResult(error=text, error_kind=kind)
