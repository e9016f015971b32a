"""Anchor shapes fitted to a dataset's boxes (k-means with 1 - IoU distance, as in YOLOv2)."""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


def _wh_iou(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    inter = np.minimum(wh[:, None, 0], anchors[None, :, 0]) * np.minimum(wh[:, None, 1], anchors[None, :, 1])
    return inter / (wh[:, None].prod(-1) + anchors[None].prod(-1) - inter)


def kmeans_anchors(
    wh: np.ndarray, n_scales: int = 3, per_scale: int = 3, iters: int = 100, seed: int = 0
) -> tuple[tuple[float, ...], ...]:
    """Fit ``n_scales * per_scale`` anchors (pixels) to box sizes ``wh`` (N, 2); smallest first."""
    wh = np.asarray(wh, dtype=np.float64).reshape(-1, 2)
    wh = wh[(wh > 1).all(1)]
    k = n_scales * per_scale
    if len(wh) < k:
        raise ValueError(f"only {len(wh)} boxes to fit {k} anchors; use more training images or anchors: yolop")
    rng = np.random.default_rng(seed)
    # k-means++ style seeding on sorted areas for stability
    centers = wh[rng.choice(len(wh), k, replace=False)]
    for _ in range(iters):
        assign = _wh_iou(wh, centers).argmax(1)
        new = np.array([np.median(wh[assign == j], 0) if (assign == j).any() else centers[j] for j in range(k)])
        if np.allclose(new, centers):
            break
        centers = new
    centers = centers[np.argsort(centers.prod(1))]
    fit = _wh_iou(wh, centers).max(1).mean()
    log.info("k-means anchors: mean best IoU %.3f over %d boxes", fit, len(wh))
    return tuple(
        tuple(float(round(v, 1)) for v in centers[i * per_scale : (i + 1) * per_scale].ravel()) for i in range(n_scales)
    )
