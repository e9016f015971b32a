"""Head-agnostic feature distillation."""

import pytest

pytest.importorskip(
    "torch",
    reason="needs torch (the offline half, compress/): `make test` installs it; "
    "a ROS 2 machine under colcon test may not have it",
)

import copy

import torch

from compress.distill import FeatureDistiller, TapMismatchError
from compress.models import ModelConfig, build_model
from compress.prune import PruneConfig, TaskSpec, prune, spec_for

X = torch.rand(2, 3, 64, 96)


def _pair():
    torch.manual_seed(0)
    teacher = build_model(ModelConfig(size="small")).eval()
    student = copy.deepcopy(teacher)
    prune(
        student,
        spec_for(student),
        PruneConfig(criterion="magnitude", budget="ratio", target=0.3, round_to=4, img_size=(96, 64)),
    )
    return teacher, student


def test_adapters_where_widths_differ_and_loss_falls():
    teacher, student = _pair()
    d = FeatureDistiller(teacher, student, spec_for(teacher), spec_for(student), X[:1])
    assert set(d.names) == set(spec_for(teacher).taps)
    assert any(isinstance(a, torch.nn.Conv2d) for a in d.adapters.values())
    assert not any(p is q for p in d.parameters() for q in teacher.parameters())  # teacher stays frozen
    assert {id(p) for p in student.parameters()} <= {id(p) for p in d.parameters()}
    opt = torch.optim.Adam(d.parameters(), lr=3e-3)
    t_before = [p.clone() for p in teacher.parameters()]
    d.train()
    assert not teacher.training
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
    bad = TaskSpec(
        head_outputs=spec_for(student).head_outputs, taps={"backbone.p3": "backbone.stage4"}
    )  # stride 16 vs 8
    with pytest.raises(TapMismatchError, match="backbone.p3"):
        FeatureDistiller(teacher, student, spec_for(teacher), bad, X[:1], taps=["backbone.p3"])
    with pytest.raises(TapMismatchError, match="not in the spec"):
        FeatureDistiller(teacher, student, spec_for(teacher), spec_for(student), X[:1], taps=["neck.p9"])


def _teacher_and_pruned(root, tmp_path):
    from compress.checkpoint import save_checkpoint
    from compress.train import TrainConfig, train

    s = train(
        TrainConfig(
            data=str(root),
            out=str(tmp_path / "t"),
            model_size="small",
            img_size=(128, 96),
            epochs=1,
            batch_size=4,
            workers=0,
            seed=0,
        ),
        progress=False,
    )
    from compress.checkpoint import load_model

    student, ck = load_model(s["best"])
    prune(
        student,
        spec_for(student),
        PruneConfig(criterion="magnitude", budget="ratio", target=0.3, round_to=4, img_size=(128, 96)),
    )
    return s["best"], save_checkpoint(tmp_path / "pruned.pt", student)


def test_distill_training_recovers_a_pruned_student(synth_root, tmp_path):
    import json

    from compress.checkpoint import load_model
    from compress.train import TrainConfig, train

    teacher_ckpt, pruned = _teacher_and_pruned(synth_root, tmp_path)
    cfg = TrainConfig(
        data=str(synth_root),
        out=str(tmp_path / "s"),
        img_size=(128, 96),
        epochs=2,
        batch_size=4,
        workers=0,
        init=str(pruned),
        teacher=str(teacher_ckpt),
        distill_weight=1.0,
        seed=0,
    )
    s = train(cfg, progress=False)
    recs = [json.loads(x) for x in (tmp_path / "s" / "metrics.jsonl").read_text().splitlines() if '"epoch"' in x]
    assert recs[0]["loss"]["feat"] > recs[-1]["loss"]["feat"] > 0  # the feature loss falls
    student, ck = load_model(s["best"])
    pruned_model, _ = load_model(pruned)
    assert student.cfg.widths == pruned_model.cfg.widths  # the architecture is the pruned one
    last = load_model(s["last"])[1]
    assert set(last["train_state"]["adapters"])  # adapters saved for --resume


def test_ddp_two_process_distillation_step(synth_root, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    teacher_ckpt, pruned = _teacher_and_pruned(synth_root, tmp_path)
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "compress.cli",
        "-q",
        "distill",
        "--student",
        str(pruned),
        "--teacher",
        str(teacher_ckpt),
        "--data",
        str(synth_root),
        "--out",
        str(out),
        "--img-size",
        "128x96",
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--workers",
        "0",
        "--max-train-batches",
        "2",
        "--eval-max-batches",
        "1",
        "--device",
        "cpu",
        "--output-weight",
        "0.5",
        "--trajectory-weight",
        "0.1",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=root)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    import json

    summary = [json.loads(x)["summary"] for x in (out / "metrics.jsonl").read_text().splitlines() if "summary" in x][0]
    ranks = sorted(summary["ranks"], key=lambda d: d["rank"])
    assert summary["world_size"] == 2 and ranks[0]["checksum"] == ranks[1]["checksum"]
    rec = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"epoch"' in x][0]
    assert rec["loss"]["feat"] > 0 and rec["loss"]["out"] > 0 and rec["loss"]["trajectory"] >= 0


