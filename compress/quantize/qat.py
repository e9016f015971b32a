"""Quantization-aware training (QAT): the network with PyTorch's own fake quantization at every
convolution except the head outputs, and the checkpoint round trip of such a network.

Placement follows NVIDIA's pytorch-quantization (what TensorRT's explicit quantization expects):
every quantized convolution fake-quantizes its **input** (per tensor, symmetric int8) and its
**weight** (per output channel, symmetric int8) with :class:`torch.ao.quantization.FakeQuantize`
modules; BatchNorm and activations stay as they are (TensorRT folds them; the export folds
BatchNorm into the quantized weights, which per-channel symmetric scales allow exactly:
``q(w * k; s * |k|) == sign(k) * q(w; s)``). Symmetric activations because TensorRT's
Q/DQ takes zero points of 0 only. Not quantized: the head output convolutions
(:data:`compress.models.yolop.HEAD_OUTPUTS`, or a model's own ``task_spec()``), hence the detection
decode and the output activations after them, and everything between convolutions (concat, add,
pooling, upsampling run on dequantized values).

Only modules of ``torch.ao.quantization`` are used (``FakeQuantize`` and its observers; not the
deprecated ``prepare_qat`` / ``convert`` eager flow, whose quantized modules do not export to
Q/DQ ONNX). Activation ranges (``method``):

* ``minmax``: the absolute range over the calibration batches, then fixed while training (NVIDIA's
  calibrate-then-fine-tune);
* ``histogram``: :class:`~torch.ao.quantization.HistogramObserver` over the calibration batches
  (the range minimizing the L2 quantization error), then fixed;
* ``moving_average``: torch's QAT default, a moving average of the batch ranges
  (``averaging_constant``), updated in training mode (calibration included), frozen in eval mode.

Weight ranges are the current weight's per-channel absolute maximum at every forward pass (the
weights move while training; in eval mode the same weights give the same scales).

BatchNorm is **frozen** (:class:`FrozenBatchNorm2d`: running statistics in training too; its scale
and shift still learn): what QAT trains is then the function that is calibrated, evaluated and
exported (BatchNorm folded into the convolution, as TensorRT and the export compute it). With batch
statistics, a network whose running statistics differ from its batch statistics trains on
activations outside the ranges calibrated in eval mode: clipped, their gradients masked, and
BatchNorm over nearly constant channels amplifies the rest (gradients of 1e11 were seen).

A QAT network is saved like any other (:func:`compress.checkpoint.save_checkpoint`): architecture as
data, the state dict (scales, zero points and observer statistics are tensors in it) and
``qat`` = :meth:`QatScheme.to_dict`; loading rebuilds the float network, applies
:func:`prepare_qat` with that scheme and loads the state dict (``weights_only=True`` throughout).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.ao.quantization import (
    FakeQuantize,
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
)

log = logging.getLogger(__name__)

FORMAT = "mtc-qat"
VERSION = 1
METHODS = ("minmax", "histogram", "moving_average")
QMIN, QMAX = -128, 127  # int8, symmetric (zero point 0)


class QatError(ValueError):
    """A QAT scheme or network that cannot be prepared, loaded or exported."""


@dataclass(frozen=True)
class QatScheme:
    """How a network is fake-quantized; written into its checkpoint as plain data."""

    method: str = "minmax"  # activation ranges: minmax | histogram | moving_average
    averaging_constant: float = 0.01  # moving_average only
    float_convs: tuple[str, ...] = ()  # module paths of the convolutions kept in float
    calibration_images: int = 0  # images the activation ranges were calibrated on (0: not recorded)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise QatError(f"QAT method {self.method!r} is unknown; use one of {list(METHODS)}")
        if not 0 < self.averaging_constant <= 1:
            raise QatError(f"averaging_constant must be in (0, 1], got {self.averaging_constant}")

    @property
    def tracks_ranges(self) -> bool:
        """Whether activation ranges keep moving while training (else they are fixed after calibration)."""
        return self.method == "moving_average"

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "method": self.method,
            "averaging_constant": self.averaging_constant,
            "float_convs": list(self.float_convs),
            "calibration_images": self.calibration_images,
            "weights": "int8 per output channel, symmetric",
            "activations": "int8 per tensor, symmetric (convolution inputs)",
        }

    @classmethod
    def from_dict(cls, d: Any, where: str = "qat") -> QatScheme:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise QatError(f"{where}: not a QAT scheme (no format={FORMAT!r})")
        if not isinstance(d.get("version"), int) or d["version"] > VERSION:
            raise QatError(f"{where}: QAT scheme version {d.get('version')!r}; this tool reads up to {VERSION}")
        convs = d.get("float_convs", [])
        if not isinstance(convs, list) or not all(isinstance(c, str) for c in convs):
            raise QatError(f"{where}.float_convs: expected a list of module paths, got {type(convs).__name__}")
        ac = d.get("averaging_constant", 0.01)
        if isinstance(ac, bool) or not isinstance(ac, (int, float)):
            raise QatError(f"{where}.averaging_constant: expected a number, got {ac!r}")
        method = d.get("method")
        if not isinstance(method, str):
            raise QatError(f"{where}.method: expected one of {list(METHODS)}, got {method!r}")
        n = d.get("calibration_images", 0)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise QatError(f"{where}.calibration_images: expected a count >= 0, got {n!r}")
        return cls(method=method, averaging_constant=float(ac), float_convs=tuple(convs), calibration_images=n)


class _RangeAt127:
    """Symmetric int8 scales that put the range's maximum at 127 (``amax / 127``: TensorRT's and
    pytorch-quantization's convention) instead of torch's ``amax / 127.5``, where the largest value
    sits exactly on a rounding tie (127.5) that float round-off decides either way: one int8 step on
    the largest weight of every channel between two exact implementations (torch here, ONNX Runtime or
    a BatchNorm-folded copy there). With it int8 values stay in [-127, 127] (-128 unused) and
    ``q(-x) == -q(x)``."""

    def _calculate_qparams(self, min_val: torch.Tensor, max_val: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale, zero_point = super()._calculate_qparams(min_val, max_val)  # type: ignore[misc]
        return scale * ((QMAX - QMIN) / 2 / QMAX), zero_point


class AbsMaxObserver(_RangeAt127, MinMaxObserver):
    """MinMaxObserver with the range's maximum at 127."""


