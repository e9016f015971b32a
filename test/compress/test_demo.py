"""`mtc-compress demo` end to end on a miniature configuration: every stage runs, the table compares the
teacher with both students (the accuracy one and the deployable one), a re-run reuses every stage, and
--from-stage redoes what it names; the shipped demo recipes fit the demo; `mtc demo` runs it."""

import pytest

pytest.importorskip(
    "torch",
    reason="needs torch (the offline half, compress/): `make test` installs it; "
    "a ROS 2 machine under colcon test may not have it",
)

import json
import re
import subprocess
import sys
from pathlib import Path

import torch

from compress.cli import main
from compress.demo import STAGES

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_runs_every_stage_and_reuses_them(tmp_path, capsys):
    teacher = tmp_path / "teacher.yaml"
    teacher.write_text(
        "model_size: tiny\nimg_size: [128, 96]\nepochs: 1\nbatch_size: 8\nworkers: 0\neval_interval: 1\nseed: 0\n"
    )
    recipe = tmp_path / "compress.yaml"
    recipe.write_text(
        "teacher: unused\nprune: {criterion: task-aware, budget: macs, target: 0.3, round_to: 4, max_layer_ratio: 0.95,"
        " batches: 1, batch_size: 4, steps: 1, recovery_epochs: 0, recalibrate_batches: 2}\n"
        "distill: {epochs: 1, batch_size: 8, workers: 0, eval_interval: 1}\neval_batch_size: 8\neval_workers: 0\n"
    )
    # the deployable student's stage at miniature size: a deploy target (ReLU swapped in and recovered for
    # an epoch, the backend's widths x16) and a params budget (a latency budget on a model this small would
    # time noise; the shipped recipe is checked in test_demo_recipes_fit_the_demo)
    deploy = tmp_path / "deploy.yaml"
    deploy.write_text(
        "teacher: unused\ndeploy: {backend: onnxruntime-cpu, act: relu, act_recovery_epochs: 1}\n"
        "prune: {criterion: task-aware, budget: params, target: 0.3, max_layer_ratio: 0.95, batches: 1, batch_size: 4,"
        " steps: 1, recovery_epochs: 0, recalibrate_batches: 2}\n"
        "distill: {epochs: 1, batch_size: 8, workers: 0, eval_interval: 1}\neval_batch_size: 8\neval_workers: 0\n"
    )
    out = tmp_path / "demo"
    args = [
        "demo",
        "--out",
        str(out),
        "--recipe",
        str(teacher),
        "--compress-recipe",
        str(recipe),
        "--deploy-recipe",
        str(deploy),
        "--train-images",
        "12",
        "--val-images",
        "6",
        "--bag-frames",
        "4",
        "--quiet",
    ]
    assert main(args) == 0
    text = capsys.readouterr().out
    table = text.splitlines()
    rows = [line.split()[0] for line in table if re.match(r"\w+ +[\d.]+ ", line)]  # name, then figures
    assert rows == ["teacher", "student", "deploy"], text  # one row per model ...
    changes = [i for i, line in enumerate(table) if line.startswith("  change")]
    assert [table[i - 1].split()[0] for i in changes] == ["student", "deploy"], text  # each under its student
    assert "deploy vs teacher on the bag" in text and "student vs teacher on the bag" in text
    s = json.loads((out / "summary.json").read_text())
    assert set(s["rows"]) == {"teacher", "student", "deploy"} and s["reused_stages"] == []
    assert set(s["speedups"]) == set(s["agreements"]) == {"student", "deploy"}
    for name in ("student", "deploy"):
        assert s["rows"][name]["gmacs"] < s["rows"]["teacher"]["gmacs"], name
        assert s["rows"][name]["params_M"] < s["rows"]["teacher"]["params_M"], name
    # the deployable student: its recipe's deploy target, through the checkpoint, in its bundle
    deploy_ckpt = torch.load(out / "deploy" / "student.pt", map_location="cpu", weights_only=False)
    assert deploy_ckpt["deploy"]["act"] == "relu" and deploy_ckpt["deploy"]["round_to"] == 16
    graph = json.loads((out / "bundles" / "deploy" / "bundle.json").read_text())["graph"]
    assert graph["activation"] == "relu" and graph["deploy"]["backend"] == "onnxruntime-cpu"
    assert json.loads((out / "bundles" / "student" / "bundle.json").read_text())["graph"].get("activation") != "relu"
    # one replay of the three, every frame accounted for in each
    rep = json.loads((out / "bench" / "report.json").read_text())
    assert list(rep["models"]) == ["teacher", "student", "deploy"] and rep["ground_truth"] is not None
    assert rep["meta"]["frames"]["total"] == 4 and rep["meta"]["frames"]["not_reached"] == 0
    for name, m in rep["models"].items():
        assert m["frames"] == {"total": 4, "processed": 4, "failed": 0, "skipped": 0}, name
    assert set(rep["agreements"]) == {"student", "deploy"}
    assert all(a["reference"] == "teacher" and a["frames"] == 4 for a in rep["agreements"].values())
    for f in (
        "bundles/teacher/model.onnx",
        "bundles/student/model.onnx",
        "bundles/deploy/model.onnx",
        "overlays/teacher_vs_student.jpg",
        "overlays/deploy.jpg",
        "overlays/all_models.jpg",
        "bench/report.md",
    ):
        assert (out / f).is_file(), f
    assert main(args) == 0  # everything reused ...
    assert json.loads((out / "summary.json").read_text())["reused_stages"] == list(STAGES)
    assert main([*args, "--from-stage", "deploy"]) == 0  # ... or redone from the stage named
    s2 = json.loads((out / "summary.json").read_text())
    assert s2["reused_stages"] == ["data", "teacher", "compress"]
    # the accuracy student was reused: its size and accuracy are the same, its speed measured again
    assert s2["rows"]["student"] == s["rows"]["student"] | {k: s2["rows"]["student"][k] for k in ("latency_ms", "fps")}
    (out / ".stages" / "bag.json").unlink()  # a stage that runs again makes the later ones run again
    assert main(args) == 0
    assert json.loads((out / "summary.json").read_text())["reused_stages"] == [
        "data",
        "teacher",
        "compress",
        "deploy",
        "export",
    ]


