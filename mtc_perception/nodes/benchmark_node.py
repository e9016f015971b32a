"""``benchmark_node``: plays a rosbag2 recording to the perception nodes (or watches ``ros2 bag
play`` do it), collects both nodes' outputs, matches them to the frames by header stamp and writes
the same report as ``mtc bench``. Glue only: the parameters
(:data:`~mtc_perception.bench.player.PLAYER_PARAMETERS`), pacing, start and drain timeouts and the
report are :class:`mtc_perception.bench.player.BenchPlayer` (ROS-free, tested without ROS). Started
by ``launch/benchmark.launch.py``.
"""

from __future__ import annotations

import sys
import threading

import rclpy
import rclpy.executors
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from mtc_perception.bench.player import PLAYER_PARAMETERS, BenchPlayer, validate_player_params
from mtc_perception.messages import DIAGNOSTICS_TYPE, OUTPUT_TYPES
from mtc_perception.nodes.node_common import declare_parameters, ros_init, ros_type

OUT_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=100,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)


class BenchmarkNode(Node):
    def __init__(self) -> None:
        super().__init__("benchmark_node")
        params = validate_player_params(declare_parameters(self, PLAYER_PARAMETERS))  # ParamError -> fatal
        self.player = BenchPlayer(params, logger=self.get_logger())
        for (model, part), topic in self.player.output_topics.items():
            self.create_subscription(
                ros_type(OUTPUT_TYPES[part]),
                topic,
                lambda msg, n=model, pt=part: self.player.output(n, pt, msg),
                OUT_QOS,
            )
        self.create_subscription(
            ros_type(DIAGNOSTICS_TYPE), "/diagnostics", lambda msg: self.player.diagnostics(msg.status), 10
        )
        camera = ros_type(self.player.msgtype)
        if self.player.external:
            self.create_subscription(camera, self.player.topic, self.player.seen, OUT_QOS, raw=True)
            self.create_timer(0.5, self._watch_external)
        else:
            self.pub = self.create_publisher(camera, self.player.topic, OUT_QOS)
            threading.Thread(target=self._play, name="mtc-player", daemon=True).start()
        self.get_logger().info(self.player.describe())

    def _play(self) -> None:
        self.player.wait_for_nodes(self.pub.get_subscription_count, self.count_publishers, rclpy.ok)
        self.player.play(self.pub.publish, rclpy.ok)  # the recorded CDR bytes as they are

    def _watch_external(self) -> None:
        if self.player.external_done():
            threading.Thread(target=self.player.drain, daemon=True).start()


def main(args: list[str] | None = None) -> int:
    try:
        with ros_init(args):
            try:
                node = BenchmarkNode()
            except (ValueError, FileNotFoundError, OSError) as e:  # ParamError, BagError are ValueErrors
                from rclpy.logging import get_logger

                get_logger("benchmark_node").fatal(f"cannot start: {e}")
                return 1
            try:
                while rclpy.ok() and not node.player.finished.is_set():
                    rclpy.spin_once(node, timeout_sec=0.1)
            except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
                node.player.finish(reason="interrupted")
                raise
            finally:
                node.destroy_node()
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass  # the report of what was measured is written
    return 0


if __name__ == "__main__":
    sys.exit(main())
