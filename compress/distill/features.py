"""Head-agnostic feature distillation: teacher backbone/neck features -> student.

Features are taken with forward hooks on the modules a :class:`~compress.prune.spec.TaskSpec`
names as taps, so any model works. Where the student's width differs (pruned), a learned 1x1
adapter maps the student's feature to the teacher's width. The loss is the mean over taps of the
MSE between per-sample standardized features (zero mean, unit variance over C, H, W), which makes
it independent of each layer's scale.

Several teachers can be distilled at once (the full teacher plus single-task specialists): each
has its own taps and adapters, and its feature loss is reported separately so the training loop
can weight the teachers (:func:`compress.distill.adaptive.teacher_weights`). A *trajectory*
model (an EMA of the student's own weights: a memory of what it learned earlier) can be given
too; the drift of the student's features away from it is returned as ``"trajectory"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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
            self._handles.append(
                m.register_forward_hook(lambda _m, _i, out, name=name: self.features.__setitem__(name, out))
            )
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def standardize(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-sample zero mean / unit variance over (C, H, W)."""
    flat = x.flatten(1)
    return ((flat - flat.mean(1, keepdim=True)) / (flat.std(1, keepdim=True) + eps)).view_as(x)


def feature_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(standardize(student.float()), standardize(teacher.float()))


@dataclass
class Teacher:
    """One teacher of a (multi-teacher) distillation: the model, its spec and the tasks it teaches."""

    name: str
    model: nn.Module
    spec: TaskSpec
    tasks: tuple[str, ...] | None = None  # None: every task of the student


