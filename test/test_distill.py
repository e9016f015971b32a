"""Head-agnostic feature distillation."""

import copy

import pytest
import torch

from compress.distill import FeatureDistiller, TapMismatchError
from compress.models import ModelConfig, build_model
from compress.prune import PruneConfig, TaskSpec, prune, spec_for

X = torch.rand(2, 3, 64, 96)


def _pair():
    torch.manual_seed(0)
    teacher = build_model(ModelConfig(size="small")).eval()
    student = copy.deepcopy(teacher)
    prune(student, spec_for(student), PruneConfig(criterion="magnitude", budget="ratio", target=0.3, round_to=4, img_size=(96, 64)))
    return teacher, student


def test_adapters_where_widths_differ_and_loss_falls():
    teacher, student = _pair()
    d = FeatureDistiller(teacher, student, spec_for(teacher), spec_for(student), X[:1])
    assert set(d.names) == set(spec_for(teacher).taps)
    assert any(isinstance(a, torch.nn.Conv2d) for a in d.adapters.values())
    assert not any(p is q for p in d.parameters() for q in teacher.parameters())  # teacher stays frozen
    opt = torch.optim.Adam(list(student.parameters()) + list(d.parameters()), lr=3e-3)
    t_before = [p.clone() for p in teacher.parameters()]
    student.train()
    first = None
    for _ in range(100):
        _, losses = d(X)
        first = losses["feat"].item() if first is None else first
        opt.zero_grad()
        losses["feat"].backward()
        opt.step()
    last = d(X)[1]["feat"].item()
    assert last < 0.6 * first, (first, last)  # the student learns to reproduce the teacher features
    assert all(torch.equal(a, b) for a, b in zip(t_before, teacher.parameters()))


def test_unpruned_student_needs_no_adapter():
    teacher = build_model(ModelConfig(size="tiny")).eval()
    d = FeatureDistiller(teacher, copy.deepcopy(teacher), spec_for(teacher), spec_for(teacher), X[:1])
    assert all(isinstance(a, torch.nn.Identity) for a in d.adapters.values())
    _, losses = d(X)
    assert losses["feat"].item() == pytest.approx(0.0, abs=1e-6)  # identical weights, identical features


def test_taps_that_do_not_line_up():
    teacher, student = _pair()
    bad = TaskSpec(head_outputs=spec_for(student).head_outputs, taps={"backbone.p3": "backbone.stage4"})  # stride 16 vs 8
    with pytest.raises(TapMismatchError, match="backbone.p3"):
        FeatureDistiller(teacher, student, spec_for(teacher), bad, X[:1], taps=["backbone.p3"])
    with pytest.raises(TapMismatchError, match="not in the spec"):
        FeatureDistiller(teacher, student, spec_for(teacher), spec_for(student), X[:1], taps=["neck.p9"])
