"""A dataset split as frames to record (``mtc-compress bag --dataset``): images and their labels in
the runtime's :class:`~mtc_perception.bags.SourceFrame` form, so that
:func:`mtc_perception.bags.write_bag` records them with their ground-truth topics. Lives in the
offline half because it reads the dataset through :mod:`compress.data.bdd`; the runtime never
imports it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from mtc_perception.bags import BagError, Labels, SourceFrame
from mtc_perception.imaging import ImageError, display_path, read_image

from .bdd import DataConfig, index_split, map_drivable, map_lane

__all__ = ["dataset_frames"]


def dataset_frames(
    root: str | Path,
    split: str = "val",
    label_format: str = "yolop",
    label_json: str | None = None,
    drivable_mapping: str | None = None,
    lane_mapping: str | None = None,
) -> Iterator[SourceFrame]:
    """Frames and labels of a BDD100K / YOLOP-layout split (synthroad writes that layout), in the
    order of ``compress.data.bdd.index_split``. Masks are mapped with ``drivable_mapping`` /
    ``lane_mapping`` (None: the layout's, e.g. the toolkit encodings for a BDD100K download's masks)."""
    cfg = DataConfig(
        root=Path(root),
        split=split,
        label_format=label_format,
        label_json=label_json,
        drivable_mapping=drivable_mapping,
        lane_mapping=lane_mapping,
    ).resolved()
    drivable_mapping, lane_mapping = str(cfg.drivable_mapping), str(cfg.lane_mapping)
    index = index_split(cfg)
    if not index.samples:
        raise BagError(f"no samples in split {split!r} of {root}")
    for s in index.samples:
        try:
            img = read_image(s.image)
        except (ImageError, OSError) as e:
            yield SourceFrame(s.stem, None, error=str(e))
            continue
        masks = []
        for path, fn in (
            (s.drivable, lambda raw: map_drivable(raw, drivable_mapping)),
            (s.lane, lambda raw: map_lane(raw, lane_mapping)),
        ):
            try:
                raw = read_image(path, flags=cv2.IMREAD_UNCHANGED) if path is not None else None
            except (ImageError, OSError) as e:
                yield SourceFrame(s.stem, None, error=f"unreadable mask: {e}")
                break
            if raw is not None and raw.shape[:2] != img.shape[:2]:
                yield SourceFrame(
                    s.stem,
                    None,
                    error=f"{display_path(path)}: the mask is {raw.shape[1]}x{raw.shape[0]} but the image "
                    f"{img.shape[1]}x{img.shape[0]}",
                )
                break
            masks.append(fn(raw) if raw is not None else None)
        else:
            yield SourceFrame(
                s.stem,
                img,
                Labels(
                    s.boxes[:, 1:5].astype(np.float64),
                    s.boxes[:, 0].astype(np.int64),
                    cfg.class_names,
                    masks[0],
                    masks[1],
                ),
            )
