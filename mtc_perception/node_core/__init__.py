"""Everything the perception node decides, without rclpy, one concept per module: parameters
(:mod:`.params`), the newest-frame slot (:mod:`.slot`), one frame through the model
(:mod:`.processor`, over :mod:`mtc_perception.frame`), counters and health behind ``/diagnostics``
(:mod:`.diagnostics`), rate-limited warnings (:mod:`.warn`) and the camera QoS (:mod:`.qos`).
The message builders are :mod:`mtc_perception.messages`. The rclpy glue is
:mod:`mtc_perception.nodes.perception_node`."""

from .diagnostics import Stats, diagnostic_array, health
from .params import (
    PARAMETERS,
    NodeParams,
    ParamError,
    ParamSpec,
    check_class_filter,
    check_params,
    launch_overrides,
    validate_params,
)
from .processor import FrameProcessor, FrameResult
from .qos import qos_settings
from .slot import FrameSlot
from .warn import WarnLimiter

__all__ = [
    "PARAMETERS",
    "FrameProcessor",
    "FrameResult",
    "FrameSlot",
    "NodeParams",
    "ParamError",
    "ParamSpec",
    "Stats",
    "WarnLimiter",
    "check_class_filter",
    "check_params",
    "diagnostic_array",
    "health",
    "launch_overrides",
    "qos_settings",
    "validate_params",
]
