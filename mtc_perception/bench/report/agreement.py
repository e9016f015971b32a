"""Per-frame agreement of a candidate's perception with a reference's: detection F1 and mask IoUs."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...metrics import confusion_2x2
from ...processing import box_iou


def fg_iou(cm: np.ndarray) -> float:
    """Foreground IoU of a 2x2 confusion matrix; 1 when neither mask has foreground."""
    union = int(cm[0, 1] + cm[1, 0] + cm[1, 1])
    return 1.0 if union == 0 else float(cm[1, 1] / union)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    return fg_iou(confusion_2x2(a, b)) if np.shape(a) == np.shape(b) else 0.0


def detection_f1(ref: Any, cand: Any, iou: float = 0.5) -> float:
    """F1 of ``cand``'s boxes against ``ref``'s (greedy in score order, same class, IoU >= ``iou``);
    1 when both are empty."""
    n_r, n_c = len(ref.boxes), len(cand.boxes)
    if n_r == 0 and n_c == 0:
        return 1.0
    if n_r == 0 or n_c == 0:
        return 0.0
    m = box_iou(np.asarray(cand.boxes), np.asarray(ref.boxes))
    m[np.asarray(cand.class_ids)[:, None] != np.asarray(ref.class_ids)[None, :]] = -1.0
    taken = np.zeros(n_r, bool)
    tp = 0
    for d in np.argsort(-np.asarray(cand.scores), kind="mergesort"):
        row = np.where(taken, -1.0, m[d])
        g = int(np.argmax(row))
        if row[g] >= iou:
            taken[g] = True
            tp += 1
    return 2.0 * tp / (n_r + n_c)


def frame_agreement(ref: Any, cand: Any) -> dict[str, float]:
    """Per-frame agreement of two Perception-likes: detection F1 @ IoU 0.5, drivable IoU, lane IoU
    (each 1 when both are empty) and ``disagreement`` = 1 - their mean."""
    a = {
        "det_f1": detection_f1(ref, cand),
        "drivable_iou": mask_iou(ref.drivable, cand.drivable),
        "lane_iou": mask_iou(ref.lane, cand.lane),
    }
    a["disagreement"] = 1.0 - float(np.mean(list(a.values())))
    return a
