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


def randomize_bn(m: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """BatchNorm far from the identity (folding and parity are exercised); the model in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                n = mod.num_features
                mod.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                mod.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.25)
                mod.weight.copy_(torch.rand(n, generator=g) + 0.5)
                mod.bias.copy_(torch.randn(n, generator=g) * 0.2)
    return m.eval()
