"""BDD100K as downloaded: its own folder layout found under the root, without symlinks or flags."""

from __future__ import annotations

import pytest

pytest.importorskip(
    "torch",
    reason="needs torch (the offline half, compress/): `make test` installs it; "
    "a ROS 2 machine under colcon test may not have it",
)

import json
import shutil
from pathlib import Path

import numpy as np
from conftest_data import N_VAL, write_bdd_download

from compress.data.bdd import DataConfig
from compress.data.dataset import MultiTaskDataset
from compress.data.errors import DataConfigError, DatasetError


def _items(cfg: DataConfig) -> list[dict]:
    ds = MultiTaskDataset(cfg, img_size=(160, 96))
    return [ds.load(i) for i in range(len(ds))]


def _same_items(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) == N_VAL
    for x, y in zip(a, b):
        assert Path(x["meta"]["path"]).name == Path(y["meta"]["path"]).name
        np.testing.assert_array_equal(x["boxes"].numpy(), y["boxes"].numpy())
        for k in ("drivable", "lane"):
            np.testing.assert_array_equal(x[k].numpy(), y[k].numpy())
            assert x["meta"][f"has_{k}"] and y["meta"][f"has_{k}"]


@pytest.mark.parametrize("release", ["det_20", "original"])
@pytest.mark.parametrize("inside", [False, True])
def test_download_read_like_the_yolop_layout(
    synth_base: Path, tmp_path: Path, release: str, inside: bool, logs
) -> None:
    base = write_bdd_download(synth_base, tmp_path / "dl", release=release)
    root = base if inside else base.parent  # the bdd100k/ folder itself, or the folder holding it
    cfg = DataConfig(root=root, split="val").resolved()
    label = "labels/det_20/det_val.json" if release == "det_20" else "labels/bdd100k_labels_images_val.json"
    assert cfg.label_format == "bdd_official" and cfg.label_json == base / label
    assert cfg.image_dir == base / "images/100k/val" and cfg.images_path() == base / "images/100k/val"
    assert cfg.drivable_dir == base / "labels/drivable/masks/val" and cfg.lane_dir == base / "labels/lane/masks/val"
    assert (cfg.drivable_mapping, cfg.lane_mapping) == ("bdd_toolkit", "bdd_toolkit")
    assert f"BDD100K download at {base}, split 'val': labels {label}, images images/100k/val" in logs.text
    assert "drivable masks labels/drivable/masks/val, lane masks labels/lane/masks/val" in logs.text
    # the toolkit's ids (drivable 0 = direct, lane 255 = background) give YOLOP's 0/255 masks back
    _same_items(_items(DataConfig(root=root, split="val")), _items(DataConfig(root=synth_base, split="val")))
    assert DataConfig(root=root, split="val").images_path() == base / "images/100k/val"  # e.g. calibration frames


def test_explicit_options_win_over_the_download(synth_base: Path, tmp_path: Path) -> None:
    base = write_bdd_download(synth_base, tmp_path / "dl")
    entries = json.loads((base / "labels/det_20/det_val.json").read_text())
    one = tmp_path / "one.json"
    one.write_text(json.dumps(entries[:1]))
    cfg = DataConfig(root=base.parent, split="val", label_json=one, drivable_mapping="yolop_binary").resolved()
    assert cfg.label_json == one and cfg.drivable_mapping == "yolop_binary" and cfg.lane_mapping == "bdd_toolkit"
    ds = MultiTaskDataset(DataConfig(root=base.parent, split="val", label_json=one), img_size=(160, 96))
    assert len(ds) == 1
    # a mask folder given explicitly keeps the binary mappings (it may be YOLOP's)
    cfg = DataConfig(root=base, split="val", lane_dir=synth_base / "ll_seg_annotations/val").resolved()
    assert cfg.lane_dir == synth_base / "ll_seg_annotations/val" and cfg.lane_mapping == "binary"
    assert cfg.drivable_mapping == "bdd_toolkit"
    # YOLOP's layout is read as before: nothing filled in
    cfg = DataConfig(root=synth_base, split="val").resolved()
    assert cfg.label_format == "yolop" and cfg.label_json is None and cfg.drivable_mapping == "yolop_binary"


def test_download_without_masks_has_no_mask_labels(synth_base: Path, tmp_path: Path) -> None:
    base = write_bdd_download(synth_base, tmp_path / "dl", masks=False)
    cfg = DataConfig(root=base, split="val").resolved()
    assert cfg.drivable_dir is None and cfg.lane_dir is None
    assert (cfg.drivable_mapping, cfg.lane_mapping) == ("yolop_binary", "binary")
    item = MultiTaskDataset(DataConfig(root=base, split="val"), img_size=(160, 96)).load(0)
    assert not item["meta"]["has_drivable"] and not item["meta"]["has_lane"] and len(item["boxes"])


def test_neither_layout_names_the_folder_what_was_looked_for_and_the_flags(synth_base: Path, tmp_path: Path) -> None:
    empty = tmp_path / "somewhere"
    empty.mkdir()
    with pytest.raises(DatasetError) as e:
        MultiTaskDataset(DataConfig(root=empty, split="val"))
    msg = str(e.value)
    assert msg.startswith(f"{empty}: not a dataset for split 'val'")
    for part in ("images/val/", "det_annotations/val/", "images/100k/val", "labels/det_20/det_val.json"):
        assert part in msg
    assert "labels/bdd100k_labels_images_val.json" in msg and "--label-json FILE --image-dir DIR" in msg
    # a download without the detection labels of the split
    base = write_bdd_download(synth_base, tmp_path / "dl")
    shutil.rmtree(base / "labels/det_20")
    with pytest.raises(
        DatasetError, match=r"a BDD100K download without detection labels for split 'val'.*--label-json"
    ):
        DataConfig(root=base, split="val").resolved()
    # bdd_official with a root that is no download and no label file
    with pytest.raises(DataConfigError, match=r"needs label_json: .* is not a BDD100K download"):
        DataConfig(root=empty, label_format="bdd_official").resolved()
