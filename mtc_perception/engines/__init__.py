"""Inference backends behind one interface (``load``, ``warmup``, ``infer``).

Importing this package imports no runtime: torch, onnxruntime and tensorrt are imported when an
engine of that kind is loaded.
"""

from . import onnxruntime_engine, tensorrt_engine, torch_engine  # noqa: F401  (register the backends)
from .base import AUTO_ORDER, ENGINES, Engine, EngineUnavailable, create_engine, register

__all__ = ["AUTO_ORDER", "ENGINES", "Engine", "EngineUnavailable", "create_engine", "register"]
