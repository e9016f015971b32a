"""How much of each block to prune: per-layer ratios from a task-aware sensitivity probe.

A uniform channel ratio removes the same fraction everywhere, although blocks differ in what they
cost (a stride-32 stage holds a third of the parameters; a decoder at stride 4 a quarter of the
MACs) and in how much each task needs them (the drivable decoder of a saturated task versus the
detection neck). The ``sensitivity`` allocation measures both and prunes a block harder when
removing its channels saves much of the budget and hurts no task:

1. For every block ``b`` (a module at ``depth`` in the module tree that owns prunable,
   unprotected convolutions), a copy of the model has only that block pruned at ``probe`` of its
   channels, with the recipe's criterion choosing them.
2. The per-task losses of the copy and of the unpruned model are computed on the same batches
   (BatchNorm on batch statistics, so the probe is not confounded by stale running statistics).
   The block's damage is the worst relative increase over the tasks,
   ``d_b = max_t max(0, (L_t(pruned) - L_t) / L_t)`` — a block that any one task needs is
   kept, the layer-level analogue of the safe rule.
3. ``c_b`` is the fraction of the budget quantity (params or MACs) the probe removed; the block's
   cost of pruning is ``e_b = (d_b + eps) / c_b`` (damage per unit of budget saved).
4. Weights ``w_b = (median(e) / e_b) ** power``, clipped to ``[1/clip, clip]``; block ``b`` is
   pruned at ``min(base * w_b, max_layer_ratio)`` and the pruner searches ``base`` for the budget.

Any model works: blocks are found from the module tree and the spec's protected outputs.
"""

from __future__ import annotations

import copy
import logging
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

ALLOCATIONS = ("uniform", "sensitivity")


class AllocationError(ValueError):
    """A per-layer allocation that does not fit the model."""


@dataclass(frozen=True)
class BlockProbe:
    """What pruning one block at the probe ratio did."""

    block: str
    damage: dict[str, float]  # task -> relative loss increase (>= 0)
    saved: float  # fraction of the model's budget quantity removed
    weight: float = 1.0

    @property
    def worst(self) -> float:
        return max(self.damage.values()) if self.damage else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "block": self.block,
            "damage": {k: round(v, 5) for k, v in self.damage.items()},
            "saved": round(self.saved, 5),
            "weight": round(self.weight, 4),
        }


def prunable_blocks(model: nn.Module, protected: Iterable[nn.Module], depth: int = 2) -> list[str]:
    """Module paths at ``depth`` (``a.b`` for 2) that contain a convolution or linear layer that
    is not protected, in definition order."""
    if depth < 1:
        raise AllocationError(f"allocation depth must be >= 1, got {depth}")
    prot = {id(m) for m in protected}
    blocks: list[str] = []
    for name, mod in model.named_modules():
        if not name or name.count(".") != depth - 1:
            continue
        if any(isinstance(m, (nn.Conv2d, nn.Linear)) and id(m) not in prot for m in mod.modules()):
            blocks.append(name)
    if not blocks:
        raise AllocationError(
            f"no prunable blocks at depth {depth} of {type(model).__name__}; lower the allocation depth"
        )
    return blocks


def resolve_ratios(model: nn.Module, ratios: dict[str, float], round_to: int | None = None) -> dict[nn.Module, float]:
    """``{module path: ratio}`` -> ``{layer: ratio}`` for torch-pruning's ``pruning_ratio_dict``.

    With ``round_to``, each conv / linear layer under a path gets the ratio that keeps the
    multiple of ``round_to`` *nearest* to ``width * (1 - ratio)`` (at least ``round_to``).
    torch-pruning itself rounds the kept width *down*, so any ratio above 0 takes a 16-channel
    layer to 8 at ``round_to=8``: a block the allocation means to keep almost whole would lose
    half its channels."""
    out: dict[nn.Module, float] = {}
    for path, r in ratios.items():
        try:
            mod = model.get_submodule(path)
        except AttributeError:
            raise AllocationError(
                f"layer_ratios names {path!r}, which is not a module of {type(model).__name__}; "
                "model.named_modules() lists the paths"
            ) from None
        if not 0.0 <= r < 1.0:
            raise AllocationError(f"layer_ratios[{path!r}] = {r}; a pruning ratio must be in [0, 1)")
        if not round_to:
            out[mod] = float(r)
            continue
        for m in mod.modules():
            width = (
                getattr(m, "out_channels", None)
                if isinstance(m, nn.Conv2d)
                else getattr(m, "out_features", None)
                if isinstance(m, nn.Linear)
                else None
            )
            if not width:
                continue
            keep = width if r <= 0 else min(width, max(round_to, round(width * (1 - r) / round_to) * round_to))
            out[m] = max(0.0, 1 - (keep + 0.5) / width)  # torch-pruning keeps int(width * (1 - ratio)) = keep
    return out


