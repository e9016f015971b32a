"""A ``vision_msgs/msg/Detection2DArray`` (4.x layout) written directly as CDR bytes, the same
message :func:`~mtc_perception.messages.build.detection_array` builds as objects: one Detection2D
per box with the input's header, one hypothesis (class name, score), identity pose with zero
covariance, bbox centre and size in input-image pixels, ``id`` the box's index.

On a real camera a synthetic-scene model can return 40-90 boxes a frame; rclpy builds each of them
as a dozen Python objects through asserting setters and then serializes them again, some 3-5 ms a
frame on the development machine. Written here with ``struct`` in one pass; the test compares it
byte for byte with rosbags' serialization of ``detection_array``'s message.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

from .cdr_image import CdrWriter

#: one ObjectHypothesisWithPose's pose: position 0, orientation (0, 0, 0, 1), covariance zeros
_POSE = struct.pack("<7d", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0) + bytes(36 * 8)


def detections_cdr(
    stamp: tuple[int, int],
    frame_id: str,
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    class_names: Sequence[str],
    class_filter: Sequence[str] = (),
) -> bytes:
    """The serialized Detection2DArray of one frame's boxes (xyxy, input pixels); boxes whose class
    is not in a non-empty ``class_filter`` are left out (their index is still their ``id``, as in
    :func:`~mtc_perception.messages.build.detection_array`)."""
    wanted = set(class_filter)
    rows: list[tuple[int, str, float, float, float, float, float]] = []
    for i, (b, s, c) in enumerate(
        zip(np.asarray(boxes, np.float64), np.asarray(scores, np.float64), np.asarray(class_ids))
    ):
        name = class_names[int(c)] if int(c) < len(class_names) else str(int(c))
        if not wanted or name in wanted:
            x1, y1, x2, y2 = (float(v) for v in b)
            rows.append((i, name, float(s), x1, y1, x2, y2))
    w = CdrWriter()
    w.header(stamp, frame_id)
    w.u32(len(rows))
    for i, name, score, x1, y1, x2, y2 in rows:
        w.header(stamp, frame_id)
        w.u32(1)  # one hypothesis
        w.string(name)
        w.doubles(score)
        w.buf += _POSE  # aligned: it follows a double
        w.doubles((x1 + x2) / 2, (y1 + y2) / 2, 0.0, x2 - x1, y2 - y1)  # centre x, y, theta, size x, y
        w.string(str(i))
    return bytes(w.buf)
