"""Summary statistics of the report: latency percentiles, per-class IoU of a confusion matrix, rounding."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np


def present_class_iou(cm: np.ndarray) -> dict[str, Any]:
    """IoU per class from a 2x2 confusion matrix, None for a class absent from both prediction and
    target (0/0); ``miou`` averages the defined ones."""
    (tn, fp), (fn, tp) = (int(v) for v in cm[0]), (int(v) for v in cm[1])
    fg = tp / (tp + fp + fn) if tp + fp + fn else None
    bg = tn / (tn + fp + fn) if tn + fp + fn else None
    defined = [v for v in (bg, fg) if v is not None]
    return {
        "miou": float(np.mean(defined)) if defined else None,
        "iou": fg,
        "recall": tp / (tp + fn) if tp + fn else None,
        "pixels": tn + fp + fn + tp,
    }


def latency_stats(values: Iterable[float]) -> dict[str, float | None]:
    """mean, p50, p90, p99, max (ms) of the values; None for each when there are none."""
    a = np.asarray(list(values), np.float64)
    if a.size == 0:
        return {"mean": None, "p50": None, "p90": None, "p99": None, "max": None}
    return {
        "mean": float(a.mean()),
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
    }


def round_floats(v: Any, nd: int = 4) -> Any:
    if isinstance(v, float):
        return round(v, nd)
    if isinstance(v, dict):
        return {k: round_floats(x, nd) for k, x in v.items()}
    if isinstance(v, list):
        return [round_floats(x, nd) for x in v]
    return v
