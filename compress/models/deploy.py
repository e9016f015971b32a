"""Inference-time rewrite of the segmentation decoders: the same function, less memory traffic.

YOLOP's decoders upsample (nearest, x2) three times and run convolutions on the upsampled
tensors: at 640x384 the last two stages work on 8-16 channels at half and full resolution, where a
CPU spends its time moving memory, not multiplying (in an ONNX Runtime profile taken while the
machine was loaded, ``lane.out`` — 18 M MACs — took as long as ``lane.c1`` with 283 M). Channel
pruning cannot shrink these stages (they are at ``round_to`` already). Two exact identities move
that work to the low resolution (on the 2-vCPU development machine the end-to-end gain was within
run-to-run noise; docs/RESULTS.md):

* **1x1 convolutions, BatchNorm and activations commute with nearest upsampling**:
  ``f(up(x)) == up(f(x))`` for any per-pixel ``f``. The 1x1 convolutions at the entry of ``csp1``
  run before the upsample, on a quarter of the pixels.
* **A 3x3 convolution after nearest x2 upsampling is a sub-pixel convolution**: output pixel
  ``(2i+a, 2j+b)`` only sees input rows ``i-1..i+1`` / columns ``j-1..j+1`` of the low-resolution
  tensor, through kernel rows/columns summed per phase ``a``/``b`` (phase 0: offsets -1, 0, 0 for
  kernel rows 0, 1, 2; phase 1: 0, 0, +1). So ``conv3x3(up(x)) == pixel_shuffle(conv3x3'(x), 2)``
  with ``conv3x3'`` having 4x the output channels (BatchNorm folded in; the activation commutes
  with the shuffle). Zero padding maps onto zero padding: the upsampled row -1 is padding, and so
  is low-resolution row -1 that phase 0 reads there.

A third identity removes the one BatchNorm ONNX Runtime cannot fuse: a CSP block normalizes the
*concatenation* of its two paths (``bn(cat(cv3(y), cv2(x)))``), and a BatchNorm after a Concat
has no convolution to fold into. Per channel it is an affine map, so it splits into one affine map
per concatenated part and each folds into the (bias-free) convolution that produced that part:
``cat(cv3'(y), cv2'(x))`` with ``cv3' = bn[:c3] o cv3`` and ``cv2' = bn[c3:] o cv2`` (:func:`fold_csp_bn`).

:func:`deploy_model` returns a copy of a :class:`~compress.models.yolop.MultiTaskNet` whose
decoders compute this way and whose CSP BatchNorms are folded; outputs equal the original's up to
float rounding (checked by the export's parity run and by ``test/compress/test_deploy.py``). Which
decoder stages are rewritten is a choice (``rewrite``: a subset of :data:`REWRITE_STAGES`): the
sub-pixel form trades upsampled work for a DepthToSpace, which wins or not by backend and width
(``scripts/deploy_choices.py`` measures it; the export records the choice in bundle.json). It is
for inference only: BatchNorm is folded with the running statistics. Models that are not a
:class:`~compress.models.yolop.MultiTaskNet` are returned as an unchanged copy.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .yolop import Bottleneck, BottleneckCSP, Conv, MultiTaskNet, PairHead, SegDecoder, pair_logit, upsample2

# kernel rows of a 3x3 convolution seen from the low resolution, per output phase:
# _PHASE[a][u, k] = 1 when kernel row k reads low-resolution offset u - 1 for output row 2i + a
_PHASE = {
    0: torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]]),
    1: torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
}


class RewriteError(ValueError):
    """A layer that the rewrite's identities do not cover."""


