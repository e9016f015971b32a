"""Recipes end to end on a tiny synthroad split: compress (iterative prune + distill) and the ablation."""

import pytest

pytest.importorskip(
    "torch",
    reason="needs torch (the offline half, compress/): `make test` installs it; "
    "a ROS 2 machine under colcon test may not have it",
)

import json
from pathlib import Path

import yaml

from compress.ablation import criterion_order
from compress.checkpoint import load_checkpoint, load_model
from compress.cli import main
from compress.config_io import ConfigFileError
from compress.prune.budget import schedule
from compress.recipe import CompressRecipe, PruneStage, load_recipe
from compress.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def teacher(synth_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    cfg = TrainConfig(
        data=str(synth_root),
        out=str(out),
        model_size="small",
        img_size=(128, 96),
        epochs=1,
        batch_size=4,
        workers=0,
        seed=0,
        max_train_batches=2,
    )
    return train(cfg, progress=False)["best"]


def _recipe(tmp_path, teacher, **kw):
    r = {
        "teacher": teacher,
        "out": str(tmp_path / "out"),
        "prune": {
            "criterion": "task-aware",
            "budget": "params",
            "target": 0.5,
            "round_to": 4,
            "batches": 2,
            "batch_size": 2,
            "steps": 2,
            "recovery_epochs": 1,
        },
        "distill": {
            "epochs": 1,
            "batch_size": 4,
            "workers": 0,
            "max_train_batches": 2,
            "eval_max_batches": 1,
            "output_weight": 0.5,
            "trajectory_weight": 0.1,
        },
        "eval_batch_size": 4,
        "eval_workers": 0,
        "ablation": {"criteria": ["task-aware", "magnitude"], "distill_epochs": 1, "latency_iters": 2},
    }
    r.update(kw)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(r))
    return path


def test_step_targets_reach_the_budget():
    st = PruneStage(target=0.5, steps=3)
    t = schedule(st.target, st.steps)
    assert len(t) == 3 and t[-1] == pytest.approx(0.5) and t[0] < t[1] < t[2]
    assert (1 - t[0]) ** 3 == pytest.approx(0.5)  # equal fractions kept per step


def test_compress_command_iterative(teacher, tmp_path):
    recipe = _recipe(tmp_path, teacher)
    assert main(["-q", "compress", "--recipe", str(recipe)]) == 0
    out = tmp_path / "out"
    m = json.loads((out / "metrics.json").read_text())
    assert [s["step"] for s in m["prune_steps"]] == [1, 2]
    # the budget is met on the teacher's parameter count, and the student is the distilled one
    assert m["reduction"]["params"] >= 0.5
    assert m["student"]["params"] == m["prune_steps"][-1]["params_after"]
    assert (out / "step1" / "recover" / "best.pt").is_file() and (out / "distill" / "best.pt").is_file()
    assert (
        m["prune_steps"][1]["params_before"] == m["prune_steps"][0]["params_after"]
    )  # step 2 pruned the recovered model
    assert {"eval_teacher", "prune_step1", "recover_step1", "prune_step2", "distill", "eval_student"} <= set(
        m["stage_seconds"]
    )
    for k in ("recall", "map50", "drivable_miou", "lane_iou"):
        assert m["delta"][k] == pytest.approx(m["student"][k] - m["teacher"][k])
    student, ck = load_model(out / "student.pt")  # weights_only reload into the pruned architecture
    assert ck["train_config"]["output_weight"] == 0.5 and ck["train_config"]["trajectory_weight"] == 0.1
    rec = [json.loads(x) for x in (out / "distill" / "metrics.jsonl").read_text().splitlines() if '"epoch"' in x]
    assert {"feat", "out", "trajectory"} <= set(rec[0]["loss"])


def test_compress_with_the_sensitivity_allocation(teacher, tmp_path):
    prune = {
        "criterion": "task-aware",
        "budget": "params",
        "target": 0.5,
        "round_to": 4,
        "batches": 2,
        "batch_size": 2,
        "steps": 1,
        "allocation": "sensitivity",
        "allocation_depth": 1,
        "sensitivity_batches": 1,
    }
    recipe = _recipe(tmp_path, teacher, prune=prune, distill={"epochs": 0})
    assert main(["-q", "compress", "--recipe", str(recipe)]) == 0
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["reduction"]["params"] >= 0.5
    alloc = {a["block"]: a for a in m["prune_steps"][0]["allocation"]}
    assert set(alloc) == {"backbone", "neck", "drivable", "lane"}  # detect holds only protected output convs
    assert all(a["saved"] > 0 for a in alloc.values()) and len({a["weight"] for a in alloc.values()}) > 1


