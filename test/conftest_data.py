"""Helpers shared by the data tests (imported explicitly by test_data_*.py; their fixtures are in
test/compress/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

SYNTH_SIZE = (160, 96)
N_TRAIN, N_VAL = 6, 3


def stems(root: Path, split: str) -> list[str]:
    return sorted(p.stem for p in (root / "images" / split).glob("*.jpg"))


def read_label(root: Path, split: str, stem: str) -> dict[str, Any]:
    return json.loads((root / "det_annotations" / split / f"{stem}.json").read_text())


def write_label(root: Path, split: str, stem: str, data: dict[str, Any]) -> None:
    (root / "det_annotations" / split / f"{stem}.json").write_text(json.dumps(data))


def to_official(root: Path, split: str) -> list[dict[str, Any]]:
    """Convert a YOLOP-layout split's per-image JSONs into one official BDD100K label list."""
    out = []
    for stem in stems(root, split):
        d = read_label(root, split, stem)
        out.append({"name": d["name"], "attributes": d["attributes"], "labels": d["frames"][0]["objects"]})
    return out


def write_sample(
    root: Path,
    split: str,
    stem: str,
    img: np.ndarray,
    drivable: np.ndarray,
    lane: np.ndarray,
    objects: list[dict[str, Any]],
) -> None:
    """Write one hand-made sample in YOLOP layout (PNG image to keep pixels exact)."""
    for d in ("images", "det_annotations", "da_seg_annotations", "ll_seg_annotations"):
        (root / d / split).mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "images" / split / f"{stem}.png"), img)
    cv2.imwrite(str(root / "da_seg_annotations" / split / f"{stem}.png"), drivable)
    cv2.imwrite(str(root / "ll_seg_annotations" / split / f"{stem}.png"), lane)
    write_label(root, split, stem, {"name": f"{stem}.png", "frames": [{"objects": objects}]})


def car(x1: float, y1: float, x2: float, y2: float, category: str = "car") -> dict[str, Any]:
    return {"category": category, "box2d": {"x1": x1, "y1": y1, "x2": x2, "y2": y2}}


#: category names of the original BDD100K release (bdd100k_labels_images_*.json) for the 2020 ones
ORIGINAL_NAMES = {"pedestrian": "person", "bicycle": "bike", "motorcycle": "motor"}


def write_bdd_download(
    src: Path, dst: Path, release: str = "det_20", masks: bool = True, categories: dict[str, str] | None = None
) -> Path:
    """BDD100K as downloaded, made from a YOLOP-layout dataset (e.g. synthroad): ``dst/bdd100k/`` with
    ``images/100k/<split>/``, the detection labels of ``release`` (``det_20``: labels/det_20/det_<split>.json;
    ``original``: labels/bdd100k_labels_images_<split>.json, with the original category names) and, with
    ``masks``, the toolkit's masks (drivable: 0 direct / 2 background; lane: 3 on lane, 255 background).
    ``categories`` renames categories (e.g. some ``car`` -> ``truck``). Returns ``dst/bdd100k``."""
    import shutil

    base = dst / "bdd100k"
    for split in ("train", "val"):
        if not (src / "images" / split).is_dir():
            continue
        img_dir = base / "images" / "100k" / split
        img_dir.mkdir(parents=True)
        for p in sorted((src / "images" / split).iterdir()):
            shutil.copy(p, img_dir / p.name)
        entries = to_official(src, split)
        for e in entries:
            for obj in e["labels"]:
                cat = (categories or {}).get(obj["category"], obj["category"])
                obj["category"] = ORIGINAL_NAMES.get(cat, cat) if release == "original" else cat
        name = f"det_20/det_{split}.json" if release == "det_20" else f"bdd100k_labels_images_{split}.json"
        (base / "labels" / name).parent.mkdir(parents=True, exist_ok=True)
        (base / "labels" / name).write_text(json.dumps(entries))
        if not masks:
            continue
        for kind, fg, bg in (("drivable", 0, 2), ("lane", 3, 255)):
            out = base / "labels" / kind / "masks" / split
            out.mkdir(parents=True)
            yolop_dir = src / ("da_seg_annotations" if kind == "drivable" else "ll_seg_annotations") / split
            for p in sorted(yolop_dir.glob("*.png")):
                m = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
                cv2.imwrite(str(out / p.name), np.where(m > 0, fg, bg).astype(np.uint8))
    return base
