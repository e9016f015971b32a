"""Post-training quantization of an FP32 model bundle: ONNX Runtime's ``quantize_static`` to a Q/DQ ONNX.

Steps (:func:`quantize_bundle`): refuse an input that is already quantized; read the calibration frames
(:mod:`.calib`) and preprocess them with the runtime's own :class:`mtc_perception.perceptor.Preprocessor`;
``quant_pre_process`` (ONNX Runtime's shape inference and graph optimization, the step its docs
recommend before quantizing); the float-kept nodes by rule (:mod:`.rules`); ``quantize_static`` in the
QDQ format — weights int8, symmetric, per channel; activations uint8, asymmetric (ONNX Runtime's choice
for x86 CPUs with and without VNNI, ``quantize_static``'s docstring) — calibrated by ``minmax``,
``entropy`` or ``percentile``; the float-kept nodes' inputs rewired to the float tensors
(:func:`keep_inputs_float`: ONNX Runtime feeds every consumer of a quantized tensor its dequantized
copy, excluded nodes too); then :func:`compress.quantize.bundle.write_int8_bundle` (checks, parity,
bundle.json).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtc_perception.bundle import Bundle, BundleError, Quantization

from .calib import CalibSource, calibration_record, frame_set, pick
from .errors import QuantizeError
from .rules import RULE, float_kept_rules, name_nodes

log = logging.getLogger(__name__)

METHODS = ("minmax", "entropy", "percentile")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


@dataclass(frozen=True)
class PtqConfig:
    """``mtc-compress quantize``'s options. ``frames``: calibration frames (spread over the source);
    ``parity_frames``: frames the calibration did not use, for the INT8-vs-FP32 record; ``percentile``: the
    percentile method's cut; ``engine``/``fp16``/``workspace_gb``: also a TensorRT engine (explicit
    quantization: scales from the Q/DQ nodes)."""

    method: str = "minmax"
    frames: int = 128
    parity_frames: int = 8
    percentile: float = 99.999
    per_channel: bool = True
    name: str | None = None
    force: bool = False
    engine: bool = False
    fp16: bool = False
    workspace_gb: float = 2.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise QuantizeError(f"--method {self.method!r} is unknown; choose one of {', '.join(METHODS)}")
        if self.frames < 1:
            raise QuantizeError(f"--frames {self.frames}: calibration needs at least 1 frame (128 is typical)")
        if self.parity_frames < 0:
            raise QuantizeError(f"--parity-frames {self.parity_frames} must be >= 0")
        if not 0.0 < self.percentile <= 100.0:
            raise QuantizeError(f"--percentile {self.percentile} must be in (0, 100], e.g. 99.999")
        if self.fp16 and not self.engine:
            raise QuantizeError(
                "--fp16 chooses the TensorRT engine's precision for the float-kept layers: add --engine"
            )


def qdq_nodes(model: Any) -> int:
    """How many QuantizeLinear / DequantizeLinear nodes ``model`` (an ``onnx.ModelProto``) has."""
    return sum(n.op_type in QDQ_OPS for n in model.graph.node)


def refuse_quantized(bundle: Bundle) -> None:
    """:class:`QuantizeError` when ``bundle`` is already INT8 (its quantization section, or Q/DQ nodes)."""
    import onnx

    path = bundle.require_file("onnx")
    found = qdq_nodes(onnx.load(str(path), load_external_data=False))
    if bundle.spec.quantization is not None or found:
        why = "its bundle.json has a quantization section" if bundle.spec.quantization else f"{found} Q/DQ nodes"
        raise QuantizeError(
            f"--bundle {bundle.root} is already quantized ({why}): quantizing it again would stack a second "
            "rounding on the first; give the FP32 bundle it was made from"
            + (f" ({bundle.spec.quantization.source_bundle})" if bundle.spec.quantization else "")
        )


class FrameReader:
    """ONNX Runtime's ``CalibrationDataReader`` protocol over preprocessed frames (one per ``get_next``)."""

    def __init__(self, input_name: str, inputs: Sequence[np.ndarray]) -> None:
        self.input_name, self.inputs = input_name, inputs
        self._it: Iterator[np.ndarray] = iter(inputs)
        self.done = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        if x is None:
            return None
        self.done += 1
        if self.done % 16 == 0 or self.done == len(self.inputs):
            log.info("calibration: %d/%d frames", self.done, len(self.inputs))
        return {self.input_name: x[None]}

    def rewind(self) -> None:
        self._it = iter(self.inputs)
        self.done = 0

    def __len__(self) -> int:
        return len(self.inputs)


