"""Drawing a Perception on its frame (numpy + OpenCV)."""

from __future__ import annotations

import numpy as np

DRIVABLE_BGR = (80, 200, 60)
LANE_BGR = (0, 220, 255)
BOX_BGR = (40, 40, 255)


def draw(frame: np.ndarray, p, alpha: float = 0.45) -> np.ndarray:
    """A copy of ``frame`` with the drivable area and lanes tinted and the boxes drawn."""
    import cv2

    out = frame.copy()
    for mask, colour in ((p.drivable, DRIVABLE_BGR), (p.lane, LANE_BGR)):
        m = mask.astype(bool)
        if m.any():
            out[m] = (out[m] * (1 - alpha) + np.asarray(colour, np.float32) * alpha).astype(np.uint8)
    names = list(p.class_names)
    for b, s, c in zip(p.boxes, p.scores, p.class_ids):
        x1, y1, x2, y2 = (int(round(v)) for v in b)
        cv2.rectangle(out, (x1, y1), (x2, y2), BOX_BGR, 2)
        label = f"{names[int(c)] if int(c) < len(names) else int(c)} {s:.2f}"
        cv2.putText(out, label, (x1, max(y1 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, BOX_BGR, 1, cv2.LINE_AA)
    return out
