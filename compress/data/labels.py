"""Detection labels: BDD objects (``category`` + ``box2d``) -> class-indexed boxes, and the
structure of a YOLOP per-image label file."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import numpy as np

from compress.data.errors import DatasetError


class LabelRules(Protocol):
    """What label parsing needs of a :class:`~compress.data.bdd.DataConfig`: the class map and the
    categories to drop (a protocol, so this module does not import its user back)."""

    @property
    def class_dict(self) -> Mapping[str, int]: ...

    @property
    def ignore_categories(self) -> tuple[str, ...]: ...


def _is_ignored(category: str, ignore: Iterable[str]) -> bool:
    for pat in ignore:
        if pat.endswith("/*"):
            if category.startswith(pat[:-1]):
                return True
        elif category == pat:
            return True
    return False


def parse_objects(objects: Any, where: str, cfg: LabelRules) -> np.ndarray:
    """Turn BDD objects (``category`` + ``box2d``) into an Nx5 [cls, x1, y1, x2, y2] array.

    Raises DatasetError naming ``where`` for a malformed object, an unknown category or an
    empty box.
    """
    if objects is None:
        return np.zeros((0, 5), np.float32)
    if not isinstance(objects, list):
        raise DatasetError(
            f"{where}: expected a list of objects, got {type(objects).__name__}; "
            "fix the label file or pass --on-error skip"
        )
    cmap = cfg.class_dict
    rows: list[list[float]] = []
    for k, obj in enumerate(objects):
        if not isinstance(obj, dict):
            raise DatasetError(
                f"{where}: object {k} is {type(obj).__name__}, expected a dict with "
                "'category' and 'box2d'; fix the label file or pass --on-error skip"
            )
        box = obj.get("box2d")
        if box is None:
            continue  # poly2d areas / lanes: not a detection label
        cat = obj.get("category")
        if not isinstance(cat, str):
            raise DatasetError(
                f"{where}: object {k} has no string 'category'; fix the label file or pass --on-error skip"
            )
        if _is_ignored(cat, cfg.ignore_categories):
            continue
        if cat not in cmap:
            raise DatasetError(
                f"{where}: unknown category {cat!r} (expected one of the class map "
                f"{sorted(cmap)} or ignored categories); add it to class_map or "
                "ignore_categories, or pass --on-error skip"
            )
        try:
            x1, y1, x2, y2 = (float(box[key]) for key in ("x1", "y1", "x2", "y2"))
        except (KeyError, TypeError, ValueError):
            raise DatasetError(
                f"{where}: object {k} ({cat!r}) has a malformed box2d {box!r}; "
                "expected numbers x1, y1, x2, y2; fix the label file or pass "
                "--on-error skip"
            ) from None
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 <= x1 or y2 <= y1:
            raise DatasetError(
                f"{where}: object {k} ({cat!r}) has an empty or invalid box "
                f"(x1={x1}, y1={y1}, x2={x2}, y2={y2}); expected x2 > x1 and "
                "y2 > y1; fix the label file or pass --on-error skip"
            )
        rows.append([float(cmap[cat]), x1, y1, x2, y2])
    if not rows:
        return np.zeros((0, 5), np.float32)
    return np.asarray(rows, np.float32)


class MalformedLabelError(ValueError):
    """A YOLOP label file whose structure is not ``{frames: [{objects: [...]}]}``."""


def yolop_objects(data: Any) -> list[Any]:
    if not isinstance(data, dict):
        raise MalformedLabelError(f"top level is {type(data).__name__}, not an object")
    frames = data.get("frames")
    if frames is None:
        # Tolerate the official per-entry shape in a per-image file.
        if "labels" in data:
            return data["labels"] or []
        raise MalformedLabelError("no 'frames' key")
    if not isinstance(frames, list) or (frames and not isinstance(frames[0], dict)):
        raise MalformedLabelError("'frames' is not a list of objects")
    if not frames:
        return []
    objects = frames[0].get("objects", [])
    if objects is None:
        return []
    if not isinstance(objects, list):
        raise MalformedLabelError("'frames[0].objects' is not a list")
    return objects
