"""The launch description behind ``student.launch.py`` and ``teacher.launch.py`` (one place, two
thin launch files). Needs the ``launch`` and ``launch_ros`` packages of a ROS 2 installation."""

from __future__ import annotations

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from mtc_perception.dds import DdsConfigError, cyclonedds_uri
from mtc_perception.node_core.params import PARAMETERS, ParamError, launch_overrides

PACKAGE = "mtc_perception"

#: launch arguments that override a node parameter when given (an empty value keeps params_file's):
#: every parameter of the node, under its own name, converted and checked by
#: :func:`~mtc_perception.node_core.params.launch_overrides` (an unknown value stops the launch)
OVERRIDES = {
    p.name: f"{p.description}{' One of: ' + ', '.join(p.choices) + '.' if p.choices else ''} "
    f"Empty: the value in params_file (default {p.default!r})."
    for p in PARAMETERS
}

DDS_CONFIG_DESCRIPTION = (
    "Cyclone DDS configuration for the launched nodes (sets CYCLONEDDS_URI): cyclonedds.xml (the shipped "
    "one, large socket receive buffer for raw 720p/1080p images; needs net.core.rmem_max raised, see "
    "docs/ROS.md) or a path to your own file. Empty: CYCLONEDDS_URI is left as in the environment."
)


def dds_actions(value: str) -> list:
    """``SetEnvironmentVariable(CYCLONEDDS_URI)`` for ``dds_config:=value`` (none when empty);
    a value naming no file stops the launch with the choices."""
    try:
        uri = cyclonedds_uri(
            value, os.path.join(get_package_share_directory(PACKAGE), "config"), os.environ.get("CYCLONEDDS_URI")
        )
    except DdsConfigError as e:
        raise RuntimeError(str(e)) from None
    return [] if uri is None else [SetEnvironmentVariable("CYCLONEDDS_URI", uri)]


def perception_node(role: str, namespace: str, params: list, log_level: str = "info") -> Node:
    """The perception node of ``role`` (parameters: file path(s) and override dicts, in order)."""
    return Node(
        package=PACKAGE,
        executable="perception_node",
        name="perception_node",
        namespace=namespace or role,
        parameters=params,
        output="screen",
        emulate_tty=True,
        arguments=["--ros-args", "--log-level", log_level],
    )


def _node(context: LaunchContext, role: str) -> list:
    get = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731 - a one-line accessor
    share = get_package_share_directory(PACKAGE)
    # role-dependent defaults are resolved here, not as argument defaults: launch configurations
    # are shared by every file included into one launch, so an argument default declared by the
    # first file would otherwise win in the second (the teacher would run as /student)
    params: list = [get("params_file") or os.path.join(share, "config", f"{role}.yaml")]
    try:
        overrides = launch_overrides(PARAMETERS, {k: get(k) for k in OVERRIDES})
    except ParamError as e:
        raise RuntimeError(str(e)) from None  # the launch stops with the argument, its value and the choices
    if overrides:
        params.append(overrides)
    return [*dds_actions(get("dds_config")), perception_node(role, get("namespace"), params, get("log_level"))]


def perception_launch(role: str) -> LaunchDescription:
    """Arguments: every node parameter (:data:`OVERRIDES`), namespace (= role), params_file
    (config/<role>.yaml), use_rviz, log_level, dds_config."""
    share = get_package_share_directory(PACKAGE)
    args = [DeclareLaunchArgument(name, default_value="", description=desc) for name, desc in OVERRIDES.items()]
    args += [
        DeclareLaunchArgument(
            "namespace",
            default_value="",
            description=f"Namespace of the node and its topics. Empty: {role!r} (/{role}/detections, "
            f"/{role}/drivable_mask, ...), so teacher and student run side by side.",
        ),
        DeclareLaunchArgument(
            "params_file",
            default_value="",
            description=f"Node parameters (YAML, `/**: ros__parameters:`); the arguments above override "
            f"it. Empty: {os.path.join(share, 'config', role + '.yaml')}.",
        ),
        DeclareLaunchArgument(
            "use_rviz", default_value="false", description="Also start RViz with config/rviz/mtc.rviz."
        ),
        DeclareLaunchArgument(
            "log_level", default_value="info", description="Node log level: debug, info, warn, error."
        ),
        DeclareLaunchArgument("dds_config", default_value="", description=DDS_CONFIG_DESCRIPTION),
    ]
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", os.path.join(share, "config", "rviz", "mtc.rviz")],
        condition=IfCondition(LaunchConfiguration("use_rviz")),
        output="log",
    )
    return LaunchDescription([*args, OpaqueFunction(function=_node, args=[role]), rviz])
