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
