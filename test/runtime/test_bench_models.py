"""Issue 18: `mtc bench` compares a teacher with any number of students in one report — exact frame
accounting per model (also when one model fails frames the others process, and on a signal), an
agreement per student, every model in report.md, frames.csv and the output bag, precision per
model, model names checked — and the one-student form keeps its report keys."""

import csv
import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip(
    "rosbags",
    reason="needs rosbags (ROS 2 message definitions, CDR, rosbag2 files): a required dependency, see import_guards.REQUIRED",
)
pytest.importorskip(
    "onnxruntime", reason="needs onnxruntime (runs the tiny bundle): a required dependency, see import_guards.REQUIRED"
)

from bag_helpers import check_accounting
from bag_helpers import report_json as _json

from mtc_perception.bags import SourceFrame, WriteConfig, typestore, write_bag
from mtc_perception.bench import plots as P
from mtc_perception.bench import replay as R
from mtc_perception.bench.names import ModelNameError, check_names, default_name, parse_model_spec
from mtc_perception.bench.report import ModelInfo, ModelOutput, ReportBuilder
from mtc_perception.cli import bench_models
from mtc_perception.cli import main as mtc
from mtc_perception.perceptor import Perception

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "test" / "data" / "tiny_bundle"
MODELS = ("teacher", "fast", "int8", "flaky")  # the order they take turns on a frame
AGREEMENT = ("det_f1", "drivable_iou", "lane_iou", "disagreement")


def _bag(path, n=6):
    frames = [np.full((48, 64, 3), 30 * i, np.uint8) for i in range(n)]
    write_bag(path, [SourceFrame(str(i), f) for i, f in enumerate(frames)], WriteConfig())
    return path


def int8_bundle(tmp_path):
    """The tiny bundle with bundle.json's versions.precision = int8 (what `mtc-compress quantize` writes)."""
    d = tmp_path / "tiny_int8"
    shutil.copytree(TINY, d)
    spec = json.loads((d / "bundle.json").read_text())
    spec["versions"]["precision"] = "int8"
    (d / "bundle.json").write_text(json.dumps(spec, indent=2))
    return d


def _args(bag, out, int8, *extra):
    return [
        "bench",
        "--bag",
        str(bag),
        "--teacher",
        str(TINY),
        "--student",
        f"fast={TINY}",
        "--student",
        f"int8={int8}",
        "--student",
        f"flaky={TINY}",
        "--out",
        str(out),
        "--no-progress",
        "--warmup",
        "0",
        *extra,
    ]


def _flaky(monkeypatch, failing_frames, signal_at=None):
    """The fourth model of each frame (``flaky``) fails ``failing_frames``; ``signal_at`` = (frame,
    model index, signal) sends a real signal while that model runs on that frame."""
    real = R.infer
    calls = []

    def broken(image):
        raise RuntimeError("flaky student gave up")

    def infer(p, image):
        k = len(calls)
        calls.append(1)
        frame, model = divmod(k, len(MODELS))
        if signal_at is not None and (frame, model) == signal_at[:2]:
            os.kill(os.getpid(), signal_at[2])
            time.sleep(0.05)
        return real(broken if model == 3 and frame in failing_frames else p, image)

    monkeypatch.setattr(R, "infer", infer)