def test_demo_recipes_fit_the_demo():
    """The shipped deployable-student recipe is valid, is a deploy recipe timed at the size the demo
    exports (the demo teacher's training size), and is the one the deploy stage picks (synthroad_deploy.yaml
    under --full); the accuracy student keeps its recipes."""
    import argparse

    import yaml

    from compress.demo import student_recipe
    from compress.recipe import load_recipe

    r = load_recipe(ROOT / "config" / "compress" / "demo_deploy.yaml")
    teacher_size = tuple(yaml.safe_load((ROOT / "config" / "train" / "demo.yaml").read_text())["img_size"])
    assert r.deploy is not None and r.deploy.act is None and r.deploy.backend == "onnxruntime-cpu"  # SiLU kept
    assert r.prune.budget == "latency" and tuple(r.prune.latency_size) == teacher_size
    assert r.teacher == "runs/demo/teacher/best.pt" and r.out == "runs/demo/deploy"

    def recipe(student, full):
        return student_recipe(student, argparse.Namespace(full=full, compress_recipe=None, deploy_recipe=None))

    assert recipe("deploy", False) == ROOT / "config" / "compress" / "demo_deploy.yaml"
    assert recipe("deploy", True) == ROOT / "config" / "compress" / "synthroad_deploy.yaml"
    assert recipe("student", False) == ROOT / "config" / "compress" / "demo.yaml"
    assert recipe("student", True) == ROOT / "config" / "compress" / "synthroad.yaml"
    load_recipe(recipe("deploy", True))  # the --full one is valid too


def test_mtc_demo_runs_mtc_compress_demo_with_the_same_arguments(monkeypatch, capsys):
    """The runtime's `mtc demo` imports nothing of compress: it runs `mtc-compress demo` in a subprocess
    with every argument as given and returns its exit code."""
    import mtc_perception.cli as mtc

    calls = []

    class Done:
        returncode = 3

    monkeypatch.setattr(subprocess, "run", lambda cmd, check: calls.append(cmd) or Done())
    before = {m for m in sys.modules if m.split(".")[0] == "compress"}
    assert mtc.main(["-v", "demo", "--out", "x", "--from-stage", "bench", "--quiet"]) == 3
    assert calls == [
        [sys.executable, "-m", "compress.cli", "--verbose", "demo", "--out", "x", "--from-stage", "bench", "--quiet"]
    ]
    assert {m for m in sys.modules if m.split(".")[0] == "compress"} == before  # nothing of compress imported
    assert "mtc-compress demo" in capsys.readouterr().err


def test_mtc_demo_without_the_offline_half_names_the_install(monkeypatch, capsys):
    import importlib.util

    import mtc_perception.cli as mtc

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "compress" else real(name, *a))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("no subprocess without compress"))
    assert mtc.main(["demo", "--out", "x"]) == 2
    err = capsys.readouterr().err
    assert "pip install -e '.[compress]'" in err and "mtc-compress demo" in err


def test_mtc_demo_help_is_the_demo_help():
    """A real redirect: `mtc demo --help` prints `mtc-compress demo`'s options."""
    r = subprocess.run(
        [sys.executable, "-m", "mtc_perception.cli", "demo", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "--from-stage" in r.stdout and "--compress-recipe" in r.stdout and "mtc-compress demo" in r.stderr
