"""Label formats, class map and drivable mappings."""

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
from conftest_data import read_label, stems, to_official

from compress.data.bdd import DataConfig, index_split, map_drivable, map_lane, parse_objects
from compress.data.errors import DataConfigError, DatasetError


def _by_stem(cfg: DataConfig) -> dict[str, np.ndarray]:
    return {s.stem: s.boxes for s in index_split(cfg).samples}


def test_official_and_yolop_formats_load_same_boxes(synth_copy: Path) -> None:
    root = synth_copy
    # Non-detection objects must be ignored identically in both formats.
    stem0 = stems(root, "train")[0]
    lbl = read_label(root, "train", stem0)
    lbl["frames"][0]["objects"] += [
        {"category": "person", "box2d": {"x1": 1, "y1": 1, "x2": 5, "y2": 9}},
        {"category": "lane/single white", "poly2d": [[0, 0], [10, 10]]},
        {"category": "area/drivable", "poly2d": [[0, 0], [10, 10]]},
    ]
    (root / "det_annotations" / "train" / f"{stem0}.json").write_text(json.dumps(lbl))
    official = root / "det_train.json"
    official.write_text(json.dumps(to_official(root, "train")))

    yolop = _by_stem(DataConfig(root=root, split="train"))
    off = _by_stem(
        DataConfig(
            label_format="bdd_official",
            label_json=official,
            image_dir=root / "images" / "train",
            drivable_dir=root / "da_seg_annotations" / "train",
            lane_dir=root / "ll_seg_annotations" / "train",
        )
    )
    assert sorted(yolop) == sorted(off) == stems(root, "train")
    n_boxes = 0
    for stem, boxes in yolop.items():
        np.testing.assert_array_equal(boxes, off[stem])
        expected = [
            o["box2d"]
            for o in read_label(root, "train", stem)["frames"][0]["objects"]
            if o["category"] in ("car", "bus", "truck")
        ]
        assert len(boxes) == len(expected)
        for row, b in zip(boxes, expected):
            assert row.tolist() == [0.0, b["x1"], b["y1"], b["x2"], b["y2"]]
        n_boxes += len(boxes)
    assert n_boxes > 0


def test_official_without_mask_dirs_has_no_masks(synth_copy: Path) -> None:
    official = synth_copy / "det.json"
    official.write_text(json.dumps(to_official(synth_copy, "val")))
    idx = index_split(
        DataConfig(label_format="bdd_official", label_json=official, image_dir=synth_copy / "images" / "val")
    )
    assert len(idx.samples) == 3
    assert all(s.drivable is None and s.lane is None for s in idx.samples)


def test_multi_class_map() -> None:
    cfg = DataConfig(
        root=Path("/nonexistent"),
        class_names=("car", "truck", "bus"),
        class_map={"car": 0, "truck": 1, "bus": 2, "train": 2},
    )
    objs = [
        {"category": c, "box2d": {"x1": 0, "y1": 0, "x2": 4, "y2": 4}}
        for c in ("bus", "car", "truck", "rider", "traffic sign")
    ]
    boxes = parse_objects(objs, "x.json", cfg)
    assert boxes[:, 0].tolist() == [2.0, 0.0, 1.0]


def test_unknown_category_and_bad_box_messages() -> None:
    cfg = DataConfig(root=Path("/data"))
    with pytest.raises(DatasetError) as exc:
        parse_objects(
            [{"category": "tram", "box2d": {"x1": 0, "y1": 0, "x2": 4, "y2": 4}}], "det_annotations/val/0003.json", cfg
        )
    msg = str(exc.value)
    assert msg.startswith("det_annotations/val/0003.json: unknown category 'tram'")
    assert "class_map" in msg and "--on-error skip" in msg
    with pytest.raises(DatasetError, match=r"a\.json: object 0 \('car'\) has an empty"):
        parse_objects([{"category": "car", "box2d": {"x1": 5, "y1": 0, "x2": 5, "y2": 4}}], "a.json", cfg)
    with pytest.raises(DatasetError, match="malformed box2d"):
        parse_objects([{"category": "car", "box2d": {"x1": 5, "y1": 0}}], "a.json", cfg)


