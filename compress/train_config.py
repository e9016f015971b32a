"""The configuration of a training run (saved into every checkpoint it writes)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .config_io import FieldError
from .losses import LossConfig


@dataclass(frozen=True)
class ExtraTeacher:
    """A further teacher for adaptive multi-teacher distillation (e.g. a single-task specialist)."""

    ckpt: str
    tasks: tuple[str, ...]  # the tasks it teaches: det, drivable, lane
    name: str | None = None  # default: the checkpoint's parent directory name


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (saved into every checkpoint it writes)."""

    data: str = "data/synthroad"
    # compress.data.DataConfig fields for both splits (label_format, drivable_mapping, class_names,
    # class_map, ...) and per-split ones (e.g. label_json / image_dir of the official BDD100K files)
    data_options: dict[str, Any] = field(default_factory=dict)
    train_data_options: dict[str, Any] = field(default_factory=dict)
    val_data_options: dict[str, Any] = field(default_factory=dict)
    out: str = "runs/teacher"
    model_size: str = "teacher"
    act: str = "silu"
    img_size: tuple[int, int] = (320, 192)  # network input (width, height)
    epochs: int = 30
    batch_size: int = 16  # per process
    workers: int = 2
    lr: float = 2e-3  # AdamW
    lr_final: float = 0.05  # final lr as a fraction of lr (cosine)
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    grad_clip: float = 10.0
    ema: bool = True
    ema_decay: float = 0.999
    anchors: str = "auto"  # auto (k-means on the training boxes) | yolop
    augment: bool = True
    eval_interval: int = 1
    eval_max_batches: int | None = None  # select best.pt on a prefix of val (whole val reported at the end)
    seed: int = 0
    amp: bool = True  # used on CUDA only
    channels_last: bool = True  # NHWC activations: ~1.6x faster training on CPU (oneDNN)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    train_split: str = "train"
    val_split: str = "val"
    max_train_batches: int | None = None  # cap per epoch (tests, smoke runs)
    time_limit_min: float | None = None  # stop after the epoch that crosses it
    on_error: str = "raise"  # raise | skip (bad samples)
    # start from a checkpoint (e.g. a pruned student) instead of a fresh model_size network
    init: str | None = None
    # feature distillation from this teacher checkpoint's taps (issue 3); None = plain training
    teacher: str | None = None
    distill_weight: float = 1.0
    distill_taps: tuple[str, ...] | None = None  # default: every tap both models share
    # adaptive multi-teacher mode: specialists beside ``teacher``, weighted by the student's gap
    extra_teachers: tuple[ExtraTeacher, ...] = ()
    adaptive_temperature: float = 1.0
    output_weight: float = 0.0  # output-level distillation from the main teacher (0 = off)
    trajectory_weight: float = 0.0  # drift penalty towards the student's own EMA features (0 = off)
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        if (self.extra_teachers or self.output_weight or self.trajectory_weight) and not self.teacher:
            raise FieldError(
                "teacher",
                "extra_teachers / output_weight / trajectory_weight need a teacher; set teacher (--teacher CKPT)",
            )
        if self.trajectory_weight and not self.ema:
            raise FieldError("trajectory_weight", "uses the student's EMA as its memory; set ema: true")
        for w in ("distill_weight", "output_weight", "trajectory_weight"):
            if getattr(self, w) < 0:
                raise FieldError(w, f"must be >= 0 (0: off), got {getattr(self, w)}")

    def with_data_options(self, options: dict[str, Any]) -> TrainConfig:
        """This run with ``options`` (DataConfig options, e.g. the command line's layout flags) winning
        over its own for both splits: merged into ``data_options`` and removed from the per-split
        options; a ``classes`` preset replaces the run's class names, class map and ignored categories."""
        if not options:
            return self
        drop = set(options) | ({"class_names", "class_map", "ignore_categories"} if "classes" in options else set())

        def keep(d: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in d.items() if k not in drop}

        return dataclasses.replace(
            self,
            data_options={**keep(self.data_options), **options},
            train_data_options=keep(self.train_data_options),
            val_data_options=keep(self.val_data_options),
        )