def block_ratios(weights: dict[str, float], base: float, max_ratio: float) -> dict[str, float]:
    return {b: min(base * w, max_ratio) for b, w in weights.items()}


@torch.no_grad()
def _task_losses(
    model: nn.Module, batches: list[Any], loss_fn: Callable[[nn.Module, Any], dict[str, torch.Tensor]]
) -> dict[str, float]:
    was = model.training
    model.train()  # batch statistics: a pruned copy is judged as if its BN were re-estimated
    sums: dict[str, float] = {}
    for b in batches:
        for k, v in loss_fn(model, b).items():
            sums[k] = sums.get(k, 0.0) + float(v)
    model.train(was)
    return {k: v / len(batches) for k, v in sums.items()}


def sensitivity_weights(
    model: nn.Module,
    blocks: list[str],
    prune_block: Callable[[nn.Module, str, float], None],
    measure: Callable[[nn.Module], float],
    batches: list[Any],
    loss_fn: Callable[[nn.Module, Any], dict[str, torch.Tensor]],
    probe: float = 0.5,
    power: float = 1.0,
    clip: float = 4.0,
    eps: float = 1e-3,
    progress: Callable[[int, int, str], None] | None = None,
) -> tuple[dict[str, float], list[BlockProbe]]:
    """Per-block weights of the sensitivity allocation (see the module docstring).

    ``prune_block(copy, block, ratio)`` prunes one block of a deep copy in place; ``measure(m)``
    is the budget quantity (params or MACs) of a model."""
    if not 0.0 < probe < 1.0:
        raise AllocationError(f"sensitivity probe ratio must be in (0, 1), got {probe}")
    if power < 0 or clip < 1:
        raise AllocationError(f"sensitivity power must be >= 0 and clip >= 1, got power={power}, clip={clip}")
    if not batches:
        raise AllocationError("the sensitivity allocation needs data batches; none were given")
    base_losses = _task_losses(model, batches, loss_fn)
    total = measure(model)
    probes: list[BlockProbe] = []
    for i, b in enumerate(blocks):
        m = copy.deepcopy(model)
        prune_block(m, b, probe)
        saved = 1 - measure(m) / total
        losses = _task_losses(m, batches, loss_fn)
        damage = {k: max(0.0, (losses[k] - v) / max(v, 1e-12)) for k, v in base_losses.items()}
        probes.append(BlockProbe(b, damage, saved))
        if progress:
            progress(i + 1, len(blocks), b)
        del m
    useful = [p for p in probes if p.saved > 0]
    if not useful:
        raise AllocationError(
            "pruning any single block at the probe ratio removed nothing; raise the probe ratio or lower round_to"
        )
    cost = {p.block: (p.worst + eps) / p.saved for p in useful}
    ref = statistics.median(cost.values())
    weights: dict[str, float] = {}
    out: list[BlockProbe] = []
    for p in probes:
        w = 1.0 if p.block not in cost else min(max((ref / cost[p.block]) ** power, 1 / clip), clip)
        if p.saved <= 0:
            w = 0.0  # pruning it removes nothing at this granularity: leave it whole
        weights[p.block] = w
        out.append(BlockProbe(p.block, p.damage, p.saved, w))
    return weights, out
