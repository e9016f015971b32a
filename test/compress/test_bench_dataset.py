"""`mtc bench` on a dataset recorded by `mtc-compress bag --dataset` (with labels): the report's
contract shape, exact frame accounting and agreement, limits and interrupts, a missing camera topic.
(Moved from test/runtime/test_bench.py: recording a dataset needs the offline half.)"""

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip(
    "rosbags", reason="needs rosbags (rosbag2 files): a required dependency, see import_guards.REQUIRED"
)
pytest.importorskip(
    "torch",
    reason="needs torch (the offline half, compress/): `make test` installs it; "
    "a ROS 2 machine under colcon test may not have it",
)
pytest.importorskip("onnxruntime", reason="needs onnxruntime: a required dependency, see import_guards.REQUIRED")

from bag_helpers import check_accounting as _accounting
from bag_helpers import report_json as _json

from compress.cli import main as mtc_compress
from mtc_perception.bags import DEFAULT_START_NS, RecordingWriter, header
from mtc_perception.bench.replay import BenchConfig, run_bench
from mtc_perception.cli import main as mtc
from mtc_perception.messages import detection_array

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "test" / "data" / "tiny_bundle"
STAGES = ("decode", "preprocess", "infer", "postprocess")


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """A second copy of the tiny bundle: the same weights under another path."""
    d = tmp_path_factory.mktemp("student") / "tiny_copy"
    shutil.copytree(TINY, d)
    return d


