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
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .imaging import ImageError, bgr_to_image_fields, compressed_to_bgr, image_to_bgr, mask_to_image_fields

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
        self._lock = threading.Lock()  # the worker writes, the diagnostics timer reads

    def ok(self, latency_ms: float, now: float | None = None) -> None:
        with self._lock:
            self.processed += 1
            self.latency_ms.append(latency_ms)
            self.done_at.append(time.monotonic() if now is None else now)

    def fail(self, error: str) -> None:
        with self._lock:
            self.failed += 1
            self.last_error = error

    def summary(self, received: int, skipped: int) -> dict[str, float | int | str]:
        with self._lock:
            lat = np.asarray(self.latency_ms, np.float64)
            t = np.asarray(self.done_at, np.float64)
        rate = (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0
        return {
            "rate_hz": float(rate),
            "latency_p50_ms": float(np.percentile(lat, 50)) if lat.size else 0.0,
            "latency_p99_ms": float(np.percentile(lat, 99)) if lat.size else 0.0,
            "received": received,
            "processed": self.processed,
            "skipped": skipped,
            "failed": self.failed,
            "last_error": self.last_error,
        }


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


# ---------------------------------------------------------------------------------------------
# parameters: declared once by the node from this table (with descriptors), validated here
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    kind: str  # string | double | integer | bool | string_array
    description: str
    choices: tuple[str, ...] = ()
    range: tuple[float, float] | None = None


PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec(
        "bundle",
        "",
        "string",
        "Model bundle directory (bundle.json + model.onnx / model.engine), e.g. from `mtc-compress export`. Required.",
    ),
    ParamSpec(
        "backend",
        "auto",
        "string",
        "Inference backend: auto (TensorRT engine if the bundle has one and "
        "TensorRT is installed, else ONNX Runtime), tensorrt, onnxruntime or torch.",
        choices=("auto", "tensorrt", "onnxruntime", "torch"),
    ),
    ParamSpec(
        "image_topic",
        "/camera/image_raw",
        "string",
        "Camera topic (sensor_msgs/Image). With "
        "input_transport=compressed the node subscribes to <image_topic>/compressed instead.",
    ),
    ParamSpec(
        "input_transport",
        "raw",
        "string",
        "raw: sensor_msgs/Image; compressed: sensor_msgs/CompressedImage (jpeg/png) on <image_topic>/compressed.",
        choices=("raw", "compressed"),
    ),
    ParamSpec(
        "reliability",
        "best_effort",
        "string",
        "QoS reliability of the camera subscription: best_effort "
        "(sensor-data QoS, what camera drivers publish) or reliable (e.g. for `ros2 bag play` of every "
        "frame). History is always keep-last 1.",
        choices=("best_effort", "reliable"),
    ),
    ParamSpec("conf_threshold", 0.25, "double", "Minimum detection score (objectness x class).", range=(0.0, 1.0)),
    ParamSpec("iou_threshold", 0.45, "double", "IoU above which class-aware NMS suppresses a box.", range=(0.0, 1.0)),
    ParamSpec(
        "max_detections", 100, "integer", "At most this many boxes per frame (highest scores kept).", range=(1, 10000)
    ),
    ParamSpec(
        "class_filter", [], "string_array", "Publish only these class names (empty: every class the bundle knows)."
    ),
    ParamSpec(
        "publish_overlay",
        True,
        "bool",
        "Publish `overlay` (bgr8 frame with boxes and masks drawn). It "
        "is rendered only while something subscribes to it.",
    ),
    ParamSpec("threads", 0, "integer", "ONNX Runtime intra-op threads (0: the runtime's default).", range=(0, 256)),
    ParamSpec("diagnostics_period", 1.0, "double", "Seconds between /diagnostics messages.", range=(0.05, 60.0)),
    ParamSpec(
        "warn_period",
        5.0,
        "double",
        "At most one warning per kind of bad frame in this many seconds "
        "(the rest are counted and reported with the next one).",
        range=(0.0, 3600.0),
    ),
)

_PY_TYPES = {
    "string": (str,),
    "double": (float, int),
    "integer": (int,),
    "bool": (bool,),
    "string_array": (list, tuple),
}


class ParamError(ValueError):
    """A node parameter with a value the node cannot use."""


