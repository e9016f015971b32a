"""synthroad generator: determinism, layout and label/pixel consistency."""

from __future__ import annotations

import pytest

pytest.importorskip(
    "torch",
    reason="needs torch (the offline half, compress/): `make test` installs it; "
    "a ROS 2 machine under colcon test may not have it",
)

import json
from pathlib import Path

import cv2
import numpy as np

from compress.data.errors import DatasetError
from compress.data.synthroad import VERSION, lane_thickness, render, synthesize

SIZE = (160, 96)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "synthroad.json"
    }


def test_same_seed_same_bytes_any_worker_count(tmp_path: Path) -> None:
    a = synthesize(tmp_path / "a", 3, 2, seed=7, size=SIZE, workers=1, progress=False)
    synthesize(tmp_path / "b", 3, 2, seed=7, size=SIZE, workers=1, progress=False)
    synthesize(tmp_path / "c", 3, 2, seed=7, size=SIZE, workers=2, progress=False)
    fa, fb, fc = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert len(fa) == 5 * 4
    assert fa == fb
    assert fa == fc
    assert (tmp_path / "a" / "synthroad.json").read_text() == (tmp_path / "c" / "synthroad.json").read_text()
    assert a["counts"]["train"]["images"] == 3 and a["counts"]["val"]["images"] == 2
    # identical pixels (decoded), not only identical files
    img_a = cv2.imread(str(tmp_path / "a" / "images" / "val" / "val_000001.jpg"))
    img_c = cv2.imread(str(tmp_path / "c" / "images" / "val" / "val_000001.jpg"))
    np.testing.assert_array_equal(img_a, img_c)


def test_different_seed_differs(tmp_path: Path) -> None:
    synthesize(tmp_path / "a", 2, 0, seed=1, size=SIZE, progress=False)
    synthesize(tmp_path / "b", 2, 0, seed=2, size=SIZE, progress=False)
    fa, fb = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert fa.keys() == fb.keys()
    assert all(fa[k] != fb[k] for k in fa if k.endswith((".jpg", ".png")))


def test_layout_metadata_and_summary(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    summary = synthesize(out, 4, 2, seed=0, size=SIZE, progress=False)
    for d in ("images", "det_annotations", "da_seg_annotations", "ll_seg_annotations"):
        ext = {"images": ".jpg", "det_annotations": ".json"}.get(d, ".png")
        assert len(list((out / d / "train").glob("*" + ext))) == 4
        assert len(list((out / d / "val").glob("*" + ext))) == 2
    meta = json.loads((out / "synthroad.json").read_text())
    assert meta["version"] == VERSION and meta["seed"] == 0 and meta["size"] == list(SIZE)
    n_boxes = sum(
        len(json.loads(p.read_text())["frames"][0]["objects"])
        for p in (out / "det_annotations" / "train").glob("*.json")
    )
    assert meta["counts"]["train"]["boxes"] == n_boxes == summary["counts"]["train"]["boxes"]
    assert summary["ms_per_image"] > 0
    # re-running into a previous synthroad output replaces it; a foreign dir is refused
    synthesize(out, 1, 1, seed=0, size=SIZE, progress=False)
    assert len(list((out / "images" / "train").iterdir())) == 1
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    with pytest.raises(DatasetError, match="not a synthroad output"):
        synthesize(foreign, 1, 0, seed=0, size=SIZE, progress=False)


def test_rendered_scenes_are_sane_and_labels_match_pixels() -> None:
    W, H = 320, 180
    lanes, counts, heights = set(), [], []
    for i in range(12):
        s = render(11, "train", i, (W, H))
        assert s.image.shape == (H, W, 3) and s.image.dtype == np.uint8
        for m in (s.drivable, s.lane):
            assert m.shape == (H, W) and set(np.unique(m).tolist()) <= {0, 255}
        assert (s.drivable > 0).mean() > 0.05, "road visible"
        assert (s.lane > 0).sum() > 100, "lane lines visible"
        # lane lines stop at the horizon: nothing in the top rows
        assert not s.lane[:5].any()
        objs = s.label["frames"][0]["objects"]
        lanes.add(s.info["n_lanes"])
        counts.append(len(objs))
        road = s.drivable > 0
        for o in objs:
            b = o["box2d"]
            assert o["category"] in ("car", "truck", "bus")
            assert 0 <= b["x1"] < b["x2"] <= W and 0 <= b["y1"] < b["y2"] <= H
            x1, y1, x2, y2 = (int(b[k]) for k in ("x1", "y1", "x2", "y2"))
            assert y2 - y1 >= 6
            heights.append(y2 - y1)
            # vehicles occlude the road: a box is mostly not drivable
            if o["attributes"]["occluded"] is False:
                assert road[y1:y2, x1:x2].mean() < 0.5
                # and the vehicle touches all four sides of its box (tight box)
                veh = ~road[y1:y2, x1:x2]
                assert veh[0].any() and veh[-1].any() and veh[:, 0].any() and veh[:, -1].any()
    assert len(lanes) >= 2, f"lane counts should vary, got {lanes}"
    assert len(set(counts)) >= 3, f"vehicle counts should vary, got {counts}"
    assert min(heights) < 20 and max(heights) > 50, "vehicles at many scales"


def test_box_pixels_differ_from_road() -> None:
    s = render(4, "val", 0, (320, 180))
    objs = [o for o in s.label["frames"][0]["objects"] if not o["attributes"]["occluded"]]
    assert objs, "scene with an unoccluded vehicle expected"
    gray = cv2.cvtColor(s.image, cv2.COLOR_BGR2GRAY).astype(float)
    road = (s.drivable > 0) & (s.lane == 0)
    road_level = np.median(gray[road])
    for o in objs:
        b = o["box2d"]
        patch = gray[int(b["y1"]) : int(b["y2"]), int(b["x1"]) : int(b["x2"])]
        # a vehicle has dark parts (wheels, underbody) and structure, unlike asphalt
        assert patch.std() > 8 or abs(patch.mean() - road_level) > 15


def test_lane_thickness() -> None:
    assert lane_thickness(640) == 8 and lane_thickness(1280) == 16 and lane_thickness(160) == 2


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="too small"):
        synthesize(tmp_path / "x", 1, 1, seed=0, size=(32, 32), progress=False)
    with pytest.raises(DatasetError, match="split 'test'"):
        render(0, "test", 0)
