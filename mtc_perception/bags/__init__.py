"""rosbag2 recordings of camera frames (and their labels) through ``rosbags``: no ROS install needed.

One module per job: :mod:`.writer` (``mtc bag``: :func:`write_bag`, :class:`RecordingWriter`),
:mod:`.reader` (:class:`BagReader`, which salvages damaged files through :mod:`.salvage`),
:mod:`.source` (the frames to record) and :mod:`.base` (constants, errors, typestores). A dataset
split becomes frames in the offline half (``compress.data.frames.dataset_frames``,
``mtc-compress bag --dataset``): the runtime never imports the dataset code.

``rosbags`` is imported only when used, so ``import mtc_perception.bags`` costs nothing.
"""

from ..messages import gt_topics, stamp_to_ns
from .base import (
    CAMERA_TOPIC,
    DEFAULT_START_NS,
    DISTROS,
    GT_PREFIX,
    IMAGE_TYPES,
    STORAGES,
    TRANSPORTS,
    BagError,
    BagMessage,
    TopicInfo,
    TopicNotFound,
    camera_message,
    header,
    typestore,
)
from .reader import BagReader, bag_size, md5_of
from .source import Labels, SourceFrame, resize_frame
from .writer import RecordingWriter, WriteConfig, WriteSummary, write_bag

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
    "BagReader",
    "Labels",
    "RecordingWriter",
    "SourceFrame",
    "TopicInfo",
    "TopicNotFound",
    "WriteConfig",
    "WriteSummary",
    "bag_size",
    "camera_message",
    "gt_topics",
    "header",
    "md5_of",
    "resize_frame",
    "stamp_to_ns",
    "typestore",
    "write_bag",
]
