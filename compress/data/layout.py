"""Where a split's files are: YOLOP's layout, or BDD100K as downloaded (no symlinks, no config).

YOLOP's layout under a root: ``images/<split>/``, ``det_annotations/<split>/`` (one JSON per image),
``da_seg_annotations/<split>/``, ``ll_seg_annotations/<split>/``.

BDD100K as downloaded (the root, or the ``bdd100k/`` folder inside it): ``images/100k/<split>/``, the
detection labels ``labels/det_20/det_<split>.json`` (2020 release) or
``labels/bdd100k_labels_images_<split>.json`` (original release), and the toolkit's masks
``labels/drivable/masks/<split>/`` (0 direct, 1 alternative, 2 background) and
``labels/lane/masks/<split>/`` (255 background), both read with the ``bdd_toolkit`` mappings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .errors import DatasetError

logger = logging.getLogger(__name__)

__all__ = ["BddDownload", "bdd_download", "layout_error", "looks_like_yolop"]

#: detection label files of a split, newest release first
BDD_LABEL_FILES = ("labels/det_20/det_{split}.json", "labels/bdd100k_labels_images_{split}.json")
BDD_IMAGES = "images/100k/{split}"
BDD_DRIVABLE = "labels/drivable/masks/{split}"
BDD_LANE = "labels/lane/masks/{split}"
YOLOP_DIRS = ("images", "det_annotations", "da_seg_annotations", "ll_seg_annotations")
LAYOUT_FLAGS = "--label-json FILE --image-dir DIR [--drivable-dir DIR --lane-dir DIR]"


@dataclass(frozen=True)
class BddDownload:
    """A split's files in a BDD100K download (``None`` where the download lacks them)."""

    root: Path  # the folder holding images/100k/
    label_json: Path | None
    image_dir: Path
    drivable_dir: Path | None
    lane_dir: Path | None

    def describe(self, split: str) -> str:
        def rel(p: Path | None) -> str:
            return str(p.relative_to(self.root)) if p is not None else "not found"

        return (
            f"BDD100K download at {self.root}, split {split!r}: labels {rel(self.label_json)}, "
            f"images {rel(self.image_dir)}, drivable masks {rel(self.drivable_dir)}, lane masks {rel(self.lane_dir)}"
        )


def looks_like_yolop(root: Path, split: str) -> bool:
    """``root`` holds YOLOP's ``images/<split>/``."""
    return (root / "images" / split).is_dir()


def bdd_download(root: Path, split: str) -> BddDownload | None:
    """The split's files when ``root`` (or ``root/bdd100k``) is a BDD100K download, else None."""
    for base in (root, root / "bdd100k"):
        if (base / "images" / "100k").is_dir():
            break
    else:
        return None
    label = next((p for p in (base / f.format(split=split) for f in BDD_LABEL_FILES) if p.is_file()), None)
    da, ll = base / BDD_DRIVABLE.format(split=split), base / BDD_LANE.format(split=split)
    return BddDownload(
        root=base,
        label_json=label,
        image_dir=base / BDD_IMAGES.format(split=split),
        drivable_dir=da if da.is_dir() else None,
        lane_dir=ll if ll.is_dir() else None,
    )


def layout_error(root: Path, split: str) -> DatasetError:
    """The error for a root that is neither YOLOP's layout nor a BDD100K download."""
    yolop = ", ".join(f"{d}/{split}/" for d in YOLOP_DIRS)
    bdd = ", ".join([BDD_IMAGES.format(split=split), *(f.format(split=split) for f in BDD_LABEL_FILES)])
    return DatasetError(
        f"{root}: not a dataset for split {split!r}: looked for YOLOP's layout ({yolop}) and for BDD100K as "
        f"downloaded, in it or in its bdd100k/ folder ({bdd}); point --data at one of them, or name the files "
        f"with {LAYOUT_FLAGS} (label_json / image_dir / drivable_dir / lane_dir in a config)"
    )


def missing_labels_error(dl: BddDownload, split: str) -> DatasetError:
    looked = ", ".join(f.format(split=split) for f in BDD_LABEL_FILES)
    return DatasetError(
        f"{dl.root}: a BDD100K download without detection labels for split {split!r} (looked for {looked}); "
        "unzip the detection labels (bdd100k_det_20_labels_trainval.zip) there, or pass --label-json FILE"
    )
