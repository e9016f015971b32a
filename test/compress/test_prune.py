"""Pruning criteria and the pruner on torch-pruning's dependency graph."""

import pytest

pytest.importorskip(
    "torch",
    reason="needs torch (the offline half, compress/): `make test` installs it; "
    "a ROS 2 machine under colcon test may not have it",
)

import torch
import torch_pruning as tp
from helpers import X, fake_batch, task_loss_fn
from torch import nn

from compress.checkpoint import load_model, save_checkpoint
from compress.models import ModelConfig, build_model
from compress.prune import CRITERIA, BudgetError, PruneConfig, SpecError, TaskSpec, build_criterion, prune, spec_for


@pytest.mark.parametrize("name", sorted(CRITERIA))
def test_every_criterion_scores_every_channel(name):
    torch.manual_seed(0)
    m = build_model(ModelConfig(size="tiny"))
    c = build_criterion(name)
    if c.needs_data:
        c.prepare(m, [fake_batch()], task_loss_fn(m))
    dg = tp.DependencyGraph().build_dependency(m, X[:1], output_transform=spec_for(m).flatten)
    groups = list(dg.get_all_groups(ignored_layers=spec_for(m).protected_modules(m), root_module_types=[nn.Conv2d]))
    assert len(groups) > 20
    for g in groups:
        s = c(g)
        assert s is not None and s.shape == (len(g[0].root_idxs),)
        assert torch.isfinite(s).all()
    if name != "random":
        assert s.abs().sum() > 0


@pytest.mark.parametrize("name", ["task-aware", "magnitude"])
def test_pruned_model_keeps_outputs_and_reloads(name, tmp_path):
    torch.manual_seed(0)
    m = build_model(ModelConfig(size="small"))
    ref = m(X)
    cfg = PruneConfig(criterion=name, budget="params", target=0.5, round_to=4, img_size=(128, 96), batches=1)
    rep = prune(m, spec_for(m), cfg, batches=lambda: [fake_batch()], loss_fn=task_loss_fn(m))
    assert rep.params_reduction >= 0.5 and rep.macs_reduction > 0.4
    out = m(X)
    assert [o.shape for o in out.det] == [o.shape for o in ref.det]
    assert out.drivable.shape == ref.drivable.shape and out.lane.shape == ref.lane.shape
    p = save_checkpoint(tmp_path / "pruned.pt", m)
    m2, _ = load_model(p)  # weights_only=True, rebuilt from the widths in the config
    m.eval(), m2.eval()
    with torch.no_grad():
        assert torch.equal(m(X).lane, m2(X).lane)


def test_budget_that_cannot_be_met():
    m = build_model(ModelConfig(size="tiny"))  # 8-channel layers rounded to 4 and protected heads: 95 % is out of reach
    with pytest.raises(BudgetError, match="cannot be met: at most"):
        prune(
            m,
            spec_for(m),
            PruneConfig(criterion="magnitude", budget="params", target=0.95, round_to=4, img_size=(128, 96)),
        )
    with pytest.raises(BudgetError, match="fraction"):
        PruneConfig(target=1.5)


def test_spec_naming_a_missing_layer():
    m = build_model(ModelConfig(size="tiny"))
    spec = TaskSpec(head_outputs={"det": ("detect.m.0", "detect.m.7")})
    with pytest.raises(SpecError, match="detect.m.7"):
        prune(m, spec, PruneConfig(criterion="magnitude", budget="ratio", target=0.2, img_size=(128, 96)))


