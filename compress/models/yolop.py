"""YOLOP-style multi-task network: CSP backbone, SPP, FPN/PAN neck, anchor detection head and
drivable / lane decoders.

Every convolution takes its output width from a :class:`WidthResolver` keyed by the conv's module
path, and its input width from the module that feeds it. A model pruned to arbitrary widths is
therefore rebuilt exactly from ``ModelConfig(widths=extract_widths(model))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .config import IMAGENET_MEAN, IMAGENET_STD, ConfigError, ModelConfig

# Feature taps that distillation can hook: name -> attribute path of the module whose output is the
# feature. Backbone stages at strides 8/16/32, the neck's shared stride-8 encoder output (which the
# segmentation decoders read) and the three PAN outputs that feed the detection head.
TAPS: dict[str, str] = {
    "backbone.p3": "backbone.stage3",
    "backbone.p4": "backbone.stage4",
    "backbone.p5": "backbone.stage5",
    "neck.enc": "neck.enc",
    "neck.p3": "neck.out3",
    "neck.p4": "neck.out4",
    "neck.p5": "neck.out5",
}

# Output convolutions of each head: pruning must never change their widths.
HEAD_OUTPUTS: dict[str, list[str]] = {
    "det": ["detect.m.0", "detect.m.1", "detect.m.2"],
    "drivable": ["drivable.out"],
    "lane": ["lane.out"],
}


def head_outputs(cfg: ModelConfig) -> dict[str, list[str]]:
    """:data:`HEAD_OUTPUTS` of a config's layout (YOLOP's segmentation outputs are Conv blocks)."""
    if cfg.layout == "yolop":
        return {**HEAD_OUTPUTS, "drivable": ["drivable.out.conv"], "lane": ["lane.out.conv"]}
    return {k: list(v) for k, v in HEAD_OUTPUTS.items()}


class WidthResolver:
    """Looks up each conv's output width by module path; records what was asked."""

    def __init__(self, cfg: ModelConfig) -> None:
        self.cfg = cfg
        self.used: set[str] = set()

    def __call__(self, path: str, base: int) -> int:
        self.used.add(path)
        if path in self.cfg.widths:
            w = int(self.cfg.widths[path])
            if w < 1:
                raise ConfigError(f"width of {path!r} is {w}; widths must be >= 1")
            return w
        return self.cfg.width(base)


