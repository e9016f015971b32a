"""``perception_node``: camera topic in; detections, drivable/lane masks, overlay and /diagnostics out.

A thin rclpy layer. Every decision (parameter validation, the newest-frame slot, decoding, message
contents, counters, health levels, warning rate limits) is made by ROS-free code in
:mod:`mtc_perception.node_core` and :mod:`mtc_perception.messages`, tested without ROS. This file only
declares parameters, wires subscriptions, publishers, a worker thread and a timer. Contract:
docs/DESIGN.md ("ROS 2 node").
"""

from __future__ import annotations

import socket
import sys
import threading
import time

import rclpy
import rclpy.executors
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from mtc_perception.messages import DIAGNOSTICS_TYPE, PARTS
from mtc_perception.node_core import (
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
from mtc_perception.node_core.null import NullPerceptor
from mtc_perception.nodes.node_common import declare_parameters, ros_init, ros_type


class PerceptionNode(Node):
    def __init__(self) -> None:
        super().__init__("perception_node")
        self.params = validate_params(declare_parameters(self, PARAMETERS))  # ParamError -> fatal in main()
        prm = self.params

        from mtc_perception.perceptor import Perceptor  # imports no runtime until the backend loads

        engine_options = {"threads": prm.threads} if prm.threads and prm.backend in ("auto", "onnxruntime") else {}
        self.perceptor: Perceptor | NullPerceptor
        if prm.backend == "none":  # no model: the transport floor (node_core.null)
            from mtc_perception.bundle import Bundle

            bundle = Bundle.load(prm.bundle)
            self.perceptor = NullPerceptor(bundle, bundle.class_names)
        else:
            self.perceptor = Perceptor(
                prm.bundle,
                backend=prm.backend,
                conf=prm.conf_threshold,
                iou=prm.iou_threshold,
                max_det=prm.max_detections,
                **engine_options,
            )
        self.perceptor.warmup(2)
        # the camera arrives serialized (a raw subscription) and is read in place: no rclpy message is
        # built for the frame's megabytes; the masks go out serialized the same way (node_core.processor)
        self.core = FrameProcessor(self.perceptor, ros_type, prm.class_filter, serialized=prm.input_transport)
        self.slot = FrameSlot()
        self.warn = WarnLimiter(prm.warn_period)
        self._last_summary: dict | None = None

        out_qos = 10
        self.pubs = {
            part.topic: self.create_publisher(ros_type(part.msgtype), part.topic, out_qos)
            for part in PARTS
            if part.topic != "overlay" or prm.publish_overlay
        }
        self.diag_pub = self.create_publisher(ros_type(DIAGNOSTICS_TYPE), "/diagnostics", 10)

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
            ros_type(prm.message_type),
            prm.subscribed_topic,
            lambda m: self.slot.put((m, time.monotonic())),
            qos,
            raw=True,
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
            res = self.core(msg, received_at, overlay=overlay, publish=self._publish)
            if res.error:
                text = self.warn(res.error_kind, res.error)
                if text:
                    self.get_logger().warning(text)

    def _publish(self, name: str, out: object) -> None:
        self.pubs[name].publish(out)  # a message, or serialized bytes (the masks), which rclpy sends as they are

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
    try:
        with ros_init(args):
            try:
                node = PerceptionNode()
            except (ParamError, ValueError, FileNotFoundError, RuntimeError, ImportError) as e:
                # a missing or incompatible bundle, a bad parameter, a missing backend: say what and exit
                from rclpy.logging import get_logger

                get_logger("perception_node").fatal(f"cannot start: {e}")
                return 1
            try:
                rclpy.spin(node)
            finally:
                node.destroy_node()
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass  # Ctrl-C or `ros2 lifecycle`/launch shutdown: a clean exit
    return 0


if __name__ == "__main__":
    sys.exit(main())
