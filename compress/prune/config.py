"""The pruning configuration: one frozen dataclass, validated whole when it is built.

:class:`PruneConfig` is what :func:`compress.prune.prune` takes, what ``mtc-compress prune``
builds from its flags, and (with the schedule fields of :class:`compress.recipe.PruneStage`) the
``prune:`` section of a recipe; each step of an iterative schedule is derived from it with
``dataclasses.replace``. Every field out of range raises :class:`~compress.prune.budget.BudgetError`
naming the field (``err.field``) and the fix, so a recipe fails when it is loaded, before any work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import budget
from .allocate import ALLOCATIONS, AllocationError
from .budget import BudgetError
from .importance import CRITERIA, build_criterion


@dataclass(frozen=True)
class PruneConfig:
    """How a model is pruned: criterion, budget and targets, allocation, rounding, latency timing."""

    criterion: str = "task-aware"  # compress.prune.importance.CRITERIA
    criterion_args: dict[str, Any] = field(default_factory=dict)  # the criterion's own knobs
    budget: str = "params"  # ratio | a compress.prune.budget quantity: params | macs | latency
    target: float = 0.5  # channel ratio (budget=ratio) or fraction of params / MACs / latency to remove
    round_to: int = 8
    global_pruning: bool = False
    max_layer_ratio: float = 0.9  # never remove more than this fraction of one layer's channels
    batches: int = 8  # batches of data for gradient-based criteria
    img_size: tuple[int, int] = (320, 192)  # (width, height) for tracing and MACs
    # per-layer ratios: "uniform" (one ratio everywhere) or "sensitivity" (compress.prune.allocate)
    allocation: str = "uniform"
    allocation_depth: int = 2  # blocks are the modules at this depth of the module tree
    sensitivity_probe: float = 0.5  # fraction of one block's channels pruned to probe it
    sensitivity_power: float = 1.0
    sensitivity_batches: int = 4  # of the data batches, this many measure the task losses
    layer_ratios: dict[str, float] = field(default_factory=dict)  # fixed ratios by module path (override)
    macs_target: float | None = None  # with budget params / latency: also remove at least this fraction of the MACs
    latency_target: float | None = None  # with budget params / macs: also remove at least this fraction of the latency
    # latency (compress.prune.latency): ONNX Runtime on this CPU at this deployment input (width, height)
    latency_size: tuple[int, int] | None = None  # default: img_size
    latency_runs: int = 15
    latency_threads: int | None = None  # ONNX Runtime intra-op threads (None: its default)

    def __post_init__(self) -> None:
        self._check_criterion()
        self._check_allocation()
        budget.validate(self)
        self._check_sizes()

    # --- what the config needs -----------------------------------------------------------------

    @property
    def needs_data(self) -> bool:
        """Whether pruning needs batches of training data and a loss: a gradient-based criterion,
        or the sensitivity allocation (it measures the task losses of pruned probes)."""
        return CRITERIA[self.criterion].needs_data or self.allocation == "sensitivity"

    @property
    def needs_meter(self) -> bool:
        """Whether a constrained quantity is timed (a LatencyMeter, ONNX Runtime on this machine)."""
        return budget.needs_meter(self)

    # --- validation ----------------------------------------------------------------------------

    def _check_criterion(self) -> None:
        if self.criterion not in CRITERIA:
            raise BudgetError(
                f"criterion {self.criterion!r} unknown; use one of {sorted(CRITERIA)}"
                " (or register one with compress.prune.register)",
                "criterion",
            )
        if not isinstance(self.criterion_args, dict):
            raise BudgetError(f"criterion_args must be a mapping, got {self.criterion_args!r}", "criterion_args")
        try:
            build_criterion(self.criterion, **self.criterion_args)
        except (TypeError, ValueError) as e:
            raise BudgetError(
                f"criterion_args {self.criterion_args} do not fit criterion {self.criterion!r}: {e}", "criterion_args"
            ) from None

    def _check_allocation(self) -> None:
        if self.allocation not in ALLOCATIONS:
            raise BudgetError(f"allocation {self.allocation!r} unknown; use one of {ALLOCATIONS}", "allocation")
        if self.allocation != "uniform" and self.global_pruning:
            raise BudgetError(
                "a per-layer allocation and global pruning both decide the widths; use one of them", "global_pruning"
            )
        if self.allocation_depth < 1:
            raise BudgetError(f"allocation_depth must be >= 1, got {self.allocation_depth}", "allocation_depth")
        if not 0.0 < self.sensitivity_probe < 1.0:
            raise BudgetError(
                f"sensitivity_probe {self.sensitivity_probe} must be a fraction in (0, 1)", "sensitivity_probe"
            )
        if self.sensitivity_power < 0:
            raise BudgetError(f"sensitivity_power must be >= 0, got {self.sensitivity_power}", "sensitivity_power")
        if self.sensitivity_batches < 1:
            raise BudgetError(
                f"sensitivity_batches must be >= 1, got {self.sensitivity_batches}", "sensitivity_batches"
            )
        for path, r in self.layer_ratios.items():
            if not 0.0 <= r < 1.0:
                raise AllocationError(f"layer_ratios[{path!r}] = {r}; a pruning ratio must be in [0, 1)")

    def _check_sizes(self) -> None:
        if not 0.0 < self.max_layer_ratio <= 1.0:
            raise BudgetError(f"max_layer_ratio {self.max_layer_ratio} must be in (0, 1]", "max_layer_ratio")
        if self.batches < 1:
            raise BudgetError(f"batches must be >= 1, got {self.batches}", "batches")
        if self.round_to < 1:
            raise BudgetError(f"round_to must be >= 1, got {self.round_to}", "round_to")
        if len(self.img_size) != 2 or min(self.img_size) < 1:
            raise BudgetError(f"img_size {self.img_size} must be (width, height) in pixels", "img_size")
        if self.latency_size is not None and (len(self.latency_size) != 2 or min(self.latency_size) < 8):
            raise BudgetError(
                f"latency_size {self.latency_size} must be (width, height), each >= 8 pixels", "latency_size"
            )
        if self.latency_runs < 1:
            raise BudgetError(f"latency_runs must be >= 1, got {self.latency_runs}", "latency_runs")
        if self.latency_threads is not None and self.latency_threads < 1:
            raise BudgetError(
                f"latency_threads must be >= 1 (or unset for ONNX Runtime's default), got {self.latency_threads}",
                "latency_threads",
            )
