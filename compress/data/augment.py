"""Geometric and photometric augmentation applied consistently to image, boxes and masks.

Conventions: images are HxWx3 uint8 (BGR, as decoded by OpenCV), masks HxW uint8 {0, 1}, boxes
Nx5 float32 ``[cls, x1, y1, x2, y2]`` in pixels of the same image. Randomness comes from an
explicit ``numpy.random.Generator`` so results are reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from compress.data.errors import DataConfigError
from compress.data.masks import resize_mask
from mtc_perception.processing import PAD_VALUE as _RUNTIME_PAD
from mtc_perception.processing import letterbox_image

__all__ = [
    "PAD_VALUE",
    "AugmentConfig",
    "LetterboxInfo",
    "augment_hsv",
    "box_candidates",
    "flip_lr",
    "letterbox",
    "random_perspective",
]

#: Letterbox / border fill for images (YOLOv5 / YOLOP). Masks are filled with 0.
PAD_VALUE = _RUNTIME_PAD  # the runtime's grey: training and the Perceptor letterbox identically


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation knobs (YOLOv5 / YOLOP names; defaults chosen for road scenes).

    ``degrees`` rotation range (+-deg), ``translate`` fraction of size, ``scale`` gain range
    (1 +- scale), ``shear`` (+-deg), ``perspective`` (+-, YOLOv5 units, keep <= 0.001), HSV gains
    as fractions, ``fliplr`` probability of a horizontal flip. There is deliberately no vertical
    flip (roads are never upside down). Boxes that shrink too much are dropped by YOLOv5's
    ``box_candidates`` rule (``min_box_wh`` px, ``max_aspect``, ``min_area_ratio``).
    """

    degrees: float = 5.0
    translate: float = 0.1
    scale: float = 0.25
    shear: float = 0.0
    perspective: float = 0.0
    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4
    fliplr: float = 0.5
    min_box_wh: float = 2.0
    max_aspect: float = 100.0
    min_area_ratio: float = 0.1

    def __post_init__(self) -> None:
        checks = {
            "degrees": 0 <= self.degrees <= 180,
            "translate": 0 <= self.translate < 0.5,
            "scale": 0 <= self.scale < 1,
            "shear": 0 <= self.shear < 45,
            "perspective": 0 <= self.perspective <= 0.01,
            "hsv_h": 0 <= self.hsv_h <= 0.5,
            "hsv_s": 0 <= self.hsv_s <= 1,
            "hsv_v": 0 <= self.hsv_v <= 1,
            "fliplr": 0 <= self.fliplr <= 1,
            "min_area_ratio": 0 <= self.min_area_ratio <= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise DataConfigError(
                    f"augment.{name}={getattr(self, name)} is out of range; see AugmentConfig for the allowed ranges"
                )

    @classmethod
    def none(cls) -> AugmentConfig:
        """Identity augmentation (letterbox only) — useful for tests and debugging."""
        return cls(degrees=0, translate=0, scale=0, shear=0, perspective=0, hsv_h=0, hsv_s=0, hsv_v=0, fliplr=0)


@dataclass(frozen=True)
class LetterboxInfo:
    """How an image was letterboxed: scale, padding and the rows/cols holding real image.

    ``valid`` is ``(top, bottom, left, right)`` with exclusive ``bottom``/``right``.
    """

    ratio: float
    pad: tuple[int, int]  # (left, top)
    valid: tuple[int, int, int, int]


def letterbox(
    img: np.ndarray,
    masks: list[np.ndarray],
    size: tuple[int, int],
    boxes: np.ndarray | None = None,
    mask_resize: str = "nearest",
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray | None, LetterboxInfo]:
    """Resize keeping aspect ratio and pad to ``size`` = (width, height), centred.

    Image padding is PAD_VALUE, mask padding 0; {0, 1} masks are resized with ``mask_resize``
    (:data:`compress.data.masks.MASK_RESIZES`: ``nearest``, or ``yolop``'s interpolate-and-threshold).
    """
    if mask_resize == "nearest":
        img, masks, lb = letterbox_image(img, size, PAD_VALUE, masks)
    else:
        img, _, lb = letterbox_image(img, size, PAD_VALUE)
        top, bottom, left, right = lb.valid
        pads = (top, lb.dst[1] - bottom, left, lb.dst[0] - right)
        masks = [
            cv2.copyMakeBorder(resize_mask(m, lb.new, mask_resize), *pads, cv2.BORDER_CONSTANT, value=0) for m in masks
        ]
    r, (left, top) = lb.ratio, lb.pad
    if boxes is not None and len(boxes):
        boxes = boxes.copy()
        boxes[:, [1, 3]] = boxes[:, [1, 3]] * r + left
        boxes[:, [2, 4]] = boxes[:, [2, 4]] * r + top
    info = LetterboxInfo(ratio=lb.ratio, pad=lb.pad, valid=lb.valid)
    return img, masks, boxes, info


def box_candidates(
    box1: np.ndarray,
    box2: np.ndarray,
    wh_thr: float = 2.0,
    ar_thr: float = 100.0,
    area_thr: float = 0.1,
    eps: float = 1e-16,
) -> np.ndarray:
    """YOLOv5 rule: keep boxes (4xN, before/after augmentation) that stay big and not too thin."""
    w1, h1 = box1[2] - box1[0], box1[3] - box1[1]
    w2, h2 = box2[2] - box2[0], box2[3] - box2[1]
    ar = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + eps) > area_thr) & (ar < ar_thr)


