"""INT8 quantization of model bundles (``mtc-compress quantize``): Q/DQ ONNX, one concept per file.

Public API (stable: ``qat.py`` and other callers build on these names):

* ``float_kept_nodes(model: onnx.ModelProto) -> list[str]`` and ``float_kept_rules(model) ->
  dict[str, str]`` (node name -> rule: ``HEAD_CONV`` | ``AFTER_HEAD``): the nodes that stay float
  (``rules``; the head output convs and everything after them, found from the graph outputs backwards).
* ``write_int8_bundle(source_bundle: str | Path, qdq_onnx: str | Path, out: str | Path,
  quantization: mtc_perception.bundle.Quantization, force: bool = False, parity_frames: Sequence[np.ndarray] = ())
  -> Path`` (``bundle``): an INT8 bundle at ``out`` = the FP32 source bundle's spec with ``model.onnx``
  replaced by the Q/DQ file, no torch program / engine carried over, ``versions.precision = "int8"``, the
  ``quantization`` section (method, types, calibration, float nodes, source bundle, ONNX Runtime version,
  INT8-vs-FP32 parity on ``parity_frames``); checked (onnx.checker, an ONNX Runtime session) before it is
  renamed into place. ``out`` is replaced only where it is a bundle, unless ``force``.
* ``quantize_bundle(source_bundle, calib: CalibSource, out, cfg: PtqConfig) -> Path`` (``ptq``): post-training
  quantization with ONNX Runtime's ``quantize_static`` (QDQ, per-channel symmetric int8 weights, uint8
  activations) of a bundle over calibration frames.
* ``CalibSource`` / ``parse_source`` / ``read_frames`` (``calib``): a dataset split, an image folder or a
  rosbag2 recording -> BGR frames, spread evenly, preprocessed by the runtime's own ``Preprocessor``.
* ``QuantizeError`` (``errors``): every user-caused failure (a subclass of ``compress.export.ExportError``).
"""

from .errors import QuantizeError
from .rules import AFTER_HEAD, HEAD_CONV, RULE, float_kept_nodes, float_kept_rules, name_nodes

__all__ = [
    "AFTER_HEAD",
    "HEAD_CONV",
    "RULE",
    "QuantizeError",
    "float_kept_nodes",
    "float_kept_rules",
    "name_nodes",
]