def test_ablate_quick_writes_table(teacher, tmp_path):
    recipe = _recipe(tmp_path, teacher)
    assert main(["-q", "ablate", "--recipe", str(recipe), "--quick"]) == 0
    res = json.loads((tmp_path / "out" / "ablation.json").read_text())
    rows = res["rows"]
    assert [(r["model"], r["distilled"]) for r in rows] == [
        ("teacher", False),
        ("task-aware", False),
        ("task-aware", True),
        ("magnitude", False),
        ("magnitude", True),
    ]
    pruned = [r for r in rows if r["model"] != "teacher"]
    assert len({r["params"] for r in pruned}) == 1  # equal budget: every criterion gives the same widths
    assert all(r["params"] < rows[0]["params"] and r["latency_ms"] > 0 for r in pruned)
    assert sorted(res["order"]["pruned"]) == ["magnitude", "task-aware"]
    md = (tmp_path / "out" / "ablation.md").read_text()
    assert "| teacher |" in md and "| magnitude | yes |" in md and "lane IoU" in md


def test_ablate_with_several_distillation_seeds(teacher, tmp_path):
    recipe = _recipe(
        tmp_path,
        teacher,
        ablation={"criteria": ["magnitude"], "distill_epochs": 1, "latency_iters": 2, "seeds": [0, 1]},
    )
    assert main(["-q", "ablate", "--recipe", str(recipe), "--quick"]) == 0
    out = tmp_path / "out"
    res = json.loads((out / "ablation.json").read_text())
    assert res["seeds"] == [0, 1]
    d = [r for r in res["rows"] if r["distilled"]]
    assert len(d) == 1 and [r["seed"] for r in d[0]["runs"]] == [0, 1]  # one row: the mean of both runs
    for k in ("recall", "map50", "drivable_miou", "lane_iou"):
        assert d[0][k] == pytest.approx(sum(r[k] for r in d[0]["runs"]) / 2)
    assert d[0]["task_mean_min"] <= d[0]["task_mean"] <= d[0]["task_mean_max"]
    assert (out / "magnitude" / "distill_seed0" / "best.pt").is_file() and (
        out / "magnitude" / "distill_seed1" / "best.pt"
    ).is_file()
    assert "2 seeds" in (out / "ablation.md").read_text()
    with pytest.raises(ConfigFileError, match="ablation.seeds"):
        load_recipe(_recipe(tmp_path, teacher, ablation={"seeds": [1, 1]}))


def test_criterion_order_ranks_by_task_mean():
    rows = [
        {"model": "teacher", "distilled": False, "task_mean": 1.0},
        {"model": "a", "distilled": False, "task_mean": 0.5},
        {"model": "b", "distilled": False, "task_mean": 0.7},
        {"model": "a", "distilled": True, "task_mean": 0.9},
        {"model": "b", "distilled": True, "task_mean": 0.8},
    ]
    assert criterion_order(rows) == {"pruned": ["b", "a"], "distilled": ["a", "b"]}


def test_recipe_errors_name_the_problem(teacher, tmp_path):
    from compress.config_io import ConfigFileError

    with pytest.raises(ConfigFileError, match="unknown key"):
        load_recipe(_recipe(tmp_path, teacher, prune={"criterion": "taylor", "ratio": 0.3}))
    with pytest.raises(ConfigFileError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")
    # an unknown distillation field and an unmeetable budget exit with code 2
    assert main(["-q", "compress", "--recipe", str(_recipe(tmp_path, teacher, distill={"epochz": 1}))]) == 2
    bad = _recipe(tmp_path, teacher, prune={"criterion": "magnitude", "budget": "params", "target": 0.97, "steps": 1})
    assert main(["-q", "compress", "--recipe", str(bad)]) == 2
    r = load_recipe(ROOT / "config" / "compress" / "synthroad.yaml")  # the shipped recipe parses
    assert isinstance(r, CompressRecipe) and r.prune.steps >= 1 and r.ablation.criteria[0] == "task-aware"
    for name in ("synthroad_fast.yaml", "demo.yaml"):  # and so do the others
        assert load_recipe(ROOT / "config" / "compress" / name).prune.criterion == "task-aware"
    ck = load_checkpoint(teacher)
    assert ck["train_config"]["model_size"] == "small"


def test_recalibrate_bn_measures_the_data(synth_root):
    import torch

    from compress.data import DataConfig, MultiTaskDataset, build_loader
    from compress.evaluate import to_input
    from compress.models import ModelConfig, build_model
    from compress.pipeline import recalibrate_bn

    ds = MultiTaskDataset(DataConfig(root=str(synth_root), split="train"), img_size=(128, 96), augment=None)
    m = build_model(ModelConfig(size="tiny")).eval()
    first_bn = next(x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d))
    momentum = first_bn.momentum
    first_bn.running_mean.fill_(123.0)
    assert recalibrate_bn(m, ds, batches=1, batch_size=4, seed=3) == 4
    assert not m.training and first_bn.momentum == momentum  # mode and momentum restored
    # one batch with momentum None: the running mean is that batch's mean of the BN input
    batch = next(iter(build_loader(ds, 4, 0, shuffle=True, seed=3)))
    seen = {}
    h = first_bn.register_forward_hook(lambda mod, inp, out: seen.setdefault("x", inp[0]))
    with torch.no_grad():
        m(to_input(batch["img"], "cpu"))
    h.remove()
    assert torch.allclose(first_bn.running_mean, seen["x"].mean((0, 2, 3)), atol=1e-4)
    assert recalibrate_bn(m, ds, batches=0) == 0