def random_perspective(
    img: np.ndarray, masks: list[np.ndarray], boxes: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, np.ndarray]:
    """YOLOv5 random_perspective on image + masks + boxes; also returns the 3x3 matrix used.

    The output keeps the input size; the image border is PAD_VALUE, masks use nearest-neighbour
    and border 0. Box corners are transformed, re-boxed, clipped and filtered by box_candidates.
    """
    height, width = img.shape[:2]
    C = np.eye(3)
    C[0, 2], C[1, 2] = -width / 2, -height / 2
    P = np.eye(3)
    P[2, 0] = rng.uniform(-cfg.perspective, cfg.perspective)
    P[2, 1] = rng.uniform(-cfg.perspective, cfg.perspective)
    R = np.eye(3)
    a = rng.uniform(-cfg.degrees, cfg.degrees)
    s = rng.uniform(1 - cfg.scale, 1 + cfg.scale)
    R[:2] = cv2.getRotationMatrix2D(center=(0, 0), angle=a, scale=s)
    S = np.eye(3)
    S[0, 1] = math.tan(rng.uniform(-cfg.shear, cfg.shear) * math.pi / 180)
    S[1, 0] = math.tan(rng.uniform(-cfg.shear, cfg.shear) * math.pi / 180)
    T = np.eye(3)
    T[0, 2] = rng.uniform(0.5 - cfg.translate, 0.5 + cfg.translate) * width
    T[1, 2] = rng.uniform(0.5 - cfg.translate, 0.5 + cfg.translate) * height
    M = T @ S @ R @ P @ C
    if not np.allclose(M, np.eye(3)):
        border = (PAD_VALUE, PAD_VALUE, PAD_VALUE)
        if cfg.perspective:
            img = cv2.warpPerspective(img, M, (width, height), borderValue=border)
            masks = [cv2.warpPerspective(m, M, (width, height), flags=cv2.INTER_NEAREST, borderValue=0) for m in masks]
        else:
            img = cv2.warpAffine(img, M[:2], (width, height), borderValue=border)
            masks = [cv2.warpAffine(m, M[:2], (width, height), flags=cv2.INTER_NEAREST, borderValue=0) for m in masks]
    n = len(boxes)
    if n:
        xy = np.ones((n * 4, 3))
        xy[:, :2] = boxes[:, [1, 2, 3, 4, 1, 4, 3, 2]].reshape(n * 4, 2)
        xy = xy @ M.T
        xy = (xy[:, :2] / xy[:, 2:3] if cfg.perspective else xy[:, :2]).reshape(n, 8)
        x, y = xy[:, [0, 2, 4, 6]], xy[:, [1, 3, 5, 7]]
        new = np.stack([x.min(1), y.min(1), x.max(1), y.max(1)], axis=1)
        new[:, [0, 2]] = new[:, [0, 2]].clip(0, width)
        new[:, [1, 3]] = new[:, [1, 3]].clip(0, height)
        keep = box_candidates(
            boxes[:, 1:5].T * s, new.T, wh_thr=cfg.min_box_wh, ar_thr=cfg.max_aspect, area_thr=cfg.min_area_ratio
        )
        boxes = np.concatenate([boxes[keep, :1], new[keep]], axis=1).astype(np.float32)
    return img, masks, boxes, M


def augment_hsv(img: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """YOLOv5 HSV gain augmentation on a BGR uint8 image (returns a new image)."""
    if not (cfg.hsv_h or cfg.hsv_s or cfg.hsv_v):
        return img
    r = rng.uniform(-1, 1, 3) * [cfg.hsv_h, cfg.hsv_s, cfg.hsv_v] + 1
    hue, sat, val = cv2.split(cv2.cvtColor(img, cv2.COLOR_BGR2HSV))
    x = np.arange(0, 256, dtype=r.dtype)
    lut_hue = ((x * r[0]) % 180).astype(np.uint8)
    lut_sat = np.clip(x * r[1], 0, 255).astype(np.uint8)
    lut_val = np.clip(x * r[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(sat, lut_sat), cv2.LUT(val, lut_val)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def flip_lr(
    img: np.ndarray, masks: list[np.ndarray], boxes: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Mirror image, masks and boxes left-right."""
    width = img.shape[1]
    img = np.ascontiguousarray(img[:, ::-1])
    masks = [np.ascontiguousarray(m[:, ::-1]) for m in masks]
    if len(boxes):
        boxes = boxes.copy()
        x1 = boxes[:, 1].copy()
        boxes[:, 1] = width - boxes[:, 3]
        boxes[:, 3] = width - x1
    return img, masks, boxes
