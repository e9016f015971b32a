"""launch_testing: benchmark.launch.py on a small recording (written here with `mtc bag`'s writer)
and the committed tiny bundle as teacher and student: both perception nodes start, the benchmark
node plays the bag, matches outputs to frames by stamp, writes the report and ends the launch.
Skipped where ROS 2 is missing."""

import json
import tempfile
import unittest
from pathlib import Path

import pytest

REASON = "needs ROS 2 (rclpy, launch_testing): run `colcon test --packages-select mtc_perception` on a ROS 2 machine"
pytest.importorskip("rclpy", reason=REASON)
pytest.importorskip("launch_testing", reason=REASON)
# the benchmark launch reads and plays the bag with rosbags: a failure, not a skip, where it is missing
pytest.importorskip("rosbags", reason="needs rosbags: a required dependency, see import_guards.REQUIRED")

import cv2
import launch
import launch_testing.actions
import launch_testing.asserts
import numpy as np
from ament_index_python.packages import get_package_share_directory
from launch.launch_description_sources import PythonLaunchDescriptionSource

from mtc_perception.bags import SourceFrame, WriteConfig, write_bag

DATA = Path(__file__).resolve().parents[1] / "data"
FRAMES = 12
WORK = Path(tempfile.mkdtemp(prefix="mtc-bench-launch-"))


@pytest.mark.launch_test
def generate_test_description():
    frame = cv2.imread(str(DATA / "frame.jpg"))
    write_bag(
        WORK / "bag",
        [SourceFrame(f"f{i}", np.ascontiguousarray(np.roll(frame, 5 * i, axis=1))) for i in range(FRAMES)],
        WriteConfig(fps=5.0),
    )
    bench = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            str(Path(get_package_share_directory("mtc_perception")) / "launch" / "benchmark.launch.py")
        ),
        launch_arguments={
            "bag": str(WORK / "bag"),
            "teacher_bundle": str(DATA / "tiny_bundle"),
            "student_bundle": str(DATA / "tiny_bundle"),
            "out": str(WORK / "report"),
            "backend": "onnxruntime",
            "reliability": "reliable",
        }.items(),
    )
    return launch.LaunchDescription([bench, launch_testing.actions.ReadyToTest()])


class TestBenchmark(unittest.TestCase):
    def test_report_is_written_and_the_launch_ends(self, proc_output):
        proc_output.assertWaitFor("report written to", timeout=120)


@launch_testing.post_shutdown_test()
class TestReport(unittest.TestCase):
    def test_report_accounts_for_every_frame(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
        rep = json.loads((WORK / "report" / "report.json").read_text())
        self.assertEqual(rep["meta"]["mode"], "live")
        for name in ("teacher", "student"):
            f = rep["models"][name]["frames"]
            self.assertEqual(f["total"], FRAMES)
            self.assertEqual(f["processed"] + f["failed"] + f["skipped"], FRAMES)
            self.assertGreater(f["processed"], 0)
        # the same bundle on both sides: wherever both answered, they agree completely
        self.assertAlmostEqual(rep["agreement"]["drivable"]["miou"], 1.0, places=6)
        self.assertAlmostEqual(rep["agreement"]["lane"]["iou"], 1.0, places=6)
