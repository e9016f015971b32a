"""Structured channel pruning on torch-pruning's dependency graph.

No hand-written dependency tracing: torch-pruning's DepGraph couples every layer whose channels
must shrink together (concatenations, residual adds, BN, the next conv's inputs). The head output
convolutions named in the :class:`~compress.prune.spec.TaskSpec` are never pruned; widths are
rounded to ``round_to`` channels (engine-friendly). The budget is a channel ratio, or a reduction
of one of the quantities of :mod:`compress.prune.budget` (params, MACs, measured latency) for which
the channel ratio is searched; secondary targets (``macs_target``, ``latency_target``) must be met
as well. The configuration is :class:`compress.prune.config.PruneConfig`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from .allocate import block_ratios, prunable_blocks, resolve_ratios, sensitivity_weights
from .budget import QUANTITIES, RATIO, BudgetError, latency_meter, quantities, relative_latency, targets
from .config import PruneConfig
from .importance import Criterion, TaskLossFn, build_criterion
from .latency import LatencyMeter
from .spec import TaskSpec

log = logging.getLogger(__name__)


@dataclass
class PruneReport:
    criterion: str
    budget: str
    target: float
    channel_ratio: float
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    allocation: list[dict[str, Any]] = field(default_factory=list)  # per-block probe + weight (sensitivity)
    latency_before_ms: float | None = None  # measured (budget or target latency), compress.prune.latency
    latency_after_ms: float | None = None

    @property
    def params_reduction(self) -> float:
        return 1 - self.params_after / self.params_before

    @property
    def macs_reduction(self) -> float:
        return 1 - self.macs_after / self.macs_before

    @property
    def latency_reduction(self) -> float | None:
        if self.latency_before_ms is None or self.latency_after_ms is None:
            return None
        return 1 - self.latency_after_ms / self.latency_before_ms

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["params_reduction"] = self.params_reduction
        d["macs_reduction"] = self.macs_reduction
        d["latency_reduction"] = self.latency_reduction
        return d


def _example(cfg: PruneConfig, model: nn.Module) -> torch.Tensor:
    w, h = cfg.img_size
    p = next(model.parameters())
    return torch.zeros(1, 3, h, w, device=p.device)


def _pruner(
    model: nn.Module,
    spec: TaskSpec,
    cfg: PruneConfig,
    importance: tp.importance.Importance,
    ratio: float,
    weights: dict[str, float] | None = None,
    only: dict[str, float] | None = None,
) -> tp.pruner.MetaPruner:
    """A MetaPruner at ``ratio``; ``weights`` scale it per block (sensitivity allocation),
    ``cfg.layer_ratios`` fix it per module, and ``only`` prunes just those modules (probing)."""
    ratios = block_ratios(weights, ratio, cfg.max_layer_ratio) if weights else {}
    ratios.update(cfg.layer_ratios)
    ignored = spec.protected_modules(model)
    if only is not None:
        ratios, ratio = dict(only), 0.0
        inside = {id(m) for path in only for m in model.get_submodule(path).modules()}
        # every other layer is ignored, so the criterion only scores the probed block's groups
        ignored += [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and id(m) not in inside]
    return tp.pruner.MetaPruner(
        model,
        _example(cfg, model),
        importance=importance,
        pruning_ratio=ratio,
        pruning_ratio_dict=resolve_ratios(model, ratios, cfg.round_to) or None,
        global_pruning=cfg.global_pruning and only is None,
        max_pruning_ratio=cfg.max_layer_ratio,
        ignored_layers=ignored,
        round_to=cfg.round_to,
        output_transform=spec.flatten,
    )


def ratio_for_budget(
    model: nn.Module,
    spec: TaskSpec,
    cfg: PruneConfig,
    tol: float = 0.005,
    iters: int = 10,
    criterion: Criterion | None = None,
    grid: int = 12,
    weights: dict[str, float] | None = None,
    meter: LatencyMeter | None = None,
) -> float:
    """Channel ratio whose pruning removes ``cfg.target`` of the params / MACs / latency (bisection);
    every secondary target (``macs_target``, ``latency_target``) must be met too.

    With per-layer (local) pruning the resulting widths depend only on the ratio, so the search
    prunes copies with the magnitude criterion. With global pruning the widths depend on the
    scores, so the copies are pruned with ``criterion`` itself (prepared on ``model``). With
    per-block ``weights`` the searched ratio is the base that each block's weight scales. Raises
    :class:`BudgetError` if even the largest allowed ratio cannot reach the target.
    """
    if cfg.budget == RATIO:
        return cfg.target
    if cfg.global_pruning and criterion is None:
        raise BudgetError(
            "a params/macs/latency budget with global pruning is searched with the (prepared) criterion; "
            "pass criterion="
        )
    goals = targets(cfg)
    if cfg.needs_meter and meter is None:
        meter = latency_meter(cfg, spec)
    base = quantities(model, cfg, meter, goals)
    what = f"{cfg.budget} reduction of {cfg.target:.0%}" + "".join(
        f" with a {q} reduction of {t:.0%}" for q, t in list(goals.items())[1:]
    )

    def reduction(r: float) -> float:
        m = copy.deepcopy(model)
        imp = criterion.for_copy(model, m) if cfg.global_pruning else build_criterion("magnitude")
        _pruner(m, spec, cfg, imp, r, weights).step()
        now = quantities(m, cfg, meter, goals, reference=model)  # latency timed against the unpruned model
        # every target in units of the primary one: met when the smallest is >= cfg.target
        return min((1 - now[q] / base[q]) * cfg.target / t for q, t in goals.items())

    # torch-pruning's reduction is not monotonic in the ratio near the top (a group that would
    # shrink below round_to is left whole), so scan a grid for the first ratio that meets the
    # target, then bisect between it and the grid point before it
    lo, hi, best_seen = 0.0, None, 0.0
    top = cfg.max_layer_ratio
    if weights and any(w > 0 for w in weights.values()):
        top /= min(1.0, min(w for w in weights.values() if w > 0))  # every weighted block can reach the cap
    for k in range(1, grid + 1):
        r = top * k / grid
        red = reduction(r)
        best_seen = max(best_seen, red)
        if red >= cfg.target:
            hi = r
            if red - cfg.target <= tol:
                return hi
            break
        lo = r
    if hi is None:
        raise BudgetError(
            f"a {what} cannot be met: at most {best_seen:.1%} (of the target's quantity) is removed at any ratio up to "
            f"{top:.3g} (head outputs are protected and widths round to {cfg.round_to}); "
            "lower the target, raise max_layer_ratio or lower round_to"
        )
    for _ in range(iters):
        mid = (lo + hi) / 2
        r = reduction(mid)
        if r >= cfg.target:
            hi = mid
            if r - cfg.target <= tol:
                break
        else:
            lo = mid
    return hi


def prune(
    model: nn.Module,
    spec: TaskSpec,
    cfg: PruneConfig,
    batches: Callable[[], Iterable[Any]] | None = None,
    loss_fn: TaskLossFn | None = None,
    meter: LatencyMeter | None = None,
) -> PruneReport:
    """Prune ``model`` in place to the budget; returns what was removed.

    ``batches()`` yields data for gradient criteria (at most ``cfg.batches`` are used) and
    ``loss_fn(model, batch)`` returns the per-task losses. ``meter`` times candidates for a latency
    budget (default: :func:`latency_meter` of ``cfg``).
    """
    spec.validate(model)
    resolve_ratios(model, cfg.layer_ratios)  # a wrong path fails before any work
    criterion = build_criterion(cfg.criterion, **cfg.criterion_args)
    size = ("params", "macs")  # always reported
    p0, m0 = (int(v) for v in quantities(model, cfg, None, size).values())
    if cfg.needs_meter and meter is None:
        meter = latency_meter(cfg, spec)
    l0 = quantities(model, cfg, meter, ["latency"])["latency"] if cfg.needs_meter else None
    reference = copy.deepcopy(model) if l0 is not None else None  # the unpruned model, for paired timing
    if cfg.needs_data and (batches is None or loss_fn is None):
        raise ValueError(
            f"criterion {cfg.criterion!r} / allocation {cfg.allocation!r} needs data: pass batches and loss_fn"
        )
    if criterion.needs_data:
        was_training = model.training
        model.eval()  # BN statistics frozen while gradients are collected

        def limited() -> Iterable[Any]:
            for i, b in enumerate(batches()):
                if i >= cfg.batches:
                    break
                yield b

        criterion.prepare(model, limited(), loss_fn)
        model.train(was_training)
    weights, probes = None, []
    if cfg.allocation == "sensitivity":
        weights, probes = _sensitivity(model, spec, cfg, criterion, batches, loss_fn, meter)
    ratio = ratio_for_budget(model, spec, cfg, criterion=criterion, weights=weights, meter=meter)
    pruner = _pruner(model, spec, cfg, criterion, ratio, weights)
    pruner.step()
    model.zero_grad(set_to_none=True)
    p1, m1 = (int(v) for v in quantities(model, cfg, None, size).values())
    l1 = l0 * relative_latency(meter, model, reference) if l0 is not None else None
    rep = PruneReport(
        cfg.criterion, cfg.budget, cfg.target, ratio, p0, p1, m0, m1, [p.to_dict() for p in probes], l0, l1
    )
    log.info(
        "pruned with %s at channel ratio %.3f: params %.2fM -> %.2fM (-%.1f%%), MACs %.3fG -> %.3fG (-%.1f%%)%s",
        cfg.criterion,
        ratio,
        p0 / 1e6,
        p1 / 1e6,
        100 * rep.params_reduction,
        m0 / 1e9,
        m1 / 1e9,
        100 * rep.macs_reduction,
        f", latency {l0:.1f} -> {l1:.1f} ms (-{100 * rep.latency_reduction:.1f}%)" if l0 is not None else "",
    )
    return rep


def _block_channels(model: nn.Module, block: str) -> int:
    """Output channels of every conv / linear layer under ``block``."""
    return sum(
        m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
        for m in model.get_submodule(block).modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    )


def _sensitivity(
    model: nn.Module,
    spec: TaskSpec,
    cfg: PruneConfig,
    criterion: Criterion,
    batches: Callable[[], Iterable[Any]],
    loss_fn: TaskLossFn,
    meter: LatencyMeter | None = None,
) -> tuple[dict[str, float], list[Any]]:
    data = []
    for b in batches():
        if len(data) >= cfg.sensitivity_batches:
            break
        data.append(b)
    blocks = prunable_blocks(model, spec.protected_modules(model), cfg.allocation_depth)
    goals = {"params": cfg.target} if cfg.budget == RATIO else targets(cfg)  # a ratio budget is allocated by params
    counted = [q for q in goals if not QUANTITIES[q].timed]
    timed = [q for q in goals if QUANTITIES[q].timed]
    base = quantities(model, cfg, None, counted)
    shares: dict[str, float] = {}
    if timed:
        # a probe saves a few percent of the time, less than whole-model timings drift between
        # sessions on a shared machine: the saving is estimated from each block's share of the
        # profiled time instead (LatencyMeter.block_shares)
        if meter is None:
            raise BudgetError("a latency budget needs a LatencyMeter (compress.prune.latency); pass meter=")
        shares = meter.block_shares(model, blocks)
        base.update(dict.fromkeys(timed, 1.0))  # the estimate below is relative to the unpruned model
        log.info(
            "latency shares (profiled): %s",
            ", ".join(f"{b} {100 * v:.1f}%" for b, v in sorted(shares.items(), key=lambda kv: -kv[1])[:8]),
        )
    ch0 = {b: _block_channels(model, b) for b in blocks}

    def cost(m: nn.Module) -> float:
        """What the budget counts: the sum of each constrained quantity in units of its target
        (latency: 1 - sum_b share_b * fraction of block b's channels removed)."""
        now = quantities(m, cfg, None, counted)
        if timed:
            est = 1 - sum(shares[b] * (1 - _block_channels(m, b) / ch0[b]) for b in blocks if ch0[b])
            now.update(dict.fromkeys(timed, est))
        return sum(now[q] / base[q] / t for q, t in goals.items())

    def prune_block(m: nn.Module, block: str, r: float) -> None:
        _pruner(m, spec, cfg, criterion.for_copy(model, m), 0.0, only={block: r}).step()

    def progress(i: int, n: int, block: str) -> None:
        log.info("sensitivity probe %d/%d: %s", i, n, block)

    weights, probes = sensitivity_weights(
        model,
        blocks,
        prune_block,
        cost,
        data,
        loss_fn,
        probe=cfg.sensitivity_probe,
        power=cfg.sensitivity_power,
        progress=progress,
    )
    log.info("sensitivity allocation (weight: block) %s", ", ".join(f"{w:.2f}: {b}" for b, w in weights.items()))
    return weights, probes
