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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
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


def qat_parity(
    bundle_dir: str | Path, model: nn.Module, frames: Sequence[Path | np.ndarray], tolerance: float
) -> dict[str, Any]:
    """The INT8 bundle in ``bundle_dir`` vs the fake-quantized torch network ``model`` on ``frames`` (image
    files or BGR arrays), through the Perceptor's own pre- and postprocessing, compared by their
    **decisions**: drivable and lane mask IoU and detection F1 (same class, IoU >= 0.5, conf 0.25) of each
    candidate against torch, averaged over the frames.

    Candidates: ``reference``: the Q/DQ file as written, on ONNX Runtime with graph optimizations off (every
    QuantizeLinear / DequantizeLinear and float Conv as the ONNX semantics define them); ``deployed``: the
    bundle's session as the Perceptor runs it (ONNX Runtime fuses the Q/DQ pairs into integer kernels:
    QLinearConv, integer requantization); ``floor``: torch's BatchNorm-folded copy (:func:`deploy_qat`, the
    network the ONNX was exported from), two exact torch implementations of one int8 function.

    Gate (:class:`QatError` otherwise): ``reference`` agreement >= ``1 - tolerance`` on every decision. Not
    the raw outputs: float round-off (another conv kernel, BatchNorm folded) moves a value across a rounding
    boundary now and then, and in a narrow network that one int8 step travels on and grows through the
    layers after it (measured on the deploy student, 2026-12-06: a single flip in its second convolution
    became up to 8 steps in the decoder tails); ``floor`` says how much of that the network itself has.
    ``deployed`` is recorded, not gated: how far ONNX Runtime's integer kernels move the decisions is the
    runtime's, measured as deployed by the INT8-vs-FP32 record and the benchmark (on the deploy student
    the fused kernels agreed 0.977 / 0.932 / 0.900 where the unfused file agreed 0.991 / 0.965 / 0.960).
    The raw differences of ``deployed`` (99.9th percentile, median, maximum of the normalized outputs)
    are recorded beside them."""
    import onnxruntime as ort

    from compress.export.parity import _normalized
    from compress.export.wrapper import ExportWrapper
    from mtc_perception.bench.report.agreement import detection_f1, mask_iou
    from mtc_perception.bundle import Bundle
    from mtc_perception.engines.onnxruntime_engine import session_options
    from mtc_perception.imaging import read_image
    from mtc_perception.perceptor import Perceptor

    from .parity import CONF, MATCH_IOU

    if not frames:
        raise QatError(f"QAT parity: no frames to compare {bundle_dir} with the torch network on")
    if not 0 <= tolerance < 1:
        raise QatError(f"QAT parity: tolerance {tolerance} is not in [0, 1) (largest allowed loss of agreement)")
    bundle = Bundle.load(bundle_dir)
    perceptor = Perceptor(bundle, backend="onnxruntime", conf=CONF, providers=["CPUExecutionProvider"])
    names = bundle.output_names
    w, h = bundle.input_size
    torch_net = ExportWrapper(model).eval()
    folded_net = ExportWrapper(deploy_qat(model)).eval()
    reference = ort.InferenceSession(
        str(bundle.require_file("onnx")),
        session_options(graph_optimization="disabled"),
        providers=["CPUExecutionProvider"],
    )
    diffs: dict[str, list[Any]] = {k: [] for k in names}
    raw = dict.fromkeys(names, 0.0)
    agree: dict[str, dict[str, list[float]]] = {
        c: {"drivable_iou": [], "lane_iou": [], "detection_f1": []} for c in ("reference", "deployed", "floor")
    }
    boxes = {"torch": 0, "reference": 0, "deployed": 0, "floor": 0}
    for f in frames:
        x, lbs = perceptor.preprocess([f if isinstance(f, np.ndarray) else read_image(f)])
        ort_out = perceptor.engine.infer(x)
        ref_out = dict(zip(names, reference.run(names, {bundle.input_name: x})))
        with torch.no_grad():
            xt = torch.from_numpy(x)
            t_out = dict(zip(names, (o.numpy() for o in torch_net(xt))))
            f_out = dict(zip(names, (o.numpy() for o in folded_net(xt))))
        a, b = _normalized(ort_out, w, h), _normalized(t_out, w, h)
        for k in names:
            diffs[k].append(np.abs(a[k] - b[k]).ravel())
            raw[k] = max(raw[k], float(np.abs(ort_out[k].astype(np.float64) - t_out[k]).max()))
        ref = perceptor.postprocess(t_out, lbs)[0]
        boxes["torch"] += len(ref.boxes)
        for cand_name, cand_out in (("reference", ref_out), ("deployed", ort_out), ("floor", f_out)):
            cand = perceptor.postprocess(cand_out, lbs)[0]
            boxes[cand_name] += len(cand.boxes)
            agree[cand_name]["drivable_iou"].append(mask_iou(ref.drivable, cand.drivable))
            agree[cand_name]["lane_iou"].append(mask_iou(ref.lane, cand.lane))
            agree[cand_name]["detection_f1"].append(detection_f1(ref, cand, MATCH_IOU))
    d = {k: np.concatenate(v) for k, v in diffs.items()}
    mean = {c: {k: float(np.mean(v)) for k, v in agree[c].items()} for c in agree}
    record = {
        "frames": len(frames),
        "tolerance": tolerance,
        "gate": (
            "mean over the frames of drivable / lane mask IoU and detection F1 (the Q/DQ file on ONNX Runtime, "
            f"graph optimizations off, against the fake-quantized torch network; conf {CONF}, IoU {MATCH_IOU}) "
            ">= 1 - tolerance, each"
        ),
        "agreement": mean["reference"],
        "agreement_min": {k: float(np.min(v)) for k, v in agree["reference"].items()},
        "deployed": mean["deployed"],
        "deployed_note": "the same agreement with ONNX Runtime's fused integer kernels (the bundle as it runs); not gated",
        "roundoff_floor": mean["floor"],
        "roundoff_floor_note": "the same agreement between the torch network and its BatchNorm-folded copy",
        "detections": boxes,
        "quantile": PARITY_QUANTILE,
        "quantile_abs_diff_normalized": {k: float(np.quantile(v, PARITY_QUANTILE)) for k, v in d.items()},
        "median_abs_diff_normalized": {k: float(np.median(v)) for k, v in d.items()},
        "max_abs_diff_normalized": {k: float(v.max()) for k, v in d.items()},
        "max_abs_diff_raw": raw,
        "backend": perceptor.backend,
    }
    bad = {k: round(v, 4) for k, v in mean["reference"].items() if v < 1 - tolerance}
    if bad:
        raise QatError(
            f"{bundle_dir}: the Q/DQ file and the fake-quantized torch network disagree on {len(frames)} frames: "
            f"mean agreement {bad} < {1 - tolerance:.3f} (1 - tolerance {tolerance}); the round-off floor of this "
            f"network (torch vs its BatchNorm-folded copy) is { ({k: round(v, 4) for k, v in mean['floor'].items()}) }. "
            "The Q/DQ export does not compute what QAT trained"
        )
    return record
