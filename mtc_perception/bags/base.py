"""What the rosbag2 modules share: the recording constants, errors, topic and message records,
the rosbags typestore of a distro and the camera message of an image.

``rosbags`` is imported only when used (:func:`require_rosbags`), so importing the package costs
nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..imaging import bgr_to_image_fields
from ..messages import CAMERA_TOPIC, CAMERA_TYPES, GT_PREFIX, IMAGE_TYPES

DISTROS = {"humble": "ROS2_HUMBLE", "jazzy": "ROS2_JAZZY"}
STORAGES = ("mcap", "sqlite3")
TRANSPORTS = tuple(CAMERA_TYPES)
#: 2023-11-14 22:13:20 UTC: a fixed, recognisable first stamp (reproducible bags)
DEFAULT_START_NS = 1_700_000_000 * 10**9

__all__ = [
    "CAMERA_TOPIC",
    "DEFAULT_START_NS",
    "DISTROS",
    "GT_PREFIX",
    "IMAGE_TYPES",
    "STORAGES",
    "TRANSPORTS",
    "BagError",
    "BagMessage",
    "TopicInfo",
    "TopicNotFound",
    "camera_message",
    "header",
    "require_rosbags",
    "types_of",
    "typestore",
]


class BagError(ValueError):
    """A recording that cannot be written or read as asked (the message says which file and why)."""


class TopicNotFound(BagError):
    """The asked-for topic is not in the recording; :attr:`topics` lists what is."""

    def __init__(self, topic: str, topics: dict[str, TopicInfo], path: Path | str) -> None:
        self.topic, self.topics = topic, topics
        listing = (
            "\n".join(
                f"  {name}  [{t.msgtype}, {t.count if t.count is not None else '?'} messages]"
                for name, t in sorted(topics.items())
            )
            or "  (none)"
        )
        super().__init__(f"topic {topic!r} is not in {path}; its topics are:\n{listing}\nchoose one with --topic")


@dataclass
class TopicInfo:
    msgtype: str
    count: int | None  # None: unknown (a damaged recording without readable metadata)


@dataclass
class BagMessage:
    topic: str
    msgtype: str
    log_time_ns: int
    raw: bytes | memoryview


def require_rosbags() -> Any:
    try:
        import rosbags
    except ImportError:
        raise RuntimeError(
            "reading and writing rosbag2 recordings needs rosbags: pip install 'rosbags>=0.10' "
            "(or the package's [bag] extra)"
        ) from None
    import rosbags.rosbag2
    import rosbags.typesys

    return rosbags


def typestore(distro: str = "humble") -> Any:
    """A rosbags typestore of ``distro``'s message definitions plus vision_msgs 4.x."""
    from ..messages import register_vision_msgs

    if distro not in DISTROS:
        raise BagError(f"distro {distro!r} is not supported; use one of {sorted(DISTROS)}")
    rb = require_rosbags()
    ts = rb.typesys.get_typestore(getattr(rb.typesys.Stores, DISTROS[distro]))
    register_vision_msgs(ts)
    return ts


def types_of(ts: Any) -> Callable[[str], Any]:
    return ts.types.__getitem__


def header(ts: Any, stamp_ns: int, frame_id: str) -> Any:
    """A ``std_msgs/Header`` of the typestore's classes."""
    T = types_of(ts)
    return T("std_msgs/msg/Header")(
        stamp=T("builtin_interfaces/msg/Time")(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000),
        frame_id=frame_id,
    )


def camera_message(ts: Any, hdr: Any, img: np.ndarray, transport: str = "raw", jpeg_quality: int = 90) -> Any:
    """A bgr8 ``Image`` or a jpeg ``CompressedImage`` (image_transport's format string) of ``img``."""
    T = types_of(ts)
    if transport == "raw":
        return T(CAMERA_TYPES["raw"])(header=hdr, **bgr_to_image_fields(img))
    if transport == "compressed":
        import cv2

        ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), int(jpeg_quality)])
        if not ok:
            raise BagError(f"JPEG encoding of a {img.shape} frame failed")
        return T(CAMERA_TYPES["compressed"])(
            header=hdr, format="bgr8; jpeg compressed bgr8", data=np.asarray(buf, np.uint8).reshape(-1)
        )
    raise BagError(f"transport {transport!r}: use one of {TRANSPORTS}")
