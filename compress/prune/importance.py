"""Channel-importance criteria behind a registry, each a torch-pruning ``Importance``.

Every criterion scores the channels of one dependency group (one score per channel; higher =
keep). Gradient-based criteria first :meth:`Criterion.prepare` on a few batches of data.

* ``magnitude`` — L2 norm of the group's weights (torch-pruning's GroupMagnitudeImportance).
* ``taylor`` — first-order Taylor |w·g| of the summed multi-task loss (Molchanov et al.).
* ``hessian`` — OBD-style second order, 0.5·w²·diag(H) with the empirical Fisher diagonal
  (mean of squared per-batch gradients) as the Hessian diagonal, as CPD uses.
* ``random`` — a control.
* ``task-aware`` — per-task Taylor scores, normalized per task, lowered where the tasks' gradients
  conflict, with a safe rule that keeps each task's most important channels (see
  :class:`TaskAwareImportance` and docs/DESIGN.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning.pruner import function as tpf

log = logging.getLogger(__name__)

# loss_fn(model, batch) -> {task: scalar loss tensor}
TaskLossFn = Callable[[nn.Module, Any], dict[str, torch.Tensor]]

CRITERIA: dict[str, type[Criterion]] = {}


def register(name: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        cls.name = name
        CRITERIA[name] = cls
        return cls

    return deco


def build_criterion(name: str, **kwargs: Any) -> Criterion:
    if name not in CRITERIA:
        raise ValueError(f"pruning criterion {name!r} is unknown; choose one of {sorted(CRITERIA)}")
    return CRITERIA[name](**kwargs)


class Criterion(tp.importance.Importance):
    """A torch-pruning Importance that may need data first."""

    name = "base"
    needs_data = False

    def prepare(self, model: nn.Module, batches: Iterable[Any], loss_fn: TaskLossFn) -> None:
        """Collect whatever statistics the criterion needs (no-op for data-free criteria)."""

    def for_copy(self, original: nn.Module, copy: nn.Module) -> Criterion:
        """The same criterion scoring ``copy`` (a deep copy of the prepared ``original``): the
        statistics collected by ``prepare`` are re-keyed to the copy's parameters by name. Used
        to try pruning ratios on copies (global budget search)."""
        return self


def _rekey(
    stats: dict[nn.Parameter, torch.Tensor], original: nn.Module, copy: nn.Module
) -> dict[nn.Parameter, torch.Tensor]:
    by_name = dict(copy.named_parameters())
    return {by_name[n]: stats[p] for n, p in original.named_parameters() if p in stats}


def _params(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def channel_reduce(
    group: Any, fn: Callable[[torch.Tensor, nn.Module, str], torch.Tensor], n: int
) -> torch.Tensor | None:
    """Sum ``fn(param_rows, layer, kind)`` -> per-channel values over a group's layers.

    ``param_rows`` holds, for each channel of the group in root order, the flattened weights that
    channel owns in this layer (output rows of a conv, input columns of the next conv, the BN
    scale). ``fn`` maps a (channels, k) tensor to (channels,) values. Returns a (n,) tensor, or
    None for a group with no parameterized layer.
    """
    total = None
    for i, (dep, idxs) in enumerate(group):
        layer = dep.target.module
        handler = dep.handler
        root_idxs = group[i].root_idxs
        if any(r is None for r in root_idxs):
            continue
        if handler in (tpf.prune_conv_out_channels, tpf.prune_linear_out_channels):
            kind, rows = "out", lambda t, idxs=idxs: t[idxs].flatten(1)
        elif handler in (tpf.prune_conv_in_channels, tpf.prune_linear_in_channels):
            if isinstance(layer, nn.Conv2d) and layer.groups != 1:
                continue
            kind, rows = "in", lambda t, idxs=idxs: t.transpose(0, 1)[idxs].flatten(1)
        elif handler == tpf.prune_batchnorm_out_channels:
            if not layer.affine:
                continue
            kind, rows = "bn", lambda t, idxs=idxs: t[idxs].view(-1, 1)
        else:
            continue
        vals = fn(rows, layer, kind)
        if vals is None:
            continue
        out = torch.zeros(n, dtype=torch.float64)
        out.scatter_add_(0, torch.tensor(root_idxs, dtype=torch.long), vals.double().cpu())
        total = out if total is None else total + out
    return total


def _group_len(group: Any) -> int:
    return len(group[0].root_idxs)


# ----------------------------------------------------------------------------------------------


@register("magnitude")
class MagnitudeImportance(Criterion):
    """L2 norm of every weight a channel owns in the group."""

    def __call__(self, group: Any) -> torch.Tensor | None:
        s = channel_reduce(
            group, lambda rows, layer, kind: rows(layer.weight.detach()).pow(2).sum(1), _group_len(group)
        )
        return None if s is None else s.sqrt().float()


@register("random")
class RandomImportance(Criterion):
    def __init__(self, seed: int = 0) -> None:
        self.gen = torch.Generator().manual_seed(seed)

    def __call__(self, group: Any) -> torch.Tensor:
        return torch.rand(_group_len(group), generator=self.gen)

    def for_copy(self, original: nn.Module, copy: nn.Module) -> Criterion:
        c = RandomImportance()
        c.gen.set_state(self.gen.get_state())  # the copy draws what the original will draw
        return c


def _mean_grads(
    model: nn.Module,
    batches: Iterable[Any],
    loss_fn: TaskLossFn,
    transform: Callable[[torch.Tensor], torch.Tensor],
    who: str,
) -> dict[nn.Parameter, torch.Tensor]:
    """Mean over batches of ``transform(∇ Σ_t L_t)`` for every trainable parameter."""
    params = _params(model)
    acc = [torch.zeros_like(p) for p in params]
    n = 0
    for batch in batches:
        losses = loss_fn(model, batch)
        for a, g in zip(acc, torch.autograd.grad(sum(losses.values()), params, allow_unused=True)):
            if g is not None:
                a.add_(transform(g))
        n += 1
    if n == 0:
        raise ValueError(f"the {who} criterion needs at least one batch of data")
    return {p: a / n for p, a in zip(params, acc)}


class _GradCriterion(Criterion):
    """Base for criteria computed from gradients accumulated over batches."""

    needs_data = True

    def __init__(self) -> None:
        self.grads: dict[nn.Parameter, torch.Tensor] = {}

    def for_copy(self, original: nn.Module, copy: nn.Module) -> Criterion:
        c = object.__new__(type(self))
        c.__dict__.update(self.__dict__)
        c.grads = _rekey(self.grads, original, copy)
        if getattr(self, "task_grads", None):
            c.task_grads = {t: _rekey(g, original, copy) for t, g in self.task_grads.items()}
        return c

    def _grad(self, p: nn.Parameter) -> torch.Tensor:
        if p not in self.grads:
            raise RuntimeError("criterion used before prepare(): call prepare(model, batches, loss_fn) first")
        return self.grads[p]


@register("taylor")
class TaylorImportance(_GradCriterion):
    """|Σ w·g| per weight summed over a channel, g the gradient of the summed task losses."""

    def prepare(self, model: nn.Module, batches: Iterable[Any], loss_fn: TaskLossFn) -> None:
        self.grads = _mean_grads(model, batches, loss_fn, lambda g: g, self.name)

    def __call__(self, group: Any) -> torch.Tensor | None:
        s = channel_reduce(
            group,
            lambda rows, layer, kind: (rows(layer.weight.detach()) * rows(self._grad(layer.weight))).abs().sum(1),
            _group_len(group),
        )
        return None if s is None else s.float()


@register("hessian")
class HessianImportance(_GradCriterion):
    """OBD saliency 0.5·w²·F with F the empirical Fisher diagonal E[g²] over batches."""

    def prepare(self, model: nn.Module, batches: Iterable[Any], loss_fn: TaskLossFn) -> None:
        self.grads = _mean_grads(model, batches, loss_fn, lambda g: g.pow(2), self.name)

    def __call__(self, group: Any) -> torch.Tensor | None:
        s = channel_reduce(
            group,
            lambda rows, layer, kind: (
                0.5 * (rows(layer.weight.detach()).pow(2) * rows(self._grad(layer.weight))).sum(1)
            ),
            _group_len(group),
        )
        return None if s is None else s.float()


@register("task-aware")
class TaskAwareImportance(_GradCriterion):
    """Per-task Taylor importance with a gradient-conflict penalty and a safe rule.

    For task t with loss L_t, channel c of a group and the weights W_c it owns in the group:

    * ``s_t(c) = Σ_{w∈W_c} |w · ḡ_t(w)|``, ḡ_t the gradient of L_t averaged over ``batches``;
    * normalized per task so that no task drowns the others: ``ŝ_t(c) = s_t(c) / μ_t`` with μ_t
      the mean of |w · ḡ_t(w)| over every prunable weight of the model (times the channel's size
      in weights, i.e. per-weight normalization);
    * conflict ``κ(c) = mean_{t<u} max(0, −cos(ḡ_t|W_c, ḡ_u|W_c))`` — how much the tasks pull the
      channel's weights in opposite directions;
    * score ``S(c) = mean_t ŝ_t(c) · (1 − β·κ(c))`` (β = ``conflict_weight``);
    * safe rule: a channel ranked in the top ``safe_fraction`` of its group by any single task's
      ``ŝ_t`` gets ``S(c) + max_c S`` so it is removed only after every unprotected channel.

    Knobs: ``conflict_weight`` β ∈ [0, 1] (0 = plain normalized multi-task Taylor), ``safe_fraction``
    (0 disables the rule), ``normalize`` ("mean" per task, or "none").
    """

    def __init__(self, conflict_weight: float = 0.5, safe_fraction: float = 0.1, normalize: str = "mean") -> None:
        super().__init__()
        if not 0.0 <= conflict_weight <= 1.0:
            raise ValueError(f"conflict_weight must be in [0, 1], got {conflict_weight}")
        if not 0.0 <= safe_fraction < 1.0:
            raise ValueError(f"safe_fraction must be in [0, 1), got {safe_fraction}")
        if normalize not in ("mean", "none"):
            raise ValueError(f"normalize must be 'mean' or 'none', got {normalize!r}")
        self.conflict_weight = conflict_weight
        self.safe_fraction = safe_fraction
        self.normalize = normalize
        self.task_grads: dict[str, dict[nn.Parameter, torch.Tensor]] = {}
        self.task_norm: dict[str, float] = {}
        self.last_conflict: torch.Tensor | None = None  # κ of the last scored group (diagnostics)

    def prepare(self, model: nn.Module, batches: Iterable[Any], loss_fn: TaskLossFn) -> None:
        params = _params(model)
        acc: dict[str, list[torch.Tensor]] = {}
        n = 0
        for batch in batches:
            losses = loss_fn(model, batch)
            names = list(losses)
            for k, t in enumerate(names):
                g = torch.autograd.grad(losses[t], params, allow_unused=True, retain_graph=k < len(names) - 1)
                a = acc.setdefault(t, [torch.zeros_like(p) for p in params])
                for ai, gi in zip(a, g):
                    if gi is not None:
                        ai.add_(gi)
            n += 1
        if n == 0:
            raise ValueError("the task-aware criterion needs at least one batch of data")
        if len(acc) < 2:
            log.warning("task-aware criterion got %d task loss(es); the conflict term needs two or more", len(acc))
        self.task_grads = {t: {p: a / n for p, a in zip(params, g)} for t, g in acc.items()}
        weights = [p for p in params if p.ndim > 1]
        for t, g in self.task_grads.items():
            tot = sum(float((p.detach() * g[p]).abs().sum()) for p in weights)
            cnt = sum(p.numel() for p in weights)
            self.task_norm[t] = max(tot / max(cnt, 1), 1e-30) if self.normalize == "mean" else 1.0

    def task_scores(self, group: Any) -> dict[str, torch.Tensor] | None:
        """Normalized per-task Taylor scores ŝ_t of a group's channels."""
        if not self.task_grads:
            raise RuntimeError(
                "task-aware criterion used before prepare(): call prepare(model, batches, loss_fn) first"
            )
        n = _group_len(group)
        out = {}
        for t, g in self.task_grads.items():
            s = channel_reduce(
                group,
                lambda rows, layer, kind, g=g: (rows(layer.weight.detach()) * rows(g[layer.weight])).abs().sum(1),
                n,
            )
            if s is None:
                return None
            out[t] = s / self.task_norm[t]
        return out

    def conflict(self, group: Any) -> torch.Tensor:
        """κ(c): mean over task pairs of the negative part of the cosine of their gradients."""
        n = _group_len(group)
        tasks = list(self.task_grads)
        if len(tasks) < 2:
            return torch.zeros(n, dtype=torch.float64)
        sq = {
            t: channel_reduce(
                group, lambda rows, layer, kind, g=self.task_grads[t]: rows(g[layer.weight]).pow(2).sum(1), n
            )
            for t in tasks
        }
        kappa = torch.zeros(n, dtype=torch.float64)
        pairs = 0
        for i, a in enumerate(tasks):
            for b in tasks[i + 1 :]:
                dot = channel_reduce(
                    group,
                    lambda rows, layer, kind, ga=self.task_grads[a], gb=self.task_grads[b]: (
                        rows(ga[layer.weight]) * rows(gb[layer.weight])
                    ).sum(1),
                    n,
                )
                cos = dot / (sq[a].sqrt() * sq[b].sqrt()).clamp_min(1e-30)
                kappa += (-cos).clamp_min(0.0)
                pairs += 1
        return kappa / pairs

    def __call__(self, group: Any) -> torch.Tensor | None:
        scores = self.task_scores(group)
        if scores is None:
            return None
        stacked = torch.stack(list(scores.values()))  # (tasks, n)
        kappa = self.conflict(group)
        self.last_conflict = kappa
        s = stacked.mean(0) * (1.0 - self.conflict_weight * kappa)
        if self.safe_fraction > 0:
            n = s.numel()
            k = max(1, int(round(self.safe_fraction * n)))
            protected = torch.zeros(n, dtype=torch.bool)
            for row in stacked:
                protected[torch.topk(row, k).indices] = True
            s = torch.where(protected, s + s.max().clamp_min(1e-12), s)
        return s.float()
