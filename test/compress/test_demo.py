"""`mtc-compress demo` end to end on a miniature configuration: every stage runs, the table compares the
two models, a re-run reuses every stage, and --from-stage redoes what it names; `mtc demo` runs it."""

import pytest

pytest.importorskip(
    "torch",
    reason="needs torch (the offline half, compress/): `make test` installs it; "
    "a ROS 2 machine under colcon test may not have it",
)

import json
import subprocess
import sys
from pathlib import Path

from compress.cli import main

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
    out = tmp_path / "demo"
    args = [
        "demo",
        "--out",
        str(out),
        "--recipe",
        str(teacher),
        "--compress-recipe",
        str(recipe),
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
    assert "teacher" in text and "student" in text and "change" in text
    s = json.loads((out / "summary.json").read_text())
    assert set(s["rows"]) == {"teacher", "student"} and s["reused_stages"] == []
    assert s["rows"]["student"]["gmacs"] < s["rows"]["teacher"]["gmacs"]
    rep = json.loads((out / "bench" / "report.json").read_text())
    assert rep["models"]["student"]["frames"]["total"] == 4 and rep["ground_truth"] is not None
    for f in (
        "bundles/teacher/model.onnx",
        "bundles/student/model.onnx",
        "overlays/teacher_vs_student.jpg",
        "bench/report.md",
    ):
        assert (out / f).is_file(), f
    assert main(args) == 0  # everything reused ...
    assert json.loads((out / "summary.json").read_text())["reused_stages"] == [
        "data",
        "teacher",
        "compress",
        "export",
        "bag",
        "bench",
        "overlays",
    ]
    assert main([*args, "--from-stage", "bench"]) == 0  # ... or redone from the stage named
    assert json.loads((out / "summary.json").read_text())["reused_stages"] == [
        "data",
        "teacher",
        "compress",
        "export",
        "bag",
    ]


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
