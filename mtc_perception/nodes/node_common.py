"""rclpy glue both nodes share: message classes by name, parameters declared from a
:class:`~mtc_perception.node_core.params.ParamSpec` table (with descriptors), and ``rclpy.init`` as a
context manager on every distro."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator, Sequence
from typing import Any

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter

from mtc_perception.node_core.params import ParamSpec

_TYPES = {
    "string": Parameter.Type.STRING,
    "double": Parameter.Type.DOUBLE,
    "integer": Parameter.Type.INTEGER,
    "bool": Parameter.Type.BOOL,
    "string_array": Parameter.Type.STRING_ARRAY,
}


def ros_type(name: str) -> Any:
    """``"vision_msgs/msg/Detection2D"`` -> the rclpy message class."""
    pkg, sub, cls = name.split("/")
    return getattr(importlib.import_module(f"{pkg}.{sub}"), cls)


def descriptor(p: ParamSpec) -> ParameterDescriptor:
    """A read-only descriptor with the table's description, choices and range."""
    d = ParameterDescriptor(name=p.name, type=_TYPES[p.kind].value, description=p.description, read_only=True)
    if p.choices:
        d.additional_constraints = "one of: " + ", ".join(p.choices)
    if p.range is not None and p.kind == "double":
        d.floating_point_range = [
            FloatingPointRange(from_value=float(p.range[0]), to_value=float(p.range[1]), step=0.0)
        ]
    if p.range is not None and p.kind == "integer":
        d.integer_range = [IntegerRange(from_value=int(p.range[0]), to_value=int(p.range[1]), step=1)]
    return d


def declare_parameters(node: Node, table: Sequence[ParamSpec]) -> dict[str, Any]:
    """Declare every parameter of ``table`` on ``node`` and return their values (to validate with
    :func:`~mtc_perception.node_core.params.check_params` or the node's own validator)."""
    values: dict[str, Any] = {}
    for p in table:
        # an empty list cannot tell rclpy its type: declare string arrays by type, default []
        default = _TYPES[p.kind] if p.kind == "string_array" else p.default
        node.declare_parameter(p.name, default, descriptor(p))
        try:
            values[p.name] = node.get_parameter(p.name).value
        except ParameterUninitializedException:  # declared by type and not set: the default
            values[p.name] = p.default
        if p.kind == "string_array" and isinstance(values[p.name], (list, tuple)):
            values[p.name] = list(values[p.name])
    return values


@contextlib.contextmanager
def ros_init(args: list[str] | None = None) -> Iterator[None]:
    """``with rclpy.init(args=args):`` — rclpy's own context manager where it has one (Jazzy and
    later); on Humble, whose ``rclpy.init`` returns None, the same shape with ``try_shutdown``."""
    ctx = rclpy.init(args=args)
    if hasattr(ctx, "__enter__"):
        with ctx:
            yield
        return
    try:
        yield
    finally:
        rclpy.try_shutdown()
