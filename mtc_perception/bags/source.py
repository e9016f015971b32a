"""Frames to record: an image (None where it could not be read) and, from a dataset, its labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Labels:
    """A frame's ground truth: boxes (N, 4) xyxy pixels, class ids into ``class_names``, {0, 1}
    masks (None where the dataset has no such mask)."""

    boxes: np.ndarray
    class_ids: np.ndarray
    class_names: tuple[str, ...]
    drivable: np.ndarray | None = None
    lane: np.ndarray | None = None


@dataclass
class SourceFrame:
    """One frame to record: ``image`` is None when it could not be read (``error`` says why)."""

    name: str
    image: np.ndarray | None
    labels: Labels | None = None
    error: str = ""


def resize_frame(frame: SourceFrame, size: tuple[int, int] | None) -> SourceFrame:
    """``frame`` at ``size`` = (w, h): the image bilinear, masks nearest, boxes scaled."""
    import cv2

    if size is None or frame.image is None or (frame.image.shape[1], frame.image.shape[0]) == tuple(size):
        return frame
    h0, w0 = frame.image.shape[:2]
    w, h = size
    img = cv2.resize(frame.image, (w, h), interpolation=cv2.INTER_AREA if w < w0 else cv2.INTER_LINEAR)
    lab = frame.labels
    if lab is not None:
        scale = np.array([w / w0, h / h0, w / w0, h / h0])
        lab = Labels(
            lab.boxes * scale,
            lab.class_ids,
            lab.class_names,
            *(
                cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST) if m is not None else None
                for m in (lab.drivable, lab.lane)
            ),
        )
    return SourceFrame(frame.name, img, lab, frame.error)
