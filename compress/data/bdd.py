"""BDD100K / YOLOP label formats: configuration, class map and split indexing.

Two label formats are read:

* ``yolop``: YOLOP's layout, one JSON per image under ``det_annotations/<split>/`` with
  ``frames[0].objects[]`` (``category`` + ``box2d``), images under ``images/<split>/`` and masks
  under ``da_seg_annotations/<split>/`` and ``ll_seg_annotations/<split>/``.
* ``bdd_official``: the official BDD100K detection labels, one JSON list of
  ``{name, attributes, labels: [{category, box2d}]}`` plus an image directory; mask
  directories are optional, but when configured every image must have its mask.

A root that is BDD100K as downloaded (:mod:`compress.data.layout`) is read as ``bdd_official``
with its label file, image folder and toolkit masks found for the split
(:meth:`DataConfig.resolved`); options set explicitly win.

Objects without ``box2d`` (poly2d lanes / drivable areas) are not detection labels and are ignored.
The mask mappings are :mod:`compress.data.masks`, the parsing of detection labels
:mod:`compress.data.labels` (both re-exported here).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compress.data.errors import DataConfigError, DatasetError
from compress.data.labels import MalformedLabelError, parse_objects, yolop_objects
from compress.data.layout import BddDownload, bdd_download, layout_error, looks_like_yolop, missing_labels_error
from compress.data.masks import DRIVABLE_MAPPINGS, LANE_MAPPINGS, MASK_RESIZES, map_drivable, map_lane
from mtc_perception.inputs import IMAGE_EXTS

logger = logging.getLogger(__name__)

__all__ = [
    "BDD10_CLASSES",
    "CLASS_PRESETS",
    "DEFAULT_CLASS_MAP",
    "DEFAULT_IGNORE_CATEGORIES",
    "DRIVABLE_MAPPINGS",
    "IMAGE_EXTENSIONS",
    "LANE_MAPPINGS",
    "MASK_RESIZES",
    "DataConfig",
    "Sample",
    "SplitIndex",
    "index_split",
    "map_drivable",
    "map_lane",
    "parse_objects",
]

#: YOLOP convention: one merged ``vehicle`` class.
DEFAULT_CLASS_MAP: tuple[tuple[str, int], ...] = (("car", 0), ("bus", 0), ("truck", 0), ("train", 0))
#: Categories that are not detection targets (BDD100K names, both releases).
DEFAULT_IGNORE_CATEGORIES: tuple[str, ...] = (
    "person",
    "pedestrian",
    "rider",
    "bike",
    "bicycle",
    "motor",
    "motorcycle",
    "traffic light",
    "traffic sign",
    "other vehicle",
    "other person",
    "trailer",
    "area/*",
    "lane/*",
    "drivable area",
    "lane",
)
#: BDD100K's 10 detection classes (2020 release names) and the original release's names for them
BDD10_CLASSES: tuple[str, ...] = (
    "pedestrian",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
    "traffic light",
    "traffic sign",
)
BDD_CATEGORY_ALIASES: dict[str, str] = {"person": "pedestrian", "bike": "bicycle", "motor": "motorcycle"}


def _preset(names: tuple[str, ...], class_map: tuple[tuple[str, int], ...]) -> dict[str, Any]:
    mapped = {c for c, _ in class_map}
    return {
        "class_names": names,
        "class_map": class_map,
        "ignore_categories": tuple(c for c in DEFAULT_IGNORE_CATEGORIES if c not in mapped),
    }


#: ``classes:`` presets (``--classes``): class names, class map and the categories left ignored
CLASS_PRESETS: dict[str, dict[str, Any]] = {
    "vehicle": _preset(("vehicle",), DEFAULT_CLASS_MAP),
    "bdd10": _preset(
        BDD10_CLASSES,
        tuple((n, i) for i, n in enumerate(BDD10_CLASSES))
        + tuple((alias, BDD10_CLASSES.index(name)) for alias, name in BDD_CATEGORY_ALIASES.items()),
    ),
}
IMAGE_EXTENSIONS: tuple[str, ...] = IMAGE_EXTS  # one list for the whole project (mtc_perception.inputs)
LABEL_FORMATS = ("yolop", "bdd_official")
ON_ERROR = ("raise", "skip")


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------


def _opt_path(value: Any) -> Path | None:
    if value is None or value == "":
        return None
    return Path(value).expanduser()


@dataclass(frozen=True)
class DataConfig:
    """Where a split lives, how its labels are read and what to do with bad samples.

    ``class_map`` maps a BDD category to a class index into ``class_names``; categories in
    ``ignore_categories`` (entries ending in ``/*`` match a prefix) are dropped; any other
    category is bad data. ``drivable_mapping`` / ``lane_mapping`` name how mask pixel values become
    drivable / lane (see :data:`DRIVABLE_MAPPINGS`, :data:`LANE_MAPPINGS`); ``mask_resize`` how the
    masks are resized to the network input (:data:`MASK_RESIZES`). ``on_error`` is ``"raise"`` (stop with a DatasetError) or
    ``"skip"`` (drop the sample, count it and log a warning).
    """

    root: Path | None = None
    split: str = "train"
    label_format: str = "yolop"
    label_json: Path | None = None
    image_dir: Path | None = None
    drivable_dir: Path | None = None
    lane_dir: Path | None = None
    use_drivable: bool = True
    use_lane: bool = True
    class_names: tuple[str, ...] = ("vehicle",)
    class_map: tuple[tuple[str, int], ...] = DEFAULT_CLASS_MAP
    ignore_categories: tuple[str, ...] = DEFAULT_IGNORE_CATEGORIES
    # None: the layout's (bdd_toolkit for a BDD100K download's own masks, else yolop_binary / binary)
    drivable_mapping: str | None = None
    lane_mapping: str | None = None
    mask_resize: str = "nearest"
    on_error: str = "raise"
    box_tolerance: float = 2.0

    def __post_init__(self) -> None:
        for name in ("root", "label_json", "image_dir", "drivable_dir", "lane_dir"):
            object.__setattr__(self, name, _opt_path(getattr(self, name)))
        cmap = self.class_map
        if isinstance(cmap, Mapping):
            cmap = tuple(cmap.items())
        cmap = tuple((str(k), int(v)) for k, v in cmap)
        object.__setattr__(self, "class_map", cmap)
        object.__setattr__(self, "class_names", tuple(str(n) for n in self.class_names))
        object.__setattr__(self, "ignore_categories", tuple(str(c) for c in self.ignore_categories))
        if self.label_format not in LABEL_FORMATS:
            raise DataConfigError(
                f"label_format {self.label_format!r} is not supported; expected one of {list(LABEL_FORMATS)}"
            )
        if self.on_error not in ON_ERROR:
            raise DataConfigError(f"on_error {self.on_error!r} is not supported; expected one of {list(ON_ERROR)}")
        if self.drivable_mapping is not None and self.drivable_mapping not in DRIVABLE_MAPPINGS:
            raise DataConfigError(
                f"drivable_mapping {self.drivable_mapping!r} is not supported; "
                f"expected one of {sorted(DRIVABLE_MAPPINGS)}"
            )
        if self.lane_mapping is not None and self.lane_mapping not in LANE_MAPPINGS:
            raise DataConfigError(
                f"lane_mapping {self.lane_mapping!r} is not supported; expected one of {sorted(LANE_MAPPINGS)}"
            )
        if self.mask_resize not in MASK_RESIZES:
            raise DataConfigError(
                f"mask_resize {self.mask_resize!r} is not supported; expected one of {list(MASK_RESIZES)}"
            )
        if not self.class_names:
            raise DataConfigError("class_names is empty; give at least one class name")
        for cat, idx in cmap:
            if not 0 <= idx < len(self.class_names):
                raise DataConfigError(
                    f"class_map maps {cat!r} to index {idx}, outside class_names "
                    f"{list(self.class_names)}; use an index in 0..{len(self.class_names) - 1}"
                )
        if self.box_tolerance < 0:
            raise DataConfigError(f"box_tolerance must be >= 0, got {self.box_tolerance}")
        if self.label_format == "yolop" and self.root is None:
            raise DataConfigError(
                "label_format 'yolop' needs root (the dataset directory holding "
                "images/, det_annotations/, da_seg_annotations/, "
                "ll_seg_annotations/)"
            )
        if self.label_format == "bdd_official":
            if self.label_json is None and self.root is None:
                raise DataConfigError(
                    "label_format 'bdd_official' needs label_json (the BDD100K detection label file, e.g. "
                    "det_val.json) or root (a BDD100K download)"
                )
            if self.image_dir is None and self.root is None:
                raise DataConfigError("label_format 'bdd_official' needs image_dir (or root with images/<split>/)")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataConfig:
        """Build from a plain mapping (e.g. parsed YAML); unknown keys are an error.

        ``classes`` names a :data:`CLASS_PRESETS` entry (class names, class map and ignored
        categories; an explicit ``ignore_categories`` wins). ``{split}`` in a path option is replaced
        by the split (one option for both splits of a run, e.g. ``.../det_20/det_{split}.json``)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names - {"classes"})
        if unknown:
            raise DataConfigError(
                f"unknown data config keys {unknown}; expected a subset of {sorted(names | {'classes'})}"
            )
        kwargs = dict(data)
        preset = kwargs.pop("classes", None)
        if preset is not None:
            if preset not in CLASS_PRESETS:
                raise DataConfigError(f"classes {preset!r} is not a preset; expected one of {sorted(CLASS_PRESETS)}")
            clash = [k for k in ("class_names", "class_map") if kwargs.get(k) is not None]
            if clash:
                raise DataConfigError(
                    f"classes {preset!r} sets class_names and class_map, and {clash} are set too; keep one of them"
                )
            kwargs = {**CLASS_PRESETS[preset], **kwargs}
        split = str(kwargs.get("split", "train"))
        for key in ("label_json", "image_dir", "drivable_dir", "lane_dir"):
            if isinstance(kwargs.get(key), (str, Path)) and "{split}" in str(kwargs[key]):
                kwargs[key] = str(kwargs[key]).replace("{split}", split)
        for key in ("class_names", "ignore_categories"):
            if key in kwargs and kwargs[key] is not None:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

    def with_split(self, split: str) -> DataConfig:
        """Same configuration for another split."""
        return dataclasses.replace(self, split=split)

    def resolved(self) -> DataConfig:
        """The configuration a split is read with: where ``root`` is BDD100K as downloaded (and not
        YOLOP's layout), its label file, image folder and toolkit masks for the split fill the options
        left unset (logged), and unset mask mappings become the layout's (``bdd_toolkit`` for the
        download's own masks, else ``yolop_binary`` / ``binary``)."""
        changes: dict[str, Any] = {}
        dl = self._download()
        if dl is not None:
            if self.label_json is None and dl.label_json is None:
                raise missing_labels_error(dl, self.split)
            for name in ("label_json", "image_dir", "drivable_dir", "lane_dir"):
                if getattr(self, name) is None and getattr(dl, name) is not None:
                    changes[name] = getattr(dl, name)
            if changes or self.label_format != "bdd_official":
                changes["label_format"] = "bdd_official"
                logger.info("%s", dl.describe(self.split))
        elif self.label_format == "bdd_official" and self.label_json is None:
            raise DataConfigError(
                f"label_format 'bdd_official' needs label_json: {self.root} is not a BDD100K download "
                "(no images/100k/ in it or in its bdd100k/ folder); pass --label-json FILE"
            )
        auto_masks = {k for k in ("drivable_dir", "lane_dir") if k in changes}
        if self.drivable_mapping is None:
            changes["drivable_mapping"] = "bdd_toolkit" if "drivable_dir" in auto_masks else "yolop_binary"
        if self.lane_mapping is None:
            changes["lane_mapping"] = "bdd_toolkit" if "lane_dir" in auto_masks else "binary"
        return dataclasses.replace(self, **changes) if changes else self

    def _download(self) -> BddDownload | None:
        """The BDD100K download ``root`` is, when the configuration reads one: ``bdd_official`` with a
        root, or the default format where root is not YOLOP's layout and no image_dir is set."""
        if self.root is None:
            return None
        if self.label_format == "yolop" and (self.image_dir is not None or looks_like_yolop(self.root, self.split)):
            return None
        return bdd_download(self.root, self.split)

    @property
    def class_dict(self) -> dict[str, int]:
        """Category -> class index."""
        return dict(self.class_map)

    # Resolved directories -------------------------------------------------------------------
    def _root(self) -> Path:
        if self.root is None:
            raise DataConfigError("data config has no root; set root or the explicit directories")
        return self.root

    def images_path(self) -> Path:
        if self.image_dir is not None:
            return self.image_dir
        root = self._root()
        dl = None if looks_like_yolop(root, self.split) else bdd_download(root, self.split)
        return dl.image_dir if dl is not None else root / "images" / self.split

    def labels_path(self) -> Path:
        if self.label_format == "bdd_official" and self.label_json is not None:
            return self.label_json
        return self._root() / "det_annotations" / self.split

    def drivable_path(self) -> Path | None:
        if not self.use_drivable:
            return None
        if self.drivable_dir is not None:
            return self.drivable_dir
        if self.label_format == "yolop":
            return self._root() / "da_seg_annotations" / self.split
        return None

    def lane_path(self) -> Path | None:
        if not self.use_lane:
            return None
        if self.lane_dir is not None:
            return self.lane_dir
        if self.label_format == "yolop":
            return self._root() / "ll_seg_annotations" / self.split
        return None

    def display(self, path: Path) -> str:
        """Path as shown in messages: relative to root where possible."""
        if self.root is not None:
            try:
                return str(path.relative_to(self.root))
            except ValueError:
                pass
        return str(path)


# ----------------------------------------------------------------------------------------------
# Split index
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Sample:
    """One indexed image with its parsed boxes and mask paths (None where the task is absent)."""

    stem: str
    image: Path
    label: str  # label source, as shown in messages
    boxes: np.ndarray  # Nx5 float32 [cls, x1, y1, x2, y2] in original image pixels
    drivable: Path | None
    lane: Path | None


@dataclass
class SplitIndex:
    """Result of indexing a split: the good samples plus the messages of skipped ones."""

    samples: list[Sample] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def n_boxes(self) -> int:
        return int(sum(len(s.boxes) for s in self.samples))


def _list_files(directory: Path, exts: Iterable[str]) -> tuple[dict[str, Path], dict[str, list[Path]]]:
    """Files by stem, and the stems several files share (``a.jpg`` + ``a.png``: one label cannot
    tell them apart, so neither is used and the caller reports both)."""
    exts = tuple(exts)
    by_stem: dict[str, list[Path]] = {}
    for p in sorted(directory.iterdir()):
        if p.is_file() and p.suffix.lower() in exts:
            by_stem.setdefault(p.stem, []).append(p)
    files = {stem: ps[0] for stem, ps in by_stem.items() if len(ps) == 1}
    return files, {stem: ps for stem, ps in by_stem.items() if len(ps) > 1}


def _find_mask(
    directory: Path | None, stem: str, files: dict[str, Path] | None, suffixes: tuple[str, ...]
) -> Path | None:
    if directory is None or files is None:
        return None
    for suffix in suffixes:
        p = files.get(stem + suffix)
        if p is not None:
            return p
    return None


def _require_dir(path: Path, what: str, fix: str) -> None:
    if not path.is_dir():
        raise DatasetError(f"{path}: {what} directory not found; {fix}")


def index_split(cfg: DataConfig) -> SplitIndex:
    """Index a split: list files, parse every label once and validate.

    Errors found here (malformed JSON, unknown category, empty box, label without image, image
    without label, missing mask, several images sharing one stem) raise DatasetError when ``cfg.on_error == "raise"``; with
    ``"skip"`` the sample is dropped, counted in ``SplitIndex.skipped`` and logged.
    """
    out = SplitIndex()
    cfg = cfg.resolved()

    def bad(msg: str) -> None:
        if cfg.on_error == "raise":
            raise DatasetError(msg)
        logger.warning("skipping sample: %s", msg)
        out.skipped.append(msg)

    img_dir = cfg.images_path()
    if cfg.label_format == "yolop" and cfg.image_dir is None and cfg.root is not None and not img_dir.is_dir():
        raise layout_error(cfg.root, cfg.split)
    _require_dir(img_dir, "image", "check root/split or image_dir")
    images, shared = _list_files(img_dir, IMAGE_EXTENSIONS)

    def duplicate(stem: str) -> None:
        names = " and ".join(cfg.display(p) for p in shared[stem])
        bad(
            f"{names}: {len(shared[stem])} images share the stem {stem!r} in one split, so its one label "
            "cannot tell them apart; keep one image per stem (rename or delete the others) or pass --on-error skip"
        )

    da_dir, ll_dir = cfg.drivable_path(), cfg.lane_path()
    mask_fix = (
        "generate the masks, point drivable_dir/lane_dir at them, or disable the task (use_drivable/use_lane: false)"
    )
    da_files = ll_files = None
    if da_dir is not None:
        _require_dir(da_dir, "drivable mask", mask_fix)
        da_files = {p.stem: p for p in da_dir.iterdir() if p.suffix.lower() == ".png"}
    if ll_dir is not None:
        _require_dir(ll_dir, "lane mask", mask_fix)
        ll_files = {p.stem: p for p in ll_dir.iterdir() if p.suffix.lower() == ".png"}

    def add(stem: str, image: Path, label: str, boxes: np.ndarray) -> None:
        da = _find_mask(da_dir, stem, da_files, ("", "_drivable_id"))
        ll = _find_mask(ll_dir, stem, ll_files, ("", "_lane_id"))
        if da_dir is not None and da is None:
            bad(
                f"{cfg.display(da_dir / (stem + '.png'))}: drivable mask missing for image "
                f"{cfg.display(image)}; add the mask, disable use_drivable, or pass "
                "--on-error skip"
            )
            return
        if ll_dir is not None and ll is None:
            bad(
                f"{cfg.display(ll_dir / (stem + '.png'))}: lane mask missing for image "
                f"{cfg.display(image)}; add the mask, disable use_lane, or pass --on-error skip"
            )
            return
        out.samples.append(Sample(stem, image, label, boxes, da, ll))

    if cfg.label_format == "yolop":
        lbl_dir = cfg.labels_path()
        _require_dir(lbl_dir, "detection label", "expected det_annotations/<split>/ under root")
        labels = {p.stem: p for p in sorted(lbl_dir.iterdir()) if p.suffix.lower() == ".json"}
        for stem in sorted(set(labels) | set(images) | set(shared)):
            if stem in shared:  # neither image is used: which one the label describes is unknown
                duplicate(stem)
                continue
            lbl = labels.get(stem)
            if lbl is None:
                bad(
                    f"{cfg.display(images[stem])}: image has no label file "
                    f"{cfg.display(lbl_dir / (stem + '.json'))}; add it (an empty 'objects' list "
                    "for an image without vehicles) or pass --on-error skip"
                )
                continue
            where = cfg.display(lbl)
            try:
                data = json.loads(lbl.read_text(encoding="utf-8"))
                objects = yolop_objects(data)
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, MalformedLabelError) as exc:
                bad(
                    f"{where}: malformed label JSON ({exc}); expected {{'name', 'frames': "
                    "[{'objects': [...]}]}; fix or delete the file, or pass --on-error skip"
                )
                continue
            image = images.get(stem)
            if image is None:
                bad(
                    f"{where}: label for a missing image {cfg.display(img_dir / (stem + '.jpg'))}; "
                    "add the image or remove the label, or pass --on-error skip"
                )
                continue
            try:
                boxes = parse_objects(objects, where, cfg)
            except DatasetError as exc:
                bad(str(exc))
                continue
            add(stem, image, where, boxes)
    else:
        lbl_path = cfg.labels_path()
        try:
            entries = json.loads(lbl_path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise DatasetError(f"{lbl_path}: cannot read the BDD100K label file ({exc}); check label_json") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetError(
                f"{lbl_path}: malformed label JSON ({exc}); expected a list of "
                "{'name', 'labels': [...]}; re-download the label file"
            ) from None
        if not isinstance(entries, list):
            raise DatasetError(
                f"{lbl_path}: expected a JSON list of per-image entries, got "
                f"{type(entries).__name__}; is this a BDD100K detection label file?"
            )
        seen: set[str] = set()
        for k, entry in enumerate(entries):
            name = entry.get("name") if isinstance(entry, dict) else None
            if not isinstance(name, str):
                bad(
                    f"{lbl_path} [entry {k}]: malformed entry, expected a dict with a string "
                    "'name'; fix the label file or pass --on-error skip"
                )
                continue
            where = f"{lbl_path.name} [{name}]"
            stem = Path(name).stem
            if stem in seen:
                bad(f"{where}: duplicate entry for image {name}; keep one entry per image or pass --on-error skip")
                continue
            seen.add(stem)
            image = img_dir / name
            if not image.is_file() and stem in shared:  # named by stem only, and several images have it
                duplicate(stem)
                continue
            if not image.is_file():
                image = images.get(stem, image)
            if not image.is_file():
                bad(f"{where}: label for a missing image {image}; check image_dir or pass --on-error skip")
                continue
            try:
                boxes = parse_objects(entry.get("labels"), where, cfg)
            except DatasetError as exc:
                bad(str(exc))
                continue
            add(stem, image, where, boxes)
        unlisted = len((set(images) | set(shared)) - seen)
        if unlisted:
            logger.info(
                "%d images in %s have no entry in %s and are not part of this split", unlisted, img_dir, lbl_path.name
            )
    return out