@dataclass
class NodeParams:
    bundle: str
    backend: str
    image_topic: str
    input_transport: str
    reliability: str
    conf_threshold: float
    iou_threshold: float
    max_detections: int
    class_filter: tuple[str, ...]
    publish_overlay: bool
    threads: int
    diagnostics_period: float
    warn_period: float

    @property
    def subscribed_topic(self) -> str:
        return (
            self.image_topic.rstrip("/") + "/compressed" if self.input_transport == "compressed" else self.image_topic
        )

    @property
    def message_type(self) -> str:
        return "sensor_msgs/msg/CompressedImage" if self.input_transport == "compressed" else "sensor_msgs/msg/Image"


def validate_params(values: dict[str, Any]) -> NodeParams:
    """Check every parameter against :data:`PARAMETERS`; :class:`ParamError` names the parameter,
    its value and what it must be."""
    out: dict[str, Any] = {}
    known = {p.name for p in PARAMETERS}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ParamError(f"unknown parameter(s) {unknown}; known: {sorted(known)}")
    for p in PARAMETERS:
        v = values.get(p.name, p.default)
        if p.kind != "bool" and isinstance(v, bool) or not isinstance(v, _PY_TYPES[p.kind]):
            raise ParamError(f"parameter {p.name!r} = {v!r}: expected a {p.kind}")
        if p.kind == "string_array":
            if not all(isinstance(s, str) for s in v):
                raise ParamError(f"parameter {p.name!r} = {v!r}: expected a list of strings")
            v = tuple(s for s in v if s)
        if p.choices and v not in p.choices:
            raise ParamError(f"parameter {p.name!r} = {v!r}: expected one of {list(p.choices)}")
        if p.range is not None and not p.range[0] <= v <= p.range[1]:
            raise ParamError(f"parameter {p.name!r} = {v!r}: expected a value in [{p.range[0]}, {p.range[1]}]")
        out[p.name] = float(v) if p.kind == "double" else v
    if not out["bundle"]:
        raise ParamError(
            "parameter 'bundle' is empty: pass the bundle directory, e.g. "
            "`ros2 launch mtc_perception student.launch.py bundle:=/path/to/bundles/student`"
        )
    if not out["image_topic"].strip():
        raise ParamError("parameter 'image_topic' is empty: name the camera topic, e.g. /camera/image_raw")
    return NodeParams(**out)


def check_class_filter(class_filter: Sequence[str], class_names: Sequence[str]) -> None:
    """A class filter naming a class the bundle does not know would silently publish nothing."""
    missing = [c for c in class_filter if c not in class_names]
    if missing:
        raise ParamError(
            f"parameter 'class_filter' names {missing}, which the bundle does not detect; "
            f"its classes are {list(class_names)}"
        )


# ---------------------------------------------------------------------------------------------
# bad frames: rate-limited warnings that still count everything
# ---------------------------------------------------------------------------------------------
class WarnLimiter:
    """At most one warning per ``key`` every ``period`` seconds; the ones held back are counted and
    mentioned in the next warning of that key."""

    def __init__(self, period: float) -> None:
        self.period = period
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def __call__(self, key: str, text: str, now: float | None = None) -> str | None:
        now = time.monotonic() if now is None else now
        last = self._last.get(key)
        if last is not None and now - last < self.period:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        held = self._held.pop(key, 0)
        return text + (f" ({held} more like this since the last warning)" if held else "")


# ---------------------------------------------------------------------------------------------
# one frame: message -> perception -> output messages
# ---------------------------------------------------------------------------------------------
@dataclass
class FrameResult:
    messages: dict[str, Any] = field(default_factory=dict)  # output name -> message
    error: str = ""
    error_kind: str = ""
    perception: Any = None


