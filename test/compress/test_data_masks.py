"""Lane mappings (binary, BDD100K toolkit) and the two ground-truth mask resizes (nearest, YOLOP's)."""

from __future__ import annotations

import pytest

pytest.importorskip(
    "torch",
    reason="needs torch (the offline half, compress/): `make test` installs it; "
    "a ROS 2 machine under colcon test may not have it",
)

from pathlib import Path

import cv2
import numpy as np
from conftest_data import write_sample

from compress.data.augment import letterbox
from compress.data.bdd import DataConfig
from compress.data.dataset import MultiTaskDataset
from compress.data.errors import DataConfigError, DatasetError
from compress.data.masks import map_lane, resize_mask


def test_lane_mappings_on_png(tmp_path: Path) -> None:
    # toolkit values: 255 background; 0 (a lane of category 0, solid, parallel), 3, 35 (direction bit)
    values = np.array([[255, 0, 3, 35, 255, 1]], np.uint8)
    path = tmp_path / "lane.png"
    cv2.imwrite(str(path), values)
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(map_lane(raw, "bdd_toolkit"), [[0, 1, 1, 1, 0, 1]])
    np.testing.assert_array_equal(map_lane(raw, "binary"), [[1, 0, 1, 1, 1, 1]])
    np.testing.assert_array_equal(map_lane(raw), map_lane(raw, "binary"))  # binary is the default
    with pytest.raises(
        DataConfigError, match=r"unknown lane_mapping 'bits'; expected one of \['bdd_toolkit', 'binary'\]"
    ):
        map_lane(raw, "bits")
    with pytest.raises(DataConfigError, match=r"lane_mapping 'bits' is not supported; expected one of"):
        DataConfig(root=Path("."), lane_mapping="bits")
    with pytest.raises(
        DataConfigError, match=r"mask_resize 'cubic' is not supported; expected one of \['nearest', 'yolop'\]"
    ):
        DataConfig(root=Path("."), mask_resize="cubic")
    colour = np.zeros((2, 2, 3), np.uint8)
    colour[0, 0] = (0, 0, 255)
    with pytest.raises(ValueError, match="single-channel id map"):
        map_lane(colour, "bdd_toolkit")


def _thin_lines(w: int = 100, h: int = 60) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[:, 37] = 1  # one pixel wide, at an odd column: nearest halving never samples it
    m[20, :] = 1  # one pixel high, at an even row: nearest halving keeps it
    return m


def test_resize_shrinking_thin_lines_by_hand_and_by_cv2() -> None:
    m = _thin_lines()
    near = resize_mask(m, (50, 30), "nearest")
    yolop = resize_mask(m, (50, 30), "yolop")
    # nearest takes source column 2x and row 2y: the column at 37 vanishes, row 20 -> row 10 (50 px)
    assert int(near.sum()) == 50 and near[10].all()
    # INTER_AREA averages 2x2 blocks: a block half covered by a line is 127.5 > 1 -> the column
    # survives as column 18 (30 px) and row 10 (50 px), sharing one pixel: 79
    assert int(yolop.sum()) == 30 + 50 - 1 and yolop[:, 18].all() and yolop[10].all()
    area = cv2.resize(m * np.uint8(255), (50, 30), interpolation=cv2.INTER_AREA)
    assert int((area > 1).sum()) == 79
    assert int(cv2.resize(m, (50, 30), interpolation=cv2.INTER_NEAREST).sum()) == 50
    assert set(np.unique(yolop).tolist()) == {0, 1} and yolop.dtype == np.uint8


def test_resize_enlarging_thin_lines_uses_linear() -> None:
    m = _thin_lines()
    near = resize_mask(m, (200, 120), "nearest")
    yolop = resize_mask(m, (200, 120), "yolop")
    # nearest doubles each line: 2 columns x 120 + 2 rows x 200 - 4 shared
    assert int(near.sum()) == 2 * 120 + 2 * 200 - 4
    # bilinear: destination columns 73..76 sample source 36.25, 36.75, 37.25, 37.75, each with some
    # weight on column 37 (>= 0.25 * 255 > 1): 4 columns; likewise rows 39..42
    assert int(yolop.sum()) == 4 * 120 + 4 * 200 - 16
    assert np.flatnonzero(yolop[0]).tolist() == [73, 74, 75, 76]
    lin = cv2.resize(m * np.uint8(255), (200, 120), interpolation=cv2.INTER_LINEAR)
    assert int((lin > 1).sum()) == int(yolop.sum())


def test_letterbox_pads_yolop_resized_masks_with_zero() -> None:
    img = np.full((60, 100, 3), 40, np.uint8)
    m = _thin_lines()
    # 100x60 into 64x64: ratio 0.64, 64x38 of image, rows 13..50 (13 rows of padding above)
    _, (near,), _, info = letterbox(img, [m], (64, 64))
    _, (yolop,), _, info2 = letterbox(img, [m], (64, 64), mask_resize="yolop")
    assert info.valid == info2.valid == (13, 51, 0, 64)
    assert near.shape == yolop.shape == (64, 64)
    assert not yolop[:13].any() and not yolop[51:].any()
    inner = cv2.resize(m * np.uint8(255), (64, 38), interpolation=cv2.INTER_AREA) > 1
    np.testing.assert_array_equal(yolop[13:51], inner.astype(np.uint8))
    assert int(yolop.sum()) > int(near.sum())


def test_dataset_reads_toolkit_lanes_and_resizes_as_configured(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    lane = np.full((60, 100), 255, np.uint8)  # toolkit: 255 background
    lane[_thin_lines().astype(bool)] = 3  # a lane of category 3
    write_sample(root, "val", "a", np.full((60, 100, 3), 90, np.uint8), np.zeros((60, 100), np.uint8), lane, [])
    counts = {}
    for resize in ("nearest", "yolop"):
        cfg = DataConfig(root=root, split="val", lane_mapping="bdd_toolkit", mask_resize=resize)
        item = MultiTaskDataset(cfg, img_size=(50, 30)).load(0)
        counts[resize] = int(item["lane"].sum())
    assert counts == {"nearest": 50, "yolop": 79}
    # read as binary (the default), both 255 and 3 are nonzero: the whole image is lane
    item = MultiTaskDataset(DataConfig(root=root, split="val"), img_size=(50, 30)).load(0)
    assert int(item["lane"].sum()) == 50 * 30
    # a colour lane mask under bdd_toolkit names the file and the option
    cv2.imwrite(str(root / "ll_seg_annotations" / "val" / "a.png"), np.dstack([lane, lane, lane * 0]))
    ds = MultiTaskDataset(DataConfig(root=root, split="val", lane_mapping="bdd_toolkit"), img_size=(50, 30))
    with pytest.raises(DatasetError, match=r"a\.png: expected a single-channel id map.*check lane_mapping"):
        ds.load(0)
