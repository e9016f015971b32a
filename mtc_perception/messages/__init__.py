"""ROS messages of the perception outputs, without rclpy: the table of output parts
(:mod:`.parts`), the builders (:mod:`.build`), the readers back to arrays (:mod:`.read`) and the
vision_msgs definitions for rosbags typestores (:mod:`.vision_msgs`); a serialized camera ``Image`` read in
place, without rclpy or a copy, and the node's masks written serialized (:mod:`.cdr_image`); the
detections written serialized (:mod:`.cdr_detections`)."""

from .build import Types, bgr_image, detection_array, mask_image, perception_messages
from .cdr_image import (
    CdrCompressedImage,
    CdrImage,
    MaskWriter,
    compressed_view,
    header_stamp,
    image_view,
    pixel_view,
    restamp,
)
from .parts import (
    CAMERA_TOPIC,
    CAMERA_TYPES,
    COMPRESSED_TYPE,
    DETECTIONS_TYPE,
    DIAGNOSTICS_TYPE,
    GT_PREFIX,
    IMAGE_TYPE,
    IMAGE_TYPES,
    LABEL_PARTS,
    LABEL_TOPICS,
    LABEL_TYPES,
    OUTPUT_PARTS,
    OUTPUT_TYPES,
    PARTS,
    Part,
    gt_topics,
    model_topics,
    transport_of,
)
from .read import detections_from_msg, mask_from_msg, perception_from_messages, stamp_to_ns
from .vision_msgs import VISION_MSGS, register_vision_msgs

__all__ = [
    "CAMERA_TOPIC",
    "CAMERA_TYPES",
    "COMPRESSED_TYPE",
    "DETECTIONS_TYPE",
    "DIAGNOSTICS_TYPE",
    "GT_PREFIX",
    "IMAGE_TYPE",
    "IMAGE_TYPES",
    "LABEL_PARTS",
    "LABEL_TOPICS",
    "LABEL_TYPES",
    "OUTPUT_PARTS",
    "OUTPUT_TYPES",
    "PARTS",
    "VISION_MSGS",
    "CdrCompressedImage",
    "CdrImage",
    "MaskWriter",
    "Part",
    "Types",
    "bgr_image",
    "compressed_view",
    "header_stamp",
    "detection_array",
    "detections_from_msg",
    "gt_topics",
    "image_view",
    "mask_from_msg",
    "mask_image",
    "model_topics",
    "perception_from_messages",
    "perception_messages",
    "pixel_view",
    "register_vision_msgs",
    "restamp",
    "stamp_to_ns",
    "transport_of",
]
