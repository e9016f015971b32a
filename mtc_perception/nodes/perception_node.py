"""``perception_node``: camera topic in; detections, drivable/lane masks, overlay and /diagnostics out.

A thin rclpy layer. Every decision (parameter validation, the newest-frame slot, decoding, message
contents, counters, health levels, warning rate limits) is made by ROS-free code in
:mod:`mtc_perception.node_core`, tested without ROS. This file only declares parameters, wires
subscriptions, publishers, a worker thread and a timer. Contract: docs/DESIGN.md ("ROS 2 node").
"""

from __future__ import annotations

import importlib
import socket
import sys
import threading
import time
from typing import Any

import rclpy
import rclpy.executors
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from mtc_perception.node import (
    PARAMETERS,
    FrameProcessor,
    FrameSlot,
    ParamError,
    WarnLimiter,
    diagnostic_array,
    health,
    qos_settings,
    validate_params,
)

_TYPES = {
    "string": Parameter.Type.STRING,
    "double": Parameter.Type.DOUBLE,
    "integer": Parameter.Type.INTEGER,
    "bool": Parameter.Type.BOOL,
    "string_array": Parameter.Type.STRING_ARRAY,
}


def ros_type(name: str) -> Any:
    """``"vision_msgs/msg/Detection2D"`` -> the rclpy message class."""
    pkg, sub, cls = name.split("/")
    return getattr(importlib.import_module(f"{pkg}.{sub}"), cls)


def _descriptor(p) -> ParameterDescriptor:  # noqa: ANN001
    d = ParameterDescriptor(name=p.name, type=_TYPES[p.kind].value, description=p.description, read_only=True)
    if p.choices:
        d.additional_constraints = "one of: " + ", ".join(p.choices)
    if p.range is not None and p.kind == "double":
        d.floating_point_range = [
            FloatingPointRange(from_value=float(p.range[0]), to_value=float(p.range[1]), step=0.0)
        ]
    if p.range is not None and p.kind == "integer":
        d.integer_range = [IntegerRange(from_value=int(p.range[0]), to_value=int(p.range[1]), step=1)]
    return d


class PerceptionNode(Node):
    def __init__(self) -> None:
        super().__init__("perception_node")
        values = {}
        for p in PARAMETERS:
            # an empty list cannot tell rclpy its type: declare string arrays by type, default []
            default = _TYPES[p.kind] if p.kind == "string_array" else p.default
            self.declare_parameter(p.name, default, _descriptor(p))
            try:
                values[p.name] = self.get_parameter(p.name).value
            except ParameterUninitializedException:  # declared by type and not set: the default
                values[p.name] = p.default
        if isinstance(values.get("class_filter"), (list, tuple)):
            values["class_filter"] = list(values["class_filter"])
        self.params = validate_params(values)  # ParamError -> fatal in main()
        prm = self.params

        from mtc_perception.perceptor import Perceptor  # imports no runtime until the backend loads

        engine_options = {"threads": prm.threads} if prm.threads and prm.backend in ("auto", "onnxruntime") else {}
        self.perceptor = Perceptor(
            prm.bundle,
            backend=prm.backend,
            conf=prm.conf_threshold,
            iou=prm.iou_threshold,
            max_det=prm.max_detections,
            **engine_options,
        )
        self.perceptor.warmup(2)
        self.core = FrameProcessor(self.perceptor, ros_type, prm.class_filter)
        self.slot = FrameSlot()
        self.warn = WarnLimiter(prm.warn_period)
        self._last_summary: dict | None = None

        Image = ros_type("sensor_msgs/msg/Image")
        out_qos = 10
        self.pubs = {
            "detections": self.create_publisher(ros_type("vision_msgs/msg/Detection2DArray"), "detections", out_qos),
            "drivable_mask": self.create_publisher(Image, "drivable_mask", out_qos),
            "lane_mask": self.create_publisher(Image, "lane_mask", out_qos),
        }
        if prm.publish_overlay:
            self.pubs["overlay"] = self.create_publisher(Image, "overlay", out_qos)
        self.diag_pub = self.create_publisher(ros_type("diagnostic_msgs/msg/DiagnosticArray"), "/diagnostics", 10)

        q = qos_settings(prm.reliability)
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=q["depth"],
            durability=DurabilityPolicy.VOLATILE,
            reliability=ReliabilityPolicy.BEST_EFFORT
            if q["reliability"] == "best_effort"
            else ReliabilityPolicy.RELIABLE,
        )
        self.sub = self.create_subscription(
            ros_type(prm.message_type), prm.subscribed_topic, lambda m: self.slot.put((m, time.monotonic())), qos
        )
        self.diag_timer = self.create_timer(prm.diagnostics_period, self._diagnostics)
        self._worker = threading.Thread(target=self._work, name="mtc-inference", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"bundle {self.perceptor.bundle.root} ({self.perceptor.bundle.name}) on {self.perceptor.backend}; "
            f"listening to {prm.subscribed_topic} [{prm.message_type}, {prm.reliability}]; publishing "
            f"{', '.join(self.resolve_topic_name(n) for n in self.pubs)}"
        )

    # -- worker: newest frame wins ----------------------------------------------------------------
    def _work(self) -> None:
        while rclpy.ok() and not self.slot.closed:
            item = self.slot.take(0.2)
            if item is None:
                continue
            msg, received_at = item
            overlay = "overlay" in self.pubs and self.pubs["overlay"].get_subscription_count() > 0
            res = self.core(msg, received_at, overlay=overlay)
            if res.error:
                text = self.warn(res.error_kind, res.error)
                if text:
                    self.get_logger().warning(text)
                continue
            for name, out in res.messages.items():
                self.pubs[name].publish(out)

    # -- /diagnostics -----------------------------------------------------------------------------
    def _diagnostics(self) -> None:
        s = self.core.stats.summary(self.slot.received, self.slot.skipped)
        level, message = health(s, self._last_summary, self.params.subscribed_topic)
        self._last_summary = s
        name = f"{self.get_fully_qualified_name()}: perception"
        msg = diagnostic_array(
            ros_type,
            self.get_clock().now().to_msg(),
            name,
            socket.gethostname(),
            s,
            level,
            message,
            extra={"backend": self.perceptor.backend, "bundle": str(self.perceptor.bundle.root)},
        )
        self.diag_pub.publish(msg)

    def destroy_node(self) -> None:
        self.slot.close()
        if self._worker.is_alive():
            self._worker.join(timeout=2.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    node = None
    try:
        node = PerceptionNode()
    except (ParamError, ValueError, FileNotFoundError, RuntimeError, ImportError) as e:
        # a missing or incompatible bundle, a bad parameter, a missing backend: say what and exit
        from rclpy.logging import get_logger

        get_logger("perception_node").fatal(f"cannot start: {e}")
        rclpy.try_shutdown()
        return 1
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
