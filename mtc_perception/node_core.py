"""Everything the perception node decides, without rclpy: the newest-frame slot, the counters and
latency statistics behind ``/diagnostics``, and the contents of the output messages.

Message builders take a ``types`` callable mapping a ROS type name (``"vision_msgs/msg/Detection2D"``)
to its class — rclpy's generated classes on a robot, rosbags' typestore classes in tests — and
always pass every field, so both kinds of class are built the same way.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .imaging import mask_to_image_fields

Types = Callable[[str], Any]


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


class Stats:
    """Counters and a rolling window of latencies for diagnostics."""

    def __init__(self, window: int = 300) -> None:
        self.latency_ms: deque[float] = deque(maxlen=window)
        self.done_at: deque[float] = deque(maxlen=window)
        self.processed = 0
        self.failed = 0
        self.last_error = ""

    def ok(self, latency_ms: float, now: float | None = None) -> None:
        self.processed += 1
        self.latency_ms.append(latency_ms)
        self.done_at.append(time.monotonic() if now is None else now)

    def fail(self, error: str) -> None:
        self.failed += 1
        self.last_error = error

    def summary(self, received: int, skipped: int) -> dict[str, float | int | str]:
        lat = np.asarray(self.latency_ms, np.float64)
        t = np.asarray(self.done_at, np.float64)
        rate = (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0
        return {"rate_hz": float(rate), "latency_p50_ms": float(np.percentile(lat, 50)) if lat.size else 0.0,
                "latency_p99_ms": float(np.percentile(lat, 99)) if lat.size else 0.0, "received": received,
                "processed": self.processed, "skipped": skipped, "failed": self.failed, "last_error": self.last_error}


def detection_array(types: Types, header: Any, boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray,
                    class_names: Sequence[str], class_filter: Sequence[str] = ()) -> Any:
    """A ``vision_msgs/Detection2DArray`` (4.x layout): one Detection2D per box, bbox centre and
    size in input-image pixels, one hypothesis (class name, score); the input's header on the
    array and on every detection."""
    D2D, Hyp, HypPose = types("vision_msgs/msg/Detection2D"), types("vision_msgs/msg/ObjectHypothesis"), types("vision_msgs/msg/ObjectHypothesisWithPose")
    BBox, Pose2D, Point2D = types("vision_msgs/msg/BoundingBox2D"), types("vision_msgs/msg/Pose2D"), types("vision_msgs/msg/Point2D")
    PoseCov, Pose = types("geometry_msgs/msg/PoseWithCovariance"), types("geometry_msgs/msg/Pose")
    Point, Quat = types("geometry_msgs/msg/Point"), types("geometry_msgs/msg/Quaternion")
    wanted = set(class_filter)
    dets = []
    for i, (b, s, c) in enumerate(zip(np.asarray(boxes, np.float64), np.asarray(scores, np.float64), np.asarray(class_ids))):
        name = class_names[int(c)] if int(c) < len(class_names) else str(int(c))
        if wanted and name not in wanted:
            continue
        x1, y1, x2, y2 = (float(v) for v in b)
        hyp = HypPose(hypothesis=Hyp(class_id=name, score=float(s)),
                      pose=PoseCov(pose=Pose(position=Point(x=0.0, y=0.0, z=0.0), orientation=Quat(x=0.0, y=0.0, z=0.0, w=1.0)),
                                   covariance=np.zeros(36, np.float64)))
        bbox = BBox(center=Pose2D(position=Point2D(x=(x1 + x2) / 2, y=(y1 + y2) / 2), theta=0.0), size_x=x2 - x1, size_y=y2 - y1)
        dets.append(D2D(header=header, results=[hyp], bbox=bbox, id=str(i)))
    return types("vision_msgs/msg/Detection2DArray")(header=header, detections=dets)


def mask_image(types: Types, header: Any, mask: np.ndarray) -> Any:
    """A mono8 ``sensor_msgs/Image`` (0 / 255) with the input's header."""
    return types("sensor_msgs/msg/Image")(header=header, **mask_to_image_fields(mask))


#: vision_msgs 4.x definitions (Humble and Jazzy ship the same layout), for typestores that lack them
VISION_MSGS = {
    "vision_msgs/msg/Point2D": "float64 x\nfloat64 y\n",
    "vision_msgs/msg/Pose2D": "vision_msgs/Point2D position\nfloat64 theta\n",
    "vision_msgs/msg/BoundingBox2D": "vision_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y\n",
    "vision_msgs/msg/ObjectHypothesis": "string class_id\nfloat64 score\n",
    "vision_msgs/msg/ObjectHypothesisWithPose": "vision_msgs/ObjectHypothesis hypothesis\ngeometry_msgs/PoseWithCovariance pose\n",
    "vision_msgs/msg/Detection2D": "std_msgs/Header header\nvision_msgs/ObjectHypothesisWithPose[] results\nvision_msgs/BoundingBox2D bbox\nstring id\n",
    "vision_msgs/msg/Detection2DArray": "std_msgs/Header header\nvision_msgs/Detection2D[] detections\n",
}


def register_vision_msgs(typestore: Any) -> None:
    """Add the vision_msgs 4.x types to a rosbags typestore (writing and reading bags, tests)."""
    from rosbags.typesys import get_types_from_msg

    types: dict = {}
    for name, text in VISION_MSGS.items():
        types.update(get_types_from_msg(text, name))
    typestore.register(types)
