"""Recipes: the YAML file of ``mtc-compress compress`` / ``ablate``, loaded and validated whole.

A recipe is loaded into :class:`CompressRecipe`. Its ``prune:`` section *is* a
:class:`compress.prune.PruneConfig` (:class:`PruneStage` adds only the schedule: steps, recovery
epochs, BatchNorm recalibration, the data batch size and seed); the input size comes from the
teacher's training run. :func:`load_recipe` checks every field before any work is done: unknown
keys, budget and targets, criterion and its arguments, the distillation's TrainConfig fields, the
ablation's criteria and seeds, the quantization stage (:class:`QuantizeStage`). Each error is a :class:`~compress.config_io.ConfigFileError`
naming the file, the field and the fix.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config_io import ConfigFileError, FieldError, from_dict, read_yaml, show
from .models.deploy import DeployTarget
from .prune import CRITERIA, BudgetError, PruneConfig
from .prune import budget as budgets

CRITERIA_ORDER = ("task-aware", "taylor", "hessian", "magnitude", "random")

# set by the recipe's stage itself, not by its distill: section
DISTILL_SET_BY_RECIPE = {"init": "the pruned student", "teacher": "the recipe's teacher:", "out": "the recipe's out:"}


@dataclass(frozen=True)
class PruneStage(PruneConfig):
    """How the teacher is pruned: every PruneConfig field (``img_size``: the teacher's) plus the schedule."""

    batch_size: int = 8  # images per batch for gradient-based criteria, the probe and the recalibration
    steps: int = 1  # iterative schedule: reach the budget in this many prune steps ...
    recovery_epochs: int = 1  # ... each but the last followed by this many distillation epochs
    recalibrate_batches: int = 20  # re-estimate BatchNorm statistics on this many batches after each step (0: off)
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, low in (("steps", 1), ("recovery_epochs", 0), ("batch_size", 1), ("recalibrate_batches", 0)):
            if getattr(self, name) < low:
                raise BudgetError(f"{name} must be >= {low}, got {getattr(self, name)}", name)

    def for_model(self, img_size: tuple[int, int]) -> PruneStage:
        """This stage at the teacher's input size (tracing and MACs)."""
        return dataclasses.replace(self, img_size=tuple(img_size))

    def with_criterion(self, criterion: str) -> PruneStage:
        """This stage pruned with ``criterion``: the recipe's criterion_args apply to its own criterion only."""
        if criterion == self.criterion:
            return self
        return dataclasses.replace(self, criterion=criterion, criterion_args={})

    def at_ratio(self, ratio: float) -> PruneStage:
        """This stage as a plain channel ratio (no secondary targets)."""
        return dataclasses.replace(self, budget=budgets.RATIO, target=ratio, macs_target=None, latency_target=None)


@dataclass(frozen=True)
class AblationConfig:
    criteria: tuple[str, ...] = CRITERIA_ORDER
    distill_epochs: int | None = None  # default: the recipe's distill epochs
    latency_iters: int = 30
    latency_threads: int | None = None  # default: torch's default for this machine
    seeds: tuple[int, ...] = (0,)  # distillation seeds per criterion: the distilled row is their mean

    def __post_init__(self) -> None:
        unknown = [c for c in self.criteria if c not in CRITERIA]
        if unknown or not self.criteria:
            raise FieldError(
                "criteria", f"unknown {unknown or 'empty list'}; use a list of {sorted(CRITERIA)}, e.g. [task-aware]"
            )
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise FieldError("seeds", f"expected a list of distinct integers (e.g. [0, 1]), got {list(self.seeds)}")
        if self.distill_epochs is not None and self.distill_epochs < 0:
            raise FieldError("distill_epochs", f"must be >= 0 (0: no distillation), got {self.distill_epochs}")
        if self.latency_iters < 1:
            raise FieldError("latency_iters", f"must be >= 1, got {self.latency_iters}")
        if self.latency_threads is not None and self.latency_threads < 1:
            raise FieldError("latency_threads", f"must be >= 1 (or unset), got {self.latency_threads}")


PTQ_METHODS = ("minmax", "entropy", "percentile")  # compress.quantize.ptq.METHODS (ONNX Runtime's calibrations)
QAT_METHODS = ("minmax", "histogram", "moving_average")  # compress.quantize.qat.METHODS (activation ranges)
QAT_ONLY = ("epochs", "lr", "calib_batches", "batch_size", "averaging_constant", "tolerance")
PTQ_ONLY = ("calib_frames", "percentile")


@dataclass(frozen=True)
class QuantizeStage:
    """``quantize:``, run after the distillation on the student: ``ptq`` (ONNX Runtime's post-training
    calibration of the exported FP32 student, compress.quantize.ptq) or ``qat`` (fine-tuning with
    fake quantization and the recipe's distillation losses, compress.quantize.qat). Both write the FP32
    bundle ``<out>/student_fp32`` and the INT8 bundle ``<out>/<name>``. A mode's options are refused in
    the other mode; unset options take the defaults below. ``mode`` unset: no quantization."""

    mode: str | None = None  # ptq | qat
    method: str | None = None  # ptq: minmax | entropy | percentile; qat: minmax | histogram | moving_average
    name: str = "student_int8"  # the INT8 bundle's directory in out:
    parity_frames: int = 8  # validation frames for the INT8-vs-FP32 record
    # ptq
    calib_frames: int | None = None  # training frames the ranges come from (default 128)
    percentile: float | None = None  # method percentile's cut (default 99.999)
    # qat
    epochs: int | None = None  # fine-tuning epochs (default 2)
    lr: float | None = None  # AdamW learning rate (default 1e-4; cosine decay, no warm-up)
    calib_batches: int | None = None  # training batches the initial activation ranges come from (default 8)
    batch_size: int | None = None  # default: the distill section's
    averaging_constant: float | None = None  # method moving_average (default 0.01)
    tolerance: float | None = (
        None  # ONNX Runtime vs the fake-quantized net: mask IoU / det F1 >= 1 - this (default 0.1)
    )

    def __post_init__(self) -> None:
        if self.mode is None:
            given = [f.name for f in dataclasses.fields(self) if getattr(self, f.name) not in (None, f.default)]
            if given:
                raise FieldError("mode", f"missing; set mode: qat or mode: ptq (the section sets {given})")
            return
        if self.mode not in ("ptq", "qat"):
            raise FieldError(
                "mode", f"{show(self.mode)} is unknown; use ptq (post-training) or qat (quantization-aware)"
            )
        other, other_mode = (PTQ_ONLY, "ptq") if self.mode == "qat" else (QAT_ONLY, "qat")
        for k in other:
            if getattr(self, k) is not None:
                raise FieldError(k, f"is a {other_mode} option; remove it (mode is {self.mode})")
        methods = QAT_METHODS if self.mode == "qat" else PTQ_METHODS
        if self.method is not None and self.method not in methods:
            raise FieldError("method", f"{show(self.method)} is not a {self.mode} method; use one of {list(methods)}")
        if self.averaging_constant is not None and self.method != "moving_average":
            raise FieldError("averaging_constant", "is for method: moving_average only; remove it or set that method")
        if self.percentile is not None and self.method != "percentile":
            raise FieldError("percentile", "is for method: percentile only; remove it or set that method")
        if not self.name or self.name in (".", "..") or not all(c.isalnum() or c in "_.-" for c in self.name):
            raise FieldError("name", f"{show(self.name)} must be a plain directory name (letters, digits, _ . -)")
        if self.name == "student_fp32":
            raise FieldError("name", "student_fp32 is the FP32 bundle's directory; choose another name")
        checks = (
            ("parity_frames", 0, None),
            ("calib_frames", 1, None),
            ("epochs", 1, None),
            ("calib_batches", 1, None),
            ("batch_size", 1, None),
        )
        for k, low, _ in checks:
            v = getattr(self, k)
            if v is not None and v < low:
                raise FieldError(k, f"must be >= {low}, got {v}")
        for k, high in (("lr", None), ("averaging_constant", 1.0), ("percentile", 100.0), ("tolerance", 0.5)):
            v = getattr(self, k)
            if v is not None and (v <= 0 or (high is not None and v > high)):
                bound = f"in (0, {high}]" if high is not None else "> 0"
                raise FieldError(k, f"must be {bound}, got {v}")


@dataclass(frozen=True)
class CompressRecipe:
    teacher: str  # teacher checkpoint
    out: str = "runs/compress"
    data: str | None = None  # default: the dataset the teacher was trained on
    # DataConfig options winning over the teacher's for both splits (e.g. lane_mapping, mask_resize, or
    # label_json: .../det_{split}.json); the command line's layout flags land here
    data_options: dict[str, Any] = field(default_factory=dict)
    prune: PruneStage = field(default_factory=PruneStage)
    # compress.train.TrainConfig fields for the distillation (epochs, lr, batch_size, workers,
    # distill_weight, output_weight, trajectory_weight, extra_teachers, ...); the data options and
    # input size come from the teacher's run. epochs: 0 keeps the pruned student as it is.
    distill: dict[str, Any] = field(default_factory=dict)
    eval_batch_size: int = 16
    eval_workers: int = 1
    eval_max_batches: int | None = None  # None: the whole validation split
    # matching / AP rules of every evaluation of the run (default | yolop; mtc_perception.metrics)
    eval_protocol: str = "default"
    ablation: AblationConfig = field(default_factory=AblationConfig)
    # the backend the student is built for and the graph choices made for it (activation swap,
    # width multiple, decoder rewrite, BatchNorm folding): compress.models.deploy.DeployTarget
    deploy: DeployTarget | None = None
    quantize: QuantizeStage = field(default_factory=QuantizeStage)  # mode unset: no quantization stage

    def __post_init__(self) -> None:
        if self.eval_batch_size < 1:
            raise FieldError("eval_batch_size", f"must be >= 1, got {self.eval_batch_size}")
        if self.eval_workers < 0:
            raise FieldError("eval_workers", f"must be >= 0, got {self.eval_workers}")
        if self.eval_max_batches is not None and self.eval_max_batches < 1:
            raise FieldError(
                "eval_max_batches", f"must be >= 1 (or unset: the whole split), got {self.eval_max_batches}"
            )
        if self.eval_protocol not in ("default", "yolop"):
            raise FieldError("eval_protocol", f"must be default or yolop, got {self.eval_protocol!r}")


QUICK = {  # `ablate --quick` / `compress --quick`: a smoke run of every stage (CI)
    "distill": {"epochs": 1, "max_train_batches": 2, "eval_max_batches": 1},
    "prune": {"batches": 2},
    "eval_max_batches": 2,
    "ablation": {"distill_epochs": 1, "latency_iters": 3},
}
QUICK_QUANTIZE = {  # added to a recipe's quantize: section under --quick
    "qat": {"epochs": 1, "calib_batches": 2, "parity_frames": 2},
    "ptq": {"calib_frames": 8, "parity_frames": 2},
}


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None, quick: bool = False) -> CompressRecipe:
    """Read and validate a recipe (``overrides``: top-level keys that win over the file's)."""
    data = read_yaml(path, "recipe", "; see config/compress/ for examples")
    if quick:
        data = _merge(data, QUICK)
        q = data.get("quantize")
        if isinstance(q, dict) and q.get("mode") in QUICK_QUANTIZE:
            data["quantize"] = _merge(q, QUICK_QUANTIZE[q["mode"]])
    data = _merge(data, {k: v for k, v in (overrides or {}).items() if v is not None})
    where = str(path)
    prune = data.get("prune")
    if isinstance(prune, dict) and "img_size" in prune:
        raise ConfigFileError(
            f"{where}.prune.img_size: the input size comes from the teacher's training run; remove it "
            "(latency_size sets the deployment size a latency budget is timed at)"
        )
    deploy = _deploy_target(data, where)
    recipe = from_dict(CompressRecipe, {k: v for k, v in data.items() if k != "deploy"}, where)
    recipe = dataclasses.replace(recipe, deploy=deploy)
    check_distill(recipe.distill, f"{where}.distill")
    try:
        budgets.check_runtime(recipe.prune)
    except BudgetError as e:
        raise ConfigFileError(f"{where}.prune.{e.field}: {e}") from None
    return recipe


