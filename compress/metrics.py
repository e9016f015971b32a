"""Detection and segmentation metrics with YOLOP's conventions.

The numpy-only metric classes live in :mod:`mtc_perception.metrics` (the runtime's replay benchmark
scores models without torch); they are re-exported here so ``from compress.metrics import ...``
keeps working. :func:`fitness` (the best-checkpoint choice) is a training concept and stays here.
"""

from __future__ import annotations

import numpy as np

from mtc_perception.metrics import IOU_THRESHOLDS, DetectionMetrics, SegMetrics, drivable_metrics, lane_metrics


def fitness(m: dict) -> float:
    """Scalar used to pick the best checkpoint: mean of the four headline task metrics, over the
    tasks the split has labels for (a segmentation task without labels is n/a, not 0)."""
    vals = [m["detection"]["map50"], m["detection"]["recall"]]
    if m["drivable"].get("available", True):
        vals.append(m["drivable"]["miou"])
    if m["lane"].get("available", True):
        vals.append(m["lane"]["iou"])
    return float(np.mean(vals))


__all__ = ["IOU_THRESHOLDS", "DetectionMetrics", "SegMetrics", "drivable_metrics", "fitness", "lane_metrics"]
