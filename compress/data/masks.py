"""Mask mappings: decoded drivable / lane masks of the BDD100K and YOLOP releases -> uint8 {0, 1}."""

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


def map_lane(raw: np.ndarray) -> np.ndarray:
    """Lane masks are binary: any nonzero pixel (in any channel) is lane."""
    return (_gray(raw) > 0).astype(np.uint8)