def _rows(out):
    with open(Path(out) / "frames.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_a_teacher_and_three_students_one_of_them_failing_frames(tmp_path, monkeypatch):
    bag = _bag(tmp_path / "bag")
    _flaky(monkeypatch, failing_frames={1, 3})
    out = tmp_path / "rep"
    assert mtc(_args(bag, out, int8_bundle(tmp_path), "--max-frames", "5", "--output-bag")) == 0
    rep = _json(out)
    check_accounting(rep, 6)
    assert list(rep["models"]) == list(MODELS)  # the teacher first, the students in order
    for n in ("teacher", "fast", "int8"):
        assert rep["models"][n]["frames"] == {"total": 6, "processed": 5, "failed": 0, "skipped": 1}, n
    assert rep["models"]["flaky"]["frames"] == {"total": 6, "processed": 3, "failed": 2, "skipped": 1}
    assert rep["models"]["flaky"]["errors"][0]["frames"] == [1, 3]
    assert [rep["models"][n]["precision"] for n in MODELS] == ["fp32", "fp32", "int8", "fp32"]
    assert rep["meta"]["reference"] == "teacher" and rep["meta"]["precisions"]["int8"] == "int8"
    assert rep["meta"]["config"]["models"] == {
        "teacher": str(TINY),
        "fast": str(TINY),
        "int8": str(tmp_path / "tiny_int8"),
        "flaky": str(TINY),
    }
    # one agreement per student against the teacher, over the frames both processed
    ag = rep["agreements"]
    assert list(ag) == ["fast", "int8", "flaky"]
    assert [ag[n]["frames"] for n in ag] == [5, 5, 3]
    for n, a in ag.items():
        assert a["reference"] == "teacher" and a["model"] == n
        assert a["drivable"]["miou"] == 1.0  # the same network: identical masks
    assert rep["agreement"] == ag["fast"]  # the first student's, where one-student readers look
    # frames.csv: status and error of every model, agreement columns of every student
    rows = _rows(out)
    cols = list(rows[0])
    for n in MODELS:
        assert {f"{n}_status", f"{n}_latency_ms", f"{n}_error"} <= set(cols)
    for n in ("fast", "int8", "flaky"):
        assert {f"{n}_{k}" for k in AGREEMENT} <= set(cols)
    assert "teacher_det_f1" not in cols
    assert [r["flaky_status"] for r in rows] == ["processed", "failed", "processed", "failed", "processed"]
    assert "flaky student gave up" in rows[1]["flaky_error"] and rows[1]["flaky_det_f1"] == ""
    assert all(r["fast_status"] == "processed" and float(r["fast_drivable_iou"]) == 1.0 for r in rows)
    # report.md: a row per model in every table
    md = (out / "report.md").read_text()
    assert md.startswith("# Benchmark: fast, int8, flaky vs teacher")
    for n in MODELS:
        assert f"| {n} | {'int8' if n == 'int8' else 'fp32'} |" in md, n  # speed, with the precision
    assert "## Agreement (against teacher as reference)" in md
    assert "| fast | 5 |" in md and "| int8 | 5 |" in md and "| flaky | 3 |" in md
    assert "| flaky | 2 | 1, 3 |" in md  # the failed frames
    # the output bag: every model's outputs of the frames it processed
    from rosbags.highlevel import AnyReader

    with AnyReader([out / "replay_bag"], default_typestore=typestore()) as r:
        counts = {c.topic: c.msgcount for c in r.connections}
    assert counts["/camera/image_raw"] == 5
    for n in ("teacher", "fast", "int8"):
        assert counts[f"/{n}/detections"] == counts[f"/{n}/lane_mask"] == 5, n
    assert counts["/flaky/detections"] == counts["/flaky/drivable_mask"] == 3


def test_plots_show_every_model(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib", reason="the plots need matplotlib (optional: the report itself does not)")
    bag = _bag(tmp_path / "bag", n=3)
    seen = {}
    real_cdf, real_mosaic = P.latency_cdf, P.write_mosaic

    def cdf(path, latencies):
        seen["cdf"] = sorted(latencies)
        return real_cdf(path, latencies)

    def mosaic(out, worst, names):
        seen["mosaic"] = list(names)
        return real_mosaic(out, worst, names)

    monkeypatch.setattr(P, "latency_cdf", cdf)
    monkeypatch.setattr(P, "write_mosaic", mosaic)
    out = tmp_path / "rep"
    assert mtc(_args(bag, out, TINY)) == 0
    assert seen == {"cdf": sorted(MODELS), "mosaic": list(MODELS)}
    plots = _json(out)["meta"]["plots"]
    assert plots == {
        "latency_cdf": "latency_cdf.png",
        "agreement": "agreement.png",
        "mosaic": "disagreement_mosaic.jpg",
    }
    import cv2

    m = cv2.imread(str(out / "disagreement_mosaic.jpg"))
    assert m.shape == (3 * (24 + P.TILE[1]), 4 * P.TILE[0] + 3 * 4, 3)  # 3 frames, 4 models side by side


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_one_of_four_models_runs_counts_every_model_exactly(tmp_path, monkeypatch, sig, code):
    bag = _bag(tmp_path / "bag")
    _flaky(monkeypatch, failing_frames={1}, signal_at=(2, 2, sig))  # frame 2, while int8 runs
    out = tmp_path / "rep"
    assert mtc(_args(bag, out, TINY, "--output-bag")) == code
    rep = _json(out)
    check_accounting(rep, 6)
    for n in ("teacher", "fast", "int8"):
        assert rep["models"][n]["frames"] == {"total": 6, "processed": 2, "failed": 0, "skipped": 4}, n
    assert rep["models"]["flaky"]["frames"] == {"total": 6, "processed": 1, "failed": 1, "skipped": 4}
    assert rep["meta"]["signal"] == signal.Signals(sig).name and rep["meta"]["frames"]["given"] == 3
    rows = _rows(out)
    assert [r[f"{n}_status"] for r in rows[2:] for n in MODELS] == ["skipped"] * 4  # frame 2, in flight
    assert all("while this frame was processed" in rows[2][f"{n}_error"] for n in MODELS)
    assert (out / "replay_bag" / "metadata.yaml").is_file()


def test_a_student_failing_every_frame_exits_2_with_every_model_reported(tmp_path, monkeypatch, logs):
    bag = _bag(tmp_path / "bag", n=4)
    _flaky(monkeypatch, failing_frames=set(range(4)))
    out = tmp_path / "rep"
    assert mtc(_args(bag, out, TINY, "--no-plots")) == R.EXIT_MODEL_FAILED == 2
    rep = _json(out)
    check_accounting(rep, 4)
    assert rep["models"]["flaky"]["frames"] == {"total": 4, "processed": 0, "failed": 4, "skipped": 0}
    assert rep["models"]["int8"]["frames"]["processed"] == 4 and rep["agreements"]["flaky"]["frames"] == 0
    assert "flaky failed every frame" in logs.text and "fast failed every frame" not in logs.text


@pytest.mark.parametrize(
    "students, teacher, message",
    [
        (
            [str(TINY), str(TINY)],
            str(TINY),
            "['tiny_bundle'] are given more than once",
        ),  # both named after the directory
        ([f"a={TINY}", f"a={TINY}"], str(TINY), "['a'] are given more than once"),
        ([f"teacher={TINY}"], str(TINY), "['teacher'] are given more than once"),
        ([f"fast-int8={TINY}"], str(TINY), "['fast-int8'] are not valid"),
        ([f"matching={TINY}"], str(TINY), "['matching'] are reserved"),
        ([str(TINY)], f"student={TINY}", "['student'] are given more than once"),
    ],
)
def test_model_names_are_checked_before_the_recording_is_opened(
    tmp_path, monkeypatch, logs, students, teacher, message
):
    monkeypatch.setattr(R, "BagReader", lambda *a, **k: pytest.fail("the recording was opened"))
    args = ["bench", "--bag", str(tmp_path / "bag"), "--teacher", teacher, "--out", str(tmp_path / "rep")]
    for s in students:
        args += ["--student", s]
    assert mtc(args) == 2
    assert message in logs.text and not (tmp_path / "rep" / "report.json").exists()


def test_the_one_student_form_keeps_its_names_and_keys(tmp_path):
    assert bench_models(str(TINY), [str(TINY)]) == ("teacher", TINY, TINY, ())
    assert bench_models(f"big={TINY}", [f"s={TINY}"]) == ("big", TINY, None, (("s", TINY),))
    assert bench_models(str(TINY), [str(TINY), f"b={TINY}"])[3] == (("tiny_bundle", TINY), ("b", TINY))
    bag = _bag(tmp_path / "bag", n=2)
    res = R.run_bench(R.BenchConfig(bag, TINY, TINY, tmp_path / "rep", plots=False, progress=False))
    rep = res.report
    assert res.exit_code == 0 and list(rep["models"]) == ["teacher", "student"]
    assert rep["agreements"] == {"student": rep["agreement"]} and rep["agreement"]["frames"] == 2
    assert set(rep) == {"schema", "meta", "models", "agreement", "agreements", "ground_truth"}
    assert "student_det_f1" in _rows(tmp_path / "rep")[0]
    assert "agreement (student vs teacher, 2 frames)" in R.summary_text(rep)
    with pytest.raises(ValueError, match="no student"):
        R.BenchConfig(bag, TINY, None, tmp_path / "x")


# --- the pieces -----------------------------------------------------------------------------------


def test_names():
    assert parse_model_spec("fast=bundles/fast") == ("fast", "bundles/fast")
    assert parse_model_spec("bundles/fast") == (None, "bundles/fast")
    assert parse_model_spec("runs/a=b") == (None, "runs/a=b")  # a directory with = in its name
    with pytest.raises(ModelNameError, match="no bundle directory after fast="):
        parse_model_spec("fast=")
    assert default_name("bundles/fast-int8/") == "fast_int8" and default_name("runs/2024") == "m2024"
    check_names(["teacher", "s1", "fast_int8"])
    for bad in (["a", "a"], ["1a"], ["conventions"], [""]):
        with pytest.raises(ModelNameError):
            check_names(bad)


def _p(drivable, boxes=()):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    return Perception(
        boxes,
        np.full(len(boxes), 0.9, np.float32),
        np.zeros(len(boxes), np.int64),
        np.asarray(drivable, np.uint8),
        np.zeros((4, 4), np.uint8),
        class_names=("vehicle",),
    )


def test_report_builder_with_three_candidates():
    models = [ModelInfo(n, class_names=("vehicle",), precision="int8" if n == "c" else "fp32") for n in "rabc"]
    b = ReportBuilder(models, mosaic=2)
    full, half = np.ones((4, 4)), np.zeros((4, 4))
    half[:2] = 1
    img = np.zeros((4, 4, 3), np.uint8)
    first = b.add_frame(
        1,
        {
            "r": ModelOutput(_p(full), 5.0),
            "a": ModelOutput(_p(full), 4.0),
            "b": ModelOutput(_p(half), 3.0),
            "c": ModelOutput(error="boom"),
        },
        image=img,
    )
    assert first["drivable_iou"] == 1.0  # the first candidate's (a)
    b.add_frame(
        2, {"r": ModelOutput(error="ref down"), "a": ModelOutput(_p(full), 4.0), "c": ModelOutput(_p(full), 2.0)}
    )
    b.add_not_reached(1)
    rep = b.report()
    assert {n: m["frames"] for n, m in rep["models"].items()} == {
        "r": {"total": 3, "processed": 1, "failed": 1, "skipped": 1},
        "a": {"total": 3, "processed": 2, "failed": 0, "skipped": 1},
        "b": {"total": 3, "processed": 1, "failed": 0, "skipped": 2},
        "c": {"total": 3, "processed": 1, "failed": 1, "skipped": 1},
    }
    ag = rep["agreements"]
    assert [ag[n]["frames"] for n in "abc"] == [1, 1, 0]  # frame 2 has no reference
    assert ag["a"]["drivable"]["iou"] == 1.0 and ag["b"]["drivable"]["iou"] == pytest.approx(0.5)
    assert ag["c"]["drivable"]["miou"] is None and rep["agreement"] == ag["a"]
    assert rep["models"]["c"]["precision"] == "int8"
    row = b.rows[0]
    assert row["b_drivable_iou"] == pytest.approx(0.5) and "c_det_f1" not in row and "r_det_f1" not in row
    (worst,) = b.worst_frames()  # the frame's disagreement is its worst candidate's (b)
    i, stamp, image, *perceptions, agreements = worst
    assert (i, stamp) == (0, 1) and perceptions[3] is None and set(agreements) == {"a", "b"}
    m = P.mosaic_image([worst], [x.name for x in models])
    assert m.shape == (24 + P.TILE[1], 4 * P.TILE[0] + 3 * 4, 3)
    assert P.mosaic_rows(2) == P.MAX_MOSAIC_ROWS and P.mosaic_rows(4) == 6 and P.mosaic_rows(100) == 1
