"""Live benchmark: teacher and student nodes side by side on a recording, and a benchmark node
that plays it, matches both nodes' outputs to the frames by stamp and writes the report
(the same shape as ``mtc bench``)::

    ros2 launch mtc_perception benchmark.launch.py bag:=runs/demo/demo_bag \\
        teacher_bundle:=runs/demo/bundles/teacher student_bundle:=runs/demo/bundles/student out:=runs/bench/live

``player:=external`` plays the bag with ``ros2 bag play`` instead of the benchmark node's own
player (rosbags -> the recorded CDR bytes published as they are); the old name ``player:=ros2bag``
still works, with a deprecation warning (the values are the node's own, ``PLAYER_VALUES``). The
launch ends when the report is written. Needs ``rosbags`` (docs/ROS.md, "Install").
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

from mtc_perception.bench.player import DISTRO_CHOICES, NODE_ROLES, PLAYER_ALIASES, PLAYER_VALUES, PLAYERS
from mtc_perception.node_core.params import PARAMETERS, ParamError, launch_overrides
from mtc_perception.nodes.launch_common import DDS_CONFIG_DESCRIPTION, PACKAGE, dds_actions, perception_node

ARGS = {
    "bag": ("", "rosbag2 recording to play (directory, .mcap or .db3). Required."),
    "teacher_bundle": ("", "Teacher model bundle. Required."),
    "student_bundle": ("", "Student model bundle. Required."),
    "out": ("runs/bench/live", "Report directory."),
    "topic": ("", "Camera topic in the bag (empty: found in the bag)."),
    "player": (
        PLAYERS[0],
        "internal (the benchmark node plays the bag) or external (`ros2 bag play`); "
        + ", ".join(f"the old name {old} is taken as {new} with a warning" for old, new in PLAYER_ALIASES.items())
        + ".",
    ),
    "rate": ("1.0", "Playback speed factor."),
    "fixed_rate": ("0.0", "0: the recorded pace x rate; > 0: publish the frames at exactly this many Hz."),
    "loops": ("1", "Play the frames this many times (each repetition with new stamps)."),
    "nodes": (
        "both",
        "both (teacher and student side by side), teacher or student (one model alone on the machine).",
    ),
    "backend": ("auto", "Inference backend of both perception nodes."),
    "reliability": (
        "best_effort",
        "QoS of the perception nodes' camera subscription (best_effort as on a car; reliable "
        "to offer them every frame).",
    ),
    "drain": ("5.0", "Seconds to wait for outputs after the last frame."),
    "distro": (
        "",
        f"Message definitions the bag is read with: {', '.join(DISTRO_CHOICES)}. Empty: $ROS_DISTRO (the report "
        "records the one used).",
    ),
    "dds_config": ("", DDS_CONFIG_DESCRIPTION),
}
#: launch arguments restricted to a set of values (checked before anything starts)
CHOICES = {"player": PLAYER_VALUES, "distro": ("", *DISTRO_CHOICES), "nodes": tuple(NODE_ROLES)}


def _actions(context: LaunchContext) -> list:
    get = lambda n: LaunchConfiguration(n).perform(context)  # noqa: E731 - a one-line accessor
    for req in ("bag", "teacher_bundle", "student_bundle"):
        if not get(req):
            raise RuntimeError(f"launch argument {req}:= is required (see --show-args)")
    for name, allowed in CHOICES.items():
        if get(name) not in allowed:
            raise RuntimeError(f"launch argument {name}:={get(name)!r}: expected one of {list(allowed)}")
    try:  # the perception nodes' parameters, checked as the node checks them
        node_params = launch_overrides(PARAMETERS, {"backend": get("backend"), "reliability": get("reliability")})
    except ParamError as e:
        raise RuntimeError(str(e)) from None
    from mtc_perception.bags import BagReader
    from mtc_perception.bench.player import distro_from_env, node_inputs, player_mode
    from mtc_perception.bench.recording import choose_topic

    try:
        distro = get("distro") or distro_from_env(os.environ)
    except ParamError as e:
        raise RuntimeError(str(e)) from None
    with BagReader(get("bag"), distro) as reader:
        topic = choose_topic(reader, get("topic") or None)
        msgtype = reader.topics[topic].msgtype
    try:
        image_topic, transport = node_inputs(topic, msgtype)
    except ValueError as e:
        raise RuntimeError(str(e)) from None
    player = player_mode(get("player"))
    share = get_package_share_directory(PACKAGE)
    nodes = []
    for role in NODE_ROLES[get("nodes")]:
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
                        **node_params,
                    },
                ],
            )
        )
    external = player == PLAYERS[1]  # external: `ros2 bag play`
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
                "fixed_rate": float(get("fixed_rate")),
                "loops": int(get("loops")),
                "nodes": get("nodes"),
                "drain": float(get("drain")),
                "player": player,
                "distro": distro,
            }
        ],
    )
    actions = [
        *dds_actions(get("dds_config")),  # before the processes it applies to
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
