"""scripts/recovery_ablation.py: one pruned student recovered by each strategy with the same budget, the
strategies' losses really differ (feature / output distillation on or off), a finished strategy is
reused, and a missing checkpoint is a clear error."""

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip(
    "torch",
    reason="needs torch (the offline half, compress/): `make test` installs it; "
    "a ROS 2 machine under colcon test may not have it",
)

import yaml

from compress.cli import main as cli
from compress.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]
SIZE = (128, 96)


def _script():
    spec = importlib.util.spec_from_file_location("recovery_ablation", ROOT / "scripts" / "recovery_ablation.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def setup(synth_root, tmp_path_factory):
    d = tmp_path_factory.mktemp("recovery")
    cfg = TrainConfig(
        data=str(synth_root),
        out=str(d / "teacher"),
        model_size="tiny",
        img_size=SIZE,
        epochs=1,
        batch_size=4,
        workers=0,
        seed=0,
        max_train_batches=2,
    )
    teacher = train(cfg, progress=False)["best"]
    pruned = d / "pruned.pt"
    assert (
        cli(["-q", "prune", "--ckpt", teacher, "--out", str(pruned), "--target", "0.3", "--criterion", "magnitude"])
        == 0
    )
    recipe = d / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "teacher": teacher,
                "out": str(d / "unused"),
                "distill": {"batch_size": 4, "workers": 0, "eval_max_batches": 1},
                "eval_batch_size": 4,
                "eval_workers": 0,
            }
        )
    )
    return recipe, pruned, d


def test_each_strategy_recovers_the_same_student_with_its_own_losses(setup):
    recipe, pruned, d = setup
    mod = _script()
    out = d / "ablation"
    args = ["--recipe", str(recipe), "--pruned", str(pruned), "--epochs", "1", "--out", str(out)]
    assert mod.main([*args, "--strategies", "task", "feature_output", "--max-train-batches", "2"]) == 0
    rep = json.loads((out / "ablation.json").read_text())
    assert list(rep["rows"]) == ["pruned (no recovery)", "task", "feature_output"]
    for name in ("task", "feature_output"):
        row = rep["rows"][name]
        assert row["epochs"] == 1 and set(row["delta_points"]) == {"map50", "recall", "drivable_miou", "lane_iou"}
        rec = [json.loads(x) for x in (out / name / "metrics.jsonl").read_text().splitlines() if '"epoch"' in x]
        losses = rec[0]["loss"]
        if name == "task":  # no teacher signal in the objective
            assert row["distill_weight"] == 0 and row["output_weight"] == 0 and "out" not in losses
        else:
            assert row["distill_weight"] == 1.0 and row["output_weight"] == 0.5
            assert losses["feat"] > 0 and losses["out"] > 0
    assert "| task | 1 |" in (out / "ablation.md").read_text()

    # a finished strategy is reused (its result.json), not trained again
    before = (out / "task" / "metrics.jsonl").stat().st_mtime_ns
    assert mod.main([*args, "--strategies", "task"]) == 0
    assert (out / "task" / "metrics.jsonl").stat().st_mtime_ns == before


def test_missing_pruned_checkpoint_is_an_error(setup, tmp_path, capsys):
    recipe, _, _ = setup
    mod = _script()
    rc = mod.main(["--recipe", str(recipe), "--pruned", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o")])
    assert rc == 2 and "does not exist" in capsys.readouterr().err
