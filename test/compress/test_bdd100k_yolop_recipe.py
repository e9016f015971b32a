"""The shipped recipe config/compress/bdd100k_yolop.yaml, end to end on a tiny BDD100K download:
an imported YOLOP-layout teacher (random weights, a narrow network so that CI can run it) is
evaluated with YOLOP's protocol, pruned to the paper's parameter budget plus a latency budget,
distilled, evaluated and exported; the same from the command line."""

import json
from pathlib import Path

import pytest

pytest.importorskip(
    "torch",
    reason="needs torch (the offline half, compress/): `make test` installs it; "
    "a ROS 2 machine under colcon test may not have it",
)

import torch
from conftest_data import write_bdd_download

from compress.checkpoint import load_model
from compress.cli import main
from compress.importers.yolop import export_state_dict
from compress.models import ModelConfig, build_model, count_params
from compress.pipeline import compress
from compress.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "config" / "compress" / "bdd100k_yolop.yaml"


@pytest.fixture(scope="module")
def yolop_weights(tmp_path_factory):
    """A YOLOP checkpoint file as YOLOP's training writes it ({'state_dict': model.<i>... keys})."""
    torch.manual_seed(0)
    cfg = ModelConfig(size="small", layout="yolop", act="hardswish", input_norm="imagenet")
    path = tmp_path_factory.mktemp("yolop") / "End-to-end.pth"
    torch.save({"epoch": 1, "state_dict": export_state_dict(build_model(cfg))}, path)
    return path


def test_the_paper_recipe_runs_end_to_end_on_an_imported_yolop(yolop_weights, synth_root, tmp_path):
    bdd = write_bdd_download(synth_root, tmp_path / "download")  # images/100k, labels/det_20, toolkit masks
    teacher = tmp_path / "yolop" / "teacher.pt"
    assert (
        main(["-q", "import", "yolop", "--weights", str(yolop_weights), "--out", str(teacher), "--img-size", "128x96"])
        == 0
    )
    # the shipped recipe with --quick, its latency budget timed at the test's input size (CI time)
    fast = {"prune": {"latency_size": [128, 96], "latency_runs": 5, "sensitivity_batches": 1}}
    ov = {"teacher": str(teacher), "data": str(bdd), "out": str(tmp_path / "out"), **fast}
    recipe = load_recipe(RECIPE, ov, quick=True)
    assert recipe.prune.target == 0.327 and recipe.prune.latency_target and recipe.eval_protocol == "yolop"
    summary = compress(recipe, progress=False)
    t, s = summary["teacher"], summary["student"]
    assert 1 - s["params"] / t["params"] >= 0.327  # the paper's budget, met
    student, _ = load_model(tmp_path / "out" / "student.pt")
    assert student.cfg.layout == "yolop" and student.drivable.out.conv.out_channels == 2
    assert count_params(student) == s["params"]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["student"]["params"] == s["params"]
    # the student leaves as a bundle (its parity checked on BDD frames) and the teacher is scored from the CLI
    frames = bdd / "images" / "100k" / "val"
    out = tmp_path / "bundle"
    assert (
        main(
            [
                "-q",
                "export",
                "--ckpt",
                str(tmp_path / "out" / "student.pt"),
                "--out",
                str(out),
            ]  # its parity frames: found in the download it records
        )
        == 0
    )
    bundle = json.loads((out / "bundle.json").read_text())
    assert bundle["parity"]["max_abs_diff_normalized"]
    assert max(bundle["parity"]["max_abs_diff_normalized"].values()) < bundle["parity"]["tolerance"]
    # the imported teacher is a bundle too, timed beside its student by `mtc bench-engines`
    from mtc_perception.cli import main as mtc

    tb = tmp_path / "teacher_bundle"
    assert main(["-q", "export", "--ckpt", str(teacher), "--out", str(tb), "--frames", str(frames)]) == 0
    eng = tmp_path / "engines"
    bench = ["bench-engines", "--frames", str(frames), "--size", "128x96", "--max-frames", "4", "--threads", "1"]
    assert mtc([*bench, "--bundle", f"yolop={tb}", "--bundle", f"student={out}", "--out", str(eng)]) == 0
    rep = json.loads((eng / "engines.json").read_text())
    assert rep["meta"]["reference"] == "yolop" and rep["models"]["student"]["speedup_vs_first"] > 0
    assert rep["models"]["student"]["params"] == s["params"] if "params" in rep["models"]["student"] else True
    res = tmp_path / "teacher_eval.json"
    args = ["-q", "eval", "--ckpt", str(teacher), "--data", str(bdd), "--split", "val", "--protocol", "yolop"]
    assert main([*args, "--out", str(res)]) == 0
    r = json.loads(res.read_text())
    assert r["img_size"] == [128, 96] and r["detection"]["protocol"] == "yolop" and r["images"] > 0
