"""Budget quantities: what a pruning budget counts, how each is measured, and what it needs.

A budget (``PruneConfig.budget``) is a channel ratio (``ratio``) or one of the quantities
registered here; a quantity with a ``target_field`` can also be a secondary target beside another
budget (``macs_target``, ``latency_target``: remove at least that fraction of it too). Each entry
says how the quantity is measured on a model and whether it is *timed* (measured by a
:class:`~compress.prune.latency.LatencyMeter`, so it needs ONNX Runtime; the sensitivity probe
estimates it from profiled block shares instead of re-timing every probe).

The pruner (:func:`compress.prune.prune`), the budget search (``ratio_for_budget``), the
sensitivity allocation, the recipes' iterative schedule (:func:`step_targets`) and the CLI all
read this one table; a new quantity is one ``@register`` function, the shape of
:data:`compress.prune.importance.CRITERIA`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from torch import nn

from compress.models.profile import count_macs, count_params


class BudgetedConfig(Protocol):
    """The fields of :class:`compress.prune.config.PruneConfig` a budget reads (a protocol, so the
    config can use this module without it importing the config back)."""

    budget: str
    target: float
    img_size: tuple[int, int]
    latency_size: tuple[int, int] | None
    latency_runs: int
    latency_threads: int | None


RATIO = "ratio"  # a channel ratio: not a measured quantity, the pruner's own knob


class BudgetError(ValueError):
    """A pruning budget that cannot be met, or a PruneConfig field out of range (``field`` names it)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# measure(model, cfg, meter, reference) -> the quantity of ``model`` (cfg.img_size for MACs)
Measure = Callable[[nn.Module, "BudgetedConfig", Any, "nn.Module | None"], float]


@dataclass(frozen=True)
class Quantity:
    """One budget quantity (see the module docstring)."""

    name: str
    measure: Measure
    target_field: str | None = None  # PruneConfig field of its secondary target (None: primary only)
    timed: bool = False  # measured by a LatencyMeter (ONNX Runtime on this machine)
    doc: str = ""


QUANTITIES: dict[str, Quantity] = {}


def register(name: str, target_field: str | None = None, timed: bool = False) -> Callable[[Measure], Measure]:
    """Register ``fn(model, cfg, meter, reference) -> float`` as budget quantity ``name``."""

    def deco(fn: Measure) -> Measure:
        QUANTITIES[name] = Quantity(name, fn, target_field, timed, (fn.__doc__ or "").strip())
        return fn

    return deco


def budget_names() -> tuple[str, ...]:
    """Every value ``PruneConfig.budget`` accepts: ``ratio`` and the registered quantities."""
    return (RATIO, *QUANTITIES)


@register("params")
def _params(model: nn.Module, cfg: BudgetedConfig, meter: Any, reference: nn.Module | None) -> float:
    """parameter count"""
    return float(count_params(model))


@register("macs", target_field="macs_target")
def _macs(model: nn.Module, cfg: BudgetedConfig, meter: Any, reference: nn.Module | None) -> float:
    """multiply-accumulates of one forward pass at cfg.img_size"""
    w, h = cfg.img_size
    return float(count_macs(model, h, w))


@register("latency", target_field="latency_target", timed=True)
def _latency(model: nn.Module, cfg: BudgetedConfig, meter: Any, reference: nn.Module | None) -> float:
    """ONNX Runtime latency on this CPU at the deployment size (ms; compress.prune.latency)"""
    if meter is None:
        raise BudgetError("a latency budget needs a LatencyMeter (compress.prune.latency); pass meter=")
    return meter(model) if reference is None else meter(reference) * relative_latency(meter, model, reference)


def latency_meter(cfg: BudgetedConfig, spec: Any) -> Any:
    """The LatencyMeter a config's timed quantities are measured with (deployment size, runs,
    threads of ``cfg``; ``spec`` flattens the model's outputs)."""
    from .latency import LatencyMeter

    return LatencyMeter(
        tuple(cfg.latency_size or cfg.img_size), spec.flatten, runs=cfg.latency_runs, threads=cfg.latency_threads
    )


def relative_latency(meter: Any, model: nn.Module, reference: nn.Module) -> float:
    """latency(model) / latency(reference): paired timing when the meter offers it
    (:meth:`LatencyMeter.relative`), else the ratio of two separate measurements."""
    rel = getattr(meter, "relative", None)
    return float(rel(model, reference)) if rel is not None else float(meter(model)) / float(meter(reference))


