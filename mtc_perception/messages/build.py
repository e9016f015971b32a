"""Output messages of a perception: ``Detection2DArray``, mono8 masks and the bgr8 overlay.

Builders take a ``types`` callable mapping a ROS type name (``"vision_msgs/msg/Detection2D"``)
to its class — rclpy's generated classes on a robot, rosbags' typestore classes in tests and bags
— and always pass every field, so both kinds of class are built the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..imaging import bgr_to_image_fields, mask_to_image_fields
from .parts import DETECTIONS_TYPE, IMAGE_TYPE, LABEL_TOPICS

Types = Callable[[str], Any]


def detection_array(
    types: Types,
    header: Any,
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    class_names: Sequence[str],
    class_filter: Sequence[str] = (),
) -> Any:
    """A ``vision_msgs/Detection2DArray`` (4.x layout): one Detection2D per box, bbox centre and
    size in input-image pixels, one hypothesis (class name, score); the input's header on the
    array and on every detection."""
    D2D, Hyp, HypPose = (
        types("vision_msgs/msg/Detection2D"),
        types("vision_msgs/msg/ObjectHypothesis"),
        types("vision_msgs/msg/ObjectHypothesisWithPose"),
    )
    BBox, Pose2D, Point2D = (
        types("vision_msgs/msg/BoundingBox2D"),
        types("vision_msgs/msg/Pose2D"),
        types("vision_msgs/msg/Point2D"),
    )
    PoseCov, Pose = types("geometry_msgs/msg/PoseWithCovariance"), types("geometry_msgs/msg/Pose")
    Point, Quat = types("geometry_msgs/msg/Point"), types("geometry_msgs/msg/Quaternion")
    wanted = set(class_filter)
    dets = []
    for i, (b, s, c) in enumerate(
        zip(np.asarray(boxes, np.float64), np.asarray(scores, np.float64), np.asarray(class_ids))
    ):
        name = class_names[int(c)] if int(c) < len(class_names) else str(int(c))
        if wanted and name not in wanted:
            continue
        x1, y1, x2, y2 = (float(v) for v in b)
        hyp = HypPose(
            hypothesis=Hyp(class_id=name, score=float(s)),
            pose=PoseCov(
                pose=Pose(position=Point(x=0.0, y=0.0, z=0.0), orientation=Quat(x=0.0, y=0.0, z=0.0, w=1.0)),
                covariance=np.zeros(36, np.float64),
            ),
        )
        bbox = BBox(
            center=Pose2D(position=Point2D(x=(x1 + x2) / 2, y=(y1 + y2) / 2), theta=0.0), size_x=x2 - x1, size_y=y2 - y1
        )
        dets.append(D2D(header=header, results=[hyp], bbox=bbox, id=str(i)))
    return types(DETECTIONS_TYPE)(header=header, detections=dets)


def mask_image(types: Types, header: Any, mask: np.ndarray) -> Any:
    """A mono8 ``sensor_msgs/Image`` (0 / 255) with the input's header."""
    return types(IMAGE_TYPE)(header=header, **mask_to_image_fields(mask))


def bgr_image(types: Types, header: Any, image: np.ndarray) -> Any:
    """A bgr8 ``sensor_msgs/Image`` of ``image`` with the input's header."""
    return types(IMAGE_TYPE)(header=header, **bgr_to_image_fields(image))


def perception_messages(
    types: Types,
    header: Any,
    perception: Any,
    class_filter: Sequence[str] = (),
    overlay_on: np.ndarray | None = None,
) -> dict[str, Any]:
    """The output messages of one perception, keyed by :data:`~.parts.PARTS` topic: detections and
    both masks always, the overlay (``perception`` drawn on ``overlay_on``) when a frame is given.
    What the node publishes and what ``mtc bench --output-bag`` records."""
    p = perception
    out = {
        LABEL_TOPICS["detections"]: detection_array(
            types, header, p.boxes, p.scores, p.class_ids, p.class_names, class_filter
        )
    }
    for label in ("drivable", "lane"):
        out[LABEL_TOPICS[label]] = mask_image(types, header, getattr(p, label))
    if overlay_on is not None:
        from ..viz import draw

        out["overlay"] = bgr_image(types, header, draw(overlay_on, p))
    return out