@pytest.fixture(scope="module")
def dataset_bag(synth_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("bags") / "val"
    assert mtc_compress(["bag", "--dataset", str(synth_root), "--out", str(out), "--transport", "compressed"]) == 0
    return out


def test_report_is_complete_and_a_model_agrees_perfectly_with_itself(dataset_bag, student, tmp_path):
    out = tmp_path / "rep"
    # conf 0.01: the briefly trained tiny model then makes detections to compare
    assert (
        mtc(
            [
                "bench",
                "--bag",
                str(dataset_bag),
                "--teacher",
                str(TINY),
                "--student",
                str(student),
                "--out",
                str(out),
                "--backend",
                "onnxruntime",
                "--threads",
                "1",
                "--conf",
                "0.01",
                "--output-bag",
                "--no-progress",
            ]
        )
        == 0
    )
    rep = _json(out)
    assert set(rep) == {"schema", "meta", "models", "agreement", "agreements", "ground_truth"}
    assert rep["agreements"] == {"student": rep["agreement"]}  # one agreement per student
    meta = rep["meta"]
    for k in ("host", "backends", "bag", "frames", "config", "harness_ms", "harness_share", "interrupted", "error"):
        assert k in meta, k
    assert meta["host"]["cpu"] and meta["bag"]["path"] == str(dataset_bag) and len(meta["bag"]["md5"]) == 32
    assert (
        meta["bag"]["topic"] == "/camera/image_raw/compressed"
        and meta["interrupted"] is False
        and meta["error"] is None
    )
    assert set(meta["backends"]) == {"teacher", "student"} and "onnxruntime" in meta["backends"]["student"]
    for k in ("read", "decode", "hash", "report", "score", "wall"):
        assert meta["harness_ms"][k] >= 0, k
    assert 0 < meta["harness_share"]["read_decode_report"] <= meta["harness_share"]["all_harness"] < 1
    _accounting(rep, 8)
    for name in ("teacher", "student"):
        m = rep["models"][name]
        assert m["params"] == 129000 and m["macs"] == 22252032
        lat = m["latency_ms"]
        assert (
            set(lat) == {"mean", "p50", "p90", "p99", "max"}
            and 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        )
        assert set(m["stage_ms"]) == set(STAGES) and all(v > 0 for v in m["stage_ms"].values())
        assert sum(m["stage_ms"].values()) == pytest.approx(lat["mean"], rel=0.2)
        assert m["throughput_fps"] == pytest.approx(1000 / lat["mean"], rel=0.01)
        assert m["frames"] == {"total": 8, "processed": 8, "failed": 0, "skipped": 0}
    a = rep["agreement"]
    assert a["reference"] == "teacher" and a["model"] == "student" and a["frames"] == 8
    assert a["detection"]["reference_boxes"] > 0  # the test means something only with detections
    assert a["detection"]["map50"] == 1.0 and a["detection"]["recall"] == 1.0
    assert a["drivable"]["miou"] == 1.0 and a["lane"]["iou"] == 1.0
    gt = rep["ground_truth"]
    assert gt["matching"]["frames_with_all_labels"] == 8 and sum(gt["matching"]["labels_without_frame"].values()) == 0
    assert gt["teacher"]["frames"] == 8 and gt["teacher"] == gt["student"]
    assert gt["teacher"]["detection"]["num_gt"] > 0 and 0 <= gt["teacher"]["drivable"]["miou"] <= 1
    md = (out / "report.md").read_text()
    assert "| teacher |" in md and "## Agreement" in md and "## Ground truth" in md and "## Harness" in md
    assert (out / "disagreement_mosaic.jpg").stat().st_size > 1000  # OpenCV only
    try:
        import matplotlib  # noqa: F401 - only whether it is installed

        assert (out / "latency_cdf.png").stat().st_size > 1000 and (out / "agreement.png").stat().st_size > 1000
        assert "![latency CDF](latency_cdf.png)" in md
    except ImportError:
        assert any("plots skipped" in w for w in meta["warnings"])
    assert len((out / "frames.csv").read_text().splitlines()) == 1 + 8
    # the output bag: both models' outputs with the input frames' stamps
    from rosbags.highlevel import AnyReader

    from mtc_perception.bags import typestore

    with AnyReader([out / "replay_bag"], default_typestore=typestore()) as r:
        stamps: dict[str, list[int]] = {}
        for c, _, raw in r.messages():
            m = r.deserialize(raw, c.msgtype)
            stamps.setdefault(c.topic, []).append(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec)
    want = [DEFAULT_START_NS + i * 100_000_000 for i in range(8)]
    assert set(stamps) == {"/camera/image_raw/compressed"} | {
        f"/{n}/{k}" for n in ("teacher", "student") for k in ("detections", "drivable_mask", "lane_mask")
    }
    assert all(v == want for v in stamps.values())


def test_max_frames_and_interrupt_count_the_rest_as_skipped(dataset_bag, student, tmp_path):
    rep = run_bench(
        BenchConfig(dataset_bag, TINY, student, tmp_path / "a", max_frames=3, plots=False, progress=False)
    ).report
    _accounting(rep, 8)
    assert rep["models"]["student"]["frames"] == {"total": 8, "processed": 3, "failed": 0, "skipped": 5}
    assert rep["meta"]["frames"]["not_reached"] == 5 and any("--max-frames 3" in w for w in rep["meta"]["warnings"])

    def ctrl_c(n):
        if n == 2:
            raise KeyboardInterrupt

    res = run_bench(
        BenchConfig(dataset_bag, TINY, student, tmp_path / "b", plots=False, progress=False), on_frame=ctrl_c
    )
    assert res.exit_code == 130 and (tmp_path / "b" / "report.json").is_file()
    rep = _json(tmp_path / "b")
    assert rep["meta"]["interrupted"] is True
    _accounting(rep, 8)
    assert rep["models"]["teacher"]["frames"] == {"total": 8, "processed": 2, "failed": 0, "skipped": 6}


def test_missing_camera_topic_lists_the_topics(dataset_bag, tmp_path, logs):
    code = mtc(
        [
            "bench",
            "--bag",
            str(dataset_bag),
            "--teacher",
            str(TINY),
            "--student",
            str(TINY),
            "--out",
            str(tmp_path / "r"),
            "--topic",
            "/front_camera/image",
            "--no-progress",
        ]
    )
    assert code == 2 and not (tmp_path / "r" / "report.json").exists()
    assert "'/front_camera/image' is not in" in logs.text
    for t in ("/camera/image_raw/compressed", "/ground_truth/detections", "/ground_truth/lane_mask"):
        assert t in logs.text
    # no topic given and no camera topic at all: the same listing
    bag = tmp_path / "labels_only"
    with RecordingWriter(bag) as w:
        w.add_topic("/ground_truth/detections", "vision_msgs/msg/Detection2DArray")
        w.write(
            "/ground_truth/detections",
            1,
            detection_array(w.types, header(w.ts, 1, "c"), np.zeros((0, 4)), [], [], ["vehicle"]),
        )
    logs.clear()
    assert (
        mtc(["bench", "--bag", str(bag), "--teacher", str(TINY), "--student", str(TINY), "--out", str(tmp_path / "r2")])
        == 2
    )
    assert "/ground_truth/detections" in logs.text and "choose one with --topic" in logs.text
