"""Per-layer allocation of the pruning budget: fixed layer ratios and the task-aware sensitivity probe."""

import pytest

pytest.importorskip(
    "torch",
    reason="needs torch (the offline half, compress/): `make test` installs it; "
    "a ROS 2 machine under colcon test may not have it",
)

import torch
from helpers import X, fake_batch, task_loss_fn
from torch import nn

from compress.models import ModelConfig, build_model
from compress.models.yolop import extract_widths
from compress.prune import AllocationError, BudgetError, PruneConfig, TaskSpec, prune, spec_for
from compress.prune.allocate import prunable_blocks, sensitivity_weights
from compress.prune.pruner import _pruner


class TwoBranches(nn.Module):
    """Two 8-channel blocks, each feeding one task head: head ``a`` reads its block with weight 1,
    head ``b`` with weight 1e-3, so removing channels of block ``b`` barely changes task b."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU())
        self.head_a = nn.Conv2d(8, 1, 1, bias=False)
        self.head_b = nn.Conv2d(8, 1, 1, bias=False)
        with torch.no_grad():
            for blk in (self.a, self.b):
                blk[0].weight.uniform_(0.5, 1.5)
                blk[0].bias.zero_()
            self.head_a.weight.fill_(1.0)
            self.head_b.weight.fill_(1e-3)

    def forward(self, x):
        return self.head_a(self.a(x)), self.head_b(self.b(x))


SPEC = TaskSpec(head_outputs={"a": ("head_a",), "b": ("head_b",)})


def _losses(ref_a, ref_b):
    def fn(m, x):
        oa, ob = m(x)
        return {"a": ((oa - ref_a) ** 2).mean() + 0.01, "b": ((ob - ref_b) ** 2).mean() + 0.01}

    return fn


def test_blocks_are_found_from_the_module_tree():
    m = TwoBranches()
    assert prunable_blocks(m, SPEC.protected_modules(m), depth=1) == ["a", "b"]  # the protected heads are not blocks
    y = build_model(ModelConfig(size="tiny"))
    blocks = prunable_blocks(y, spec_for(y).protected_modules(y), depth=2)
    assert "backbone.stage5" in blocks and "lane.c1" in blocks and "detect.m" not in blocks
    with pytest.raises(AllocationError, match="depth"):
        prunable_blocks(m, [], depth=0)


def test_the_block_a_task_needs_gets_the_smaller_share():
    m = TwoBranches()
    x = torch.rand(4, 3, 6, 6)
    with torch.no_grad():
        ra, rb = m(x)
    cfg = PruneConfig(
        criterion="magnitude", budget="ratio", target=0.5, round_to=1, img_size=(6, 6), max_layer_ratio=0.7
    )
    from compress.prune import build_criterion

    crit = build_criterion("magnitude")

    def prune_block(copy, block, r):
        _pruner(copy, SPEC, cfg, crit, 0.0, only={block: r}).step()

    def n_params(mod):
        return sum(p.numel() for p in mod.parameters())

    weights, probes = sensitivity_weights(m, ["a", "b"], prune_block, n_params, [x], _losses(ra, rb), probe=0.5)
    by = {p.block: p for p in probes}
    assert by["a"].saved > 0 and by["a"].saved == pytest.approx(by["b"].saved)  # the probe removed as much of each
    assert by["a"].damage["a"] > 1.0 and by["b"].damage["b"] < 0.01  # task a needs block a; task b barely feels block b
    assert by["a"].damage["b"] == 0 and by["b"].damage["a"] == 0
    assert weights["b"] > 1.0 > weights["a"]  # prune b harder than a
    # the allocation at one base ratio: block b loses more channels than block a
    m2 = TwoBranches()
    _pruner(m2, SPEC, cfg, crit, 0.4, weights).step()
    assert m2.b[0].out_channels < m2.a[0].out_channels
    with pytest.raises(AllocationError, match="probe"):
        sensitivity_weights(m, ["a"], prune_block, n_params, [x], _losses(ra, rb), probe=1.0)


def test_sensitivity_allocation_meets_the_budget_on_the_multitask_net():
    torch.manual_seed(0)
    m = build_model(ModelConfig(size="small"))
    uniform = build_model(ModelConfig(size="small"))
    uniform.load_state_dict(m.state_dict())
    kw = dict(criterion="task-aware", budget="params", target=0.4, round_to=4, img_size=(128, 96), batches=1)
    rep = prune(
        m,
        spec_for(m),
        PruneConfig(**kw, allocation="sensitivity", sensitivity_batches=1),
        batches=lambda: [fake_batch()],
        loss_fn=task_loss_fn(m),
    )
    assert 0.4 <= rep.params_reduction <= 0.46
    blocks = {a["block"] for a in rep.allocation}
    assert {"backbone.stage5", "neck.out3", "drivable.c1", "lane.c1"} <= blocks
    assert all(a["saved"] >= 0 and all(v >= 0 for v in a["damage"].values()) for a in rep.allocation)
    assert len({a["weight"] for a in rep.allocation}) > 2  # blocks get different shares
    prune(uniform, spec_for(uniform), PruneConfig(**kw), batches=lambda: [fake_batch()], loss_fn=task_loss_fn(uniform))
    assert extract_widths(m) != extract_widths(uniform)
    out = m(X)
    assert out.lane.shape[1:] == (1, 96, 128) and all(torch.isfinite(o).all() for o in out.det)
    assert "allocation" in rep.to_dict()


def test_fixed_layer_ratios():
    m = build_model(ModelConfig(size="small"))
    before = m.lane.c1.conv.out_channels
    prune(
        m,
        spec_for(m),
        PruneConfig(
            criterion="magnitude",
            budget="ratio",
            target=0.1,
            round_to=1,
            img_size=(128, 96),
            layer_ratios={"lane.c1": 0.5},
        ),
    )
    assert m.lane.c1.conv.out_channels == before // 2
    assert m.drivable.c1.conv.out_channels == int(before * 0.9)  # the rest at the base ratio


def test_allocation_errors():
    m = build_model(ModelConfig(size="tiny"))
    with pytest.raises(AllocationError, match="'lane.c9'.*not a module"):
        prune(
            m,
            spec_for(m),
            PruneConfig(
                criterion="magnitude", budget="ratio", target=0.2, img_size=(128, 96), layer_ratios={"lane.c9": 0.5}
            ),
        )
    with pytest.raises(AllocationError, match=r"\[0, 1\)"):
        prune(
            m,
            spec_for(m),
            PruneConfig(
                criterion="magnitude", budget="ratio", target=0.2, img_size=(128, 96), layer_ratios={"lane.c1": 1.5}
            ),
        )
    with pytest.raises(BudgetError, match="allocation 'even' unknown"):
        PruneConfig(allocation="even")
    with pytest.raises(BudgetError, match="global pruning"):
        PruneConfig(allocation="sensitivity", global_pruning=True)
    with pytest.raises(ValueError, match="needs data"):
        prune(m, spec_for(m), PruneConfig(criterion="magnitude", allocation="sensitivity", img_size=(128, 96)))


def test_layer_ratios_round_to_the_nearest_multiple():
    """torch-pruning rounds kept widths down: any ratio > 0 would halve a 16-channel layer at
    round_to 8. Per-layer ratios keep the nearest multiple instead."""
    m = build_model(ModelConfig(size="small"))
    w = extract_widths(m)
    c1 = w["lane.c1.conv"]
    assert c1 % 8 == 0 and c1 >= 32
    prune(
        m,
        spec_for(m),
        PruneConfig(
            criterion="magnitude",
            budget="ratio",
            target=0.05,
            round_to=8,
            img_size=(128, 96),
            layer_ratios={"lane.c1": 0.05, "drivable.c1": 0.2, "neck": 0.05},
        ),
    )
    after = extract_widths(m)
    assert after["lane.c1.conv"] == c1  # 5 % of 32+ channels is nearer to none than to 8
    assert after["drivable.c1.conv"] == round(c1 * 0.8 / 8) * 8
    neck = {k: v for k, v in w.items() if k.startswith("neck.")}
    assert all(after[k] == round(v * 0.95 / 8) * 8 for k, v in neck.items()) and any(
        after[k] == v for k, v in neck.items()
    )
    assert (
        after["backbone.down2.conv"] == w["backbone.down2.conv"] - 8
    )  # outside the dict: torch-pruning's own rounding (down)
