"""Where a perception node's time goes besides the model, stage by stage, with the real rclpy:
the old path (rclpy deserialises the camera message, the project converts it; the masks built as
rclpy messages and serialised for publishing) against the node's path (the raw subscription's bytes
read in place, the masks written serialized), and cv_bridge's conversion where it is installed.
Alternating repetitions in one process (paired timing); writes a JSON of medians in ms::

    python scripts/ros_hot_path_bench.py --size 1280x720 --repeat 50 --out runs/bench/ros_hot_path.json

Needs a sourced ROS 2 (rclpy, sensor_msgs; cv_bridge optional).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="1280x720", help="WxH of the camera frame")
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))

    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image

    from mtc_perception.imaging import bgr_to_image_fields, image_to_bgr, mask_to_image_fields
    from mtc_perception.messages import MaskWriter, image_view

    try:
        from cv_bridge import CvBridge

        bridge = CvBridge()
    except ImportError:
        bridge = None

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    mask = (rng.random((h, w)) > 0.5).astype(np.uint8)
    msg = Image(**{k: v for k, v in bgr_to_image_fields(frame).items() if k != "data"})
    msg.data = frame.tobytes()
    msg.header.frame_id = "camera"
    wire = serialize_message(msg)
    writer = MaskWriter()

    def masks_as_before() -> None:
        for _ in range(2):  # exactly what the node did before: the builder's ndarray into the message
            serialize_message(Image(header=msg.header, **mask_to_image_fields(mask)))

    def old_masks() -> None:
        for _ in range(2):  # drivable and lane
            f = mask_to_image_fields(mask)
            m = Image(height=f["height"], width=f["width"], encoding="mono8", step=f["step"])
            m.data = f["data"].tobytes()  # what a Python message needs: bytes / array.array, not an ndarray
            m.header = msg.header
            serialize_message(m)  # rclpy serialises a message object when it publishes it

    stages = {
        "rclpy_deserialize_image": lambda: deserialize_message(wire, Image),
        "convert_from_message (project)": lambda: image_to_bgr(deserialize_message(wire, Image)),
        "in_place_view_and_convert (node)": lambda: image_to_bgr(image_view(wire)),
        "masks_as_before (ndarray into rclpy messages)": masks_as_before,
        "masks_as_rclpy_messages_from_bytes": old_masks,
        "masks_written_serialized (node)": lambda: [writer((1, 2), "camera", mask) for _ in range(2)],
    }
    if bridge is not None:
        stages["convert_from_message (cv_bridge)"] = lambda: bridge.imgmsg_to_cv2(
            deserialize_message(wire, Image), desired_encoding="bgr8"
        )
    times: dict[str, list[float]] = {k: [] for k in stages}
    for fn in stages.values():
        fn()  # warm
    for _ in range(args.repeat):
        for name, fn in stages.items():  # alternating: every stage sees the same machine state
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
    doc = {
        "size": [w, h],
        "frame_bytes": len(wire),
        "repeat": args.repeat,
        "median_ms": {k: round(statistics.median(v), 3) for k, v in times.items()},
        "p90_ms": {k: round(float(np.percentile(v, 90)), 3) for k, v in times.items()},
        "cv_bridge": bridge is not None,
        "machine": f"{platform.machine()} {platform.processor() or ''} {platform.node()}".strip(),
        "python": sys.version.split()[0],
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    for k, v in doc["median_ms"].items():
        print(f"{k:45s} {v:8.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