def test_adaptive_weights_follow_the_students_gap():
    from compress.distill import task_gaps, teacher_weights

    student = {"det": 1.0, "drivable": 0.2, "lane": 0.9}
    teachers = {"main": {"det": 0.8, "drivable": 0.2, "lane": 0.5}, "lane": {"det": 5.0, "drivable": 5.0, "lane": 0.3}}
    gaps = task_gaps(student, teachers, {"main": ("det", "drivable", "lane"), "lane": ("lane",)})
    assert gaps["lane"] == pytest.approx(2.0, rel=1e-4) and gaps["main"] == pytest.approx(
        (0.25 + 0 + 0.8) / 3, rel=1e-4
    )
    w = teacher_weights(gaps, 1.0)
    assert w["lane"] > 1.0 > w["main"] and sum(w.values()) == pytest.approx(2.0)
    flat = teacher_weights(gaps, 1e6)  # a large temperature tends to equal weights
    assert flat["lane"] == pytest.approx(1.0, abs=1e-5)
    # where the student is already better than a teacher, that teacher's gap is 0
    assert task_gaps({"lane": 0.1}, {"lane": {"lane": 0.3}}, {"lane": ("lane",)})["lane"] == 0.0
    with pytest.raises(ValueError, match="temperature"):
        teacher_weights(gaps, 0.0)


def test_output_distillation_pulls_the_student_to_the_teacher():
    from compress.distill import output_distill_loss

    torch.manual_seed(0)
    teacher, student = _pair()
    with torch.no_grad():
        t_out = teacher(X)
    # identical outputs: zero gradient (the minimum of the soft-target cross-entropy)
    same = [o.clone().requires_grad_(True) for o in t_out.det]
    seg = t_out.lane.clone().requires_grad_(True)
    from compress.models.yolop import Outputs

    loss = output_distill_loss(Outputs(det=same, drivable=t_out.drivable.clone(), lane=seg), t_out)
    sum(loss.values()).backward()
    assert all(g.grad.abs().max() < 1e-6 for g in same) and seg.grad.abs().max() < 1e-6
    # a pruned student trained on the output loss alone gets closer to the teacher
    opt = torch.optim.Adam(student.parameters(), lr=2e-3)
    student.train()
    first = None
    for _ in range(30):
        loss = sum(output_distill_loss(student(X), t_out).values())
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert sum(output_distill_loss(student(X), t_out).values()).item() < first


def test_trajectory_term_measures_drift_from_the_memory():
    teacher, student = _pair()
    d = FeatureDistiller(teacher, student, spec_for(teacher), spec_for(student), X[:1])
    memory = copy.deepcopy(student).eval()
    d.set_trajectory(memory)
    student.eval()
    assert d(X)[1]["trajectory"].item() == pytest.approx(0.0, abs=1e-6)  # no drift yet
    with torch.no_grad():
        for p in student.backbone.parameters():
            p.add_(0.05 * torch.randn_like(p))
    assert d(X)[1]["trajectory"].item() > 1e-3
    d.set_trajectory(None)
    assert "trajectory" not in d(X)[1]


def test_multi_teacher_distillation_training(synth_root, tmp_path):
    """The full teacher plus a lane specialist: per-teacher adapters, weights logged every epoch."""
    import json

    from compress.checkpoint import load_model
    from compress.train import ExtraTeacher, TrainConfig, train

    teacher_ckpt, pruned = _teacher_and_pruned(synth_root, tmp_path)
    spec_run = train(
        TrainConfig(
            data=str(synth_root),
            out=str(tmp_path / "lane"),
            model_size="tiny",
            img_size=(128, 96),
            epochs=1,
            batch_size=4,
            workers=0,
            seed=1,
            max_train_batches=2,
        ),
        progress=False,
    )
    cfg = TrainConfig(
        data=str(synth_root),
        out=str(tmp_path / "mt"),
        img_size=(128, 96),
        epochs=1,
        batch_size=4,
        workers=0,
        init=str(pruned),
        teacher=str(teacher_ckpt),
        seed=0,
        max_train_batches=2,
        extra_teachers=(ExtraTeacher(ckpt=spec_run["best"], tasks=("lane",), name="lane"),),
    )
    s = train(cfg, progress=False)
    rec = [json.loads(x) for x in (tmp_path / "mt" / "metrics.jsonl").read_text().splitlines() if '"epoch"' in x][0]
    assert rec["loss"]["w/main"] + rec["loss"]["w/lane"] == pytest.approx(2.0, abs=1e-4)
    assert rec["loss"]["feat/lane"] > 0 and rec["loss"]["feat/main"] > 0
    adapters = load_model(s["last"])[1]["train_state"]["adapters"]
    assert any(k.startswith("lane__") for k in adapters)  # the specialist has its own adapters
    with pytest.raises(ValueError, match="need a teacher"):
        TrainConfig(output_weight=1.0)
    with pytest.raises(TapMismatchError, match="tasks"):
        from compress.distill import Teacher

        teacher, student = _pair()
        FeatureDistiller(
            teacher,
            student,
            spec_for(teacher),
            spec_for(student),
            X[:1],
            extra_teachers=[Teacher("x", copy.deepcopy(teacher), spec_for(teacher), ("depth",))],
        )
