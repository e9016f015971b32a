"""`mtc demo` end to end on a miniature configuration: every stage runs, the table compares the
two models, a re-run reuses every stage, and --from-stage redoes what it names."""

import pytest

pytest.importorskip(
    "torch",
    reason="needs torch (the offline half, compress/): `make test` installs it; a ROS 2 machine under colcon test may not have it",
)

import json  # noqa: E402

from mtc_perception.cli import main  # noqa: E402


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
