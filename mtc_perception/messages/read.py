"""Output messages back to arrays: a node's ``Detection2DArray`` and mono8 masks (and a recording's
label topics, which have the same types) -> boxes, class ids, {0, 1} masks, a Perception."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def detections_from_msg(msg: Any, class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """A ``vision_msgs/Detection2DArray`` (4.x) -> (boxes (N,4) xyxy, scores, class ids, number of
    detections whose class name is not in ``class_names``, which are left out)."""
    index = {n: i for i, n in enumerate(class_names)}
    boxes, scores, cls = [], [], []
    unknown = 0
    for d in msg.detections:
        hyp = d.results[0].hypothesis if len(d.results) else None
        name = str(hyp.class_id) if hyp is not None else ""
        if name not in index:
            if name.isdigit() and int(name) < len(class_names):
                name = class_names[int(name)]
            else:
                unknown += 1
                continue
        cx, cy = float(d.bbox.center.position.x), float(d.bbox.center.position.y)
        w, h = float(d.bbox.size_x), float(d.bbox.size_y)
        boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        scores.append(float(hyp.score) if hyp is not None else 1.0)
        cls.append(index[name])
    return (
        np.asarray(boxes, np.float64).reshape(-1, 4),
        np.asarray(scores, np.float64),
        np.asarray(cls, np.int64),
        unknown,
    )


def mask_from_msg(msg: Any) -> np.ndarray:
    """A mask ``sensor_msgs/Image`` (mono8 0/255 as the node writes; any encoding) -> uint8 {0, 1}."""
    from ..imaging import ImageError, image_to_bgr

    if str(msg.encoding) in ("mono8", "8UC1"):  # the common case, without a BGR detour
        h, w, step = int(msg.height), int(msg.width), int(msg.step)
        data = (
            msg.data.view(np.uint8).reshape(-1)
            if isinstance(msg.data, np.ndarray)
            else np.frombuffer(bytes(msg.data), np.uint8)
        )
        if h <= 0 or w <= 0 or step < w or data.size != step * h:
            raise ImageError(
                f"mask Image {w}x{h}, step {step}, {data.size} bytes: expected step >= width and step x height bytes"
            )
        return (data.reshape(h, step)[:, :w] > 0).view(np.uint8)
    return (image_to_bgr(msg)[..., 0] > 0).view(np.uint8)


def perception_from_messages(detections: Any, drivable: Any, lane: Any, class_names: Sequence[str]) -> Any:
    """A :class:`~mtc_perception.perceptor.Perception` rebuilt from a node's output messages."""
    from ..perceptor import Perception

    boxes, scores, cls, _ = detections_from_msg(detections, class_names)
    return Perception(
        boxes.astype(np.float32),
        scores.astype(np.float32),
        cls,
        mask_from_msg(drivable),
        mask_from_msg(lane),
        class_names=tuple(class_names),
    )


def stamp_to_ns(stamp: Any) -> int:
    """A ``builtin_interfaces/Time`` -> integer nanoseconds (the key frames and outputs are matched by)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
