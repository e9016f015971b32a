"""Live benchmark: teacher and student nodes side by side on a recording, and a benchmark node
that plays it, matches both nodes' outputs to the frames by stamp and writes the report
(the same shape as ``mtc bench``)::

    ros2 launch mtc_perception benchmark.launch.py bag:=runs/demo/demo_bag \\
        teacher_bundle:=runs/demo/bundles/teacher student_bundle:=runs/demo/bundles/student out:=runs/bench/live

``player:=external`` plays the bag with ``ros2 bag play`` instead of the benchmark node's own
player (rosbags -> the recorded CDR bytes published as they are); the old name ``player:=ros2bag``
still works, with a deprecation warning. The launch ends when the report
is written.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    ExecuteProcess,
    OpaqueFunction,
    RegisterEventHandler,
    TimerAction,
)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from mtc_perception.nodes.launch_common import PACKAGE, perception_node

ARGS = {
    "bag": ("", "rosbag2 recording to play (directory, .mcap or .db3). Required."),
    "teacher_bundle": ("", "Teacher model bundle. Required."),
    "student_bundle": ("", "Student model bundle. Required."),
    "out": ("runs/bench/live", "Report directory."),
    "topic": ("", "Camera topic in the bag (empty: found in the bag)."),
    "player": (
        "internal",
        "internal (the benchmark node plays the bag) or external (`ros2 bag play`; the old name ros2bag "
        "is accepted with a warning).",
    ),
    "rate": ("1.0", "Playback speed factor."),
    "backend": ("auto", "Inference backend of both perception nodes."),
    "reliability": (
        "best_effort",
        "QoS of the perception nodes' camera subscription (best_effort as on a car; reliable "
        "to offer them every frame).",
    ),
    "drain": ("5.0", "Seconds to wait for outputs after the last frame."),
}


def _actions(context: LaunchContext) -> list:
    get = lambda n: LaunchConfiguration(n).perform(context)  # noqa: E731 - a one-line accessor
    for req in ("bag", "teacher_bundle", "student_bundle"):
        if not get(req):
            raise RuntimeError(f"launch argument {req}:= is required (see --show-args)")
    from mtc_perception.bags import BagReader
    from mtc_perception.bench.player import PLAYERS, node_inputs, player_mode
    from mtc_perception.bench.recording import choose_topic

    with BagReader(get("bag")) as reader:
        topic = choose_topic(reader, get("topic") or None)
        msgtype = reader.topics[topic].msgtype
    try:
        image_topic, transport = node_inputs(topic, msgtype)
    except ValueError as e:
        raise RuntimeError(str(e)) from None
    player = player_mode(get("player"))
    if player not in PLAYERS:
        raise RuntimeError(f"launch argument player:={get('player')}: expected one of {list(PLAYERS)}")
    share = get_package_share_directory(PACKAGE)
    nodes = []
    for role in ("teacher", "student"):
        nodes.append(
            perception_node(
                role,
                role,
                [
                    os.path.join(share, "config", f"{role}.yaml"),
                    {
                        "bundle": get(f"{role}_bundle"),
                        "image_topic": image_topic,
                        "input_transport": transport,
                        "backend": get("backend"),
                        "reliability": get("reliability"),
                    },
                ],
            )
        )
    external = player == "external"
    bench = Node(
        package=PACKAGE,
        executable="benchmark_node",
        name="benchmark_node",
        output="screen",
        emulate_tty=True,
        parameters=[
            {
                "bag": get("bag"),
                "topic": topic,
                "teacher_bundle": get("teacher_bundle"),
                "student_bundle": get("student_bundle"),
                "out": get("out"),
                "rate": float(get("rate")),
                "drain": float(get("drain")),
                "player": player,
            }
        ],
    )
    actions = [
        *nodes,
        bench,
        RegisterEventHandler(
            OnProcessExit(target_action=bench, on_exit=[EmitEvent(event=Shutdown(reason="benchmark finished"))])
        ),
    ]
    if external:
        play = ExecuteProcess(
            cmd=["ros2", "bag", "play", get("bag"), "--rate", get("rate"), "--topics", topic], output="screen"
        )
        actions.append(TimerAction(period=8.0, actions=[play]))  # after the nodes have loaded their models
    return actions


def generate_launch_description():
    return LaunchDescription(
        [
            *(DeclareLaunchArgument(n, default_value=d, description=t) for n, (d, t) in ARGS.items()),
            OpaqueFunction(function=_actions),
        ]
    )
