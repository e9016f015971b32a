"""launch_testing: a node started on a bundle that does not exist says so and exits with code 1
(instead of running without a model). Skipped where ROS 2 is missing, like the other launch test."""

import unittest
from pathlib import Path

import pytest

REASON = "needs ROS 2 (rclpy, launch_testing): run `colcon test --packages-select mtc_perception` on a ROS 2 machine"
pytest.importorskip("rclpy", reason=REASON)
pytest.importorskip("launch_testing", reason=REASON)

import launch
import launch_ros.actions
import launch_testing.actions
import launch_testing.asserts

MISSING = Path(__file__).resolve().parent / "no_such_bundle"


@pytest.mark.launch_test
def generate_test_description():
    node = launch_ros.actions.Node(
        package="mtc_perception",
        executable="perception_node",
        namespace="student",
        parameters=[{"bundle": str(MISSING)}],
        output="screen",
    )
    return launch.LaunchDescription([node, launch_testing.actions.ReadyToTest()]), {"node": node}


class TestFatal(unittest.TestCase):
    def test_says_what_is_missing_and_exits(self, proc_output, proc_info, node):
        proc_output.assertWaitFor(f"cannot start: {MISSING} is not a model bundle", process=node, timeout=30)
        proc_info.assertWaitForShutdown(process=node, timeout=30)  # on its own, before launch stops it


@launch_testing.post_shutdown_test()
class TestExit(unittest.TestCase):
    def test_exit_code_is_1(self, proc_info, node):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[1], process=node)
