"""Bad data: clean DatasetError naming the file in raise mode, counted skips in skip mode."""

from __future__ import annotations

import pytest

pytest.importorskip(
    "torch",
    reason="needs torch (the offline half, compress/): `make test` installs it; "
    "a ROS 2 machine under colcon test may not have it",
)

import json
from pathlib import Path

from conftest_data import (
    N_TRAIN,
    N_VAL,
    SYNTH_SIZE,
    read_label,
    stems,
    to_official,
    write_label,
)

from compress.data.bdd import DataConfig
from compress.data.dataset import LoadStats, MultiTaskDataset, build_loader, iterate
from compress.data.errors import DatasetError

SIZE = (96, 64)


def _cfg(root: Path, mode: str) -> DataConfig:
    return DataConfig(root=root, split="train", on_error=mode)


def _load_all(ds: MultiTaskDataset, workers: int, stats: LoadStats | None = None) -> int:
    n = 0
    for b in iterate(build_loader(ds, batch_size=2, workers=workers, shuffle=False), stats):
        n += len(b["img"])
    return n


def _first_with_boxes(root: Path) -> str:
    for stem in stems(root, "train"):
        if read_label(root, "train", stem)["frames"][0]["objects"]:
            return stem
    raise AssertionError("synthetic split without any box")


# --- errors found while indexing -------------------------------------------------------------


def _break_missing_image(root: Path) -> tuple[str, str]:
    stem = stems(root, "train")[1]
    (root / "images" / "train" / f"{stem}.jpg").unlink()
    return f"det_annotations/train/{stem}.json", "label for a missing image"


def _break_missing_mask(root: Path) -> tuple[str, str]:
    stem = stems(root, "train")[2]
    (root / "da_seg_annotations" / "train" / f"{stem}.png").unlink()
    return f"da_seg_annotations/train/{stem}.png", "drivable mask missing"


def _break_unknown_category(root: Path) -> tuple[str, str]:
    stem = _first_with_boxes(root)
    lbl = read_label(root, "train", stem)
    lbl["frames"][0]["objects"][0]["category"] = "tram"
    write_label(root, "train", stem, lbl)
    return f"det_annotations/train/{stem}.json", "unknown category 'tram'"


def _break_malformed_json(root: Path) -> tuple[str, str]:
    stem = stems(root, "train")[3]
    (root / "det_annotations" / "train" / f"{stem}.json").write_text("{not json")
    return f"det_annotations/train/{stem}.json", "malformed label JSON"


def _break_empty_box(root: Path) -> tuple[str, str]:
    stem = _first_with_boxes(root)
    lbl = read_label(root, "train", stem)
    b = lbl["frames"][0]["objects"][0]["box2d"]
    b["x2"] = b["x1"]
    write_label(root, "train", stem, lbl)
    return f"det_annotations/train/{stem}.json", "empty or invalid box"


def _break_image_without_label(root: Path) -> tuple[str, str]:
    stem = stems(root, "train")[0]
    (root / "det_annotations" / "train" / f"{stem}.json").unlink()
    return f"images/train/{stem}.jpg", "image has no label file"


INDEX_CASES = [
    _break_missing_image,
    _break_missing_mask,
    _break_unknown_category,
    _break_malformed_json,
    _break_empty_box,
    _break_image_without_label,
]


@pytest.mark.parametrize("breaker", INDEX_CASES, ids=lambda f: f.__name__[7:])
def test_index_time_error_raise_and_skip(synth_copy: Path, breaker, caplog) -> None:
    shown, what = breaker(synth_copy)
    with pytest.raises(DatasetError) as exc:
        MultiTaskDataset(_cfg(synth_copy, "raise"), img_size=SIZE)
    assert str(exc.value).startswith(f"{shown}: ") and what in str(exc.value)

    caplog.set_level("WARNING", logger="compress.data.bdd")
    ds = MultiTaskDataset(_cfg(synth_copy, "skip"), img_size=SIZE)
    assert len(ds) == N_TRAIN - 1 and ds.skipped == 1
    assert shown in caplog.text  # logged, not silent
    assert _load_all(ds, workers=0) == N_TRAIN - 1


def test_official_label_for_missing_image(synth_copy: Path) -> None:
    entries = to_official(synth_copy, "train")
    entries.append({"name": "nope.jpg", "labels": []})
    lj = synth_copy / "det_train.json"
    lj.write_text(json.dumps(entries))
    cfg = DataConfig(
        label_format="bdd_official", label_json=lj, image_dir=synth_copy / "images" / "train", on_error="raise"
    )
    with pytest.raises(
        DatasetError,
        match=r"det_train\.json \[nope\.jpg\]: label for a missing "
        r"image .*nope\.jpg",
    ):
        MultiTaskDataset(cfg, img_size=SIZE)
    ds = MultiTaskDataset(
        DataConfig(
            label_format="bdd_official", label_json=lj, image_dir=synth_copy / "images" / "train", on_error="skip"
        ),
        img_size=SIZE,
    )
    assert len(ds) == N_TRAIN and ds.skipped == 1