def keep_inputs_float(model: Any, nodes: Sequence[str]) -> int:
    """Feed the float-kept ``nodes`` their float inputs: where one reads the DequantizeLinear of a
    QuantizeLinear of a float tensor (a tensor another consumer quantizes), read that float tensor instead;
    Q/DQ nodes left without a consumer are removed. Returns how many inputs were rewired."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    keep = set(nodes)
    rewired = 0
    for node in g.node:
        if node.name not in keep:
            continue
        for k, name in enumerate(node.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear":
                continue  # a quantized weight (initializer): excluded nodes get none
            node.input[k] = q.input[0]
            rewired += 1
    while True:  # drop Q/DQ nodes nothing reads any more
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        dead = [n for n in g.node if n.op_type in QDQ_OPS and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            g.node.remove(n)
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    for init in [t for t in g.initializer if t.name not in used]:  # their scales and zero points
        g.initializer.remove(init)
    return rewired


# method -> (ONNX Runtime's CalibrationMethod, the calibrator's options). ``quantize_static`` passes no
# histogram sizes, and its entropy default (128 bins searched for 128 quantized bins) has one candidate
# threshold, the full range: the same scales as minmax. The calibrator is therefore run here, with
# TensorRT's entropy calibration sizes (2048 bins, 128 quantized bins), and its ranges handed to
# ``quantize_static`` as a calibration cache. Activations are asymmetric (uint8) for every method.
CALIBRATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "minmax": ("MinMax", {"symmetric": False}),
    "entropy": ("Entropy", {"symmetric": False, "num_bins": 512, "num_quantized_bins": 128}),
    "percentile": ("Percentile", {"symmetric": False, "num_bins": 2048}),
}


def calibration_method(name: str) -> Any:
    """ONNX Runtime's ``CalibrationMethod`` of ``name`` (minmax, entropy, percentile)."""
    from onnxruntime.quantization import CalibrationMethod

    return getattr(CalibrationMethod, CALIBRATIONS[name][0])


def calibrate(model: Path, reader: FrameReader, cfg: PtqConfig, work: Path) -> Path:
    """Activation ranges of ``model`` over ``reader``'s frames by ``cfg.method``, written as ONNX Runtime's
    calibration cache (``work/calibration.json``) for ``quantize_static``."""
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    options = CALIBRATIONS[cfg.method][1]
    if cfg.method == "percentile":
        options = {**options, "percentile": cfg.percentile}
    calibrator = create_calibrator(
        model,
        augmented_model_path=str(work / "augmented.onnx"),
        calibrate_method=calibration_method(cfg.method),
        extra_options=options,
    )
    calibrator.collect_data(reader)
    cache = work / "calibration.json"
    save_tensors_data(calibrator.compute_data(), cache)
    return cache