def upsample2(t: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour x2 upsampling (every upsample of the network; compress.models.deploy
    relies on it being nearest)."""
    return F.interpolate(t, scale_factor=2.0, mode="nearest")


def _act(name: str) -> nn.Module:
    return {
        "silu": nn.SiLU,
        "relu": nn.ReLU,
        "hardswish": nn.Hardswish,
        "leaky": lambda: nn.LeakyReLU(0.1),
    }[name]()


class Conv(nn.Sequential):
    """Conv2d + BatchNorm + activation."""

    def __init__(self, c_in: int, c_out: int, k: int = 1, s: int = 1, act: str = "silu", p: int | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, s, k // 2 if p is None else p, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.03)
        self.act = _act(act)

    @property
    def out_channels(self) -> int:
        return self.conv.out_channels


class Bottleneck(nn.Module):
    def __init__(self, c_in: int, path: str, w: WidthResolver, base: int, shortcut: bool, act: str) -> None:
        super().__init__()
        self.cv1 = Conv(c_in, w(f"{path}.cv1.conv", base), 1, 1, act)
        # residual add: the output must match the input width
        c_out = c_in if shortcut else w(f"{path}.cv2.conv", base)
        if shortcut:
            w.used.add(f"{path}.cv2.conv")
        self.cv2 = Conv(self.cv1.out_channels, c_out, 3, 1, act)
        self.add = shortcut

    @property
    def out_channels(self) -> int:
        return self.cv2.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class BottleneckCSP(nn.Module):
    """CSP bottleneck as in YOLOP / YOLOv5 v4: two paths, n bottlenecks, concat, fuse. ``cat_act``:
    the activation after the concat's BatchNorm (YOLOP: always LeakyReLU(0.1); default ``act``)."""

    def __init__(
        self,
        c_in: int,
        path: str,
        w: WidthResolver,
        base_out: int,
        n: int,
        shortcut: bool,
        act: str,
        cat_act: str | None = None,
    ) -> None:
        super().__init__()
        base_hidden = base_out // 2
        self.cv1 = Conv(c_in, w(f"{path}.cv1.conv", base_hidden), 1, 1, act)
        c_h = self.cv1.out_channels
        blocks = []
        for i in range(n):
            b = Bottleneck(c_h, f"{path}.m.{i}", w, base_hidden, shortcut, act)
            blocks.append(b)
            c_h = b.out_channels
        self.m = nn.Sequential(*blocks)
        self.cv3 = nn.Conv2d(c_h, w(f"{path}.cv3", base_hidden), 1, 1, bias=False)
        self.cv2 = nn.Conv2d(c_in, w(f"{path}.cv2", base_hidden), 1, 1, bias=False)
        c_cat = self.cv3.out_channels + self.cv2.out_channels
        self.bn = nn.BatchNorm2d(c_cat, eps=1e-3, momentum=0.03)
        self.act = _act(cat_act or act)
        self.cv4 = Conv(c_cat, w(f"{path}.cv4.conv", base_out), 1, 1, act)

    @property
    def out_channels(self) -> int:
        return self.cv4.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y1 = self.cv3(self.m(self.cv1(x)))
        y2 = self.cv2(x)
        return self.cv4(self.act(self.bn(torch.cat((y1, y2), 1))))


class SPP(nn.Module):
    """Spatial pyramid pooling (k = 5, 9, 13)."""

    def __init__(
        self, c_in: int, path: str, w: WidthResolver, base_out: int, act: str, k: tuple[int, ...] = (5, 9, 13)
    ) -> None:
        super().__init__()
        self.cv1 = Conv(c_in, w(f"{path}.cv1.conv", base_out // 2), 1, 1, act)
        c_h = self.cv1.out_channels
        self.m = nn.ModuleList(nn.MaxPool2d(kernel_size=x, stride=1, padding=x // 2) for x in k)
        self.cv2 = Conv(c_h * (len(k) + 1), w(f"{path}.cv2.conv", base_out), 1, 1, act)

    @property
    def out_channels(self) -> int:
        return self.cv2.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        return self.cv2(torch.cat([x] + [m(x) for m in self.m], 1))


class Focus(nn.Module):
    """YOLOP's stem: space-to-depth (the four pixel phases of each 2x2 cell stacked as channels, in
    YOLOP's order) then a 3x3 Conv on the 12 channels."""

    def __init__(self, c_out: int, act: str) -> None:
        super().__init__()
        self.conv = Conv(12, c_out, 3, 1, act)

    @property
    def out_channels(self) -> int:
        return self.conv.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]], 1))


def _cat_act(cfg: ModelConfig) -> str | None:
    return "leaky" if cfg.layout == "yolop" else None


class Backbone(nn.Module):
    def __init__(self, cfg: ModelConfig, w: WidthResolver) -> None:
        super().__init__()
        a, d, ca = cfg.act, cfg.depth, _cat_act(cfg)
        self.normalize = cfg.input_norm == "imagenet"
        if self.normalize:  # YOLOP's input normalization, in the graph (see ModelConfig.input_norm)
            self.register_buffer("in_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("in_scale", 1.0 / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if cfg.layout == "yolop":
            self.stem: nn.Module = Focus(w("backbone.stem.conv.conv", 32), a)
        else:
            self.stem = Conv(3, w("backbone.stem.conv", 32), 6, 2, a, p=2)  # replaces YOLOP's Focus
        c_stem = self.stem.out_channels
        self.down2 = Conv(c_stem, w("backbone.down2.conv", 64), 3, 2, a)
        self.stage2 = BottleneckCSP(self.down2.out_channels, "backbone.stage2", w, 64, d(1), True, a, ca)
        self.down3 = Conv(self.stage2.out_channels, w("backbone.down3.conv", 128), 3, 2, a)
        self.stage3 = BottleneckCSP(self.down3.out_channels, "backbone.stage3", w, 128, d(3), True, a, ca)
        self.down4 = Conv(self.stage3.out_channels, w("backbone.down4.conv", 256), 3, 2, a)
        self.stage4 = BottleneckCSP(self.down4.out_channels, "backbone.stage4", w, 256, d(3), True, a, ca)
        self.down5 = Conv(self.stage4.out_channels, w("backbone.down5.conv", 512), 3, 2, a)
        self.spp = SPP(self.down5.out_channels, "backbone.spp", w, 512, a)
        self.stage5 = BottleneckCSP(self.spp.out_channels, "backbone.stage5", w, 512, d(1), False, a, ca)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.normalize:
            x = (x - self.in_mean) * self.in_scale
        x = self.stage2(self.down2(self.stem(x)))
        p3 = self.stage3(self.down3(x))
        p4 = self.stage4(self.down4(p3))
        p5 = self.stage5(self.spp(self.down5(p4)))
        return p3, p4, p5


class Neck(nn.Module):
    """FPN (top-down) + PAN (bottom-up), as in YOLOP."""

    def __init__(self, cfg: ModelConfig, w: WidthResolver, c3: int, c4: int, c5: int) -> None:
        super().__init__()
        a, d, ca = cfg.act, cfg.depth, _cat_act(cfg)
        self.lat5 = Conv(c5, w("neck.lat5.conv", 256), 1, 1, a)
        self.td4 = BottleneckCSP(self.lat5.out_channels + c4, "neck.td4", w, 256, d(1), False, a, ca)
        self.lat4 = Conv(self.td4.out_channels, w("neck.lat4.conv", 128), 1, 1, a)
        self.enc_channels = self.lat4.out_channels + c3
        self.enc = nn.Identity()  # tap: the shared stride-8 encoder output (concat)
        self.out3 = BottleneckCSP(self.enc_channels, "neck.out3", w, 128, d(1), False, a, ca)
        self.down3 = Conv(self.out3.out_channels, w("neck.down3.conv", 128), 3, 2, a)
        c4_in = self.down3.out_channels + self.lat4.out_channels
        self.out4 = BottleneckCSP(c4_in, "neck.out4", w, 256, d(1), False, a, ca)
        self.down4 = Conv(self.out4.out_channels, w("neck.down4.conv", 256), 3, 2, a)
        c5_in = self.down4.out_channels + self.lat5.out_channels
        self.out5 = BottleneckCSP(c5_in, "neck.out5", w, 512, d(1), False, a, ca)

    def forward(self, p3: torch.Tensor, p4: torch.Tensor, p5: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h5 = self.lat5(p5)
        t4 = self.td4(torch.cat([upsample2(h5), p4], 1))
        h4 = self.lat4(t4)
        enc = self.enc(torch.cat([upsample2(h4), p3], 1))
        o3 = self.out3(enc)
        o4 = self.out4(torch.cat([self.down3(o3), h4], 1))
        o5 = self.out5(torch.cat([self.down4(o4), h5], 1))
        return enc, o3, o4, o5


class PairHead(Conv):
    """YOLOP's segmentation output: Conv + BatchNorm + activation to two channels (background,
    foreground), which YOLOP passes through a sigmoid and compares. ``forward`` returns the one
    logit this project's heads produce, ``z[1] - z[0]``: positive exactly where YOLOP's argmax says
    foreground. :meth:`pair` returns ``z`` itself (``sigmoid(pair(x))`` is YOLOP's output)."""

    def __init__(self, c_in: int, act: str) -> None:
        super().__init__(c_in, 2, 3, 1, act)

    def pair(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pair_logit(super().forward(x))


def pair_logit(z: torch.Tensor) -> torch.Tensor:
    """One foreground logit from YOLOP's two-channel output: ``z[:, 1] - z[:, 0]``."""
    return z[:, 1:2] - z[:, 0:1]


class SegDecoder(nn.Module):
    """YOLOP's segmentation decoder: stride 8 encoder -> full-resolution logits (1 channel; in the
    ``yolop`` layout the difference of YOLOP's two output channels, see :class:`PairHead`)."""

    def __init__(self, cfg: ModelConfig, w: WidthResolver, name: str, c_in: int) -> None:
        super().__init__()
        a, ca = cfg.act, _cat_act(cfg)
        self.c1 = Conv(c_in, w(f"{name}.c1.conv", 128), 3, 1, a)
        self.csp1 = BottleneckCSP(self.c1.out_channels, f"{name}.csp1", w, 64, 1, False, a, ca)
        self.c2 = Conv(self.csp1.out_channels, w(f"{name}.c2.conv", 32), 3, 1, a)
        self.c3 = Conv(self.c2.out_channels, w(f"{name}.c3.conv", 16), 3, 1, a)
        self.csp2 = BottleneckCSP(self.c3.out_channels, f"{name}.csp2", w, 8, 1, False, a, ca)
        self.out: nn.Module
        if cfg.layout == "yolop":
            self.out = PairHead(self.csp2.out_channels, a)
            w.used.add(f"{name}.out.conv")
        else:
            self.out = nn.Conv2d(self.csp2.out_channels, 1, 3, 1, 1)
            w.used.add(f"{name}.out")

    def pair(self, x: torch.Tensor) -> torch.Tensor:
        """YOLOP's two-channel output before its sigmoid (``yolop`` layout only)."""
        if not isinstance(self.out, PairHead):
            raise ConfigError("pair() needs the 'yolop' layout (two-channel segmentation outputs)")
        x = self.csp1(upsample2(self.c1(x)))
        x = self.c3(upsample2(self.c2(x)))
        return self.out.pair(upsample2(self.csp2(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.csp1(upsample2(self.c1(x)))
        x = self.c3(upsample2(self.c2(x)))
        return self.out(upsample2(self.csp2(x)))


class Detect(nn.Module):
    """Anchor-based detection head: one 1x1 output conv per scale, raw (pre-sigmoid) outputs."""

    def __init__(self, cfg: ModelConfig, w: WidthResolver, channels: list[int]) -> None:
        super().__init__()
        self.nc = cfg.num_classes
        self.no = cfg.num_classes + 5
        self.na = cfg.num_anchors
        self.nl = len(cfg.strides)
        self.register_buffer("strides", torch.tensor(cfg.strides, dtype=torch.float32), persistent=False)
        # anchors in pixels, shape (nl, na, 2)
        self.register_buffer(
            "anchors", torch.tensor(cfg.anchors, dtype=torch.float32).view(self.nl, -1, 2), persistent=False
        )
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in channels)
        for i in range(self.nl):
            w.used.add(f"detect.m.{i}")
        self._init_biases()

    def _init_biases(self) -> None:
        """YOLOv5's prior: ~8 objects per 640x640 image, class prior 0.6/nc."""
        import math

        for mi, s in zip(self.m, self.strides.tolist()):
            b = mi.bias.view(self.na, -1)
            with torch.no_grad():
                b[:, 4] += math.log(8 / (640 / s) ** 2)
                b[:, 5:] += math.log(0.6 / max(self.nc - 0.99, 0.01))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for i, x in enumerate(feats):
            y = self.m[i](x)
            b, _, h, w = y.shape
            out.append(y.view(b, self.na, self.no, h, w).permute(0, 1, 3, 4, 2).contiguous())
        return out


@dataclass
class Outputs:
    """Raw outputs: det is a list of (B, na, H, W, 5+nc) tensors; seg heads are (B, 1, H, W) logits."""

    det: list[torch.Tensor]
    drivable: torch.Tensor
    lane: torch.Tensor


class MultiTaskNet(nn.Module):
    """YOLOP-style network. ``forward(x)`` returns :class:`Outputs`; with ``features=True`` also a
    dict of the :data:`TAPS` features."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = WidthResolver(cfg)
        self.backbone = Backbone(cfg, w)
        c3, c4, c5 = (
            self.backbone.stage3.out_channels,
            self.backbone.stage4.out_channels,
            self.backbone.stage5.out_channels,
        )
        self.neck = Neck(cfg, w, c3, c4, c5)
        self.detect = Detect(
            cfg, w, [self.neck.out3.out_channels, self.neck.out4.out_channels, self.neck.out5.out_channels]
        )
        self.drivable = SegDecoder(cfg, w, "drivable", self.neck.enc_channels)
        self.lane = SegDecoder(cfg, w, "lane", self.neck.enc_channels)
        unused = set(cfg.widths) - w.used
        if unused:
            raise ConfigError(
                f"model config names widths for layers this architecture does not have: {sorted(unused)[:5]}"
                f"{' ...' if len(unused) > 5 else ''}; the checkpoint was made for another architecture"
            )

    def forward(self, x: torch.Tensor, features: bool = False):
        p3, p4, p5 = self.backbone(x)
        enc, o3, o4, o5 = self.neck(p3, p4, p5)
        out = Outputs(det=self.detect([o3, o4, o5]), drivable=self.drivable(enc), lane=self.lane(enc))
        if not features:
            return out
        feats = {
            "backbone.p3": p3,
            "backbone.p4": p4,
            "backbone.p5": p5,
            "neck.enc": enc,
            "neck.p3": o3,
            "neck.p4": o4,
            "neck.p5": o5,
        }
        return out, feats

    @torch.no_grad()
    def upstream(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The outputs YOLOP's own ``MCnet`` gives in eval mode, for parity checks (``yolop``
        layout): decoded detections (B, N, 5+nc) and the two sigmoid two-channel segmentation maps."""
        p3, p4, p5 = self.backbone(x)
        enc, o3, o4, o5 = self.neck(p3, p4, p5)
        det = decode_detections(self.detect([o3, o4, o5]), self.detect.anchors, self.detect.strides)
        return det, self.drivable.pair(enc).sigmoid(), self.lane.pair(enc).sigmoid()


def extract_widths(model: nn.Module) -> dict[str, int]:
    """Current output width of every Conv2d by module path (after pruning, the new widths)."""
    return {name: m.out_channels for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def config_of(model: MultiTaskNet) -> ModelConfig:
    """The model's config with its actual (possibly pruned) widths written in."""
    return model.cfg.replace(widths=extract_widths(model))


def build_model(cfg: ModelConfig) -> MultiTaskNet:
    return MultiTaskNet(cfg)


def decode_detections(det: list[torch.Tensor], anchors: torch.Tensor, strides: torch.Tensor) -> torch.Tensor:
    """Raw head outputs -> (B, N, 5+nc): cx, cy, w, h in input pixels, objectness and class
    probabilities (sigmoid applied). YOLOv5's parametrization: xy = (2*sig - 0.5 + grid) * stride,
    wh = (2*sig)^2 * anchor."""
    out = []
    for i, p in enumerate(det):
        b, na, ny, nx, no = p.shape
        y = p.float().sigmoid()
        gy, gx = torch.meshgrid(torch.arange(ny, device=p.device), torch.arange(nx, device=p.device), indexing="ij")
        grid = torch.stack((gx, gy), -1).view(1, 1, ny, nx, 2).float()
        xy = (y[..., :2] * 2 - 0.5 + grid) * strides[i]
        wh = (y[..., 2:4] * 2) ** 2 * anchors[i].view(1, na, 1, 1, 2)
        out.append(torch.cat((xy, wh, y[..., 4:]), -1).view(b, -1, no))
    return torch.cat(out, 1)
