"""BDD100K as downloaded through the commands: train with --classes bdd10 on a download found by
itself, eval with per-class AP50 and YOLOP's protocol (per-batch segmentation, its mask resize),
the layout flags of train / prune / compress reaching the DataConfig."""

from __future__ import annotations

import pytest

pytest.importorskip(
    "torch",
    reason="needs torch (the offline half, compress/): `make test` installs it; "
    "a ROS 2 machine under colcon test may not have it",
)

import json
from pathlib import Path

from conftest_data import write_bdd_download

from compress.checkpoint import load_checkpoint
from compress.cli import build_parser, main
from compress.data.bdd import BDD10_CLASSES, CLASS_PRESETS, LANE_MAPPINGS, MASK_RESIZES, DataConfig, parse_objects
from compress.data.errors import DataConfigError

TRAIN = ["--model-size", "tiny", "--img-size", "128x96", "--epochs", "1", "--batch-size", "4", "--workers", "0"]
TRAIN += ["--max-train-batches", "2", "--device", "cpu", "--anchors", "yolop"]


@pytest.fixture(scope="module")
def bdd_run(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A BDD100K download made of synthroad (cars, trucks, buses; toolkit masks) and a tiny 10-class
    model trained on it for one epoch, its files found by itself under --data."""
    tmp = tmp_path_factory.mktemp("bdd_cli")
    base = write_bdd_download(synth_root, tmp / "dl")
    out = tmp / "run"
    assert main(["-q", "train", "--data", str(base.parent), "--out", str(out), "--classes", "bdd10", *TRAIN]) == 0
    return base, out


def test_bdd10_preset_maps_both_releases_names() -> None:
    cfg = DataConfig.from_dict({"root": "/d", "classes": "bdd10"})
    assert cfg.class_names == BDD10_CLASSES and len(cfg.class_names) == 10
    box = {"x1": 0, "y1": 0, "x2": 4, "y2": 4}
    objs = [{"category": c, "box2d": box} for c in ("person", "pedestrian", "bike", "motor", "traffic sign")]
    objs.append({"category": "other vehicle", "box2d": box})  # still ignored
    assert parse_objects(objs, "x", cfg)[:, 0].tolist() == [0, 0, 7, 6, 9]
    assert "person" not in cfg.ignore_categories and "trailer" in cfg.ignore_categories
    with pytest.raises(
        DataConfigError, match=r"classes 'coco' is not a preset; expected one of \['bdd10', 'vehicle'\]"
    ):
        DataConfig.from_dict({"root": "/d", "classes": "coco"})
    with pytest.raises(DataConfigError, match="keep one of them"):
        DataConfig.from_dict({"root": "/d", "classes": "bdd10", "class_names": ["a"]})
    # {split} in a path option is the split's name
    cfg = DataConfig.from_dict({"root": "/d", "split": "val", "label_json": "/l/det_{split}.json"})
    assert cfg.label_json == Path("/l/det_val.json")


def test_cli_choices_match_the_data_package() -> None:
    from compress import cli

    assert set(cli.LANE_MAPPINGS) == set(LANE_MAPPINGS) and cli.MASK_RESIZES == MASK_RESIZES
    assert set(cli.CLASS_PRESETS) == set(CLASS_PRESETS)


def test_train_on_a_download_with_bdd10_then_eval_per_class(bdd_run, tmp_path: Path, capsys, logs) -> None:
    base, run = bdd_run
    ck = load_checkpoint(run / "best.pt")
    assert ck["model_config"]["num_classes"] == 10 and tuple(ck["model_config"]["class_names"]) == BDD10_CLASSES
    assert ck["train_config"]["data_options"] == {"classes": "bdd10"}
    capsys.readouterr()
    out = tmp_path / "eval.json"
    assert main(["-q", "eval", "--ckpt", str(run / "best.pt"), "--workers", "0", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    det = res["detection"]
    assert det["class_names"] == list(BDD10_CLASSES) and list(det["ap50_by_class"]) == list(BDD10_CLASSES)
    n_gt = dict(zip(det["class_names"], det["num_gt_per_class"]))
    assert sum(n_gt.values()) == det["num_gt"] > 0 and n_gt["car"] > 0 and n_gt["pedestrian"] == 0
    assert det["ap50_by_class"]["pedestrian"] is None and det["ap50_by_class"]["car"] is not None
    assert res["images"] == 8 and res["segmentation"] == {"average": "set", "batch_size": 16}
    assert res["mask_resize"] == "nearest" and res["drivable"]["available"] and res["lane"]["available"]
    assert "split 'val': labels labels/det_20/det_val.json, images images/100k/val" in logs.text  # said in the log
    printed = capsys.readouterr().out
    assert "    car            AP50 " in printed and "    pedestrian     AP50 n/a (no box)  (0 boxes)" in printed
    assert "segmentation: one confusion matrix over the split (batch 16), ground truth resized nearest" in printed
    # YOLOP's protocol: its batch size, per-batch segmentation means, its mask resize
    yolop = tmp_path / "yolop.json"
    assert (
        main(
            ["-q", "eval", "--ckpt", str(run / "best.pt"), "--workers", "0", "--protocol", "yolop", "--out", str(yolop)]
        )
        == 0
    )
    ry = json.loads(yolop.read_text())
    assert ry["segmentation"] == {"average": "batch", "batch_size": 24} and ry["mask_resize"] == "yolop"
    assert ry["drivable"]["average"] == "batch" and "per-batch metrics" in ry["conventions"]
    # 8 images in one batch of 24: the batch mean is the set's value of the same ground truth
    same = tmp_path / "same.json"
    args = ["-q", "eval", "--ckpt", str(run / "best.pt"), "--workers", "0", "--mask-resize", "yolop"]
    assert main([*args, "--seg-average", "set", "--batch-size", "8", "--out", str(same)]) == 0
    rs = json.loads(same.read_text())
    assert rs["lane"]["iou"] == pytest.approx(ry["lane"]["iou"]) and rs["drivable"]["miou"] == pytest.approx(
        ry["drivable"]["miou"]
    )
    # batches of 3, 3, 2 images
    small = tmp_path / "small.json"
    assert main([*args, "--seg-average", "batch", "--batch-size", "3", "--out", str(small)]) == 0
    rb = json.loads(small.read_text())
    assert rb["segmentation"] == {"average": "batch", "batch_size": 3} and rb["lane"]["pixels"] == rs["lane"]["pixels"]
    # pixel accuracy weighted by images is the set's (every image has the same pixel count); where the
    # two averagings differ is shown on constructed masks in test/runtime/test_seg_average.py
    assert rb["drivable"]["acc"] == pytest.approx(rs["drivable"]["acc"])
    # the protocol's choices give way to the flags
    near = tmp_path / "near.json"
    assert (
        main(
            [
                "-q",
                "eval",
                "--ckpt",
                str(run / "best.pt"),
                "--workers",
                "0",
                "--protocol",
                "yolop",
                "--mask-resize",
                "nearest",
                "--out",
                str(near),
            ]
        )
        == 0
    )
    assert json.loads(near.read_text())["mask_resize"] == "nearest"


def test_layout_flags_reach_the_data_config_of_each_command(bdd_run, tmp_path: Path, logs) -> None:
    base, run = bdd_run
    for split in ("train", "val"):
        entries = json.loads((base / f"labels/det_20/det_{split}.json").read_text())
        (tmp_path / f"four_{split}.json").write_text(json.dumps(entries[:4]))
    labels = str(tmp_path / "four_{split}.json")
    # prune: its split read with the flags (4 of the 16 training images listed)
    pruned = tmp_path / "pruned.pt"
    args = ["-q", "prune", "--ckpt", str(run / "best.pt"), "--out", str(pruned), "--criterion", "magnitude"]
    args += [
        "--budget",
        "ratio",
        "--target",
        "0.2",
        "--recalibrate-batches",
        "1",
        "--batch-size",
        "2",
        "--data",
        str(base),
    ]
    assert main([*args, "--label-json", labels, "--lane-mapping", "binary"]) == 0
    assert "split 'train': 4 images" in logs.text and pruned.is_file()
    # train: the flags go to both splits ({split} required), winning over the config's
    logs.clear()
    out = tmp_path / "run2"
    flags = ["--label-json", labels, "--mask-resize", "yolop"]
    assert main(["-q", "train", "--data", str(base), "--out", str(out), *flags, *TRAIN]) == 0
    tc = load_checkpoint(out / "last.pt")["train_config"]
    assert tc["data_options"] == {"label_json": labels, "label_format": "bdd_official", "mask_resize": "yolop"}
    assert "split 'train': 4 images" in logs.text and "split 'val': 4 images" in logs.text
    bad = ["-q", "train", "--data", str(base), "--out", str(out), "--label-json", str(tmp_path / "four_val.json")]
    assert main([*bad, *TRAIN]) == 2
    from compress.cli import _data_flags

    with pytest.raises(ValueError, match=r"--label-json \S+four_val.json names one file or folder for both the train"):
        _data_flags(build_parser().parse_args(["train", "--label-json", str(tmp_path / "four_val.json")]))
    # compress / ablate / distill parse them; compress's recipe carries them to both splits and the distillation
    from compress.cli import _recipe
    from compress.pipeline import distill_config, split_dataset

    recipe_yaml = tmp_path / "r.yaml"
    recipe_yaml.write_text(f"teacher: {run / 'best.pt'}\nout: {tmp_path / 'c'}\n")
    a = build_parser().parse_args(
        ["compress", "--recipe", str(recipe_yaml), "--label-json", labels, "--lane-mapping", "bdd_toolkit"]
    )
    recipe = _recipe(a)
    assert recipe.data_options == {"label_json": labels, "label_format": "bdd_official", "lane_mapping": "bdd_toolkit"}
    tck = load_checkpoint(run / "best.pt")
    ds = split_dataset(tck, None, "val", (128, 96), recipe.data_options)
    assert len(ds) == 4 and ds.cfg.lane_mapping == "bdd_toolkit" and ds.cfg.class_names == BDD10_CLASSES
    dc = distill_config(recipe, tck, str(run / "best.pt"), tmp_path / "d")
    assert dc.data_options == {"classes": "bdd10", **recipe.data_options}
    build_parser().parse_args(["ablate", "--recipe", "r.yaml", "--mask-resize", "yolop", "--data", "x"])
    build_parser().parse_args(["distill", "--student", "s.pt", "--teacher", "t.pt", "--lane-mapping", "bdd_toolkit"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "--ckpt", "c.pt", "--lane-mapping", "bits"])