def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``bn(conv(x))`` as one convolution (running statistics)."""
    w = conv.weight.detach().clone()
    b = conv.bias.detach().clone() if conv.bias is not None else torch.zeros(conv.out_channels, dtype=w.dtype)
    if bn is not None:
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        w = w * scale.view(-1, 1, 1, 1)
        b = (b - bn.running_mean) * scale + bn.bias.detach()
    return w, b


def subpixel_weights(w: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Co, Ci, 3, 3) kernel applied after nearest x2 upsampling -> (4 Co, Ci, 3, 3) kernel at the
    low resolution whose ``pixel_shuffle(., 2)`` is the same output (channel ``4c + 2a + b`` is
    phase (a, b) of channel c, PyTorch's / ONNX DepthToSpace CRD order)."""
    co, ci = w.shape[:2]
    out = torch.zeros(co, 2, 2, ci, 3, 3, dtype=w.dtype)
    for a in (0, 1):
        for bb in (0, 1):
            ra, rb = _PHASE[a].to(w.dtype), _PHASE[bb].to(w.dtype)
            out[:, a, bb] = torch.einsum("uk,vl,oikl->oiuv", ra, rb, w)
    return out.reshape(co * 4, ci, 3, 3), b.repeat_interleave(4)


def _check_3x3(conv: nn.Conv2d, where: str) -> None:
    if (
        conv.kernel_size != (3, 3)
        or conv.stride != (1, 1)
        or conv.padding != (1, 1)
        or conv.dilation != (1, 1)
        or conv.groups != 1
    ):
        raise RewriteError(
            f"{where}: the sub-pixel rewrite needs a 3x3, stride 1, padding 1, ungrouped convolution; found "
            f"kernel {conv.kernel_size}, stride {conv.stride}, padding {conv.padding}, groups {conv.groups}"
        )


def _check_1x1(conv: nn.Conv2d, where: str) -> None:
    if conv.kernel_size != (1, 1) or conv.stride != (1, 1) or conv.padding != (0, 0):
        raise RewriteError(
            f"{where}: expected a 1x1, stride 1 convolution to run before the upsample; found kernel "
            f"{conv.kernel_size}, stride {conv.stride}, padding {conv.padding}"
        )


class UpConv(nn.Module):
    """``act(bn(conv3x3(upsample_nearest_x2(x))))`` computed at the low resolution."""

    def __init__(
        self, conv: nn.Conv2d, bn: nn.BatchNorm2d | None = None, act: nn.Module | None = None, where: str = "conv"
    ) -> None:
        super().__init__()
        _check_3x3(conv, where)
        w, b = subpixel_weights(*fold_bn(conv, bn))
        self.conv = nn.Conv2d(conv.in_channels, conv.out_channels * 4, 3, 1, 1, bias=True)
        with torch.no_grad():
            self.conv.weight.copy_(w)
            self.conv.bias.copy_(b)
        self.act = copy.deepcopy(act) if act is not None else nn.Identity()

    @classmethod
    def from_block(cls, block: Conv, where: str) -> UpConv:
        return cls(block.conv, block.bn, block.act, where)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.act(self.conv(x)), 2)


class UpCSP(nn.Module):
    """``BottleneckCSP(upsample(x))`` with the entry 1x1 convolutions before the upsample and the
    first bottleneck's 3x3 convolution as a sub-pixel convolution."""

    def __init__(self, csp: BottleneckCSP, where: str) -> None:
        super().__init__()
        if not len(csp.m) or not isinstance(csp.m[0], Bottleneck):
            raise RewriteError(f"{where}: expected a BottleneckCSP with at least one Bottleneck")
        _check_1x1(csp.cv1.conv, f"{where}.cv1")
        _check_1x1(csp.cv2, f"{where}.cv2")
        b0 = csp.m[0]
        _check_1x1(b0.cv1.conv, f"{where}.m.0.cv1")
        self.cv1, self.cv2 = csp.cv1, csp.cv2  # low resolution
        self.b0_cv1 = b0.cv1  # low resolution
        self.b0_cv2 = UpConv.from_block(b0.cv2, f"{where}.m.0.cv2")  # low -> high
        self.b0_add = b0.add
        self.rest = nn.Sequential(*list(csp.m)[1:])  # high resolution
        self.cv3, self.bn, self.act, self.cv4 = csp.cv3, csp.bn, csp.act, csp.cv4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.cv1(x)
        y = self.b0_cv2(self.b0_cv1(a))
        if self.b0_add:
            y = upsample2(a) + y
        y1 = self.cv3(self.rest(y))
        y2 = upsample2(self.cv2(x))
        return self.cv4(self.act(self.bn(torch.cat((y1, y2), 1))))


