"""Model configuration: the architecture as plain data.

A :class:`ModelConfig` names a base size (depth and width multipliers) and may carry an explicit
``widths`` map (conv module path -> output channels).  Every convolution of the network asks the
config for its width by its module path, so a model whose layers were pruned to arbitrary widths
is rebuilt exactly from ``ModelConfig.to_dict()`` -- no pickled modules anywhere.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

# YOLOP's anchors (pixels at a 640-wide input), used when no anchors are given and no labels
# are available for k-means (see compress.models.anchors).
YOLOP_ANCHORS: tuple[tuple[float, ...], ...] = (
    (3, 9, 5, 11, 4, 20),
    (7, 18, 6, 39, 12, 31),
    (19, 50, 38, 81, 68, 157),
)

# name -> (depth_multiple, width_multiple)
SIZES: dict[str, tuple[float, float]] = {
    "tiny": (0.33, 0.125),  # tests
    "small": (0.33, 0.25),
    "teacher": (0.33, 0.5),  # default teacher for synthroad on CPU
    "yolop": (1.0, 1.0),  # YOLOP's published widths and depths
}

#: ``mtc``: this project's network (6x6 stem conv, the configured activation everywhere, one-logit
#: segmentation outputs). ``yolop``: YOLOP's network exactly (Focus stem, LeakyReLU(0.1) after each
#: CSP concat, Conv+BN+activation two-channel segmentation outputs, no width rounded above
#: YOLOP's own), so YOLOP's weights load unchanged (:mod:`compress.importers.yolop`).
LAYOUTS = ("mtc", "yolop")
#: What the network does to its input (RGB in [0, 1], as every loader and the Perceptor feed it)
#: before the first layer: ``unit`` nothing; ``imagenet`` YOLOP's normalization,
#: ``(x - (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225)``, inside the graph.
INPUT_NORMS = ("unit", "imagenet")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ConfigError(ValueError):
    """A model configuration or checkpoint that cannot describe a valid network."""


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the YOLOP-style multi-task network as data."""

    size: str = "teacher"
    num_classes: int = 1
    class_names: tuple[str, ...] = ("vehicle",)
    anchors: tuple[tuple[float, ...], ...] = YOLOP_ANCHORS
    strides: tuple[int, ...] = (8, 16, 32)
    act: str = "silu"
    layout: str = "mtc"
    input_norm: str = "unit"
    # explicit per-conv output widths (module path -> channels); empty = derive from size
    widths: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ConfigError(f"model size {self.size!r} is unknown; expected one of {sorted(SIZES)}")
        if self.num_classes < 1 or len(self.class_names) != self.num_classes:
            raise ConfigError(
                f"num_classes={self.num_classes} but class_names has {len(self.class_names)} "
                f"entries ({list(self.class_names)}); give one name per class"
            )
        if len(self.anchors) != len(self.strides) or any(
            len(a) % 2 or len(a) != len(self.anchors[0]) for a in self.anchors
        ):
            raise ConfigError(
                f"anchors {self.anchors} must hold one list of w,h pairs per stride "
                f"{self.strides}, with the same number of anchors at every scale"
            )
        if self.act not in ("silu", "relu", "hardswish", "leaky"):
            raise ConfigError(f"activation {self.act!r} unknown; use silu, relu, hardswish or leaky")
        if self.layout not in LAYOUTS:
            raise ConfigError(f"model layout {self.layout!r} unknown; use one of {list(LAYOUTS)}")
        if self.input_norm not in INPUT_NORMS:
            raise ConfigError(f"model input_norm {self.input_norm!r} unknown; use one of {list(INPUT_NORMS)}")

    @property
    def depth_multiple(self) -> float:
        return SIZES[self.size][0]

    @property
    def width_multiple(self) -> float:
        return SIZES[self.size][1]

    @property
    def num_anchors(self) -> int:
        return len(self.anchors[0]) // 2

    def depth(self, n: int) -> int:
        return max(round(n * self.depth_multiple), 1) if n > 1 else n

    def width(self, c: int) -> int:
        """Scaled width, rounded up to a multiple of 8 (engine friendly); in the ``yolop`` layout
        never above YOLOP's own width ``c`` (its last decoder CSP is 4 channels wide)."""
        w = max(8, int(math.ceil(c * self.width_multiple / 8) * 8))
        return min(w, c) if self.layout == "yolop" else w

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["class_names"] = list(self.class_names)
        d["anchors"] = [list(a) for a in self.anchors]
        d["strides"] = list(self.strides)
        d["widths"] = dict(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"model config has unknown keys {sorted(unknown)}; known: {sorted(known)}")
        kw = dict(d)
        if "class_names" in kw:
            kw["class_names"] = tuple(kw["class_names"])
        if "anchors" in kw:
            kw["anchors"] = tuple(tuple(float(v) for v in a) for a in kw["anchors"])
        if "strides" in kw:
            kw["strides"] = tuple(int(s) for s in kw["strides"])
        if "widths" in kw:
            kw["widths"] = {str(k): int(v) for k, v in kw["widths"].items()}
        return cls(**kw)

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)
