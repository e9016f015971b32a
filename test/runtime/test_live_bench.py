"""The live benchmark's ROS-free core: frames sent, node outputs matched back by stamp (in any
order, some never), the report's accounting and agreement, with real message types (rosbags)."""

from pathlib import Path

import pytest

pytest.importorskip(
    "rosbags",
    reason="needs rosbags (real ROS 2 message definitions and CDR): `pip install rosbags`; `make test` installs it",
)

import cv2
import numpy as np
from rosbags.typesys import Stores, get_typestore

from mtc_perception.bench.live import LiveBench
from mtc_perception.bench.report import ModelInfo
from mtc_perception.bundle import Bundle
from mtc_perception.imaging import bgr_to_image_fields
from mtc_perception.messages import OUTPUT_PARTS, register_vision_msgs
from mtc_perception.node_core import FrameProcessor
from mtc_perception.perceptor import Perceptor

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def setup():
    ts = get_typestore(Stores.ROS2_JAZZY)
    register_vision_msgs(ts)
    types = ts.types.__getitem__
    b = Bundle.load(DATA / "tiny_bundle")
    core = FrameProcessor(Perceptor(b, backend="onnxruntime", conf=0.01), types)
    frame = cv2.imread(str(DATA / "frame.jpg"))
    frames = [np.ascontiguousarray(np.roll(frame, 7 * i, axis=1)) for i in range(6)]  # six different frames
    outs = []
    for i, f in enumerate(frames):
        hdr = types("std_msgs/msg/Header")(
            stamp=types("builtin_interfaces/msg/Time")(sec=100 + i, nanosec=0), frame_id="cam"
        )
        outs.append(core(types("sensor_msgs/msg/Image")(header=hdr, **bgr_to_image_fields(f))).messages)
    return b, frames, outs


def _models(b):
    return [ModelInfo.from_bundle("teacher", b, "node"), ModelInfo.from_bundle("student", b, "node")]


def test_outputs_match_their_frames_whatever_the_order_and_missing_ones_are_skipped(setup, tmp_path):
    b, frames, outs = setup
    lb = LiveBench(_models(b), total=8)  # 8 in the recording, 6 sent
    stamp = lambda i: (100 + i) * 10**9  # noqa: E731 - a one-line formula
    for i, f in enumerate(frames):
        lb.frame_sent(stamp(i), t_sent=10.0 + i, image=f)
    rng = np.random.default_rng(0)
    events = [
        (m, p, i)
        for m in ("teacher", "student")
        for p in OUTPUT_PARTS
        for i in range(6)
        if not (m == "student" and i in (2, 4) and p == "lane_mask")
    ]  # the student "drops" two frames
    for k in rng.permutation(len(events)):
        m, p, i = events[k]
        lb.output(m, p, stamp(i), outs[i][p], t_recv=10.0 + i + (0.05 if m == "teacher" else 0.03))
    lb.output("teacher", "detections", stamp(50), outs[0]["detections"], t_recv=20.0)  # a stamp nobody sent
    assert lb.pending() == 3 and not lb.complete()  # the two frames the student never finished, and stamp 50
    rep = lb.finish(tmp_path, wall_s=6.0)
    t, s = rep["models"]["teacher"], rep["models"]["student"]
    assert t["frames"] == {"total": 8, "processed": 6, "failed": 0, "skipped": 2}
    assert s["frames"] == {"total": 8, "processed": 4, "failed": 0, "skipped": 4}
    assert t["latency_ms"]["p50"] == pytest.approx(50.0) and s["latency_ms"]["max"] == pytest.approx(30.0)
    ag = rep["agreement"]  # the same model on both sides: where both answered, perfect agreement
    assert ag["detection"]["map50"] == pytest.approx(1.0) and ag["drivable"]["miou"] == pytest.approx(1.0)
    assert ag["lane"]["iou"] == pytest.approx(1.0)
    assert rep["meta"]["mode"] == "live" and rep["meta"]["unknown_outputs"] == 1 and rep["meta"]["frames_sent"] == 6
    for f in ("report.json", "report.md", "frames.csv"):
        assert (tmp_path / f).is_file()