class _Up(nn.Module):
    """``f(upsample_nearest_x2(x))``: a decoder stage kept as trained."""

    def __init__(self, f: nn.Module) -> None:
        super().__init__()
        self.f = f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(upsample2(x))


# the decoder stages that read an upsampled tensor, in order: each may run in the sub-pixel form
class _PairRaw(nn.Module):
    """A :class:`PairHead`'s two channels (its ``pair``), as a module."""

    def __init__(self, head: PairHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head.pair(x)


class _PairLogit(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return pair_logit(z)


REWRITE_STAGES = ("csp1", "c3", "out")


class DeploySegDecoder(nn.Module):
    """:class:`SegDecoder` with the convolutions after its upsamples rewritten (see the module doc);
    ``stages``: which of :data:`REWRITE_STAGES` (default all)."""

    def __init__(self, dec: SegDecoder, name: str, stages: tuple[str, ...] = REWRITE_STAGES) -> None:
        super().__init__()
        self.stages = tuple(s for s in REWRITE_STAGES if s in stages)
        self.c1 = dec.c1
        self.csp1 = UpCSP(dec.csp1, f"{name}.csp1") if "csp1" in stages else _Up(dec.csp1)
        self.c2 = dec.c2
        self.c3 = UpConv.from_block(dec.c3, f"{name}.c3") if "c3" in stages else _Up(dec.c3)
        self.csp2 = dec.csp2
        self.out: nn.Module
        if isinstance(dec.out, PairHead):  # YOLOP's Conv+BN+act two-channel output, then z1 - z0
            up = UpConv.from_block(dec.out, f"{name}.out") if "out" in stages else _Up(_PairRaw(dec.out))
            self.out = nn.Sequential(up, _PairLogit())
        else:
            self.out = UpConv(dec.out, where=f"{name}.out") if "out" in stages else _Up(dec.out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.csp1(self.c1(x))
        x = self.c3(self.c2(x))
        return self.out(self.csp2(x))


@torch.no_grad()
def fold_csp_bn(block: BottleneckCSP | UpCSP) -> None:
    """Fold ``block.bn`` (after the Concat of ``cv3`` and ``cv2``) into those two convolutions in
    place; ``block.bn`` becomes Identity."""
    if not isinstance(block.bn, nn.BatchNorm2d):
        return
    c3 = block.cv3.out_channels
    parts = []
    for conv, sl in ((block.cv3, slice(0, c3)), (block.cv2, slice(c3, None))):
        bn = nn.BatchNorm2d(conv.out_channels, eps=block.bn.eps).eval()
        bn.running_mean.copy_(block.bn.running_mean[sl])
        bn.running_var.copy_(block.bn.running_var[sl])
        bn.weight.copy_(block.bn.weight[sl])
        bn.bias.copy_(block.bn.bias[sl])
        w, b = fold_bn(conv, bn)
        new = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=True)
        new.weight.copy_(w)
        new.bias.copy_(b)
        parts.append(new)
    block.cv3, block.cv2 = parts
    block.bn = nn.Identity()


@torch.no_grad()
def deploy_model(
    model: nn.Module, rewrite: tuple[str, ...] | bool = REWRITE_STAGES, fold_bn_after_concat: bool = True
) -> nn.Module:
    """An inference copy of ``model`` in eval mode: the YOLOP decoders' stages in ``rewrite`` (a subset
    of :data:`REWRITE_STAGES`; True: all, False or (): none) in the sub-pixel form, and every CSP
    block's BatchNorm after the Concat folded into its convolutions (``fold_bn_after_concat``).
    Models that are not a :class:`MultiTaskNet` are returned as an unchanged copy."""
    stages = REWRITE_STAGES if rewrite is True else () if rewrite is False else tuple(rewrite)
    unknown = sorted(set(stages) - set(REWRITE_STAGES))
    if unknown:
        raise RewriteError(f"decoder rewrite stages {unknown} unknown; choose from {list(REWRITE_STAGES)}")
    m = copy.deepcopy(model).eval()
    if not isinstance(m, MultiTaskNet):
        return m
    for name in ("drivable", "lane"):
        dec = getattr(m, name)
        if isinstance(dec, SegDecoder) and stages:
            setattr(m, name, DeploySegDecoder(dec, name, stages).eval())
    if fold_bn_after_concat:
        for mod in list(m.modules()):
            if isinstance(mod, (BottleneckCSP, UpCSP)):
                fold_csp_bn(mod)
    return m


def is_rewritten(model: nn.Module) -> bool:
    return bool(rewritten_stages(model))


def rewritten_stages(model: nn.Module) -> tuple[str, ...]:
    """The decoder stages of ``model`` in the sub-pixel form (empty: none)."""
    for mod in model.modules():
        if isinstance(mod, DeploySegDecoder):
            return mod.stages
    return ()


# ---------------------------------------------------------------------------------------------
# the deployment target of a student: what the recipe chooses for speed, recorded in the bundle

# channel multiples each backend's kernels want: ONNX Runtime's AVX-512 CPU kernels block channels by
# 16 (NCHWc), TensorRT's FP16 tensor cores by 8, its INT8 kernels by 32. Layers narrower than the
# multiple keep their width (pruning never widens a layer).
BACKEND_ROUND_TO: dict[str, int] = {"onnxruntime-cpu": 16, "tensorrt-fp16": 8, "tensorrt-int8": 32}
ACTIVATIONS = ("silu", "relu", "hardswish", "leaky")


@dataclass(frozen=True)
class DeployTarget:
    """A recipe's ``deploy:`` section: the backend the student is built for and the graph choices
    that make it fast there (each measured: ``scripts/deploy_choices.py``, docs/RESULTS.md).

    ``act``: the student's activation (None: the teacher's); the swap happens before pruning and is
    followed by ``act_recovery_epochs`` of distillation from the unchanged teacher. ``round_to``:
    width multiple of the pruned layers (None: :data:`BACKEND_ROUND_TO` of ``backend``).
    ``rewrite``: decoder stages exported in the sub-pixel form (:data:`REWRITE_STAGES`).
    ``fold_bn``: BatchNorm after the CSP Concat folded at export."""

    backend: str = "onnxruntime-cpu"
    act: str | None = None
    act_recovery_epochs: int = 2
    round_to: int | None = None
    rewrite: tuple[str, ...] = REWRITE_STAGES
    fold_bn: bool = True

    def __post_init__(self) -> None:
        if self.backend not in BACKEND_ROUND_TO:
            raise ValueError(f"deploy backend {self.backend!r} unknown; use one of {sorted(BACKEND_ROUND_TO)}")
        if self.act is not None and self.act not in ACTIVATIONS:
            raise ValueError(f"deploy act {self.act!r} unknown; use one of {list(ACTIVATIONS)} (or leave it unset)")
        if self.act_recovery_epochs < 0:
            raise ValueError(f"deploy act_recovery_epochs must be >= 0, got {self.act_recovery_epochs}")
        if self.round_to is not None and self.round_to < 1:
            raise ValueError(f"deploy round_to must be >= 1 (or unset: the backend's), got {self.round_to}")
        unknown = sorted(set(self.rewrite) - set(REWRITE_STAGES))
        if unknown:
            raise ValueError(f"deploy rewrite stages {unknown} unknown; choose from {list(REWRITE_STAGES)}")

    @property
    def width_multiple(self) -> int:
        return self.round_to or BACKEND_ROUND_TO[self.backend]

    def to_dict(self) -> dict[str, object]:
        return {
            "backend": self.backend,
            "act": self.act,
            "act_recovery_epochs": self.act_recovery_epochs,
            "round_to": self.width_multiple,
            "rewrite": list(self.rewrite),
            "fold_bn": self.fold_bn,
        }


def with_activation(model: MultiTaskNet, act: str) -> MultiTaskNet:
    """A copy of ``model`` with every activation replaced by ``act`` (same widths and weights:
    activations hold no parameters)."""
    from .yolop import build_model, config_of

    new = build_model(config_of(model).replace(act=act))
    new.load_state_dict(model.state_dict())
    return new.train(model.training)