class FeatureDistiller(nn.Module):
    """The student plus adapters, with the frozen teacher(s) alongside (not submodules).

    ``forward(x)`` runs every model and returns ``(student_output, losses)`` where ``losses`` has
    one entry per tap of the first teacher (``"<tap>"``), the mean feature loss per teacher
    (``"feat"`` for the first, ``"feat/<name>"`` for every teacher) and, with a trajectory model,
    ``"trajectory"``. The teachers' outputs of the last forward are kept in
    ``self.teacher_outputs`` (name -> output) for output-level distillation and gap estimates.
    Parameters are the student's and the adapters' (what an optimizer or DDP should see).
    """

    def __init__(
        self,
        teacher: nn.Module,
        student: nn.Module,
        teacher_spec: TaskSpec,
        student_spec: TaskSpec,
        example: torch.Tensor,
        taps: Iterable[str] | None = None,
        *,
        extra_teachers: Sequence[Teacher] = (),
        teacher_tasks: tuple[str, ...] | None = None,
    ) -> None:
        super().__init__()
        self.student = student
        self.student_spec = student_spec
        teachers = [Teacher("main", teacher, teacher_spec, teacher_tasks), *extra_teachers]
        if len({t.name for t in teachers}) != len(teachers):
            raise TapMismatchError(f"teacher names must be unique, got {[t.name for t in teachers]}")
        object.__setattr__(self, "teachers", teachers)  # plain attribute: frozen, not submodules
        object.__setattr__(self, "trajectory_model", None)
        self.adapters = nn.ModuleDict()  # first teacher: "<tap>", others: "<name>/<tap>" (dots -> _)
        self.tap_names: dict[str, list[str]] = {}
        self._t_taps: dict[str, FeatureTaps] = {}
        for i, t in enumerate(teachers):
            for p in t.model.parameters():
                p.requires_grad_(False)
            t.model.eval()
            unknown = [k for k in (t.tasks or ()) if k not in student_spec.tasks]
            if unknown:
                raise TapMismatchError(
                    f"teacher {t.name!r} teaches tasks {unknown} the student does not have ({list(student_spec.tasks)})"
                )
            names = list(taps) if (taps is not None and i == 0) else [n for n in t.spec.taps if n in student_spec.taps]
            if not names:
                raise TapMismatchError(
                    f"teacher {t.name!r} and the student share no tap names; name the taps to distill"
                )
            self.tap_names[t.name] = names
            self._t_taps[t.name] = FeatureTaps(t.model, t.spec, names)
        all_names = sorted({n for ns in self.tap_names.values() for n in ns})
        self.s_taps = FeatureTaps(student, student_spec, all_names)
        with torch.no_grad(), self.s_taps:
            was = student.training
            student.eval()
            student(example)
            student.train(was)
        s_feats = dict(self.s_taps.features)
        self.s_taps.features.clear()
        for t in teachers:
            with torch.no_grad(), self._t_taps[t.name]:
                t.model(example)
            for n in self.tap_names[t.name]:
                tf, sf = self._t_taps[t.name].features[n], s_feats[n]
                if tf.shape[2:] != sf.shape[2:]:
                    raise TapMismatchError(
                        f"tap {n!r}: teacher {t.name!r} feature is {tuple(tf.shape[1:])} "
                        f"but the student's is {tuple(sf.shape[1:])}; "
                        "spatial sizes must match (pick taps at the same stride)"
                    )
                key = self._key(t.name, n)
                if sf.shape[1] != tf.shape[1]:
                    conv = nn.Conv2d(sf.shape[1], tf.shape[1], 1, bias=False)
                    nn.init.kaiming_uniform_(conv.weight, a=5**0.5)
                    self.adapters[key] = conv
                else:
                    self.adapters[key] = nn.Identity()
            self._t_taps[t.name].features.clear()
        self.teacher_outputs: dict[str, object] = {}

    @property
    def teacher(self) -> nn.Module:
        return self.teachers[0].model

    @property
    def names(self) -> list[str]:
        """Taps distilled from the first teacher."""
        return self.tap_names[self.teachers[0].name]

    def _key(self, teacher: str, tap: str) -> str:
        k = tap.replace(".", "_")
        return k if teacher == self.teachers[0].name else f"{teacher}__{k}"

    def set_trajectory(self, model: nn.Module | None) -> None:
        """Penalize drift of the student's taps away from ``model`` (e.g. the student's EMA)."""
        object.__setattr__(self, "trajectory_model", model)
        object.__setattr__(
            self,
            "_traj_taps",
            FeatureTaps(model, self.student_spec, self.s_taps.modules) if model is not None else None,
        )

    def train(self, mode: bool = True) -> FeatureDistiller:
        super().train(mode)
        for t in self.teachers:
            t.model.eval()  # teachers always run with their running BN statistics
        return self

    def forward(self, x: torch.Tensor):
        self.teacher_outputs = {}
        t_feats: dict[str, dict[str, torch.Tensor]] = {}
        with torch.no_grad():
            for t in self.teachers:
                with self._t_taps[t.name]:
                    self.teacher_outputs[t.name] = t.model(x)
                t_feats[t.name] = dict(self._t_taps[t.name].features)
                self._t_taps[t.name].features.clear()
            traj: dict[str, torch.Tensor] = {}
            if self.trajectory_model is not None:
                was = self.trajectory_model.training
                self.trajectory_model.eval()
                with self._traj_taps:
                    self.trajectory_model(x)
                traj = dict(self._traj_taps.features)
                self._traj_taps.features.clear()
                self.trajectory_model.train(was)
        with self.s_taps:
            out = self.student(x)
        s_feats = dict(self.s_taps.features)
        self.s_taps.features.clear()
        losses: dict[str, torch.Tensor] = {}
        for i, t in enumerate(self.teachers):
            per_tap = []
            for n in self.tap_names[t.name]:
                loss = feature_loss(self.adapters[self._key(t.name, n)](s_feats[n]), t_feats[t.name][n])
                per_tap.append(loss)
                if i == 0:
                    losses[n] = loss
            losses[f"feat/{t.name}"] = torch.stack(per_tap).mean()
        losses["feat"] = losses[f"feat/{self.teachers[0].name}"]
        if traj:
            losses["trajectory"] = torch.stack([feature_loss(s_feats[n], traj[n]) for n in traj]).mean()
        return out, losses