def quantize_onnx(
    src: Path, dst: Path, inputs: Sequence[np.ndarray], input_name: str, cfg: PtqConfig, work: Path
) -> dict[str, str]:
    """``src`` (FP32 ONNX) -> ``dst`` (Q/DQ ONNX) calibrated on ``inputs``; returns the float-kept nodes."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = work / "pre.onnx"
    t = time.perf_counter()
    quant_pre_process(str(src), str(pre))
    model = onnx.load(str(pre))
    if name_nodes(model):
        onnx.save(model, str(pre))
    kept = float_kept_rules(model)
    log.info("%d nodes kept in float (head output convs and what follows them)", len(kept))
    cache = calibrate(pre, FrameReader(input_name, inputs), cfg, work)
    quantize_static(
        str(pre),
        str(work / "q.onnx"),
        None,
        quant_format=QuantFormat.QDQ,
        per_channel=cfg.per_channel,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=list(kept),
        calibrate_method=calibration_method(cfg.method),
        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
        calibration_cache_path=str(cache),
    )
    q = onnx.load(str(work / "q.onnx"))
    rewired = keep_inputs_float(q, list(kept))
    onnx.checker.check_model(q, full_check=True)
    onnx.save(q, str(dst))
    log.info(
        "Q/DQ model: %d Q/DQ nodes, %d float-kept inputs read float tensors; %.1f s",
        qdq_nodes(q),
        rewired,
        time.perf_counter() - t,
    )
    return kept


def quantize_bundle(
    source_bundle: str | Path, calib: CalibSource, out: str | Path, cfg: PtqConfig, source_label: str | None = None
) -> Path:
    """Post-training INT8 quantization of the FP32 bundle ``source_bundle`` into the bundle ``out``,
    calibrated on ``cfg.frames`` frames of ``calib``; returns ``out``. ``source_label``: what bundle.json
    names as the source (default: the source bundle's directory)."""
    import onnxruntime

    from mtc_perception.perceptor import Preprocessor

    from ..export.exporter import _replaceable
    from .bundle import write_int8_bundle

    out = Path(out)
    _replaceable(out, "bundle.json", cfg.force)  # before any work
    try:
        bundle = Bundle.load(source_bundle)
    except BundleError as e:
        raise QuantizeError(f"--bundle {source_bundle}: {e}") from None
    refuse_quantized(bundle)
    frames = frame_set(calib)
    picked = pick(frames, cfg.frames)
    log.info("calibration: %d of %d frames of %s", len(picked.images), frames.count, frames.description)
    pre = Preprocessor(bundle)
    inputs = [pre([img])[0][0] for img in picked.images]
    parity = pick(frames, cfg.parity_frames, exclude=picked.indices + list(picked.bad), required=False, what="parity")
    independent = bool(parity.images)
    parity_images = parity.images or picked.images[: cfg.parity_frames]
    if not independent and cfg.parity_frames:
        log.warning(
            "%s has no frames besides the %d calibration frames: the INT8-vs-FP32 parity runs on calibration frames",
            frames.description,
            len(picked.images),
        )
    with tempfile.TemporaryDirectory(prefix="mtc-quantize-") as tmp:
        work = Path(tmp)
        kept = quantize_onnx(bundle.require_file("onnx"), work / "model.onnx", inputs, bundle.input_name, cfg, work)
        info = Quantization(
            method=cfg.method,
            weight_type="int8",
            activation_type="uint8",
            per_channel=cfg.per_channel,
            symmetric_weights=True,
            symmetric_activations=False,
            calibration=calibration_record(calib, frames, picked),
            float_nodes=kept,
            float_rule=RULE,
            source_bundle=source_label or str(bundle.root),
            onnxruntime=onnxruntime.__version__,
        )
        return write_int8_bundle(
            bundle.root,
            work / "model.onnx",
            out,
            info,
            force=cfg.force,
            parity_frames=parity_images,
            parity_independent=independent,
            name=cfg.name,
            engine=_engine_config(cfg, str(calib)) if cfg.engine else None,
        )


def _engine_config(cfg: PtqConfig, calib: str) -> Any:
    """The TensorRT build's options: INT8 from the Q/DQ scales (``calib`` only says where they came from)."""
    from ..export import ExportConfig

    return ExportConfig(engine=True, int8=True, fp16=cfg.fp16, calib=calib, workspace_gb=cfg.workspace_gb)


def export_then_quantize(
    ckpt: str | Path, size: tuple[int, int] | None, calib: CalibSource, out: str | Path, cfg: PtqConfig
) -> Path:
    """``--ckpt``: export the checkpoint to a temporary FP32 bundle (``compress.export.export_bundle``, at
    ``size`` or its training size), then :func:`quantize_bundle` it."""
    from ..export import ExportConfig, export_bundle
    from ..export.exporter import _replaceable

    _replaceable(Path(out), "bundle.json", cfg.force)
    with tempfile.TemporaryDirectory(prefix="mtc-quantize-fp32-") as tmp:
        fp32 = Path(tmp) / f"{Path(out).name}-fp32"
        frames = str(calib.path) if calib.kind == "folder" else None
        if calib.kind == "dataset":
            from ..data.bdd import DataConfig

            frames = str(DataConfig(root=calib.path, split=calib.split or "val").images_path())
        try:
            export_bundle(ckpt, fp32, ExportConfig(img_size=size, frames=frames))
        except FileNotFoundError as e:
            raise QuantizeError(
                f"--ckpt {ckpt}: the export before quantizing needs image frames for its parity check ({e}); "
                "export it yourself (mtc-compress export --ckpt CKPT --frames DIR --out FP32) and quantize "
                "that with --bundle FP32"
            ) from None
        return quantize_bundle(fp32, calib, out, cfg, source_label=f"FP32 export of {ckpt} (temporary)")
