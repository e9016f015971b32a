"""Hostile `mtc bag` input (issue 17): options validated before anything is written, strictly
increasing stamps, no partial bag left behind on any failure, non-UTF-8 and truncated image files
reported by name."""

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("rosbags", reason="needs rosbags to write and read rosbag2 recordings: `pip install rosbags`")

from bag_helpers import rosbags_read as _rosbags_read

from mtc_perception.bags import BagError, SourceFrame, WriteConfig, write_bag
from mtc_perception.bags.writer import MAX_FPS, MIN_FPS
from mtc_perception.cli import main as mtc


def _img(seed=0, size=(32, 24)):
    return np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


@pytest.mark.parametrize("fps", ["0", "-5", "0.000000001", "inf", "nan", "1e7", "-inf"])
def test_an_unusable_fps_is_refused_before_anything_is_written(tmp_path, fps, logs):
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), _img())
    rc = mtc(["bag", "--input", str(src), "--out", str(tmp_path / "bag"), f"--fps={fps}"])
    assert rc == 2
    assert f"fps {float(fps)!r} is not a usable frame rate: give a number from 0.001 to 1e+06" in logs.text
    assert _leftovers(tmp_path) == ["in"]


@pytest.mark.parametrize("size", ["0x0", "-4x3", "64x0", "axb"])
def test_an_unusable_resize_is_a_usage_error(tmp_path, size, capsys):
    with pytest.raises(SystemExit) as e:
        mtc(["bag", "--input", str(tmp_path), "--out", str(tmp_path / "bag"), f"--resize={size}"])
    assert e.value.code == 2 and f"size {size!r} must be" in capsys.readouterr().err
    assert _leftovers(tmp_path) == []


def test_write_config_checks_resize_and_fps_itself():
    for bad in [(0, 0), (-1, 5), (5,), (1.5, 2)]:
        with pytest.raises(BagError, match=r"resize .* must be WIDTHxHEIGHT with two positive integers"):
            WriteConfig(resize=bad)
    with pytest.raises(BagError, match=r"claims 100000x100000 pixels, over the limit .*\(--resize\)"):
        WriteConfig(resize=(100000, 100000))
    with pytest.raises(BagError, match=r"fps inf is not a usable frame rate"):
        WriteConfig(fps=float("inf"))
    assert (MIN_FPS, MAX_FPS) == (1e-3, 1e6)
    WriteConfig(fps=MIN_FPS)
    WriteConfig(fps=MAX_FPS, resize=(7680, 4320))


@pytest.mark.parametrize("fps", [MAX_FPS, MIN_FPS])
def test_stamps_strictly_increase_at_the_extreme_frame_rates(tmp_path, fps):
    frames = [SourceFrame(f"f{i}", _img(i)) for i in range(4)]
    s = write_bag(tmp_path / "bag", frames, WriteConfig(fps=fps))
    assert s.frames == 4 and s.path == tmp_path / "bag"
    stamps = [t for t, _ in _rosbags_read(tmp_path / "bag", "/camera/image_raw", "humble")]
    assert np.diff(stamps).tolist() == [round(1e9 / fps)] * 3
    assert _leftovers(tmp_path) == ["bag"]


def test_stamps_past_a_ros_time_are_refused_and_nothing_is_left(tmp_path):
    frames = (SourceFrame(f"f{i}", _img()) for i in range(10))
    cfg = WriteConfig(fps=MIN_FPS, start_ns=(2**31 - 1) * 10**9 - 2 * 10**12)
    with pytest.raises(BagError, match=r"frame 3 \(f3\) would be stamped .* past what a ROS 2 Time holds"):
        write_bag(tmp_path / "bag", frames, cfg)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("exc", [RuntimeError("disk on fire"), KeyboardInterrupt()])
@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_failure_midway_leaves_no_bag(tmp_path, exc, storage):
    def frames():
        yield SourceFrame("f0", _img())
        yield SourceFrame("f1", _img(1))
        raise exc

    with pytest.raises(type(exc)):
        write_bag(tmp_path / "bag", frames(), WriteConfig(storage=storage))
    assert _leftovers(tmp_path) == []


def test_no_readable_frame_is_an_error_naming_them_and_leaves_no_bag(tmp_path):
    frames = [SourceFrame("x.png", None, error="not a decodable image"), SourceFrame("y.png", None, error="truncated")]
    with pytest.raises(BagError, match=r"no frame could be recorded into .*bag \(2 unreadable: x.png: not a decod"):
        write_bag(tmp_path / "bag", frames)
    assert _leftovers(tmp_path) == []


def test_an_existing_out_or_partial_is_refused_and_kept(tmp_path):
    (tmp_path / "bag").mkdir()
    with pytest.raises(BagError, match=r"bag exists; rosbag2 writers never overwrite"):
        write_bag(tmp_path / "bag", [SourceFrame("f", _img())])
    (tmp_path / ".bag2.partial").mkdir()
    with pytest.raises(BagError, match=r"\.bag2\.partial exists \(left by an interrupted `mtc bag`\?\); remove it"):
        write_bag(tmp_path / "bag2", [SourceFrame("f", _img())])
    assert _leftovers(tmp_path) == [".bag2.partial", "bag"]


def test_a_folder_with_non_utf8_and_truncated_files_is_recorded_and_reported_by_name(tmp_path, capsys, logs):
    src = os.fsencode(tmp_path / "in")
    os.mkdir(src)
    good = cv2.imencode(".jpg", _img(0, (64, 48)))[1].tobytes()
    for name, data in [(b"a\xff.jpg", good), (b"b.jpg", good), (b"c\xfe.jpg", good[: len(good) // 2])]:
        with open(src + b"/" + name, "wb") as fh:
            fh.write(data)
    out = tmp_path / "bag"
    assert mtc(["bag", "--input", os.fsdecode(src), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == 2 and len(summary["unreadable"]) == 1
    assert summary["unreadable"][0].startswith("c\\xfe.jpg: image file ") and "truncated" in summary["unreadable"][0]
    assert "c\\xfe.jpg" in logs.text
    assert (out / "metadata.yaml").is_file() and _leftovers(tmp_path) == ["bag", "in"]
    assert len(_rosbags_read(out, "/camera/image_raw", "humble")) == 2
