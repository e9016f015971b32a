"""Adaptive multi-teacher weighting and output-level distillation.

**Adaptive weights.** Each teacher t teaches a set of tasks T_t (the full teacher: all of them; a
specialist: one). At every step the student's *gap* on a teacher's tasks is its task loss relative
to that teacher's loss on the same batch::

    g_t = mean_{k in T_t} max(L_student,k - L_t,k, 0) / (L_t,k + eps)

and the teachers' feature losses are weighted by ``w = n * softmax(g / tau)`` (``n`` teachers, so
the weights average 1): the teacher whose tasks the student currently lags on most pulls hardest.
A large ``tau`` tends to equal weights.

**Output distillation** (optional, ``output_weight``): the student's raw head outputs learn the
teacher's soft predictions — binary cross-entropy against the teacher's sigmoid for the
drivable and lane logits and for the detection objectness/class logits, plus an MSE on the box
logits of the cells the teacher believes hold an object (objectness > 0.5).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch.nn import functional as F


def task_gaps(
    student: Mapping[str, torch.Tensor | float],
    teachers: Mapping[str, Mapping[str, torch.Tensor | float]],
    tasks: Mapping[str, Sequence[str]],
    eps: float = 1e-6,
) -> dict[str, float]:
    """Relative gap of the student on each teacher's tasks (0 where it is as good or better)."""
    out = {}
    for name, t_losses in teachers.items():
        gs = []
        for k in tasks[name]:
            s, t = float(student[k]), float(t_losses[k])
            gs.append(max(s - t, 0.0) / (abs(t) + eps))
        out[name] = sum(gs) / max(len(gs), 1)
    return out


def teacher_weights(gaps: Mapping[str, float], temperature: float = 1.0) -> dict[str, float]:
    """``n * softmax(gap / temperature)`` over the teachers (weights average 1)."""
    if temperature <= 0:
        raise ValueError(f"adaptive temperature must be > 0, got {temperature}")
    names = list(gaps)
    g = torch.tensor([gaps[n] for n in names], dtype=torch.float64) / temperature
    w = torch.softmax(g, 0) * len(names)
    return {n: float(v) for n, v in zip(names, w)}


def _soft_bce(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(student_logits.float(), teacher_logits.float().sigmoid())


def output_distill_loss(
    student, teacher, tasks: Sequence[str] = ("det", "drivable", "lane")
) -> dict[str, torch.Tensor]:
    """Per-task output-distillation losses between two outputs of the same head layout
    (``det``: list of (B, na, H, W, 5+nc); ``drivable``/``lane``: (B, 1, H, W) logits)."""
    losses: dict[str, torch.Tensor] = {}
    if "det" in tasks:
        parts = []
        for s, t in zip(student.det, teacher.det):
            if s.shape != t.shape:
                raise ValueError(
                    f"detection outputs differ in shape: student {tuple(s.shape)} vs teacher {tuple(t.shape)}"
                )
            cls = _soft_bce(s[..., 4:], t[..., 4:])
            obj = t[..., 4].float().sigmoid() > 0.5
            box = (
                F.mse_loss(s[..., :4][obj].float().sigmoid(), t[..., :4][obj].float().sigmoid())
                if obj.any()
                else s.sum() * 0.0
            )
            parts.append(cls + box)
        losses["det"] = torch.stack(parts).mean()
    for k in ("drivable", "lane"):
        if k in tasks:
            losses[k] = _soft_bce(getattr(student, k), getattr(teacher, k))
    return losses