def test_compress_to_a_measured_latency(teacher, tmp_path):
    """budget: latency — both steps time their candidates with ONNX Runtime; the student is
    measured once more at the end, against the teacher."""
    recipe = _recipe(
        tmp_path,
        teacher,
        prune={
            "criterion": "magnitude",
            "budget": "latency",
            "target": 0.3,
            "round_to": 4,
            "steps": 2,
            "recovery_epochs": 0,
            "latency_size": [256, 192],
            "latency_runs": 3,
        },
        distill={"epochs": 0},
    )
    assert main(["-q", "compress", "--recipe", str(recipe)]) == 0
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert [s["budget"] for s in m["prune_steps"]] == ["latency", "latency"]
    assert all(s["latency_before_ms"] > s["latency_after_ms"] > 0 for s in m["prune_steps"])
    first, last = m["prune_steps"][0], m["prune_steps"][-1]
    # each step's figures are paired with its own unpruned model; across steps only ratios compare
    kept = (1 - first["latency_reduction"]) * (1 - last["latency_reduction"])
    assert 1 - kept >= 0.3 - 0.02, kept
    assert m["reduction"]["latency"] >= 0.3 - 0.02


def test_recipe_loss_keys_override_the_teachers():
    from compress.pipeline import distill_config

    r = CompressRecipe(teacher="t.pt", distill={"loss": {"w_det": 2.0}})
    c = distill_config(r, {"train_config": {"loss": {"w_det": 1.0, "box": 0.07}}}, "init.pt", Path("o"))
    assert c.loss.w_det == 2.0 and c.loss.box == 0.07  # the teacher's other loss settings stay


def test_compress_for_a_deploy_target_swaps_the_activation_first(teacher, tmp_path):
    """deploy: {act: relu}: the SiLU teacher's copy becomes ReLU before pruning (recovered by a
    distillation run), widths follow the backend's multiple, and the student carries the target to
    the export, which writes it into bundle.json's graph section."""
    recipe = _recipe(
        tmp_path,
        teacher,
        deploy={"backend": "onnxruntime-cpu", "act": "relu", "act_recovery_epochs": 1, "rewrite": ["out"]},
        prune={"criterion": "magnitude", "budget": "params", "target": 0.3, "steps": 1, "batches": 2},
        distill={"epochs": 1, "batch_size": 4, "workers": 0, "max_train_batches": 2, "eval_max_batches": 1},
    )
    assert main(["-q", "compress", "--recipe", str(recipe)]) == 0
    out = tmp_path / "out"
    m = json.loads((out / "metrics.json").read_text())
    assert "activation_swap" in m["stage_seconds"] and (out / "act" / "recover" / "best.pt").is_file()
    assert m["recipe"]["prune"]["round_to"] == 16
    student, ck = load_model(out / "student.pt")
    assert student.cfg.act == "relu" and load_model(teacher)[0].cfg.act == "silu"
    assert ck["deploy"] == {
        "backend": "onnxruntime-cpu",
        "act": "relu",
        "act_recovery_epochs": 1,
        "round_to": 16,
        "rewrite": ["out"],
        "fold_bn": True,
    }
    from compress.models.yolop import extract_widths

    before, after = extract_widths(load_model(teacher)[0]), extract_widths(student)
    pruned = [w for k, w in after.items() if w != before[k]]
    assert pruned and all(w % 16 == 0 for w in pruned if w >= 16)  # pruned layers at the backend's multiple
    # the swap's recovery run started from the ReLU copy, distilled from the SiLU teacher
    rec_ck = load_checkpoint(out / "act" / "recover" / "best.pt")
    assert rec_ck["model_config"]["act"] == "relu" and rec_ck["train_config"]["teacher"] == teacher
    bundle = tmp_path / "bundle"
    assert main(["-q", "export", "--ckpt", str(out / "student.pt"), "--out", str(bundle), "--parity-frames", "1"]) == 0
    graph = json.loads((bundle / "bundle.json").read_text())["graph"]
    assert graph["activation"] == "relu" and graph["rewrite_stages"] == ["out"] and graph["bn_folded"] is True
    assert graph["deploy"]["backend"] == "onnxruntime-cpu"
