"""MultiTaskDataset items, augmentation consistency, collate and loaders."""

from __future__ import annotations

import pytest

pytest.importorskip(
    "torch",
    reason="needs torch (the offline half, compress/): `make test` installs it; "
    "a ROS 2 machine under colcon test may not have it",
)

from pathlib import Path

import numpy as np
import torch
from conftest_data import (
    N_TRAIN,
    N_VAL,
    SYNTH_SIZE,
    car,
    read_label,
    write_sample,
)

from compress.data.augment import PAD_VALUE, AugmentConfig
from compress.data.bdd import DataConfig
from compress.data.dataset import LoadStats, MultiTaskDataset, build_loader, collate, iterate


def _check_item(item: dict, size: tuple[int, int]) -> None:
    w, h = size
    assert item["img"].dtype == torch.uint8 and item["img"].shape == (3, h, w)
    assert item["boxes"].dtype == torch.float32 and item["boxes"].shape[1] == 5
    for k in ("drivable", "lane"):
        assert item[k].dtype == torch.uint8 and item[k].shape == (h, w)
        assert set(torch.unique(item[k]).tolist()) <= {0, 1}
    b = item["boxes"]
    if len(b):
        assert (b[:, 1] >= 0).all() and (b[:, 3] <= w).all()
        assert (b[:, 2] >= 0).all() and (b[:, 4] <= h).all()
        assert (b[:, 3] > b[:, 1]).all() and (b[:, 4] > b[:, 2]).all()


def test_val_item_letterbox_meta_and_boxes(synth_base: Path) -> None:
    size = (320, 256)  # 160x96 -> scale 2 -> 320x192, padded 32 rows top and bottom
    ds = MultiTaskDataset(DataConfig(root=synth_base, split="val"), img_size=size)
    assert len(ds) == N_VAL and ds.skipped == 0
    for i in range(len(ds)):
        item = ds[i]
        _check_item(item, size)
        meta = item["meta"]
        assert meta["orig_size"] == (SYNTH_SIZE[1], SYNTH_SIZE[0])
        assert meta["ratio"] == 2.0 and meta["pad"] == (0, 32)
        assert meta["valid"] == (32, 224, 0, 320)
        img = item["img"]
        assert (img[:, :32] == PAD_VALUE).all() and (img[:, 224:] == PAD_VALUE).all()
        assert not item["drivable"][:32].any() and not item["lane"][224:].any()
        assert item["drivable"][32:224].any() and item["lane"][32:224].any()
        label = read_label(synth_base, "val", Path(meta["path"]).stem)
        objs = [o["box2d"] for o in label["frames"][0]["objects"]]
        expected = torch.tensor(
            [[0, o["x1"] * 2, o["y1"] * 2 + 32, o["x2"] * 2, o["y2"] * 2 + 32] for o in objs], dtype=torch.float32
        ).reshape(-1, 5)
        torch.testing.assert_close(item["boxes"], expected)


def test_train_item_augmented_shapes(synth_base: Path) -> None:
    size = (192, 128)
    torch.manual_seed(0)
    ds = MultiTaskDataset(DataConfig(root=synth_base, split="train"), img_size=size, augment=AugmentConfig())
    for i in range(len(ds)):
        item = ds[i]
        assert "error" not in item
        _check_item(item, size)
        top, bottom, left, right = item["meta"]["valid"]
        assert 0 <= top < bottom <= size[1] and 0 <= left < right <= size[0]


@pytest.fixture
def square_ds(tmp_path: Path) -> Path:
    """One 200x100 image with a bright rectangle = the box = the drivable mask."""
    img = np.zeros((100, 200, 3), np.uint8)
    da = np.zeros((100, 200), np.uint8)
    ll = np.zeros((100, 200), np.uint8)
    img[30:60, 40:90] = 255
    da[30:60, 40:90] = 255
    ll[:, 150:153] = 255
    write_sample(tmp_path, "train", "sq", img, da, ll, [car(40, 30, 90, 60)])
    return tmp_path


def _bbox(mask: torch.Tensor) -> list[float]:
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def test_flip_keeps_box_image_and_masks_consistent(square_ds: Path) -> None:
    aug = AugmentConfig(degrees=0, translate=0, scale=0, shear=0, hsv_h=0, hsv_s=0, hsv_v=0, fliplr=1.0)
    ds = MultiTaskDataset(DataConfig(root=square_ds), img_size=(200, 100), augment=aug)
    item = ds[0]
    assert item["boxes"].tolist() == [[0.0, 110.0, 30.0, 160.0, 60.0]]
    assert _bbox(item["drivable"]) == [110.0, 30.0, 160.0, 60.0]
    assert _bbox(item["img"][0] > 128) == [110.0, 30.0, 160.0, 60.0]
    assert _bbox(item["lane"]) == [47.0, 0.0, 50.0, 100.0]


def test_affine_keeps_box_and_masks_consistent(square_ds: Path) -> None:
    aug = AugmentConfig(degrees=10, translate=0.1, scale=0.3, shear=0, hsv_h=0, hsv_s=0, hsv_v=0, fliplr=0.5)
    ds = MultiTaskDataset(DataConfig(root=square_ds), img_size=(200, 100), augment=aug)
    torch.manual_seed(1)
    moved = 0
    for _ in range(8):
        item = ds[0]
        assert len(item["boxes"]) == 1
        box = item["boxes"][0, 1:].tolist()
        moved += abs(box[0] - 40) > 1
        # the warped rectangle's extent matches the transformed box within 2 px
        np.testing.assert_allclose(_bbox(item["drivable"]), box, atol=2.0)
        np.testing.assert_allclose(_bbox(item["img"][0] > 128), box, atol=2.0)
    assert moved >= 4, "augmentation should actually move the box"


def test_collate_and_loader_with_workers(synth_base: Path) -> None:
    ds = MultiTaskDataset(DataConfig(root=synth_base, split="train"), img_size=(128, 80), augment=AugmentConfig())
    batch = collate([ds[0], ds[1]])
    assert batch["img"].shape == (2, 3, 80, 128) and batch["drivable"].shape == (2, 80, 128)
    n0, n1 = len(ds[0]["boxes"]), len(ds[1]["boxes"])
    assert batch["boxes"].shape == (n0 + n1, 6)
    assert batch["boxes"][:, 0].tolist() == [0.0] * n0 + [1.0] * n1
    assert batch["errors"] == [] and batch["skipped"] == 0

    loader = build_loader(ds, batch_size=4, workers=2, shuffle=True, seed=3)
    assert loader.persistent_workers
    stats = LoadStats()
    seen = []
    for _epoch in range(2):
        for b in iterate(loader, stats):
            assert b["img"].dtype == torch.uint8 and b["img"].shape[1:] == (3, 80, 128)
            assert b["boxes"].dtype == torch.float32 and b["boxes"].shape[1] == 6
            assert len(b["meta"]) == len(b["img"]) == len(b["lane"])
            seen += [m["index"] for m in b["meta"]]
    assert sorted(seen) == sorted(list(range(N_TRAIN)) * 2)
    assert stats.skipped == 0


def test_loader_shuffle_is_seeded(synth_base: Path) -> None:
    ds = MultiTaskDataset(DataConfig(root=synth_base, split="train"), img_size=(64, 48))

    def order(seed: int) -> list[int]:
        return [m["index"] for b in build_loader(ds, 2, 0, True, seed=seed) for m in b["meta"]]

    assert order(5) == order(5)
    assert sorted(order(6)) == list(range(N_TRAIN))
