"""The optimisation helpers of a training run: seeding, the EMA of the weights, the learning-rate
schedule, AdamW's parameter groups, and a checksum of the trained parameters."""

from __future__ import annotations

import copy
import hashlib
import math
import random
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from .train_config import TrainConfig


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class ModelEMA:
    """Exponential moving average of weights with YOLOv5's warm-up ramp of the decay."""

    def __init__(self, model: nn.Module, decay: float, tau: float = 500.0, updates: int = 0) -> None:
        self.ema = copy.deepcopy(model).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.decay_max, self.tau, self.updates = decay, tau, updates

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay_max * (1 - math.exp(-self.updates / self.tau))
        msd = model.state_dict()
        for k, v in self.ema.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(msd[k].detach(), alpha=1 - d)
            else:
                v.copy_(msd[k])


def param_checksum(model: nn.Module) -> str:
    """Hash of the trainable parameters (BatchNorm running stats are per-process under DDP)."""
    h = hashlib.sha1()
    for v in model.parameters():
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def lr_at(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Linear warm-up then cosine decay from ``lr`` to ``lr * lr_final``."""
    total = max(cfg.epochs * steps_per_epoch, 1)
    warm = int(cfg.warmup_epochs * steps_per_epoch)
    if step < warm:
        return cfg.lr * (0.1 + 0.9 * step / max(warm, 1))
    t = (step - warm) / max(total - warm, 1)
    return cfg.lr * (cfg.lr_final + (1 - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
