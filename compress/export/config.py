"""What an export is asked to do (``mtc-compress export``'s options), checked when it is made."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExportConfig:
    img_size: tuple[int, int] | None = (
        None  # network input (width, height), multiples of 32; default: the training size
    )
    opset: int = 17
    dynamic_batch: bool = False
    simplify: bool = True  # onnxslim when installed
    parity_frames: int = 8
    tolerance: float = 1e-3  # max abs difference on the normalized outputs (boxes / input size, probabilities)
    frames: str | None = (
        None  # directory of images for parity (and INT8 calibration); default: the checkpoint's val images
    )
    name: str | None = None
    engine: bool = False
    fp16: bool = False
    int8: bool = False
    calib: str | None = None  # directory of calibration images for INT8
    calib_frames: int = 64
    workspace_gb: float = 2.0
    # decoders rewritten for inference (compress.models.deploy): same outputs, work moved before
    # the nearest upsamples; parity is checked against the original model either way
    rewrite: bool = True
    # which decoder stages (compress.models.deploy.REWRITE_STAGES); None: the checkpoint's deploy
    # target's choice, else all of them
    rewrite_stages: tuple[str, ...] | None = None
    fold_bn: bool = True  # BatchNorm after each CSP Concat folded into its convolutions (same function)
    force: bool = False  # replace OUT even where it is not a bundle (no bundle.json)

    def __post_init__(self) -> None:
        w, h = self.img_size or (32, 32)
        if h % 32 or w % 32 or h <= 0 or w <= 0:
            raise ValueError(f"img_size {w}x{h} (WIDTHxHEIGHT) must be positive multiples of 32, e.g. 640x384")
        if self.opset < 17:
            raise ValueError(f"opset {self.opset} is too old; use 17 or newer")
        if (self.fp16 or self.int8) and not self.engine:
            raise ValueError("--fp16/--int8 choose the TensorRT precision: add --engine")
        if self.int8 and not self.calib and not self.frames:
            raise ValueError("--int8 needs calibration images: pass --calib DIR (dataset frames)")
