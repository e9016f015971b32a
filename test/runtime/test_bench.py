"""`mtc bench`: the replay benchmark's report (contract shape, exact frame accounting, agreement),
bad recordings, and the ROS-free ReportBuilder / StampMatcher a live benchmark node reuses."""

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

from bag_helpers import check_accounting as _accounting
from bag_helpers import report_json as _json

from mtc_perception.bags import (
    DEFAULT_START_NS,
    RecordingWriter,
    SourceFrame,
    WriteConfig,
    camera_message,
    header,
    write_bag,
)
from mtc_perception.bench.replay import BenchConfig, run_bench
from mtc_perception.bench.report import (
    GroundTruthBoxes,
    ModelInfo,
    ModelOutput,
    ReportBuilder,
    StampMatcher,
    write_report,
)
from mtc_perception.cli import main as mtc
from mtc_perception.messages import detection_array, mask_image, perception_from_messages
from mtc_perception.perceptor import Perception

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "test" / "data" / "tiny_bundle"
STAGES = ("decode", "preprocess", "infer", "postprocess")


def _numbered_raw_bag(path, storage, n=14):
    """Raw 320x180 frames (172 kB: a few per 1 MiB MCAP chunk), each filled with its own grey."""
    frames = [np.full((180, 320, 3), 10 + 15 * i, np.uint8) for i in range(n)]
    write_bag(path, [SourceFrame(str(i), f) for i, f in enumerate(frames)], WriteConfig(storage=storage))
    return frames


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_truncated_recording_is_reported_up_to_the_last_good_frame(tmp_path, storage, logs):
    frames = _numbered_raw_bag(tmp_path / "bag", storage)
    (f,) = [p for p in (tmp_path / "bag").iterdir() if p.suffix in (".mcap", ".db3")]
    data = f.read_bytes()
    cut = int(len(data) * 0.7)
    f.write_bytes(data[:cut])
    # the frames whose pixels (an Image's last field, one grey per frame) lie wholly before the cut
    whole = sum(data.find(x[0, 0, :1].tobytes() * x.size) + x.size <= cut for x in frames)
    out = tmp_path / "rep"
    code = mtc(
        [
            "bench",
            "--bag",
            str(tmp_path / "bag"),
            "--teacher",
            str(TINY),
            "--student",
            str(TINY),
            "--out",
            str(out),
            "--no-plots",
            "--no-progress",
        ]
    )
    assert code == 2
    rep = _json(out)
    _accounting(rep, 14)  # the total is the recording's own count
    f = rep["models"]["teacher"]["frames"]
    assert 2 <= f["processed"] < 14 and f["failed"] == 0 and f["skipped"] == 14 - f["processed"]
    if storage == "mcap":  # up to the last good frame, even inside the 1 MiB chunk that was cut
        assert f["processed"] == whole
    err = rep["meta"]["error"]
    assert err and f"frames up to #{f['processed'] - 1}" in err and rep["meta"]["bag"]["salvaged"] is True
    assert "damaged" in logs.text and err.split(" — ")[0][:40] in logs.text
    rows = (out / "frames.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[1]) for r in rows] == [DEFAULT_START_NS + i * 100_000_000 for i in range(f["processed"])]


def test_a_frame_that_does_not_decode_fails_and_the_run_goes_on(tmp_path):
    bag = tmp_path / "bag"
    rng = np.random.default_rng(0)
    with RecordingWriter(bag, "sqlite3") as w:
        topic = "/camera/image_raw/compressed"
        w.add_topic(topic, "sensor_msgs/msg/CompressedImage")
        for i in range(5):
            hdr = header(w.ts, DEFAULT_START_NS + i, "cam")
            msg = camera_message(w.ts, hdr, rng.integers(0, 255, (96, 128, 3), dtype=np.uint8), "compressed")
            if i == 2:
                msg.data = np.frombuffer(b"\xff\xd8 not really a jpeg", np.uint8)
            w.write(topic, DEFAULT_START_NS + i, msg)
    res = run_bench(BenchConfig(bag, TINY, TINY, tmp_path / "rep", plots=False, progress=False))
    assert res.exit_code == 0
    rep = res.report
    _accounting(rep, 5)
    for m in rep["models"].values():
        assert m["frames"] == {"total": 5, "processed": 4, "failed": 1, "skipped": 0}
        assert m["errors"][0]["count"] == 1 and "not a decodable image" in m["errors"][0]["first"]
    assert rep["meta"]["frames"]["decode_failed"] == 1 and rep["agreement"]["frames"] == 4


def test_label_stamps_that_match_no_frame_are_reported(tmp_path):
    bag = tmp_path / "bag"
    with RecordingWriter(bag) as w:
        w.add_topic("/camera/image_raw", "sensor_msgs/msg/Image")
        w.add_topic("/ground_truth/detections", "vision_msgs/msg/Detection2DArray")
        w.add_topic("/ground_truth/lane_mask", "sensor_msgs/msg/Image")
        for i in range(6):
            t = DEFAULT_START_NS + i * 100_000_000
            w.write(
                "/camera/image_raw",
                t,
                camera_message(w.ts, header(w.ts, t, "cam"), np.full((96, 128, 3), 40 * i, np.uint8)),
            )
            off = header(w.ts, t + 1_000_000, "cam")  # labels stamped 1 ms off their frame
            w.write(
                "/ground_truth/detections",
                t,
                detection_array(w.types, off, np.array([[10, 10, 40, 30]]), [1.0], [0], ["vehicle"]),
            )
            w.write("/ground_truth/lane_mask", t, mask_image(w.types, off, np.zeros((96, 128), np.uint8)))
    res = run_bench(BenchConfig(bag, TINY, TINY, tmp_path / "rep", plots=False, progress=False))
    assert res.exit_code == 0
    rep = res.report
    _accounting(rep, 6)
    m = rep["ground_truth"]["matching"]
    assert m["label_topics"] == ["detections", "lane"]
    assert m["labels_without_frame"] == {"detections": 6, "lane": 6} and m["frames_missing_labels"] == 6
    assert m["frames_with_all_labels"] == 0
    assert rep["ground_truth"]["teacher"] is None and rep["ground_truth"]["student"] is None
    assert any("label stamps do not match" in w for w in rep["meta"]["warnings"])
    assert rep["models"]["teacher"]["frames"]["processed"] == 6


# ---------------------------------------------------------------------------------------------
# the ROS-free pieces a live benchmark node reuses


def _p(boxes, scores, drivable, lane, cls=None):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    return Perception(
        boxes,
        np.asarray(scores, np.float32),
        np.zeros(len(boxes), np.int64) if cls is None else np.asarray(cls),
        np.asarray(drivable, np.uint8),
        np.asarray(lane, np.uint8),
        class_names=("vehicle",),
    )


def test_report_builder_numbers_and_accounting(tmp_path):
    models = [
        ModelInfo("teacher", class_names=("vehicle",), params=10),
        ModelInfo("student", class_names=("vehicle",), params=5),
    ]
    b = ReportBuilder(models, gt_parts=("detections", "lane"), mosaic=1)
    drv_t = np.zeros((4, 4), np.uint8)
    drv_t[:2] = 1  # 8 px
    drv_s = np.zeros((4, 4), np.uint8)
    drv_s[:1] = 1  # 4 px, all inside the teacher's
    lane = np.eye(4, dtype=np.uint8)
    t = _p([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8], drv_t, lane)
    s = _p([[0, 0, 10, 10], [50, 50, 60, 60]], [0.7, 0.95], drv_s, lane)
    a = b.add_frame(
        1,
        {"teacher": ModelOutput(t, 10.0, {"infer": 8.0}), "student": ModelOutput(s, 4.0, {"infer": 3.0})},
        image=np.zeros((4, 4, 3), np.uint8),
    )
    assert a["det_f1"] == pytest.approx(0.5) and a["drivable_iou"] == pytest.approx(0.5) and a["lane_iou"] == 1.0
    b.add_frame(2, {"teacher": ModelOutput(t, 12.0), "student": ModelOutput(error="inference failed: boom")})
    b.add_frame(3, {"teacher": ModelOutput(t, 14.0)})  # the student never answered
    b.add_not_reached(2, "interrupted")
    b.add_ground_truth(1, "detections", GroundTruthBoxes(np.array([[0, 0, 10, 10.0]]), np.array([0])))
    b.add_ground_truth(1, "lane", lane)
    b.add_ground_truth(99, "lane", lane)  # no such frame
    rep = b.report()
    assert rep["models"]["teacher"]["frames"] == {"total": 5, "processed": 3, "failed": 0, "skipped": 2}
    assert rep["models"]["student"]["frames"] == {"total": 5, "processed": 1, "failed": 1, "skipped": 3}
    assert rep["models"]["teacher"]["latency_ms"]["mean"] == pytest.approx(12.0)
    assert rep["models"]["student"]["errors"] == [
        {"kind": "inference failed: boom", "count": 1, "first": "inference failed: boom", "frames": [1]}
    ]  # issue 17: the kind is the whole message (numbers as #), with the first frames of each kind
    ag = rep["agreement"]
    assert ag["frames"] == 1 and ag["detection"]["recall"] == pytest.approx(0.5)
    # COCO AP with the reference as ground truth: the student's best-scored box is wrong (P=0 at R=0),
    # then the right one (P=1/2 at R=1/2): the envelope is 0.5 up to recall 0.5, 0 beyond
    assert ag["detection"]["map50"] == pytest.approx(0.5 * 51 / 101)
    # drivable: foreground IoU 4/8, background IoU 8/12
    assert ag["drivable"]["iou"] == pytest.approx(0.5) and ag["drivable"]["miou"] == pytest.approx((0.5 + 8 / 12) / 2)
    assert ag["lane"]["iou"] == 1.0
    gt = rep["ground_truth"]
    assert gt["matching"]["frames_with_all_labels"] == 1 and gt["matching"]["frames_missing_labels"] == 2
    assert gt["matching"]["labels_without_frame"] == {"detections": 0, "lane": 1}
    assert (
        gt["teacher"]["frames"] == 1
        and gt["teacher"]["detection"]["recall"] == 1.0
        and gt["teacher"]["lane"]["iou"] == 1.0
    )
    assert gt["student"]["detection"]["recall"] == 1.0 and gt["student"]["detection"]["precision"] == pytest.approx(0.5)
    paths = write_report(b, tmp_path, plots=False)
    assert paths["report_json"].is_file() and "| student |" in paths["report_md"].read_text()


def test_report_shows_ap50_per_class_when_there_are_several(tmp_path):
    names = ("car", "truck", "bus")
    b = ReportBuilder([ModelInfo("teacher", class_names=names)], gt_parts=("detections",), mosaic=0)
    m = np.zeros((4, 4), np.uint8)
    # a car found, a truck predicted as a car (missed), no bus labelled
    p = _p([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8], m, m, cls=[0, 0])
    b.add_frame(1, {"teacher": ModelOutput(p, 5.0)})
    b.add_ground_truth(
        1, "detections", GroundTruthBoxes(np.array([[0, 0, 10, 10], [20, 20, 30, 30.0]]), np.array([0, 1]))
    )
    det = b.report()["ground_truth"]["teacher"]["detection"]
    assert list(det["ap50_by_class"]) == list(names)
    assert det["ap50_by_class"]["car"] > 0.99 and det["ap50_by_class"]["truck"] == 0.0
    assert det["ap50_by_class"]["bus"] is None
    md = write_report(b, tmp_path, plots=False)["report_md"].read_text()
    assert (
        "| model | car | truck | bus |" in md and "| teacher | 0.995 | 0.000 | – |" in md
    )  # yolov5 AP: 0.995 for a perfect class
    # one class: no per-class table
    one = ReportBuilder([ModelInfo("teacher", class_names=("vehicle",))], gt_parts=("detections",), mosaic=0)
    one.add_frame(1, {"teacher": ModelOutput(_p([[0, 0, 10, 10]], [0.9], m, m), 5.0)})
    one.add_ground_truth(1, "detections", GroundTruthBoxes(np.array([[0, 0, 10, 10.0]]), np.array([0])))
    assert "ap50_by_class" not in one.report()["ground_truth"]["teacher"]["detection"]


def test_stamp_matcher_pairs_out_of_order_and_evicts_the_oldest():
    m = StampMatcher(("frame", "teacher", "student"), max_pending=2)
    assert m.add(2, "teacher", "t2") == []
    assert m.add(1, "frame", "f1") == []
    done = m.add(2, "frame", "f2") + m.add(2, "student", "s2")
    assert (
        len(done) == 1
        and done[0].stamp_ns == 2
        and done[0].complete
        and done[0].items == {"frame": "f2", "teacher": "t2", "student": "s2"}
    )
    m.add(3, "frame", "f3")
    evicted = m.add(4, "frame", "f4")  # three pending > 2: the oldest (1) goes, incomplete
    assert [(g.stamp_ns, g.complete) for g in evicted] == [(1, False)]
    assert sorted(g.stamp_ns for g in m.flush()) == [3, 4] and m.pending == 0
    with pytest.raises(ValueError):
        m.add(5, "labels", None)


def test_perception_from_the_nodes_messages():
    from mtc_perception.bags import typestore

    ts = typestore("jazzy")
    hdr = header(ts, 7, "cam")
    types = ts.types.__getitem__
    boxes = np.array([[10, 20, 50, 60], [1, 2, 3, 4]], np.float64)
    drv = np.zeros((6, 8), np.uint8)
    drv[3:] = 1
    msgs = [
        ts.deserialize_cdr(ts.serialize_cdr(m, t), t)
        for m, t in (
            (
                detection_array(types, hdr, boxes, np.array([0.9, 0.3]), np.array([0, 0]), ["vehicle"]),
                "vision_msgs/msg/Detection2DArray",
            ),
            (mask_image(types, hdr, drv), "sensor_msgs/msg/Image"),
            (mask_image(types, hdr, 1 - drv), "sensor_msgs/msg/Image"),
        )
    ]
    p = perception_from_messages(*msgs, class_names=("vehicle",))
    assert np.allclose(p.boxes, boxes) and np.allclose(p.scores, [0.9, 0.3]) and list(p.class_ids) == [0, 0]
    assert np.array_equal(p.drivable, drv) and np.array_equal(p.lane, 1 - drv)


def test_metrics_moved_to_the_runtime_and_reexported():
    import compress.metrics as cm
    import mtc_perception.metrics as rm

    assert cm.DetectionMetrics is rm.DetectionMetrics and cm.SegMetrics is rm.SegMetrics
    assert cm.lane_metrics is rm.lane_metrics and cm.drivable_metrics is rm.drivable_metrics