# ----------------------------------------------------------------------------------------------
# what a config constrains


def targets(cfg: BudgetedConfig) -> dict[str, float]:
    """Every quantity the budget constrains -> the fraction of it to remove (the primary first;
    a ``ratio`` budget is ``{"ratio": channel ratio}``)."""
    t = {cfg.budget: cfg.target}
    for q in QUANTITIES.values():
        value = getattr(cfg, q.target_field) if q.target_field else None
        if value:
            t[q.name] = value
    return t


def needs_meter(cfg: BudgetedConfig) -> bool:
    """Whether any constrained quantity is timed (a LatencyMeter, ONNX Runtime)."""
    return any(QUANTITIES[q].timed for q in targets(cfg) if q in QUANTITIES)


def quantities(
    model: nn.Module,
    cfg: BudgetedConfig,
    meter: Any,
    which: Iterable[str],
    reference: nn.Module | None = None,
) -> dict[str, float]:
    """The quantities ``which`` of ``model``; with a ``reference`` a timed quantity is the
    reference's time x the paired ratio (:func:`relative_latency`), so drift between timings cancels."""
    return {q: QUANTITIES[q].measure(model, cfg, meter, reference) for q in which}


def validate(cfg: BudgetedConfig) -> None:
    """The budget fields of ``cfg``: a known budget, a target in range, secondary targets on
    quantities other than the budget's. Raises :class:`BudgetError` naming the field and the fix."""
    names = budget_names()
    if cfg.budget not in names:
        raise BudgetError(f"budget {cfg.budget!r} unknown; use one of {names}", "budget")
    if not 0.0 < cfg.target < 1.0:
        what = "channel ratio" if cfg.budget == RATIO else f"fraction of the {cfg.budget} to remove"
        raise BudgetError(f"pruning target {cfg.target} must be a fraction in (0, 1) (the {what})", "target")
    for q in QUANTITIES.values():
        value = getattr(cfg, q.target_field) if q.target_field else None
        if value is None:
            continue
        allowed = [b for b in QUANTITIES if b != q.name]
        if cfg.budget not in allowed or not 0.0 < value < 1.0:
            raise BudgetError(
                f"{q.target_field} {value} needs budget {' or '.join(repr(b) for b in allowed)} and a fraction "
                f"in (0, 1); with budget {cfg.budget!r} set it as the budget itself or remove it",
                q.target_field,
            )


def check_runtime(cfg: BudgetedConfig) -> None:
    """Fail early when a timed quantity is constrained and ONNX Runtime is not installed."""
    if not needs_meter(cfg):
        return
    try:
        import onnxruntime  # noqa: F401 - only whether it is installed
    except ImportError:
        field = "budget" if cfg.budget in QUANTITIES and QUANTITIES[cfg.budget].timed else "latency_target"
        raise BudgetError(
            "a latency budget times candidates with ONNX Runtime, which is not installed; "
            "pip install onnxruntime (or use budget params / macs)",
            field,
        ) from None


# ----------------------------------------------------------------------------------------------
# the iterative schedule


def schedule(goal: float, steps: int) -> list[float]:
    """Cumulative fraction removed (of the original's quantity) after each step: what is kept
    shrinks by the same factor at every step."""
    return [1 - (1 - goal) ** ((i + 1) / steps) for i in range(steps)]


def step_targets(
    cfg: BudgetedConfig, step: int, steps: int, base: dict[str, float], now: dict[str, float]
) -> dict[str, float]:
    """The targets of prune step ``step`` (0-based) of ``steps``: every constrained quantity on the
    same geometric schedule. ``base`` holds the original model's quantities, ``now`` the current
    model's; a step removes what is left to reach the cumulative target, of the current model.
    A ratio budget: kept channels multiply, so every step uses the same per-step ratio."""
    out: dict[str, float] = {}
    for q, goal in targets(cfg).items():
        if q == RATIO:
            out[q] = 1 - (1 - goal) ** (1 / steps)
        else:
            cum = schedule(goal, steps)[step]
            out[q] = max(1e-3, 1 - base[q] * (1 - cum) / now[q])
    return out


def with_targets(cfg: BudgetedConfig, step: dict[str, float]) -> BudgetedConfig:
    """``cfg`` with the budget's target and every secondary target taken from ``step``."""
    secondary = {
        q.target_field: (step.get(q.name) if q.name != cfg.budget else None)
        for q in QUANTITIES.values()
        if q.target_field
    }
    return dataclasses.replace(cfg, target=step[cfg.budget], **secondary)