def test_official_malformed_file(tmp_path: Path) -> None:
    lj = tmp_path / "det.json"
    lj.write_text("[{")
    (tmp_path / "img").mkdir()
    with pytest.raises(DatasetError, match=r"det\.json: malformed label JSON"):
        MultiTaskDataset(DataConfig(label_format="bdd_official", label_json=lj, image_dir=tmp_path / "img"))


# --- errors found while loading (inside DataLoader workers) -----------------------------------


def _break_corrupt_image(root: Path) -> tuple[str, str]:
    stem = stems(root, "train")[4]
    (root / "images" / "train" / f"{stem}.jpg").write_bytes(b"\x00garbage" * 10)
    return f"images/train/{stem}.jpg", "cannot decode image"


def _break_corrupt_mask(root: Path) -> tuple[str, str]:
    stem = stems(root, "train")[2]
    (root / "ll_seg_annotations" / "train" / f"{stem}.png").write_bytes(b"not a png")
    return f"ll_seg_annotations/train/{stem}.png", "cannot decode lane mask"


def _break_box_outside(root: Path) -> tuple[str, str]:
    stem = _first_with_boxes(root)
    lbl = read_label(root, "train", stem)
    lbl["frames"][0]["objects"][0]["box2d"]["x2"] = SYNTH_SIZE[0] + 40.0
    write_label(root, "train", stem, lbl)
    return f"det_annotations/train/{stem}.json", "outside image images/train/"


LOAD_CASES = [_break_corrupt_image, _break_corrupt_mask, _break_box_outside]


@pytest.mark.parametrize("breaker", LOAD_CASES, ids=lambda f: f.__name__[7:])
def test_load_time_error_raise_through_workers(synth_copy: Path, breaker) -> None:
    shown, what = breaker(synth_copy)
    ds = MultiTaskDataset(_cfg(synth_copy, "raise"), img_size=SIZE)
    assert len(ds) == N_TRAIN  # not detectable at index time
    with pytest.raises(DatasetError) as exc:
        _load_all(ds, workers=2)
    assert type(exc.value) is DatasetError
    msg = str(exc.value)
    assert msg.startswith(f"{shown}: ") and what in msg
    assert "Traceback" not in msg and "DataLoader worker" not in msg


@pytest.mark.parametrize("breaker", LOAD_CASES, ids=lambda f: f.__name__[7:])
def test_load_time_error_skip_counts(synth_copy: Path, breaker, caplog) -> None:
    shown, _ = breaker(synth_copy)
    ds = MultiTaskDataset(_cfg(synth_copy, "skip"), img_size=SIZE)
    stats = LoadStats()
    caplog.set_level("WARNING", logger="compress.data.dataset")
    assert _load_all(ds, workers=0, stats=stats) == N_TRAIN - 1
    assert stats.skipped == 1 and shown in stats.messages[0]
    assert shown in caplog.text


def test_skip_through_workers_counts(synth_copy: Path) -> None:
    _break_corrupt_image(synth_copy)
    _break_corrupt_mask(synth_copy)
    ds = MultiTaskDataset(_cfg(synth_copy, "skip"), img_size=SIZE)
    stats = LoadStats()
    assert _load_all(ds, workers=2, stats=stats) == N_TRAIN - 2
    assert stats.skipped == 2


def test_box_within_tolerance_is_clipped(synth_copy: Path) -> None:
    stem = _first_with_boxes(synth_copy)
    lbl = read_label(synth_copy, "train", stem)
    box = lbl["frames"][0]["objects"][0]["box2d"]
    box["x1"], box["x2"] = -1.5, SYNTH_SIZE[0] + 1.5
    write_label(synth_copy, "train", stem, lbl)
    ds = MultiTaskDataset(_cfg(synth_copy, "raise"), img_size=SYNTH_SIZE)
    i = [s.stem for s in ds.samples].index(stem)
    item = ds[i]
    assert "error" not in item
    assert item["boxes"][0, 1].item() == 0.0 and item["boxes"][0, 3].item() == SYNTH_SIZE[0]


def test_missing_image_after_indexing(synth_copy: Path) -> None:
    ds = MultiTaskDataset(_cfg(synth_copy, "raise"), img_size=SIZE)
    stem = ds.samples[0].stem
    (synth_copy / "images" / "train" / f"{stem}.jpg").unlink()
    with pytest.raises(DatasetError, match=rf"^images/train/{stem}\.jpg: image file not found"):
        _load_all(ds, workers=0)