def test_late_outputs_are_counted_not_double_reported(setup, tmp_path):
    b, frames, outs = setup
    lb = LiveBench(_models(b), total=3, max_pending=1)
    lb.output("teacher", "detections", 99 * 10**9, outs[0]["detections"], 0.0)  # overtakes its frame ...
    lb.frame_sent(99 * 10**9, 0.0)  # ... which still claims it
    lb.frame_sent(100 * 10**9, 0.0)
    lb.frame_sent(101 * 10**9, 0.1)  # pushes frame 100 out of the matching window: reported, nothing came
    lb.output("teacher", "detections", 100 * 10**9, outs[0]["detections"], 0.5)
    assert lb.late == 1 and lb.unknown == 0
    rows = {r["stamp_ns"]: r for r in lb.builder.rows}
    assert rows[99 * 10**9]["teacher_status"] == "skipped"  # only 1 of 3 outputs arrived
    with pytest.raises(ValueError, match="unknown output"):
        lb.output("teacher", "overlay", 100 * 10**9, None)


def test_frames_a_node_rejected_are_failed_and_throughput_is_the_offline_definition(setup, tmp_path):
    """The live report's split and throughput mean what the offline report's do: failed = frames the
    node rejected (its /diagnostics count, at most its unanswered frames), skipped = frames never
    processed; throughput = processed / the sum of latencies; the wall-time rate is answered_fps."""
    b, frames, outs = setup
    lb = LiveBench(_models(b), total=8)  # 8 in the recording, 6 sent
    stamp = lambda i: (100 + i) * 10**9  # noqa: E731 - a one-line formula
    for i, f in enumerate(frames):
        lb.frame_sent(stamp(i), t_sent=10.0 + i, image=f)
        for m, delay in (("teacher", 0.05), ("student", 0.02)):
            if m == "student" and i in (1, 3, 5):
                continue  # the student answers frames 0, 2, 4 only
            for p in OUTPUT_PARTS:
                lb.output(m, p, stamp(i), outs[i][p], t_recv=10.0 + i + delay)
    lb.node_diagnostics(
        "student", {"failed": "2", "last_error": "Image.step 1919 is smaller than 1920", "skipped": "1"}
    )
    lb.node_diagnostics("teacher", {"failed": "9", "last_error": ""})  # more than it left unanswered
    rep = lb.finish(tmp_path, wall_s=6.0)
    t, s = rep["models"]["teacher"], rep["models"]["student"]
    # student: 3 answered; of the 3 sent it did not answer, its diagnostics say 2 were rejected;
    # the third and the 2 frames never sent were never processed
    assert s["frames"] == {"total": 8, "processed": 3, "failed": 2, "skipped": 3}
    assert s["errors"][0]["count"] == 2 and "Image.step 1919" in s["errors"][0]["first"]
    # teacher: answered all 6 it was sent; a count above its unanswered frames makes no failure up,
    # and the 2 frames never sent cannot have been rejected by it
    assert t["frames"] == {"total": 8, "processed": 6, "failed": 0, "skipped": 2}
    assert rep["meta"]["failed_from_node_diagnostics"] == {"student": 2, "teacher": 0}
    # throughput: processed / sum of latencies (as offline), not processed / wall time
    assert s["throughput_fps"] == pytest.approx(1000 / 20.0) and t["throughput_fps"] == pytest.approx(1000 / 50.0)
    assert rep["meta"]["answered_fps"] == {"teacher": pytest.approx(1.0), "student": pytest.approx(0.5)}


def test_a_node_without_diagnostics_leaves_every_unanswered_frame_skipped(setup, tmp_path):
    b, frames, outs = setup
    lb = LiveBench(_models(b), total=2)
    lb.frame_sent(100 * 10**9, 0.0)
    lb.node_diagnostics("teacher", {"failed": "n/a"})  # unreadable: nothing is made up
    rep = lb.finish(tmp_path, wall_s=1.0)
    assert rep["models"]["teacher"]["frames"] == {"total": 2, "processed": 0, "failed": 0, "skipped": 2}
    assert rep["models"]["teacher"]["throughput_fps"] is None and rep["meta"]["failed_from_node_diagnostics"] == {}
