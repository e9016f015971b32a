"""`mtc-compress bag --dataset`: a dataset split recorded with its labels, read back through rosbags
and, for MCAP, through the independent `mcap` + `mcap-ros2-support` readers: identical stamps and
labels. (Moved from test/runtime/test_bags.py: the dataset bridge lives in compress/data.)"""

import cv2
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

from bag_helpers import mcap_read as _mcap_read
from bag_helpers import rosbags_read as _rosbags_read

from compress.cli import main as mtc_compress
from mtc_perception.bags import DEFAULT_START_NS, stamp_to_ns
from mtc_perception.imaging import compressed_to_bgr


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_dataset_split_records_frames_and_labels_with_the_same_stamps(tmp_path, synth_root, storage):
    from compress.data.bdd import DataConfig, index_split

    out = tmp_path / "bag"
    assert (
        mtc_compress(
            [
                "bag",
                "--dataset",
                str(synth_root),
                "--split",
                "val",
                "--out",
                str(out),
                "--storage",
                storage,
                "--transport",
                "compressed",
                "--jpeg-quality",
                "95",
            ]
        )
        == 0
    )
    samples = index_split(DataConfig(root=synth_root, split="val")).samples
    cams = _rosbags_read(out, "/camera/image_raw/compressed", "humble")
    dets = _rosbags_read(out, "/ground_truth/detections", "humble")
    drv = _rosbags_read(out, "/ground_truth/drivable_mask", "humble")
    lane = _rosbags_read(out, "/ground_truth/lane_mask", "humble")
    assert len(cams) == len(dets) == len(drv) == len(lane) == len(samples) == 8
    for s, (t, cam), (_, d), (_, dm), (_, lm) in zip(samples, cams, dets, drv, lane):
        stamp = stamp_to_ns(cam.header.stamp)
        assert t == stamp and {stamp_to_ns(m.header.stamp) for m in (d, dm, lm)} == {stamp}
        img = cv2.imread(str(s.image))
        assert cam.format.endswith("jpeg compressed bgr8")
        assert np.abs(compressed_to_bgr(cam).astype(int) - img.astype(int)).mean() < 3  # JPEG q95 of the same frame
        got = np.array(
            [
                [
                    x.bbox.center.position.x - x.bbox.size_x / 2,
                    x.bbox.center.position.y - x.bbox.size_y / 2,
                    x.bbox.center.position.x + x.bbox.size_x / 2,
                    x.bbox.center.position.y + x.bbox.size_y / 2,
                ]
                for x in d.detections
            ]
        ).reshape(-1, 4)
        assert np.allclose(got, s.boxes[:, 1:5], atol=1e-3) and all(
            x.results[0].hypothesis.class_id == "vehicle" for x in d.detections
        )
        want_drv = cv2.imread(str(s.drivable), cv2.IMREAD_UNCHANGED) > 0
        assert dm.encoding == "mono8" and np.array_equal(dm.data.reshape(dm.height, dm.width) > 0, want_drv)
        assert set(np.unique(lm.data)) <= {0, 255} and np.array_equal(
            lm.data.reshape(lm.height, lm.width) > 0, cv2.imread(str(s.lane), cv2.IMREAD_UNCHANGED) > 0
        )
    if storage == "mcap":  # the independent reader decodes the vision_msgs schema the bag embeds
        md = _mcap_read(out, "/ground_truth/detections")
        assert [len(m.detections) for _, m in md] == [len(s.boxes) for s in samples] and sum(
            len(s.boxes) for s in samples
        ) > 0
        for (_, m), s in zip(md, samples):
            for x, b in zip(m.detections, s.boxes):
                assert x.bbox.size_x == pytest.approx(float(b[3] - b[1])) and x.bbox.center.position.y == pytest.approx(
                    float(b[2] + b[4]) / 2
                )


def test_resize_limit_and_fps(tmp_path, synth_root):
    from compress.data.bdd import DataConfig, index_split

    out = tmp_path / "bag"
    assert (
        mtc_compress(
            [
                "bag",
                "--dataset",
                str(synth_root),
                "--out",
                str(out),
                "--resize",
                "160x90",
                "--limit",
                "3",
                "--fps",
                "25",
                "--topic",
                "/front/image",
            ]
        )
        == 0
    )
    cams = _rosbags_read(out, "/front/image", "humble")
    dets = _rosbags_read(out, "/ground_truth/detections", "humble")
    masks = _rosbags_read(out, "/ground_truth/lane_mask", "humble")
    assert [t for t, _ in cams] == [DEFAULT_START_NS + i * 40_000_000 for i in range(3)]
    assert all((m.width, m.height) == (160, 90) for _, m in cams + masks)
    s = index_split(DataConfig(root=synth_root, split="val")).samples[0]
    if len(s.boxes):
        d = dets[0][1].detections[0]
        assert d.bbox.size_x == pytest.approx((s.boxes[0, 3] - s.boxes[0, 1]) / 2, abs=1e-3)  # 320 -> 160
        assert d.bbox.size_y == pytest.approx((s.boxes[0, 4] - s.boxes[0, 2]) / 2, abs=1e-3)  # 180 -> 90


def test_both_bag_commands_share_one_option_definition():
    from compress.cli import build_parser as compress_parser
    from mtc_perception.cli import build_parser as runtime_parser

    def options(parser):
        sub = next(a for a in parser._actions if a.dest == "cmd").choices["bag"]
        return sorted(o for a in sub._actions for o in a.option_strings)

    assert options(compress_parser()) == options(runtime_parser())
    assert "--dataset" in options(compress_parser()) and "--resize" in options(compress_parser())


def test_a_bdd100k_download_is_recorded_with_its_toolkit_mask_encodings(tmp_path, synth_root):
    """BDD100K as downloaded: the toolkit's masks (drivable 0 = direct, lane 255 = background) are
    recorded as the same ground truth as the YOLOP-layout copy of the split, without flags; an
    explicit mapping still wins (and reading toolkit lanes as binary marks every pixel lane)."""
    from conftest_data import write_bdd_download

    bdd = write_bdd_download(synth_root, tmp_path / "download")
    out = tmp_path / "bag"
    assert mtc_compress(["bag", "--dataset", str(bdd), "--split", "val", "--out", str(out)]) == 0
    ref = tmp_path / "ref"
    assert mtc_compress(["bag", "--dataset", str(synth_root), "--split", "val", "--out", str(ref)]) == 0
    for topic in ("/ground_truth/drivable_mask", "/ground_truth/lane_mask"):
        got, want = _rosbags_read(out, topic, "humble"), _rosbags_read(ref, topic, "humble")
        assert len(got) == len(want) == 8
        for (_, g), (_, w) in zip(got, want):
            assert bytes(g.data) == bytes(w.data), topic
        assert any(np.count_nonzero(m.data) for _, m in got)
    wrong = tmp_path / "wrong"
    args = ["bag", "--dataset", str(bdd), "--split", "val", "--out", str(wrong), "--lane-mapping", "binary"]
    assert mtc_compress(args) == 0
    assert all(np.all(np.asarray(m.data) == 255) for _, m in _rosbags_read(wrong, "/ground_truth/lane_mask", "humble"))
