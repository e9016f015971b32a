"""Head-agnostic feature distillation: teacher backbone/neck features -> student.

Features are taken with forward hooks on the modules a :class:`~compress.prune.spec.TaskSpec`
names as taps, so any model works. Where the student's width differs (pruned), a learned 1x1
adapter maps the student's feature to the teacher's width. The loss is the mean over taps of the
MSE between per-sample standardized features (zero mean, unit variance over C, H, W), which makes
it independent of each layer's scale.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.nn import functional as F

from compress.prune.spec import TaskSpec


class TapMismatchError(ValueError):
    """Teacher and student taps that cannot be compared."""


class FeatureTaps:
    """Context manager collecting the outputs of named modules during forward passes."""

    def __init__(self, model: nn.Module, spec: TaskSpec, names: Iterable[str] | None = None) -> None:
        mods = spec.tap_modules(model)
        names = list(mods) if names is None else list(names)
        missing = [n for n in names if n not in mods]
        if missing:
            raise TapMismatchError(f"taps {missing} are not in the spec (it has {sorted(mods)})")
        self.modules = {n: mods[n] for n in names}
        self.features: dict[str, torch.Tensor] = {}
        self._handles: list = []

    def __enter__(self) -> FeatureTaps:
        for name, m in self.modules.items():
            self._handles.append(m.register_forward_hook(lambda _m, _i, out, name=name: self.features.__setitem__(name, out)))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def standardize(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-sample zero mean / unit variance over (C, H, W)."""
    flat = x.flatten(1)
    return ((flat - flat.mean(1, keepdim=True)) / (flat.std(1, keepdim=True) + eps)).view_as(x)


class FeatureDistiller(nn.Module):
    """The student plus adapters, with the frozen teacher alongside (not a submodule).

    ``forward(x)`` runs both models and returns ``(student_output, {tap: loss, ..., "feat": mean})``.
    Parameters are the student's and the adapters' (what an optimizer or DDP should see); the
    teacher's are neither trained nor synchronized.
    """

    def __init__(self, teacher: nn.Module, student: nn.Module, teacher_spec: TaskSpec, student_spec: TaskSpec,
                 example: torch.Tensor, taps: Iterable[str] | None = None) -> None:
        super().__init__()
        object.__setattr__(self, "teacher", teacher)  # plain attribute: frozen, not a submodule
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.student = student
        names = list(taps) if taps is not None else [n for n in teacher_spec.taps if n in student_spec.taps]
        if not names:
            raise TapMismatchError("teacher and student specs share no tap names; name the taps to distill")
        self.names = names
        self.t_taps = FeatureTaps(teacher, teacher_spec, names)
        self.s_taps = FeatureTaps(student, student_spec, names)
        teacher.eval()
        with torch.no_grad(), self.t_taps, self.s_taps:
            was = student.training
            student.eval()
            teacher(example)
            student(example)
            student.train(was)
        self.adapters = nn.ModuleDict()
        for n in names:
            t, s = self.t_taps.features[n], self.s_taps.features[n]
            if t.shape[2:] != s.shape[2:]:
                raise TapMismatchError(
                    f"tap {n!r}: teacher feature is {tuple(t.shape[1:])} but student's is {tuple(s.shape[1:])}; "
                    "spatial sizes must match (pick taps at the same stride)"
                )
            key = n.replace(".", "_")
            self.adapters[key] = nn.Conv2d(s.shape[1], t.shape[1], 1, bias=False) if s.shape[1] != t.shape[1] else nn.Identity()
            if isinstance(self.adapters[key], nn.Conv2d):
                nn.init.kaiming_uniform_(self.adapters[key].weight, a=5 ** 0.5)
        self.t_taps.features.clear()
        self.s_taps.features.clear()

    def train(self, mode: bool = True) -> FeatureDistiller:
        super().train(mode)
        self.teacher.eval()  # the teacher always runs with its running BN statistics
        return self

    def forward(self, x: torch.Tensor):  # noqa: ANN201
        with torch.no_grad(), self.t_taps:
            self.teacher(x)
        with self.s_taps:
            out = self.student(x)
        losses = {}
        for n in self.names:
            s = self.adapters[n.replace(".", "_")](self.s_taps.features[n])
            losses[n] = F.mse_loss(standardize(s.float()), standardize(self.t_taps.features[n].float()))
        losses["feat"] = torch.stack([losses[n] for n in self.names]).mean()
        self.t_taps.features.clear()
        self.s_taps.features.clear()
        return out, losses