# --- several images with one stem (a.jpg + a.png), skips counted in eval and training ------


def _add_png_twin(root: Path, split: str = "train", k: int = 1) -> str:
    """images/<split>/<stem>.png beside <stem>.jpg (same pixels, another file)."""
    import cv2

    stem = stems(root, split)[k]
    img = cv2.imread(str(root / "images" / split / f"{stem}.jpg"))
    cv2.imwrite(str(root / "images" / split / f"{stem}.png"), img)
    return stem


def test_two_images_sharing_a_stem_are_named_never_one_dropped(synth_copy: Path, caplog) -> None:
    stem = _add_png_twin(synth_copy)
    with pytest.raises(DatasetError) as exc:
        MultiTaskDataset(_cfg(synth_copy, "raise"), img_size=SIZE)
    msg = str(exc.value)
    assert msg.startswith(f"images/train/{stem}.jpg and images/train/{stem}.png: 2 images share the stem {stem!r}")
    assert "--on-error skip" in msg and "rename or delete" in msg

    caplog.set_level("WARNING", logger="compress.data.bdd")
    ds = MultiTaskDataset(_cfg(synth_copy, "skip"), img_size=SIZE)
    assert len(ds) == N_TRAIN - 1 and ds.skipped == 1  # neither image is used: the label fits only one of them
    assert stem not in {s.stem for s in ds.samples}
    assert f"images/train/{stem}.jpg and images/train/{stem}.png" in caplog.text and stem in ds.index_skipped[0]


def test_official_labels_naming_a_stem_two_images_share(synth_copy: Path) -> None:
    stem = _add_png_twin(synth_copy)
    entries = to_official(synth_copy, "train")
    for e in entries:
        if Path(e["name"]).stem == stem:
            e["name"] = f"{stem}.jpeg"  # no such file: only the stem can match, and it matches two
    lj = synth_copy / "det_train.json"
    lj.write_text(json.dumps(entries))
    kw = dict(label_format="bdd_official", label_json=lj, image_dir=synth_copy / "images" / "train")
    with pytest.raises(DatasetError, match=rf"{stem}\.jpg and .*{stem}\.png: 2 images share the stem"):
        MultiTaskDataset(DataConfig(**kw, on_error="raise"), img_size=SIZE)
    ds = MultiTaskDataset(DataConfig(**kw, on_error="skip"), img_size=SIZE)
    assert len(ds) == N_TRAIN - 1 and ds.skipped == 1
    lj.write_text(json.dumps(to_official(synth_copy, "train")))  # exact file names are not ambiguous
    assert len(MultiTaskDataset(DataConfig(**kw, on_error="raise"), img_size=SIZE)) == N_TRAIN


def test_index_skips_are_reported_by_eval_and_training(synth_copy: Path, tmp_path: Path, capsys, caplog) -> None:
    from compress.cli import main
    from compress.train import TrainConfig, train

    _add_png_twin(synth_copy, "train")  # one training sample skipped while indexing
    (synth_copy / "det_annotations" / "val" / f"{stems(synth_copy, 'val')[0]}.json").unlink()  # one val sample
    cfg = TrainConfig(
        data=str(synth_copy),
        out=str(tmp_path / "run"),
        model_size="tiny",
        img_size=(128, 96),
        epochs=1,
        batch_size=2,
        workers=0,
        eval_interval=1,
        max_train_batches=1,
        on_error="skip",
        seed=0,
    )
    s = train(cfg, progress=False)
    assert s["skipped_at_indexing"] == {"train": 1, "val": 1} and s["skipped"] == 0
    recs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert recs[0]["skipped_at_indexing"] == {"train": 1, "val": 1} and recs[0]["val"]["skipped"] == 1
    assert recs[0]["val"]["images"] == N_VAL - 1

    out = tmp_path / "eval.json"
    args = ["-q", "eval", "--ckpt", s["best"], "--workers", "0", "--batch-size", "2", "--on-error", "skip"]
    assert main([*args, "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["images"] == N_VAL - 1 and res["skipped"] == 1  # not 'skipped 0'
    assert res["skipped_at_indexing"] == 1 and res["skipped_at_loading"] == 0
    assert "1 skipped (1 while indexing, 0 while loading)" in capsys.readouterr().out
    caplog.set_level("ERROR")
    assert main(["-q", "eval", "--ckpt", s["best"], "--workers", "0", "--on-error", "raise"]) == 2
    assert "image has no label file" in caplog.text  # raise mode stops on it, naming the file
