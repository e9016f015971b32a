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

:func:`deploy_model` returns a copy of a :class:`~compress.models.yolop.MultiTaskNet` whose
decoders compute this way; outputs equal the original's up to float rounding (checked by the
export's parity run and by ``test/compress/test_deploy.py``). It is for inference only: BatchNorm is folded
with the running statistics. Models without YOLOP's decoder are returned unchanged.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from .yolop import Bottleneck, BottleneckCSP, Conv, MultiTaskNet, SegDecoder, upsample2

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


class DeploySegDecoder(nn.Module):
    """:class:`SegDecoder` with every convolution after an upsample rewritten (see the module doc)."""

    def __init__(self, dec: SegDecoder, name: str) -> None:
        super().__init__()
        self.c1 = dec.c1
        self.csp1 = UpCSP(dec.csp1, f"{name}.csp1")
        self.c2 = dec.c2
        self.c3 = UpConv.from_block(dec.c3, f"{name}.c3")
        self.csp2 = dec.csp2
        self.out = UpConv(dec.out, where=f"{name}.out")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.csp1(self.c1(x))
        x = self.c3(self.c2(x))
        return self.out(self.csp2(x))


@torch.no_grad()
def deploy_model(model: nn.Module) -> nn.Module:
    """An inference copy of ``model`` with its YOLOP decoders rewritten; other models are
    returned as an unchanged copy. The copy is in eval mode (BatchNorm folded from running stats)."""
    m = copy.deepcopy(model).eval()
    if not isinstance(m, MultiTaskNet):
        return m
    for name in ("drivable", "lane"):
        dec = getattr(m, name)
        if isinstance(dec, SegDecoder):
            setattr(m, name, DeploySegDecoder(dec, name).eval())
    return m


def is_rewritten(model: nn.Module) -> bool:
    return any(isinstance(mod, DeploySegDecoder) for mod in model.modules())
