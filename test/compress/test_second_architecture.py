"""Model-agnostic: the pruner and the distiller on a second architecture.

``ResFPNNet`` shares nothing with :class:`compress.models.MultiTaskNet` but the output contract:
a ResNet-style backbone of residual blocks (additions couple channels across blocks, where the
YOLOP network concatenates), an FPN neck that merges by addition, its own detection head and
segmentation decoders, different module names. It tells the tools about itself through a
``task_spec()`` method — the only thing the pruner and distiller need.
"""

import pytest

pytest.importorskip(
    "torch",
    reason="needs torch (the offline half, compress/): `make test` installs it; "
    "a ROS 2 machine under colcon test may not have it",
)

import copy

import torch
from helpers import X, fake_batch, task_loss_fn
from torch import nn
from torch.nn import functional as F

from compress.distill import FeatureDistiller
from compress.models import ModelConfig, build_model
from compress.models.yolop import Outputs
from compress.prune import CRITERIA, BudgetError, PruneConfig, SpecError, TaskSpec, prune, spec_for

ANCHORS = ((4, 5, 8, 10, 12, 9), (20, 18, 30, 25, 40, 30), (60, 50, 90, 70, 120, 100))


def cbr(c1, c2, s=1):
    return nn.Sequential(nn.Conv2d(c1, c2, 3, s, 1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(inplace=True))


class Residual(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.a, self.b = cbr(c, c), nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return F.relu(x + self.b(self.a(x)))


class Head(nn.Module):
    """Anchor head with the attributes the multi-task loss reads (anchors, strides, nc)."""

    def __init__(self, chans, nc=1):
        super().__init__()
        self.nc, self.na, self.no = nc, 3, nc + 5
        self.register_buffer("anchors", torch.tensor(ANCHORS, dtype=torch.float32).view(3, 3, 2), persistent=False)
        self.register_buffer("strides", torch.tensor([8.0, 16.0, 32.0]), persistent=False)
        self.pred = nn.ModuleList(nn.Conv2d(c, self.na * self.no, 1) for c in chans)

    def forward(self, feats):
        out = []
        for conv, x in zip(self.pred, feats):
            y = conv(x)
            b, _, h, w = y.shape
            out.append(y.view(b, self.na, self.no, h, w).permute(0, 1, 3, 4, 2).contiguous())
        return out


class ResFPNNet(nn.Module):
    def __init__(self, w=16):
        super().__init__()
        self.stem = nn.Sequential(cbr(3, w, 2), cbr(w, w * 2, 2))  # stride 4
        self.layer2 = nn.Sequential(cbr(w * 2, w * 4, 2), Residual(w * 4), Residual(w * 4))  # stride 8
        self.layer3 = nn.Sequential(cbr(w * 4, w * 8, 2), Residual(w * 8))  # 16
        self.layer4 = nn.Sequential(cbr(w * 8, w * 8, 2), Residual(w * 8))  # 32
        f = w * 4
        self.lat3, self.lat4, self.lat5 = nn.Conv2d(w * 4, f, 1), nn.Conv2d(w * 8, f, 1), nn.Conv2d(w * 8, f, 1)
        self.smooth3, self.smooth4, self.smooth5 = cbr(f, f), cbr(f, f), cbr(f, f)
        self.detect = Head([f, f, f])
        self.road = nn.Sequential(cbr(f, w * 2), nn.Upsample(scale_factor=2), cbr(w * 2, w), nn.Conv2d(w, 1, 1))
        self.lines = nn.Sequential(cbr(f, w * 2), nn.Upsample(scale_factor=2), cbr(w * 2, w), nn.Conv2d(w, 1, 1))

    def task_spec(self):
        return TaskSpec(
            head_outputs={
                "det": ("detect.pred.0", "detect.pred.1", "detect.pred.2"),
                "drivable": ("road.3",),
                "lane": ("lines.3",),
            },
            taps={"backbone.p3": "layer2", "backbone.p4": "layer3", "backbone.p5": "layer4", "neck.p3": "smooth3"},
        )

    def forward(self, x):
        c3 = self.layer2(self.stem(x))
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        p5 = self.lat5(c5)
        p4 = self.lat4(c4) + F.interpolate(p5, scale_factor=2.0)
        p3 = self.lat3(c3) + F.interpolate(p4, scale_factor=2.0)
        n3, n4, n5 = self.smooth3(p3), self.smooth4(p4), self.smooth5(p5)
        seg_in = F.interpolate(n3, scale_factor=2.0)
        return Outputs(
            det=self.detect([n3, n4, n5]),
            drivable=F.interpolate(self.road(seg_in), size=x.shape[2:]),
            lane=F.interpolate(self.lines(seg_in), size=x.shape[2:]),
        )


@pytest.mark.parametrize("name", sorted(CRITERIA))
def test_every_criterion_prunes_the_second_architecture(name):
    torch.manual_seed(0)
    m = ResFPNNet().eval()
    ref = m(X)
    heads = {p: m.get_submodule(p).weight.shape for ps in m.task_spec().head_outputs.values() for p in ps}
    cfg = PruneConfig(criterion=name, budget="params", target=0.4, round_to=4, img_size=(128, 96), batches=1)
    rep = prune(m, spec_for(m), cfg, batches=lambda: [fake_batch()], loss_fn=task_loss_fn(m))
    assert rep.params_reduction >= 0.4
    out = m(X)
    assert [o.shape for o in out.det] == [o.shape for o in ref.det]
    assert out.drivable.shape == ref.drivable.shape and out.lane.shape == ref.lane.shape
    assert all(torch.isfinite(o).all() for o in out.det)
    # head output convolutions keep their output widths; the residual stages shrank consistently
    assert all(m.get_submodule(p).weight.shape[0] == s[0] for p, s in heads.items())
    assert m.layer2[1].b[0].out_channels == m.layer2[0][0].out_channels < 64


def test_distillation_on_the_second_architecture_and_across_architectures():
    torch.manual_seed(0)
    teacher = ResFPNNet().eval()
    student = copy.deepcopy(teacher)
    prune(
        student,
        spec_for(student),
        PruneConfig(criterion="magnitude", budget="ratio", target=0.5, round_to=4, img_size=(128, 96)),
    )
    d = FeatureDistiller(teacher, student, spec_for(teacher), spec_for(student), X[:1])
    assert set(d.names) == {"backbone.p3", "backbone.p4", "backbone.p5", "neck.p3"}
    opt = torch.optim.Adam(d.parameters(), lr=3e-3)
    d.train()
    first = d(X)[1]["feat"].item()
    for _ in range(60):
        loss = d(X)[1]["feat"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert d(X)[1]["feat"].item() < 0.7 * first
    # the YOLOP-style teacher teaches the ResNet/FPN student through the tap names both specs share
    yolop = build_model(ModelConfig(size="small", anchors=ANCHORS)).eval()
    x = torch.rand(2, 3, 96, 128)
    cross = FeatureDistiller(yolop, student, spec_for(yolop), spec_for(student), x[:1])
    assert set(cross.names) == {"backbone.p3", "backbone.p4", "backbone.p5", "neck.p3"}
    out, losses = cross(x)
    assert isinstance(out, Outputs) and torch.isfinite(losses["feat"])


def test_second_architecture_errors():
    m = ResFPNNet()
    bad = TaskSpec(head_outputs={"det": ("detect.m.0",)})  # the YOLOP path does not exist here
    with pytest.raises(SpecError, match="detect.m.0"):
        prune(m, bad, PruneConfig(criterion="magnitude", budget="ratio", target=0.3, img_size=(128, 96)))
    with pytest.raises(BudgetError, match="cannot be met"):
        prune(m, spec_for(m), PruneConfig(criterion="magnitude", budget="params", target=0.99, img_size=(128, 96)))

    class NoSpec(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(SpecError, match="task_spec"):
        spec_for(NoSpec())
