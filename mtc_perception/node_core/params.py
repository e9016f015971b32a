"""Node parameters: declared once by a node from a table of :class:`ParamSpec` (with descriptors),
validated here without rclpy. :data:`PARAMETERS` is the perception node's table (config/student.yaml
and config/teacher.yaml follow it); the benchmark player's table is
:data:`mtc_perception.bench.player.PLAYER_PARAMETERS`, checked by the same :func:`check_params`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..messages import CAMERA_TYPES


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
        "TensorRT is installed, else ONNX Runtime), tensorrt, onnxruntime or torch; none runs no model "
        "(every frame answered with no detections and empty masks: the transport floor, for benchmarks).",
        choices=("auto", "tensorrt", "onnxruntime", "torch", "none"),
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
        choices=tuple(CAMERA_TYPES),
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
        return CAMERA_TYPES[self.input_transport]


def check_params(table: Sequence[ParamSpec], values: dict[str, Any]) -> dict[str, Any]:
    """Every value of ``table``'s parameters (``values`` or the default), type-, choice- and
    range-checked; :class:`ParamError` names the parameter, its value and what it must be. Doubles
    come back as float, string arrays as a tuple without empty strings."""
    out: dict[str, Any] = {}
    known = {p.name for p in table}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ParamError(f"unknown parameter(s) {unknown}; known: {sorted(known)}")
    for p in table:
        v = values.get(p.name, p.default)
        if p.kind != "bool" and isinstance(v, bool) or not isinstance(v, _PY_TYPES[p.kind]):
            raise ParamError(f"parameter {p.name!r} = {v!r}: expected a {p.kind}")
        if p.kind == "string_array" and isinstance(v, (list, tuple)):  # (the type was checked above)
            if not all(isinstance(s, str) for s in v):
                raise ParamError(f"parameter {p.name!r} = {v!r}: expected a list of strings")
            v = tuple(s for s in v if s)
        if p.choices and v not in p.choices:
            raise ParamError(f"parameter {p.name!r} = {v!r}: expected one of {list(p.choices)}")
        if p.range is not None and not p.range[0] <= v <= p.range[1]:
            raise ParamError(f"parameter {p.name!r} = {v!r}: expected a value in [{p.range[0]}, {p.range[1]}]")
        out[p.name] = float(v) if p.kind == "double" else v
    return out


def validate_params(values: dict[str, Any]) -> NodeParams:
    """The perception node's parameters checked against :data:`PARAMETERS` (:func:`check_params`),
    plus what the table cannot say: a bundle and a camera topic are required."""
    out = check_params(PARAMETERS, values)
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


def _from_launch(p: ParamSpec, text: str) -> Any:
    """One launch argument's text as ``p``'s type (launch arguments are strings)."""
    s = text.strip()
    if p.kind == "string":
        return text
    if p.kind == "bool":
        if s.lower() in ("true", "false"):
            return s.lower() == "true"
        raise ParamError(f"launch argument {p.name}:={text!r}: expected true or false")
    if p.kind == "string_array":
        s = s[1:-1] if s.startswith("[") and s.endswith("]") else s
        return [v.strip().strip("'\"") for v in s.split(",") if v.strip()]
    try:
        return int(s) if p.kind == "integer" else float(s)
    except ValueError:
        raise ParamError(
            f"launch argument {p.name}:={text!r}: expected a{'n integer' if p.kind == 'integer' else ' number'}"
        ) from None


def launch_overrides(table: Sequence[ParamSpec], given: Mapping[str, str]) -> dict[str, Any]:
    """Node parameters from launch arguments (``name:=text``; an empty text keeps the parameter
    file's value and is left out), converted to each parameter's type and checked like the node
    checks them, so ``reliability:=relaible`` stops the launch with the choices instead of starting
    a node that ignores it. A string array is ``a,b`` or ``[a, b]``."""
    specs = {p.name: p for p in table}
    values = {name: _from_launch(specs[name], text) for name, text in given.items() if name in specs and text != ""}
    unknown = sorted(set(given) - set(specs))
    if unknown:
        raise ParamError(f"unknown launch argument(s) {unknown}; the node's parameters are {sorted(specs)}")
    try:
        checked = check_params(table, values)
    except ParamError as e:
        raise ParamError(f"launch argument: {e}") from None
    return {k: list(checked[k]) if isinstance(checked[k], tuple) else checked[k] for k in values}
