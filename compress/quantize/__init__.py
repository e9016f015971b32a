"""INT8 quantization of model bundles (``mtc-compress quantize``): Q/DQ ONNX, one concept per file.

Public API (stable: ``qat.py`` and other callers build on these names):

* ``float_kept_nodes(model: onnx.ModelProto) -> list[str]`` and ``float_kept_rules(model) ->
  dict[str, str]`` (node name -> rule: ``HEAD_CONV`` | ``AFTER_HEAD``): the nodes that stay float
  (``rules``; the head output convs and everything after them, found from the graph outputs backwards).
* ``write_int8_bundle(source_bundle: str | Path, qdq_onnx: str | Path, out: str | Path,
  quantization: mtc_perception.bundle.Quantization, force: bool = False, parity_frames: Sequence[np.ndarray] = (),
  parity_independent: bool = True, name: str | None = None, engine: ExportConfig | None = None) -> Path``
  (``bundle``): an INT8 bundle at ``out`` = the FP32 source bundle's spec with ``model.onnx``
  replaced by the Q/DQ file, no torch program / engine carried over, ``versions.precision = "int8"``, the
  ``quantization`` section (method, types, calibration, float nodes, source bundle, ONNX Runtime version,
  INT8-vs-FP32 parity on ``parity_frames``); checked (onnx.checker, an ONNX Runtime session) before it is
  renamed into place. ``out`` is replaced only where it is a bundle, unless ``force``.
* ``quantize_bundle(source_bundle, calib: CalibSource, out, cfg: PtqConfig) -> Path`` (``ptq``): post-training
  quantization with ONNX Runtime's ``quantize_static`` (QDQ, per-channel symmetric int8 weights, uint8
  activations) of a bundle over calibration frames; ``export_then_quantize(ckpt, size, calib, out, cfg)`` for a
  checkpoint; ``keep_inputs_float(model, nodes)``: after ``quantize_static``, the float-kept nodes read float
  tensors (ONNX Runtime otherwise feeds them the dequantized copy a quantized neighbour made).
* ``CalibSource`` / ``parse_source`` (``calib``): a dataset split, an image folder or a
  rosbag2 recording -> BGR frames, spread evenly, preprocessed by the runtime's own ``Preprocessor``.
* ``QuantizeError`` (``errors``): every user-caused failure (a subclass of ``compress.export.ExportError``).
"""

from .bundle import write_int8_bundle
from .calib import CalibSource, parse_source
from .errors import QuantizeError
from .ptq import METHODS, PtqConfig, export_then_quantize, keep_inputs_float, qdq_nodes, quantize_bundle
from .rules import AFTER_HEAD, HEAD_CONV, RULE, float_kept_nodes, float_kept_rules, name_nodes

__all__ = [
    "AFTER_HEAD",
    "HEAD_CONV",
    "METHODS",
    "RULE",
    "CalibSource",
    "PtqConfig",
    "QuantizeError",
    "export_then_quantize",
    "float_kept_nodes",
    "float_kept_rules",
    "keep_inputs_float",
    "name_nodes",
    "parse_source",
    "qdq_nodes",
    "quantize_bundle",
    "write_int8_bundle",
]
