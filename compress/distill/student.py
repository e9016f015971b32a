"""Distillation inside a training run: the student wrapped with its teachers, and the terms a
training step adds to the task losses (feature, output-level, knowledge-trajectory; several
teachers weighted by the student's gap to each). Used by :func:`compress.train.train` when
``TrainConfig.teacher`` is set."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from compress.checkpoint import load_model
from compress.losses import MultiTaskLoss

if TYPE_CHECKING:
    from compress.train_config import TrainConfig

log = logging.getLogger("compress.train")


def build_distiller(
    cfg: TrainConfig, model: nn.Module, device: torch.device, state: dict[str, Any] | None
) -> nn.Module:
    from compress.distill import FeatureDistiller, Teacher
    from compress.prune import spec_for

    def _load(path: str) -> nn.Module:
        t, _ = load_model(path)
        t.to(device)
        if cfg.channels_last:
            t.to(memory_format=torch.channels_last)
        return t

    teacher = _load(cfg.teacher)
    extras = []
    for i, et in enumerate(cfg.extra_teachers):
        tm = _load(et.ckpt)
        name = et.name or Path(et.ckpt).parent.name or f"teacher{i + 1}"
        extras.append(Teacher(name if name != "main" else f"teacher{i + 1}", tm, spec_for(tm), tuple(et.tasks)))
    example = torch.zeros(1, 3, cfg.img_size[1], cfg.img_size[0], device=device)
    net = FeatureDistiller(
        teacher, model, spec_for(teacher), spec_for(model), example, cfg.distill_taps, extra_teachers=extras
    ).to(device)
    if state is not None and "adapters" in state:
        net.adapters.load_state_dict(state["adapters"])
    log.info(
        "distilling from %s on taps %s (weight %.2f)%s%s%s",
        cfg.teacher,
        net.names,
        cfg.distill_weight,
        "".join(
            f"; specialist {t.name} ({'/'.join(t.tasks)}) from {et.ckpt}" for t, et in zip(extras, cfg.extra_teachers)
        ),
        f"; output distillation x{cfg.output_weight:g}" if cfg.output_weight else "",
        f"; knowledge trajectory x{cfg.trajectory_weight:g}" if cfg.trajectory_weight else "",
    )
    return net


TASKS = ("det", "drivable", "lane")


def distill_terms(
    cfg: TrainConfig,
    net: nn.Module,
    criterion: MultiTaskLoss,
    batch: dict,
    outputs: Any,
    losses: dict[str, torch.Tensor],
    feat: dict[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Distillation losses added to the task losses: weighted feature terms (adaptive over several
    teachers), optional output distillation and knowledge-trajectory drift; returns the updated
    ``total`` plus the terms for logging."""
    from compress.distill.adaptive import output_distill_loss, task_gaps, teacher_weights

    terms: dict[str, torch.Tensor] = {}
    teachers = net.teachers
    if len(teachers) > 1:
        with torch.no_grad():
            t_losses = {t.name: criterion(net.teacher_outputs[t.name], batch) for t in teachers}
        tasks = {t.name: t.tasks or TASKS for t in teachers}
        weights = teacher_weights(
            task_gaps({k: losses[k].detach() for k in TASKS}, t_losses, tasks), cfg.adaptive_temperature
        )
        feat_total = sum(weights[t.name] * feat[f"feat/{t.name}"] for t in teachers) / len(teachers)
        for t in teachers:
            terms[f"w/{t.name}"] = torch.tensor(weights[t.name])
            terms[f"feat/{t.name}"] = feat[f"feat/{t.name}"]
    else:
        feat_total = feat["feat"]
    terms["feat"] = feat_total
    total = losses["total"] + cfg.distill_weight * feat_total
    if cfg.output_weight:
        out_l = output_distill_loss(outputs, net.teacher_outputs[teachers[0].name])
        terms["out"] = torch.stack(list(out_l.values())).sum()
        total = total + cfg.output_weight * terms["out"]
    if cfg.trajectory_weight and "trajectory" in feat:
        terms["trajectory"] = feat["trajectory"]
        total = total + cfg.trajectory_weight * feat["trajectory"]
    terms["total"] = total
    return terms