@pytest.mark.parametrize(
    "mapping, expected",
    [
        ("yolop_binary", [0, 1, 1, 1, 1, 1]),
        ("bdd_v1", [0, 1, 1, 0, 0, 0]),
        ("bdd_toolkit", [1, 1, 0, 0, 0, 0]),
    ],
)
def test_drivable_mappings_on_png(tmp_path: Path, mapping: str, expected: list[int]) -> None:
    values = np.array([0, 1, 2, 3, 128, 255], np.uint8)
    mask = np.repeat(values[None, :], 4, axis=0)  # 4x6 PNG, one column per value
    path = tmp_path / "m.png"
    cv2.imwrite(str(path), mask)
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    out = map_drivable(raw, mapping)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.repeat(np.array(expected, np.uint8)[None], 4, 0))


def test_yolop_binary_handles_colour_png_and_lane_is_nonzero() -> None:
    colour = np.zeros((2, 3, 3), np.uint8)
    colour[0, 1] = (0, 255, 0)
    np.testing.assert_array_equal(map_drivable(colour, "yolop_binary"), [[0, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(map_lane(np.array([[0, 1, 255]], np.uint8)), [[0, 1, 1]])
    with pytest.raises(ValueError, match="single-channel id map"):
        map_drivable(colour, "bdd_v1")


def test_config_validation() -> None:
    with pytest.raises(DataConfigError, match="label_format 'coco'"):
        DataConfig(root=Path("."), label_format="coco")
    with pytest.raises(DataConfigError, match="drivable_mapping 'guess'"):
        DataConfig(root=Path("."), drivable_mapping="guess")
    with pytest.raises(DataConfigError, match="needs label_json"):
        DataConfig(label_format="bdd_official", image_dir=Path("."))
    with pytest.raises(DataConfigError, match="unknown data config keys"):
        DataConfig.from_dict({"root": ".", "colour": 1})
    cfg = DataConfig.from_dict({"root": "/d", "class_map": {"car": 0}, "split": "val"})
    assert cfg.class_map == (("car", 0),) and cfg.root == Path("/d")
    assert cfg.with_split("train").split == "train"
    hash(cfg)  # frozen and hashable


def test_data_wins_over_the_checkpoints_paths(synth_copy: Path, tmp_path: Path) -> None:
    """`mtc-compress eval --data D` on a checkpoint trained on the official layout: its label file and
    folders under the recorded root are read under D; D that does not exist is an error (it used to
    evaluate the training-time files and exit 0); a path outside the recorded root is an error naming it."""
    import shutil

    from compress.data.run_data import split_of_run

    old = synth_copy
    (old / "det.json").write_text(json.dumps(to_official(old, "val")))
    opts = {
        "label_format": "bdd_official",
        "label_json": str(old / "det.json"),
        "image_dir": str(old / "images" / "val"),
        "drivable_dir": str(old / "da_seg_annotations" / "val"),
        "lane_dir": str(old / "ll_seg_annotations" / "val"),
    }
    tc = {"data": str(old), "data_options": opts, "val_split": "val"}
    assert len(split_of_run(tc, None, "val", (128, 96))) == len(stems(old, "val"))  # the recorded data
    new = tmp_path / "moved"
    shutil.copytree(old, new)
    ds = split_of_run(tc, str(new), "val", (128, 96))
    assert ds.cfg.label_json == new / "det.json" and ds.cfg.image_dir == new / "images" / "val"
    with pytest.raises((DataConfigError, DatasetError), match="/nonexistent"):
        split_of_run(tc, "/nonexistent", "val", (128, 96))
    elsewhere = {**tc, "data_options": {**opts, "label_json": str(tmp_path / "labels" / "det.json")}}
    with pytest.raises(ValueError, match=r"label_json=.*outside that dataset"):
        split_of_run(elsewhere, str(new), "val", (128, 96))
