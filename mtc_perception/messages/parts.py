"""The one table of what a perception node publishes and what a recording's labels are.

Every output of the node, of ``mtc bench``'s output bag and of the live benchmark's subscriptions
is named here, with its message type and the ground-truth part it is scored against. Nothing else
spells ``"drivable_mask"`` or ``"sensor_msgs/msg/Image"`` for an output.
"""

from __future__ import annotations

from dataclasses import dataclass

DETECTIONS_TYPE = "vision_msgs/msg/Detection2DArray"
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
DIAGNOSTICS_TYPE = "diagnostic_msgs/msg/DiagnosticArray"
#: camera transport -> message type (image_transport's names: raw, compressed)
CAMERA_TYPES = {"raw": IMAGE_TYPE, "compressed": COMPRESSED_TYPE}
IMAGE_TYPES = tuple(CAMERA_TYPES.values())
CAMERA_TOPIC = "/camera/image_raw"
GT_PREFIX = "/ground_truth"


@dataclass(frozen=True)
class Part:
    """One output of a perception node: its topic (relative to the node's namespace, or to the
    ground-truth prefix for labels), its message type and the ground-truth part (``label``) it is
    scored against (None: not scored, e.g. the overlay)."""

    topic: str
    msgtype: str
    label: str | None


#: every output of a perception node, in publishing order; ``overlay`` only when asked for
PARTS: tuple[Part, ...] = (
    Part("detections", DETECTIONS_TYPE, "detections"),
    Part("drivable_mask", IMAGE_TYPE, "drivable"),
    Part("lane_mask", IMAGE_TYPE, "lane"),
    Part("overlay", IMAGE_TYPE, None),
)
#: the outputs every frame gets (all three make a frame *processed* in the live benchmark)
OUTPUT_PARTS: tuple[str, ...] = tuple(p.topic for p in PARTS if p.label is not None)
#: ground-truth parts a recording may carry (the report's names), in :data:`PARTS` order
LABEL_PARTS: tuple[str, ...] = tuple(p.label for p in PARTS if p.label is not None)
#: output topic -> message type
OUTPUT_TYPES: dict[str, str] = {p.topic: p.msgtype for p in PARTS}
#: ground-truth part -> the output topic name it shares (``<prefix>/<that name>`` in a recording)
LABEL_TOPICS: dict[str, str] = {p.label: p.topic for p in PARTS if p.label is not None}
#: ground-truth part -> message type
LABEL_TYPES: dict[str, str] = {p.label: p.msgtype for p in PARTS if p.label is not None}


def gt_topics(prefix: str = GT_PREFIX) -> dict[str, str]:
    """Ground-truth part -> topic name under ``prefix``."""
    return {label: f"{prefix.rstrip('/')}/{topic}" for label, topic in LABEL_TOPICS.items()}


def model_topics(namespace: str) -> dict[str, str]:
    """Output topic -> its full name under a node's ``namespace`` (``/student/detections``...)."""
    return {t: f"/{namespace.strip('/')}/{t}" for t in OUTPUT_PARTS}


def transport_of(msgtype: str) -> str:
    """``raw`` or ``compressed`` for a camera message type, or ValueError naming the type."""
    for transport, t in CAMERA_TYPES.items():
        if t == msgtype:
            return transport
    raise ValueError(f"message type {msgtype!r} is not a camera image ({' or '.join(IMAGE_TYPES)})")
