"""``benchmark_node``: plays a rosbag2 recording to the perception nodes (or watches ``ros2 bag
play`` do it), collects both nodes' outputs, matches them to the frames by header stamp and writes
the same report as ``mtc bench``. Thin rclpy layer over :class:`mtc_perception.bench.live.LiveBench`
(ROS-free, tested without ROS). Started by ``launch/benchmark.launch.py``.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import rclpy
import rclpy.executors
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from mtc_perception.bench.live import OUTPUT_PARTS
from mtc_perception.nodes.perception_node import ros_type

PARAMS = {
    "bag": ("", "rosbag2 recording (directory or .mcap/.db3) to play. Required."),
    "topic": ("", "Camera topic in the bag (empty: /camera/image_raw, its /compressed twin, or the only image topic)."),
    "teacher_bundle": ("", "The teacher's bundle (for the report's params / MACs / classes). Required."),
    "student_bundle": ("", "The student's bundle. Required."),
    "teacher_ns": ("teacher", "Namespace of the teacher's perception node (the reference)."),
    "student_ns": ("student", "Namespace of the student's perception node."),
    "out": ("runs/bench/live", "Report directory: report.json, report.md, frames.csv, plots."),
    "player": (
        "internal",
        "internal: this node plays the bag (publishes the recorded bytes at the recorded pace x rate); "
        "external: `ros2 bag play` does, and this node watches the camera topic.",
    ),
    "rate": (1.0, "Playback speed factor of the internal player (1.0: the recorded pace)."),
    "distro": ("humble", "Message definitions used to read the bag (humble or jazzy)."),
    "start_timeout": (60.0, "Seconds to wait for both perception nodes to subscribe before playing."),
    "drain": (
        5.0,
        "Seconds to wait for outstanding outputs after the last frame (and, with the external player, the "
        "idle time after which the bag is taken as finished).",
    ),
    "gt_prefix": (
        "/ground_truth",
        "Label topics of the bag (PREFIX/detections, PREFIX/drivable_mask, PREFIX/lane_mask).",
    ),
}
OUT_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=100,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)


class BenchmarkNode(Node):
    def __init__(self) -> None:
        super().__init__("benchmark_node")
        p = {}
        for name, (default, desc) in PARAMS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=desc, read_only=True))
            p[name] = self.get_parameter(name).value
        for req in ("bag", "teacher_bundle", "student_bundle"):
            if not p[req]:
                raise ValueError(
                    f"parameter {req!r} is empty: `ros2 launch mtc_perception benchmark.launch.py bag:=B "
                    "teacher_bundle:=T student_bundle:=S`"
                )
        if p["player"] not in ("internal", "external"):
            raise ValueError(f"parameter 'player' = {p['player']!r}: expected internal or external")
        self.p = p
        from mtc_perception.bags import BagReader, gt_topics
        from mtc_perception.bench.live import LiveBench
        from mtc_perception.bench.replay import choose_topic
        from mtc_perception.bench.report import ModelInfo
        from mtc_perception.bundle import Bundle

        self.reader = BagReader(p["bag"], p["distro"])
        self.topic = choose_topic(self.reader, p["topic"] or None)
        info = self.reader.topics[self.topic]
        self.msgtype = info.msgtype
        self.gt = {part: t for part, t in gt_topics(p["gt_prefix"]).items() if t in self.reader.topics}
        models = [
            ModelInfo.from_bundle(p["teacher_ns"], Bundle.load(p["teacher_bundle"]), "node"),
            ModelInfo.from_bundle(p["student_ns"], Bundle.load(p["student_bundle"]), "node"),
        ]
        from mtc_perception.bags import bag_size, md5_of
        from mtc_perception.bench.report import host_info

        player = "benchmark_node (rosbags -> rclpy, recorded bytes)" if p["player"] == "internal" else "ros2 bag play"
        self.bench = LiveBench(
            models,
            total=int(info.count or 0),
            gt_parts=tuple(self.gt),
            meta={
                "tool": "benchmark_node (live, ROS 2)",
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "host": host_info(),
                "bag": {
                    "path": str(Path(p["bag"]).resolve()),
                    "md5": md5_of(p["bag"]),
                    "size_bytes": bag_size(p["bag"]),
                    "storage": self.reader.storage,
                    "topic": self.topic,
                    "msgtype": self.msgtype,
                    "label_topics": self.gt,
                },
                "player": player,
                "config": dict(p),
            },
        )
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        self.finished = threading.Event()
        for m in models:
            for part in OUTPUT_PARTS:
                cls = ros_type("vision_msgs/msg/Detection2DArray" if part == "detections" else "sensor_msgs/msg/Image")
                self.create_subscription(
                    cls, f"/{m.name}/{part}", lambda msg, n=m.name, pt=part: self._output(n, pt, msg), OUT_QOS
                )
        self.create_subscription(ros_type("diagnostic_msgs/msg/DiagnosticArray"), "/diagnostics", self._diagnostics, 10)
        if p["player"] == "internal":
            self.pub = self.create_publisher(ros_type(self.msgtype), self.topic, OUT_QOS)
            threading.Thread(target=self._play, name="mtc-player", daemon=True).start()
        else:
            self.last_seen = None
            self.draining = False
            self.create_subscription(ros_type(self.msgtype), self.topic, self._seen, OUT_QOS, raw=True)
            self.create_timer(0.5, self._watch_external)
        self.get_logger().info(
            f"benchmark: {self.topic} [{self.msgtype}] of {p['bag']} ({info.count} frames) -> "
            f"/{p['teacher_ns']} and /{p['student_ns']}; labels: {sorted(self.gt) or 'none'}; player {p['player']}"
        )

    # -- frames out ------------------------------------------------------------------------------
    def _decode(self, raw: bytes) -> tuple[int, Any]:
        from mtc_perception.bags import stamp_to_ns
        from mtc_perception.imaging import ImageError, compressed_to_bgr, image_to_bgr

        msg = self.reader.ts.deserialize_cdr(raw, self.msgtype)
        try:
            img = compressed_to_bgr(msg) if self.msgtype.endswith("CompressedImage") else image_to_bgr(msg)
        except ImageError:
            img = None
        return stamp_to_ns(msg.header.stamp), img

    def _play(self) -> None:
        n_models = 2
        end = time.monotonic() + float(self.p["start_timeout"])
        while rclpy.ok() and self.pub.get_subscription_count() < n_models and time.monotonic() < end:
            time.sleep(0.1)
        if self.pub.get_subscription_count() < n_models:
            self.get_logger().error(
                f"only {self.pub.get_subscription_count()} of {n_models} perception nodes subscribe to "
                f"{self.topic} after {self.p['start_timeout']} s; playing anyway"
            )
        outputs = [f"/{m.name}/{part}" for m in self.bench.models for part in OUTPUT_PARTS]
        while rclpy.ok() and time.monotonic() < end and any(self.count_publishers(t) == 0 for t in outputs):
            time.sleep(0.1)  # the nodes' outputs must be connected too, or the first frames' answers are lost
        time.sleep(0.5)
        self.t0 = time.monotonic()
        first_log = first_wall = None
        gt_by_topic = {t: part for part, t in self.gt.items()}
        for m in self.reader.messages([self.topic, *gt_by_topic]):
            if not rclpy.ok():
                break
            if m.topic != self.topic:
                self._label(gt_by_topic[m.topic], m)
                continue
            if first_log is None:
                first_log, first_wall = m.log_time_ns, time.monotonic()
            due = first_wall + (m.log_time_ns - first_log) / 1e9 / max(float(self.p["rate"]), 1e-6)
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            raw = bytes(m.raw)
            stamp, img = self._decode(raw)  # stamp (and mosaic image) first: the answer can be back within ms
            with self.lock:
                self.bench.frame_sent(stamp, time.monotonic(), img)
            self.pub.publish(raw)  # the recorded CDR bytes as they are: no conversion on the way
        if self.reader.error:
            self.get_logger().error(f"the recording stopped early: {self.reader.error}")
        self._drain()

    def _label(self, part: str, m: Any) -> None:
        from mtc_perception.bench.replay import _label

        try:
            stamp, value, _ = _label(
                self.reader,
                part,
                self.reader.ts.deserialize_cdr(bytes(m.raw), m.msgtype),
                self.bench.builder.class_names,
            )
        except Exception as e:  # noqa: BLE001 - a bad label is reported, not fatal
            self.bench.builder.add_label_error(part, f"{type(e).__name__}: {e}")
            return
        with self.lock:
            self.bench.ground_truth(stamp, part, value)

    def _seen(self, raw: bytes) -> None:  # external player: the frame as the nodes got it
        t = time.monotonic()
        stamp, img = self._decode(raw)
        with self.lock:
            if self.bench.sent == 0:
                self.t0 = t
            self.bench.frame_sent(stamp, t, img)
        self.last_seen = t

    def _watch_external(self) -> None:
        if self.draining or self.last_seen is None:
            return
        if self.bench.sent >= self.bench.total or time.monotonic() - self.last_seen > float(self.p["drain"]):
            self.draining = True  # _drain writes the report and then sets `finished`
            threading.Thread(target=self._drain, daemon=True).start()

    # -- outputs in ------------------------------------------------------------------------------
    def _output(self, model: str, part: str, msg: Any) -> None:
        from mtc_perception.bags import stamp_to_ns

        with self.lock:
            self.bench.output(model, part, stamp_to_ns(msg.header.stamp), msg, time.monotonic())

    def _diagnostics(self, msg: Any) -> None:
        for st in msg.status:
            for m in self.bench.models:
                if st.name.startswith(f"/{m.name}/"):
                    self.bench.node_diagnostics(m.name, {kv.key: kv.value for kv in st.values})

    # -- end -------------------------------------------------------------------------------------
    def _drain(self) -> None:
        end = time.monotonic() + float(self.p["drain"])
        while time.monotonic() < end:
            with self.lock:
                if self.bench.complete():
                    break
            time.sleep(0.05)
        time.sleep(0.5)  # a last /diagnostics
        with self.lock:
            rep = self.bench.finish(self.p["out"], time.monotonic() - self.t0)
        from mtc_perception.bench.replay import summary_text

        self.get_logger().info(f"report written to {self.p['out']}:\n{summary_text(rep)}")
        self.finished.set()


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    try:
        node = BenchmarkNode()
    except (ValueError, FileNotFoundError, OSError) as e:
        from rclpy.logging import get_logger

        get_logger("benchmark_node").fatal(f"cannot start: {e}")
        rclpy.try_shutdown()
        return 1
    try:
        while rclpy.ok() and not node.finished.is_set():
            rclpy.spin_once(node, timeout_sec=0.1)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        with node.lock:
            node.bench.finish(node.p["out"], time.monotonic() - node.t0, reason="interrupted")
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
