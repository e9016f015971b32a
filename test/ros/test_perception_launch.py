"""launch_testing: student.launch.py (raw frames) and teacher.launch.py (compressed frames) side by
side on the committed tiny bundle; frames in several encodings in, detections and masks out with
the input's stamps, a bad frame survived, /diagnostics counting it all.

Runs under ``colcon test`` (or ``launch_test test/ros/test_perception_launch.py``) on a ROS 2
Humble/Jazzy machine where this package is built and sourced; skipped elsewhere.
"""

import time
import unittest
from pathlib import Path

import pytest

REASON = "needs ROS 2 (rclpy, launch_testing): run `colcon test --packages-select mtc_perception` on a ROS 2 machine"
rclpy = pytest.importorskip("rclpy", reason=REASON)
pytest.importorskip("launch_testing", reason=REASON)

import cv2
import launch
import launch_testing.actions
import launch_testing.asserts
import numpy as np
from ament_index_python.packages import get_package_share_directory
from diagnostic_msgs.msg import DiagnosticArray
from launch.launch_description_sources import PythonLaunchDescriptionSource
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from vision_msgs.msg import Detection2DArray

DATA = Path(__file__).resolve().parents[1] / "data"
TOPIC = "/mtc_test/image_raw"


@pytest.mark.launch_test
def generate_test_description():
    share = Path(get_package_share_directory("mtc_perception")) / "launch"
    common = {"bundle": str(DATA / "tiny_bundle"), "image_topic": TOPIC, "backend": "onnxruntime"}

    def include(role, transport):
        # deliberately not scoped (no GroupAction): the launch files must keep their own
        # namespace and parameter file even when another include set those configurations first
        return launch.actions.IncludeLaunchDescription(
            PythonLaunchDescriptionSource(str(share / f"{role}.launch.py")),
            launch_arguments={**common, "input_transport": transport}.items(),
        )

    return launch.LaunchDescription(
        [include("student", "raw"), include("teacher", "compressed"), launch_testing.actions.ReadyToTest()]
    )


def _image(frame, encoding, stamp, pad=0):
    if encoding == "rgb8":
        px = frame[..., ::-1]
    elif encoding == "mono8":
        px = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    elif encoding == "bgra8":
        px = cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA)
    else:
        px = frame
    h, w = px.shape[:2]
    row = px.reshape(h, -1)
    step = row.shape[1] + pad
    data = np.zeros((h, step), np.uint8)
    data[:, : row.shape[1]] = row
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=0, step=step, data=data.tobytes())
    msg.header.stamp.sec, msg.header.frame_id = stamp, "mtc_test_camera"
    return msg


class TestPerceptionNodes(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node("mtc_launch_test")

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def _collect(self, ns):
        got = {"detections": {}, "drivable_mask": {}, "lane_mask": {}}
        for name, cls in (("detections", Detection2DArray), ("drivable_mask", Image), ("lane_mask", Image)):
            self.node.create_subscription(
                cls, f"/{ns}/{name}", lambda m, n=name: got[n].__setitem__(m.header.stamp.sec, m), 10
            )
        return got

    def _wait(self, cond, timeout=30.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end and not cond():
            rclpy.spin_once(self.node, timeout_sec=0.1)
        return cond()

    def _wait_for_subscriber(self, pub):
        self.assertTrue(
            self._wait(lambda: pub.get_subscription_count() > 0, 60.0), f"no subscriber on {pub.topic_name}"
        )

    def test_frames_in_several_encodings_come_back_with_their_stamps(self, proc_output):
        frame = cv2.imread(str(DATA / "frame.jpg"))
        h, w = frame.shape[:2]
        diags = []
        self.node.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
        student, teacher = self._collect("student"), self._collect("teacher")
        raw = self.node.create_publisher(Image, TOPIC, qos_profile_sensor_data)
        comp = self.node.create_publisher(CompressedImage, TOPIC + "/compressed", qos_profile_sensor_data)
        self._wait_for_subscriber(raw)
        self._wait_for_subscriber(comp)

        # raw: one frame at a time (newest-frame-wins would drop a burst), re-sent until answered
        cases = [("bgr8", 0), ("rgb8", 0), ("mono8", 0), ("bgra8", 64)]
        for i, (enc, pad) in enumerate(cases, start=1):
            msg = _image(frame, enc, i, pad)
            ok = self._wait(lambda msg=msg, i=i: (raw.publish(msg), i in student["lane_mask"])[1], 30.0)
            self.assertTrue(ok, f"no student output for the {enc} frame")
        bad = Image(height=h, width=w, encoding="bgr8", step=w * 3 - 1, data=bytes((w * 3 - 1) * h))
        bad.header.stamp.sec = 99
        raw.publish(bad)
        for sec, fmt in ((11, ".jpg"), (12, ".png")):
            c = CompressedImage(format=fmt[1:], data=cv2.imencode(fmt, frame)[1].tobytes())
            c.header.stamp.sec, c.header.frame_id = sec, "mtc_test_camera"
            self.assertTrue(
                self._wait(lambda c=c, sec=sec: (comp.publish(c), sec in teacher["lane_mask"])[1], 30.0),
                f"no teacher output for {fmt}",
            )

        for outputs, stamps in ((student, range(1, len(cases) + 1)), (teacher, (11, 12))):
            for sec in stamps:
                self.assertTrue(
                    self._wait(lambda sec=sec, outputs=outputs: all(sec in outputs[k] for k in outputs), 10.0)
                )
                for name, m in ((k, outputs[k][sec]) for k in outputs):
                    self.assertEqual(m.header.frame_id, "mtc_test_camera", name)
                    if name != "detections":
                        self.assertEqual((m.height, m.width, m.encoding), (h, w, "mono8"))
                        self.assertTrue(set(np.unique(np.frombuffer(bytes(m.data), np.uint8))) <= {0, 255})
        self.assertNotIn(99, student["detections"])  # the bad frame produced nothing ...

        def counted():
            for d in diags:
                for st in d.status:
                    kv = {x.key: x.value for x in st.values}
                    if (
                        st.name.startswith("/student/")
                        and int(kv.get("failed", 0)) >= 1
                        and int(kv.get("processed", 0)) >= len(cases)
                    ):
                        return True
            return False

        self.assertTrue(self._wait(counted, 15.0), "diagnostics never reported the processed and failed frames")
        proc_output.assertWaitFor("Image.step", timeout=10)  # ... and was named in a warning


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_nodes_exit_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