def _deploy_target(data: dict[str, Any], where: str) -> DeployTarget | None:
    """The recipe's ``deploy:`` section. It also sets ``prune.round_to`` (the backend's width multiple;
    a prune section that sets it must agree) and makes measured latency the default budget (a speed
    recipe budgets what it is for; ``prune.budget`` still chooses another)."""
    section = data.get("deploy")
    if section is None:
        return None
    deploy = from_dict(DeployTarget, section, f"{where}.deploy")
    prune = data.get("prune")
    if isinstance(prune, dict):
        if "round_to" in prune and int(prune["round_to"]) != deploy.width_multiple:
            raise ConfigFileError(
                f"{where}.prune.round_to: {prune['round_to']} disagrees with deploy (backend {deploy.backend!r}, "
                f"round_to {deploy.width_multiple}); set the width multiple in one place (deploy.round_to)"
            )
        data["prune"] = {"budget": "latency", **prune, "round_to": deploy.width_multiple}
    else:
        data["prune"] = {"budget": "latency", "round_to": deploy.width_multiple}
    return deploy


def check_distill(distill: dict[str, Any], where: str = "recipe distill") -> None:
    """The recipe's distill: section as TrainConfig fields (the teacher's data options and the
    stage's student/teacher/out are added when the stage runs)."""
    from .train import TrainConfig

    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(distill) - known)
    if unknown:
        raise ConfigFileError(
            f"{where}: unknown key(s) {show(unknown)}; known: {sorted(known - set(DISTILL_SET_BY_RECIPE))}"
        )
    for k, what in DISTILL_SET_BY_RECIPE.items():
        if k in distill:
            raise ConfigFileError(f"{where}.{k}: set by the recipe ({what}); remove it from distill:")
    from_dict(TrainConfig, {**distill, "teacher": "teacher.pt"}, where)  # types and ranges


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
