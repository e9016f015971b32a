"""Shared test data: a fixed two-image batch of labels at 128x96 and per-task loss functions."""

import torch

from compress.losses import MultiTaskLoss

X = torch.rand(2, 3, 96, 128)


def fake_batch():
    g = torch.Generator().manual_seed(0)
    return {
        "boxes": torch.tensor([[0, 0, 10, 10, 50, 50.0], [1, 0, 30, 20, 80, 70.0]]),
        "drivable": (torch.rand(2, 96, 128, generator=g) > 0.5).to(torch.uint8),
        "lane": (torch.rand(2, 96, 128, generator=g) > 0.9).to(torch.uint8),
    }


def task_loss_fn(model, x=X):
    """``fn(model, batch) -> {det, drivable, lane}`` losses of ``model`` on input ``x``."""
    crit = MultiTaskLoss.for_model(model)

    def fn(m, b):
        out = crit(m(x), b)
        return {k: out[k] for k in ("det", "drivable", "lane")}

    return fn