class FrameProcessor:
    """What the node does with one camera message, without rclpy: decode (any encoding, raw or
    compressed), run the Perceptor, build ``detections``, ``drivable_mask``, ``lane_mask`` and
    (when asked) ``overlay`` with the input's header, and count the frame in ``stats``. A bad frame
    never raises: it comes back as ``FrameResult.error`` and is counted as failed."""

    def __init__(
        self, perceptor: Any, types: Types, class_filter: Sequence[str] = (), stats: Stats | None = None
    ) -> None:
        self.perceptor = perceptor
        self.types = types
        self.class_filter = tuple(class_filter)
        self.stats = stats or Stats()
        if self.class_filter:
            check_class_filter(self.class_filter, perceptor.class_names)

    def __call__(self, msg: Any, received_at: float | None = None, overlay: bool = False) -> FrameResult:
        t0 = time.monotonic() if received_at is None else received_at
        compressed = hasattr(msg, "format") and not hasattr(msg, "encoding")
        try:
            frame = compressed_to_bgr(msg) if compressed else image_to_bgr(msg)
            p = self.perceptor(frame)
        except ImageError as e:
            kind = "CompressedImage" if compressed else f"Image/{getattr(msg, 'encoding', '?')}"
            return self._fail(f"bad frame ({kind}): {e}", kind)
        except Exception as e:  # noqa: BLE001 - an inference failure must not kill the node
            return self._fail(f"inference failed: {type(e).__name__}: {e}", type(e).__name__)
        h = msg.header
        out = {
            "detections": detection_array(
                self.types, h, p.boxes, p.scores, p.class_ids, p.class_names, self.class_filter
            ),
            "drivable_mask": mask_image(self.types, h, p.drivable),
            "lane_mask": mask_image(self.types, h, p.lane),
        }
        if overlay:
            from .viz import draw

            out["overlay"] = self.types("sensor_msgs/msg/Image")(header=h, **bgr_to_image_fields(draw(frame, p)))
        self.stats.ok((time.monotonic() - t0) * 1e3)
        return FrameResult(out, perception=p)

    def _fail(self, text: str, kind: str) -> FrameResult:
        self.stats.fail(text)
        return FrameResult(error=text, error_kind=kind)


# ---------------------------------------------------------------------------------------------
# /diagnostics
# ---------------------------------------------------------------------------------------------
def health(now: dict[str, Any], before: dict[str, Any] | None, topic: str) -> tuple[str, str]:
    """(level name, message) of one diagnostics period from two :meth:`Stats.summary` snapshots.

    STALE: no frame has arrived yet; ERROR: frames arrived this period and every one failed;
    WARN: some failed; OK otherwise (skipped frames are normal when the camera is faster)."""
    before = before or {"received": 0, "processed": 0, "failed": 0, "skipped": 0}
    d = {k: now[k] - before[k] for k in ("received", "processed", "failed", "skipped")}
    if now["received"] == 0:
        return "STALE", f"no frames received yet on {topic}"
    if d["failed"] and not d["processed"]:
        return "ERROR", f"all {d['failed']} frames of the last period failed: {now['last_error']}"
    if d["failed"]:
        return "WARN", f"{d['failed']} of {d['received']} frames failed: {now['last_error']}"
    if d["received"] == 0:
        return "WARN", f"no frames in the last period on {topic}"
    return "OK", f"{now['rate_hz']:.1f} Hz, p50 {now['latency_p50_ms']:.1f} ms"


def diagnostic_array(
    types: Types,
    stamp: Any,
    name: str,
    hardware_id: str,
    summary: dict[str, Any],
    level: str,
    message: str,
    extra: dict[str, Any] | None = None,
) -> Any:
    """A ``diagnostic_msgs/DiagnosticArray`` with one status for this node. The level constant is
    read off the message class, so it is bytes for rclpy and an int for rosbags as each expects."""
    Status, KV = types("diagnostic_msgs/msg/DiagnosticStatus"), types("diagnostic_msgs/msg/KeyValue")
    Header = types("std_msgs/msg/Header")
    values = {**summary, **(extra or {})}
    kvs = [KV(key=k, value=f"{v:.3f}" if isinstance(v, float) else str(v)) for k, v in values.items()]
    st = Status(level=getattr(Status, level), name=name, message=message, hardware_id=hardware_id, values=kvs)
    return types("diagnostic_msgs/msg/DiagnosticArray")(header=Header(stamp=stamp, frame_id=""), status=[st])


def qos_settings(reliability: str) -> dict[str, Any]:
    """The camera subscription's QoS: keep-last 1 (the newest frame is all the node wants), volatile,
    best effort by default (sensor-data QoS, matches camera drivers; a reliable subscriber would not
    match a best-effort publisher), reliable on request."""
    if reliability not in ("best_effort", "reliable"):
        raise ParamError(f"reliability {reliability!r}: expected best_effort or reliable")
    return {"history": "keep_last", "depth": 1, "reliability": reliability, "durability": "volatile"}