class HistogramRangeObserver(_RangeAt127, HistogramObserver):
    """HistogramObserver (the range minimizing the L2 quantization error) with its maximum at 127."""


class MovingAverageAbsMaxObserver(_RangeAt127, MovingAverageMinMaxObserver):
    """MovingAverageMinMaxObserver with the range's maximum at 127."""


class PerChannelAbsMaxObserver(_RangeAt127, MovingAveragePerChannelMinMaxObserver):
    """MovingAveragePerChannelMinMaxObserver with each channel's maximum at 127."""


def activation_fake_quant(scheme: QatScheme) -> FakeQuantize:
    """Per-tensor symmetric int8 fake quantization of a convolution input."""
    common: dict[str, Any] = {"dtype": torch.qint8, "qscheme": torch.per_tensor_symmetric}
    if scheme.method == "histogram":
        return FakeQuantize(HistogramRangeObserver, QMIN, QMAX, **common)
    if scheme.method == "moving_average":
        return FakeQuantize(
            MovingAverageAbsMaxObserver, QMIN, QMAX, averaging_constant=scheme.averaging_constant, **common
        )
    return FakeQuantize(AbsMaxObserver, QMIN, QMAX, **common)


def weight_fake_quant() -> FakeQuantize:
    """Per-output-channel symmetric int8 fake quantization of a weight: the current range every pass."""
    return FakeQuantize(
        PerChannelAbsMaxObserver,
        QMIN,
        QMAX,
        dtype=torch.qint8,
        qscheme=torch.per_channel_symmetric,
        ch_axis=0,
        averaging_constant=1.0,
    )


class QuantConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose input and weight pass through ``FakeQuantize`` (pytorch-quantization's
    ``QuantConv2d`` placement). A subclass, so module paths, widths (``config_of``), MAC counts and
    pruning specs see the same convolution. In eval mode the activation ranges are frozen."""

    input_quant: FakeQuantize
    weight_quant: FakeQuantize
    tracks_ranges: bool = False  # activation ranges follow the training mode (method moving_average)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, scheme: QatScheme) -> QuantConv2d:
        """The quantized twin of ``conv``, sharing its weight and bias parameters."""
        w = conv.weight
        q = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,  # type: ignore[arg-type]
            conv.stride,  # type: ignore[arg-type]
            conv.padding,  # type: ignore[arg-type]
            conv.dilation,  # type: ignore[arg-type]
            conv.groups,
            conv.bias is not None,
            conv.padding_mode,
            device=w.device,
            dtype=w.dtype,
        )
        q.weight = conv.weight
        q.bias = conv.bias
        q.input_quant = activation_fake_quant(scheme)
        q.weight_quant = weight_fake_quant()
        q.tracks_ranges = scheme.tracks_ranges
        with torch.no_grad():
            q.weight_quant(q.weight)  # per-channel scales get their shape now (checkpoints load strictly)
        q.set_observing(False)
        return q.train(conv.training)

    def set_observing(self, on: bool) -> None:
        """Collect activation ranges (calibration, or training with ``moving_average``) or not."""
        self.input_quant.enable_observer(on)

    def train(self, mode: bool = True) -> QuantConv2d:
        super().train(mode)
        if self.tracks_ranges:
            self.set_observing(mode)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.input_quant(x), self.weight_quant(self.weight), self.bias)


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` that normalizes with its running statistics in training mode too (they are not
    updated); weight and bias still train. Same state dict as the BatchNorm it replaces."""

    def train(self, mode: bool = True) -> FrozenBatchNorm2d:
        return super().train(False)

    @classmethod
    def from_bn(cls, bn: nn.BatchNorm2d) -> FrozenBatchNorm2d:
        f = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        f.to(device=bn.weight.device if bn.weight is not None else None)
        f.load_state_dict(bn.state_dict())
        return f


def float_convs_of(model: nn.Module) -> tuple[str, ...]:
    """The convolutions QAT keeps in float: the head outputs of the model's task spec."""
    from compress.prune import spec_for

    return tuple(p for paths in spec_for(model).head_outputs.values() for p in paths)


def prepare_qat(model: nn.Module, scheme: QatScheme | None = None) -> nn.Module:
    """Replace every ``nn.Conv2d`` of ``model`` but ``scheme.float_convs`` (default: the head outputs)
    by a :class:`QuantConv2d` and every ``nn.BatchNorm2d`` by a :class:`FrozenBatchNorm2d`, in place;
    returns ``model`` (``model.qat_scheme`` records the scheme)."""
    if is_qat(model):
        raise QatError("the model is prepared for QAT already")
    scheme = scheme or QatScheme()
    if not scheme.float_convs:
        scheme = dataclasses.replace(scheme, float_convs=float_convs_of(model))
    names = dict(model.named_modules())
    unknown = [p for p in scheme.float_convs if not isinstance(names.get(p), nn.Conv2d)]
    if unknown:
        raise QatError(f"float_convs {unknown[:3]} are not convolutions of this model; the scheme is for another one")
    for path, m in list(names.items()):
        parent, _, attr = path.rpartition(".")
        if type(m) is nn.Conv2d and path not in scheme.float_convs:
            setattr(names[parent] if parent else model, attr, QuantConv2d.from_conv(m, scheme))
        elif type(m) is nn.BatchNorm2d:
            setattr(names[parent] if parent else model, attr, FrozenBatchNorm2d.from_bn(m))
    model.qat_scheme = scheme  # type: ignore[assignment]
    model.train(model.training)  # every QuantConv2d's observing state follows the mode
    return model


def qat_convs(model: nn.Module) -> dict[str, QuantConv2d]:
    return {n: m for n, m in model.named_modules() if isinstance(m, QuantConv2d)}


def is_qat(model: nn.Module) -> bool:
    return isinstance(getattr(model, "qat_scheme", None), QatScheme)


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Set the activation ranges from ``batches`` (network inputs): eval mode (BatchNorm's running
    statistics), observers on, fake quantization of activations off, so each layer sees the float
    network's values. Then the ranges are fixed (``minmax``, ``histogram``) or follow the training
    mode (``moving_average``). Returns the number of images seen."""
    convs = qat_convs(model)
    if not convs:
        raise QatError("calibrate: the model has no fake-quantized convolutions; call prepare_qat first")
    was = model.training
    model.eval()
    hooks = []
    for q in convs.values():
        q.input_quant.disable_fake_quant()
        # the observer itself sees every input; qparams are computed once at the end (a histogram's
        # range search is costly; FakeQuantize would run it on every batch)
        obs = q.input_quant.activation_post_process
        hooks.append(q.register_forward_pre_hook(lambda _m, args, obs=obs: obs(args[0].detach())))
    n = 0
    try:
        for x in batches:
            model(x)
            n += x.shape[0]
    finally:
        for h in hooks:
            h.remove()
        for q in convs.values():
            q.input_quant.enable_fake_quant()
    if n == 0:
        raise QatError("calibrate: no calibration batch; give at least one batch of training images")
    for q in convs.values():
        scale, zp = q.input_quant.calculate_qparams()
        q.input_quant.scale.copy_(scale)
        q.input_quant.zero_point.copy_(zp)
    model.train(was)
    return n
