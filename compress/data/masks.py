"""Mask mappings: decoded drivable / lane masks of the BDD100K and YOLOP releases -> uint8 {0, 1},
and the two ways a {0, 1} mask is resized to the network input (:data:`MASK_RESIZES`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from compress.data.errors import DataConfigError


def _gray(raw: np.ndarray) -> np.ndarray:
    return raw if raw.ndim == 2 else raw.max(axis=2)


def _id_map(raw: np.ndarray) -> np.ndarray:
    if raw.ndim == 2:
        return raw
    if raw.shape[2] >= 3 and (np.array_equal(raw[..., 0], raw[..., 1]) and np.array_equal(raw[..., 0], raw[..., 2])):
        return raw[..., 0]
    raise ValueError(
        "expected a single-channel id map, got a colour image "
        "(use the *_drivable_id.png masks, not *_drivable_color.png)"
    )


def _yolop_binary(raw: np.ndarray) -> np.ndarray:
    # Nonzero -> drivable. Identical to YOLOP's `threshold(mask, 1)` (>1) and to ">127" on its
    # 0/255 PNGs, and also correct for 0/1-valued masks.
    return (_gray(raw) > 0).astype(np.uint8)


def _bdd_v1(raw: np.ndarray) -> np.ndarray:
    ids = _id_map(raw)  # original release: 0 background, 1 direct, 2 alternative
    return ((ids == 1) | (ids == 2)).astype(np.uint8)


def _bdd_toolkit(raw: np.ndarray) -> np.ndarray:
    # toolkit: 0 direct, 1 alternative, 2 background, 255 unlabeled -> background
    ids = _id_map(raw)
    return ((ids == 0) | (ids == 1)).astype(np.uint8)


#: name -> function mapping a raw decoded mask to {0, 1} drivable.
DRIVABLE_MAPPINGS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "yolop_binary": _yolop_binary,
    "bdd_v1": _bdd_v1,
    "bdd_toolkit": _bdd_toolkit,
}


def map_drivable(raw: np.ndarray, mapping: str) -> np.ndarray:
    """Map a decoded drivable mask to uint8 {0, 1} with a named mapping (see DRIVABLE_MAPPINGS)."""
    try:
        fn = DRIVABLE_MAPPINGS[mapping]
    except KeyError:
        raise DataConfigError(
            f"unknown drivable_mapping {mapping!r}; expected one of {sorted(DRIVABLE_MAPPINGS)}"
        ) from None
    return fn(raw)


def _lane_binary(raw: np.ndarray) -> np.ndarray:
    # YOLOP's ll_seg_annotations (0/255) and any 0/1 mask: nonzero in any channel -> lane
    return (_gray(raw) > 0).astype(np.uint8)


def _lane_bdd_toolkit(raw: np.ndarray) -> np.ndarray:
    # toolkit lane masks (labels/lane/masks): 255 background; any other value is a lane pixel whose
    # bits encode direction, style and category
    return (_id_map(raw) != 255).astype(np.uint8)


#: name -> function mapping a raw decoded lane mask to {0, 1} lane.
LANE_MAPPINGS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "binary": _lane_binary,
    "bdd_toolkit": _lane_bdd_toolkit,
}


def map_lane(raw: np.ndarray, mapping: str = "binary") -> np.ndarray:
    """Map a decoded lane mask to uint8 {0, 1} with a named mapping (see LANE_MAPPINGS)."""
    try:
        fn = LANE_MAPPINGS[mapping]
    except KeyError:
        raise DataConfigError(f"unknown lane_mapping {mapping!r}; expected one of {sorted(LANE_MAPPINGS)}") from None
    return fn(raw)


#: How ground-truth masks are resized to the network input: ``nearest`` (each network pixel takes
#: the label of the source pixel its centre falls in) or ``yolop`` (YOLOP's AutoDriveDataset: the
#: 0/255 mask resized like the image, INTER_AREA when shrinking, INTER_LINEAR when enlarging, then
#: every value > 1 is foreground; thin lines grow).
MASK_RESIZES = ("nearest", "yolop")


def resize_mask(mask: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    """A {0, 1} uint8 mask resized to ``size`` = (w, h) with a :data:`MASK_RESIZES` method."""
    import cv2

    h, w = mask.shape[:2]
    if (w, h) == tuple(size):
        return mask
    if method == "nearest":
        return cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
    if method == "yolop":
        shrink = size[0] < w or size[1] < h  # YOLOP: INTER_AREA when its one ratio is < 1
        scaled = cv2.resize(mask * np.uint8(255), size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        return (scaled > 1).astype(np.uint8)
    raise DataConfigError(f"unknown mask_resize {method!r}; expected one of {list(MASK_RESIZES)}")
