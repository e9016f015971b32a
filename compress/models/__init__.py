"""Multi-task models: config as data, the YOLOP-style network, profiling."""

from .config import LAYOUTS, SIZES, YOLOP_ANCHORS, ConfigError, ModelConfig
from .profile import count_macs, count_params
from .yolop import (
    HEAD_OUTPUTS,
    TAPS,
    MultiTaskNet,
    Outputs,
    build_model,
    config_of,
    decode_detections,
    extract_widths,
    head_outputs,
)

__all__ = [
    "LAYOUTS",
    "SIZES",
    "YOLOP_ANCHORS",
    "ConfigError",
    "ModelConfig",
    "count_macs",
    "count_params",
    "HEAD_OUTPUTS",
    "TAPS",
    "MultiTaskNet",
    "Outputs",
    "build_model",
    "config_of",
    "decode_detections",
    "extract_widths",
    "head_outputs",
]
