"""Export a checkpoint to a model bundle (``mtc-compress export``), one module per step:

* ``config``: :class:`ExportConfig`, the options;
* ``wrapper``: :class:`ExportWrapper`, the network as the bundle holds it (detections decoded in the graph);
* ``onnx``: :func:`export_onnx`, the project's one ONNX export (also used by the latency budget and
  scripts/speed_breakdown.py), the simplifier and the checker;
* ``parity``: ONNX Runtime vs torch on real frames;
* ``engine``: the TensorRT 10 engine build (GPU machines);
* ``exporter``: :func:`export_bundle`, the steps in order, writing bundle.json through
  :class:`mtc_perception.bundle.BundleSpec`;
* ``errors``: :class:`ExportError`.
"""

from .config import ExportConfig
from .errors import ExportError
from .exporter import default_frames_dir, export_bundle, find_frames
from .onnx import export_onnx
from .parity import parity
from .wrapper import INPUT_NAME, OUTPUT_NAMES, ExportWrapper

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAMES",
    "ExportConfig",
    "ExportError",
    "ExportWrapper",
    "default_frames_dir",
    "export_bundle",
    "export_onnx",
    "find_frames",
    "parity",
]