class TwoHeads(nn.Module):
    """A shared 4-channel layer feeding two single-conv task heads."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Conv2d(1, 4, 1, bias=False)
        self.head_a = nn.Conv2d(4, 1, 1, bias=False)
        self.head_b = nn.Conv2d(4, 1, 1, bias=False)
        with torch.no_grad():
            self.shared.weight.copy_(torch.arange(1.0, 5.0).view(4, 1, 1, 1))  # channel c has weight c+1
            self.head_a.weight.fill_(1.0)
            self.head_b.weight.fill_(1.0)

    def forward(self, x):
        f = self.shared(x)
        return self.head_a(f), self.head_b(f)


def _two_task_loss(a, b):
    a, b = torch.tensor(a), torch.tensor(b)

    def fn(m, x):
        f = m.shared(x).mean((0, 2, 3))  # per-channel mean of the shared feature
        return {"a": (a * f).sum(), "b": (b * f).sum()}

    return fn


def _kept_channels(model):
    return sorted(int(round(v)) - 1 for v in model.shared.weight.flatten().tolist())


def _prune_half(criterion, loss_fn):
    m = TwoHeads()
    x = torch.ones(1, 1, 4, 4)
    criterion.prepare(m, [x], loss_fn)
    spec = TaskSpec(head_outputs={"a": ("head_a",), "b": ("head_b",)})
    tp.pruner.MetaPruner(
        m,
        x,
        importance=criterion,
        pruning_ratio=0.5,
        ignored_layers=spec.protected_modules(m),
        output_transform=spec.flatten,
    ).step()
    return _kept_channels(m)


def test_task_aware_differs_from_taylor_when_tasks_conflict():
    # channel weights are 1..4, so per-task |w g| = (2, 2, 0.75, 0.8) for both tasks:
    # channel 0 both tasks agree, 1 strong conflict, 2 weak agreement, 3 weak conflict
    loss = _two_task_loss([2.0, 1.0, 0.25, 0.2], [2.0, -1.0, 0.25, -0.2])
    # summed-loss Taylor sees the conflicting channels' gradients cancel -> prunes 1 and 3
    assert _prune_half(build_criterion("taylor"), loss) == [0, 2]
    # per-task Taylor keeps channel 1, which both tasks use strongly, despite the conflict
    ta = build_criterion("task-aware", conflict_weight=0.5, safe_fraction=0.0)
    assert _prune_half(ta, loss) == [0, 1]
    # the conflict penalty lowers conflicting channels: with it, 2 beats 3 although |w g| is similar
    m = TwoHeads()
    ta.prepare(m, [torch.ones(1, 1, 4, 4)], loss)
    dg = tp.DependencyGraph().build_dependency(m, torch.ones(1, 1, 4, 4))
    group = dg.get_pruning_group(m.shared, tp.prune_conv_out_channels, idxs=[0, 1, 2, 3])
    kappa = ta.conflict(group)
    assert kappa.tolist() == pytest.approx([0.0, 1.0, 0.0, 1.0])
    s = ta(group)
    assert s[2] > s[3]
    no_penalty = build_criterion("task-aware", conflict_weight=0.0, safe_fraction=0.0)
    no_penalty.prepare(m, [torch.ones(1, 1, 4, 4)], loss)
    s0 = no_penalty(group)
    assert s0[3] > s0[2]


def test_safe_rule_keeps_a_channel_only_one_task_needs():
    # task a uses channels 0-2 strongly; task b only needs channel 3, a little
    loss = _two_task_loss([3.0, 3.0, 3.0, 0.0], [0.0, 0.0, 0.0, 0.05])
    without = build_criterion("task-aware", conflict_weight=0.0, safe_fraction=0.0, normalize="none")
    assert 3 not in _prune_half(without, loss)
    with_rule = build_criterion("task-aware", conflict_weight=0.0, safe_fraction=0.25, normalize="none")
    assert 3 in _prune_half(with_rule, loss)


def test_prune_command_on_a_trained_checkpoint(synth_root, tmp_path):
    """`mtc-compress prune` end to end: checkpoint in, pruned checkpoint + JSON report out."""
    import json

    from compress.cli import main
    from compress.models import count_params

    m = build_model(
        ModelConfig(size="small", anchors=((4, 5, 8, 10, 12, 9), (20, 18, 30, 25, 40, 30), (60, 50, 90, 70, 120, 100)))
    )
    src = save_checkpoint(tmp_path / "teacher.pt", m, train_config={"data": str(synth_root), "img_size": [128, 96]})
    out = tmp_path / "student.pt"
    rc = main(
        [
            "-q",
            "prune",
            "--ckpt",
            str(src),
            "--out",
            str(out),
            "--criterion",
            "task-aware",
            "--budget",
            "ratio",
            "--target",
            "0.25",
            "--round-to",
            "4",
            "--batches",
            "2",
            "--batch-size",
            "2",
        ]
    )
    assert rc == 0
    rep = json.loads(out.with_suffix(".json").read_text())
    assert rep["criterion"] == "task-aware" and rep["params_after"] < rep["params_before"]
    pruned, ck = load_model(out)
    assert count_params(pruned) == rep["params_after"] and ck["parent"] == str(src)
    # a budget that cannot be met exits with code 2 and writes nothing
    rc = main(
        [
            "-q",
            "prune",
            "--ckpt",
            str(src),
            "--out",
            str(tmp_path / "x.pt"),
            "--criterion",
            "magnitude",
            "--budget",
            "params",
            "--target",
            "0.95",
        ]
    )
    assert rc == 2 and not (tmp_path / "x.pt").exists()
    # a params budget with a measured-latency side (ONNX Runtime at 256x192)
    rc = main(
        [
            "-q",
            "prune",
            "--ckpt",
            str(src),
            "--out",
            str(tmp_path / "l.pt"),
            "--criterion",
            "magnitude",
            "--budget",
            "params",
            "--target",
            "0.2",
            "--latency-target",
            "0.1",
            "--latency-size",
            "320x192",
            "--latency-runs",
            "5",
            "--round-to",
            "4",
            "--recalibrate-batches",
            "0",
        ]
    )
    rep = json.loads((tmp_path / "l.json").read_text())
    assert rc == 0 and rep["params_reduction"] >= 0.2 and rep["latency_reduction"] >= 0.1 - 0.01
    assert rep["latency_before_ms"] > rep["latency_after_ms"] > 0


@pytest.mark.parametrize("name", ["task-aware", "taylor", "random"])
def test_global_pruning_meets_a_params_budget_with_its_own_allocation(name):
    """Global pruning: the budget search prunes copies with the prepared criterion itself."""
    from compress.models.yolop import extract_widths

    torch.manual_seed(0)
    m = build_model(ModelConfig(size="small"))
    local = build_model(ModelConfig(size="small"))
    local.load_state_dict(m.state_dict())
    cfg = PruneConfig(
        criterion=name, budget="params", target=0.3, round_to=4, img_size=(128, 96), batches=1, global_pruning=True
    )
    rep = prune(m, spec_for(m), cfg, batches=lambda: [fake_batch()], loss_fn=task_loss_fn(m))
    assert 0.3 <= rep.params_reduction <= 0.36
    prune(
        local,
        spec_for(local),
        PruneConfig(criterion=name, budget="params", target=0.3, round_to=4, img_size=(128, 96), batches=1),
        batches=lambda: [fake_batch()],
        loss_fn=task_loss_fn(local),
    )
    assert extract_widths(m) != extract_widths(local)  # global ranking allocates the budget unevenly across layers
    out = m(X)
    assert out.lane.shape[1:] == (1, 96, 128) and all(torch.isfinite(o).all() for o in out.det)
