"""What both benchmarks (offline ``mtc bench`` and the live ``benchmark_node``) read off a
recording: the camera topic, the label topics it carries, each label's value, and the ``meta.bag``
block of the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..bags import BagError, BagReader, TopicNotFound, bag_size
from ..messages import (
    CAMERA_TOPIC,
    IMAGE_TYPES,
    LABEL_TYPES,
    detections_from_msg,
    gt_topics,
    mask_from_msg,
    stamp_to_ns,
)
from .report import GroundTruthBoxes


def choose_topic(reader: BagReader, topic: str | None) -> str:
    """``topic`` if given (else :class:`TopicNotFound`); otherwise ``/camera/image_raw``, then
    ``/camera/image_raw/compressed``, then the only image topic outside the label topics."""
    if topic:
        info = reader.require(topic)
        if info.msgtype not in IMAGE_TYPES:
            raise BagError(
                f"topic {topic!r} in {reader.path} is {info.msgtype}, not a camera topic ({' or '.join(IMAGE_TYPES)})"
            )
        return topic
    for t in (CAMERA_TOPIC, CAMERA_TOPIC + "/compressed"):
        if t in reader.topics and reader.topics[t].msgtype in IMAGE_TYPES:
            return t
    labels = set(gt_topics().values())
    images = [
        t for t, i in reader.topics.items() if i.msgtype in IMAGE_TYPES and t not in labels and not t.endswith("_mask")
    ]
    if len(images) == 1:
        return images[0]
    raise TopicNotFound(CAMERA_TOPIC if not images else f"(one of {sorted(images)})", reader.topics, reader.path)


def label_topics(reader: BagReader, prefix: str) -> tuple[dict[str, str], list[str]]:
    """(ground-truth part -> topic, warnings) of the label topics under ``prefix`` that the
    recording has with the expected type; one of another type is ignored with a warning."""
    found: dict[str, str] = {}
    warnings: list[str] = []
    for part, name in gt_topics(prefix).items():
        if name in reader.topics:
            if reader.topics[name].msgtype == LABEL_TYPES[part]:
                found[part] = name
            else:
                warnings.append(
                    f"label topic {name} is {reader.topics[name].msgtype}, expected {LABEL_TYPES[part]}; ignored"
                )
    return found, warnings


def label_value(part: str, msg: Any, class_names: tuple[str, ...]) -> tuple[int, Any, int]:
    """(stamp, value, number of boxes with a class name the models do not know) of a label message:
    :class:`GroundTruthBoxes` for ``detections``, a {0, 1} mask for ``drivable`` and ``lane``."""
    stamp = stamp_to_ns(msg.header.stamp)
    if part == "detections":
        boxes, _, cls, unknown = detections_from_msg(msg, class_names)
        return stamp, GroundTruthBoxes(boxes, cls), unknown
    return stamp, mask_from_msg(msg), 0


def recording_meta(
    path: str | Path, reader: BagReader, topic: str, labels: dict[str, str], md5: str | None
) -> dict[str, Any]:
    """The report's ``meta.bag``: the recording, its camera and label topics and every topic's count."""
    return {
        "path": str(path),
        "md5": md5,
        "size_bytes": bag_size(path),
        "storage": reader.storage,
        "topic": topic,
        "msgtype": reader.topics[topic].msgtype,
        "salvaged": reader.salvaged,
        "label_topics": labels,
        "topics": {n: {"type": i.msgtype, "count": i.count} for n, i in sorted(reader.topics.items())},
    }
