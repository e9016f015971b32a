"""Export of a QAT network (:mod:`compress.quantize.qat`) to a Q/DQ ONNX, and the checks of its graph.

:func:`deploy_qat` makes the inference copy: BatchNorm folded into the fake-quantized convolutions
(``Conv`` blocks, and the BatchNorm after the concat of a ``BottleneckCSP`` split over its two
convolutions), observers frozen, per-tensor scales as scalars (ONNX per-tensor QuantizeLinear).
Folding is exact for per-output-channel symmetric weights: the folded weight ``w * k`` has the
scale ``s * |k|`` (the observer measures it from the folded weight), so the int8 values are
those of ``w`` (with the sign of ``k``). The decoders are not rewritten (compress.models.deploy sums
kernel rows, which changes what is quantized).

:func:`export_qat_onnx` writes it through the project's one exporter
(:func:`compress.export.onnx.export_onnx`, TorchScript-based, opset 17): each
``FakeQuantize`` becomes QuantizeLinear -> DequantizeLinear. :func:`conv_quantization` reads
back, per Conv node, whether its input and weight come through DequantizeLinear.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .qat import QatError, QuantConv2d, is_qat, qat_convs

log = logging.getLogger(__name__)


def _scale_shift(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """``bn(y) == y * k + c`` with the running statistics."""
    mean, var = bn.running_mean, bn.running_var
    if mean is None or var is None or bn.weight is None or bn.bias is None:
        raise QatError("BatchNorm without running statistics or affine parameters cannot be folded")
    k = bn.weight.detach() / torch.sqrt(var + bn.eps)
    return k, bn.bias.detach() - mean * k


@torch.no_grad()
def _fold(conv: QuantConv2d, k: torch.Tensor, c: torch.Tensor) -> None:
    """``conv`` followed by ``y * k + c`` as one convolution (in place: weight, bias, weight scale)."""
    conv.weight.mul_(k.view(-1, 1, 1, 1))
    bias = conv.bias.detach() * k + c if conv.bias is not None else c.clone()
    conv.bias = nn.Parameter(bias)
    conv.weight_quant(conv.weight)  # per-channel scales of the folded weight: s * |k|


def _fold_blocks(model: nn.Module) -> int:
    from compress.models.yolop import BottleneckCSP, Conv

    n = 0
    for m in list(model.modules()):
        if isinstance(m, Conv) and isinstance(m.conv, QuantConv2d) and isinstance(m.bn, nn.BatchNorm2d):
            _fold(m.conv, *_scale_shift(m.bn))
            setattr(m, "bn", nn.Identity())  # noqa: B010 - the attribute is typed BatchNorm2d
            n += 1
        elif (
            isinstance(m, BottleneckCSP)
            and isinstance(m.cv3, QuantConv2d)
            and isinstance(m.cv2, QuantConv2d)
            and isinstance(m.bn, nn.BatchNorm2d)
        ):
            k, c = _scale_shift(m.bn)
            c3 = m.cv3.out_channels
            _fold(m.cv3, k[:c3], c[:c3])
            _fold(m.cv2, k[c3:], c[c3:])
            setattr(m, "bn", nn.Identity())  # noqa: B010 - the attribute is typed BatchNorm2d
            n += 1
    return n


def deploy_qat(model: nn.Module) -> nn.Module:
    """An eval-mode copy of a QAT network for export: BatchNorm folded, every range frozen, per-tensor
    scales 0-d (scalar ONNX scales, as TensorRT wants)."""
    if not is_qat(model):
        raise QatError("deploy_qat: the model has no QAT scheme; prepare it with compress.quantize.qat.prepare_qat")
    m = copy.deepcopy(model).eval().float()
    m.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    folded = _fold_blocks(m)
    for q in qat_convs(m).values():
        q.tracks_ranges = False
        q.input_quant.disable_observer()
        q.weight_quant.disable_observer()
        q.input_quant.scale = q.input_quant.scale.reshape(())
        q.input_quant.zero_point = q.input_quant.zero_point.reshape(())
    log.debug("deploy_qat: %d BatchNorms folded into fake-quantized convolutions", folded)
    return m


def export_qat_onnx(model: nn.Module, path: str | Path, size: tuple[int, int], opset: int = 17) -> Path:
    """``model`` (a QAT network) as the bundle's Q/DQ ``model.onnx`` at ``size`` = (width, height):
    detections decoded in the graph (:class:`compress.export.ExportWrapper`), outputs ``det``,
    ``drivable``, ``lane`` (the FP32 bundle's), checked by ``onnx.checker``."""
    from compress.export.onnx import check_onnx, export_onnx
    from compress.export.wrapper import INPUT_NAME, OUTPUT_NAMES, ExportWrapper

    wrapper = ExportWrapper(deploy_qat(model)).eval()
    export_onnx(wrapper, path, size, opset, [INPUT_NAME], OUTPUT_NAMES)
    check_onnx(path)
    return Path(path)


def conv_quantization(path: str | Path) -> dict[str, dict[str, Any]]:
    """Per Conv node of the ONNX file: ``input`` / ``weight`` True where that input is produced by a
    DequantizeLinear (fed by a QuantizeLinear, or an int8 initializer), and ``module``: the module
    path the TorchScript exporter wrote into the node name (:func:`module_of`)."""
    import onnx

    g = onnx.load(str(path)).graph
    producer = {o: n for n in g.node for o in n.output}
    out: dict[str, dict[str, Any]] = {}
    for n in g.node:
        if n.op_type != "Conv":
            continue

        def dq(name: str) -> bool:
            p = producer.get(name)
            return p is not None and p.op_type == "DequantizeLinear"

        out[n.name] = {"module": module_of(n.name), "input": dq(n.input[0]), "weight": dq(n.input[1])}
    return out


def module_of(node_name: str) -> str:
    """The module path in a TorchScript-exported node name: ``/model/backbone/stage3/m/m.0/cv2/conv/Conv``
    -> ``backbone.stage3.m.0.cv2.conv`` (a called container's child is scoped ``<container>.<index>``;
    ``model`` is the export wrapper's attribute)."""
    parts = [s for s in node_name.split("/") if s][:-1]
    if parts and parts[0] == "model":
        parts = parts[1:]
    path: list[str] = []
    for p in parts:
        head, dot, _ = p.partition(".")
        if dot and path and path[-1] == head:
            path[-1] = p
        else:
            path.append(p)
    return ".".join(path)


PARITY_QUANTILE = 0.999


def qat_parity(bundle_dir: str | Path, model: nn.Module, frames: list[Path], tolerance: float) -> dict[str, Any]:
    """The INT8 bundle in ``bundle_dir`` on ONNX Runtime (CPU) vs the fake-quantized torch network ``model``
    on ``frames``, both through the Perceptor's own preprocessing. Outputs normalized as the export's parity
    does (boxes / input size, probabilities). Gate: the 99.9th percentile of the absolute difference of
    every output <= ``tolerance`` (:class:`QatError` otherwise). Not the maximum: both compute the same int8
    grid, but float round-off (another conv kernel, BatchNorm folded) moves a value across a rounding
    boundary now and then, and that one int8 step travels on through the layers after it; the maximum is
    recorded beside it."""
    import numpy as np

    from compress.export.parity import _normalized
    from compress.export.wrapper import OUTPUT_NAMES, ExportWrapper
    from mtc_perception.bundle import Bundle
    from mtc_perception.engines import create_engine
    from mtc_perception.imaging import read_image
    from mtc_perception.perceptor import Preprocessor

    if not frames:
        raise QatError(f"QAT parity: no frames to compare {bundle_dir} with the torch network on")
    bundle = Bundle.load(bundle_dir)
    eng = create_engine("onnxruntime", bundle, providers=["CPUExecutionProvider"])
    pre = Preprocessor(bundle)
    w, h = bundle.input_size
    wrapper = ExportWrapper(model).eval()
    diffs: dict[str, list[Any]] = {k: [] for k in OUTPUT_NAMES}
    raw = dict.fromkeys(OUTPUT_NAMES, 0.0)
    for f in frames:
        x, _ = pre([read_image(f)])
        ort_out = eng.infer(x)
        with torch.no_grad():
            t_out = dict(zip(OUTPUT_NAMES, (o.numpy() for o in wrapper(torch.from_numpy(x)))))
        a, b = _normalized(ort_out, w, h), _normalized(t_out, w, h)
        for k in OUTPUT_NAMES:
            diffs[k].append(np.abs(a[k] - b[k]).ravel())
            raw[k] = max(raw[k], float(np.abs(ort_out[k].astype(np.float64) - t_out[k]).max()))
    d = {k: np.concatenate(v) for k, v in diffs.items()}
    quantile = {k: float(np.quantile(v, PARITY_QUANTILE)) for k, v in d.items()}
    record = {
        "frames": len(frames),
        "tolerance": tolerance,
        "gate": f"quantile {PARITY_QUANTILE} of |ONNX Runtime - torch| (normalized) <= tolerance, per output",
        "quantile_abs_diff_normalized": quantile,
        "median_abs_diff_normalized": {k: float(np.median(v)) for k, v in d.items()},
        "max_abs_diff_normalized": {k: float(v.max()) for k, v in d.items()},
        "max_abs_diff_raw": raw,
        "backend": eng.description,
    }
    bad = {k: v for k, v in quantile.items() if v > tolerance}
    if bad:
        raise QatError(
            f"{bundle_dir}: ONNX Runtime and the fake-quantized torch network disagree on {len(frames)} frames: "
            f"quantile {PARITY_QUANTILE} of the abs difference {bad} > tolerance {tolerance} (normalized "
            "outputs); the Q/DQ export does not compute what QAT trained"
        )
    return record
