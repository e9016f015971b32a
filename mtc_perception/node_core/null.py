"""``backend: none``: a perception node without a model, for measuring the transport floor.

Every frame is answered as the node answers it (the camera message read and converted to BGR, the
three outputs built with the input's header and published, /diagnostics) but with no detections and
empty masks at the input's size, in no time. A live benchmark of this node against the real one
shows what the model costs above everything else the node and the middleware do.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..bundle import Bundle
from ..perceptor import Perception


class NullPerceptor:
    """A Perceptor-shaped object that answers every image with nothing, at no cost."""

    backend = "none"

    def __init__(self, bundle: Bundle, class_names: Sequence[str] = ()) -> None:
        self.bundle = bundle
        self.class_names = tuple(class_names)

    def warmup(self, n: int = 1) -> None:  # the Perceptor's interface; nothing to warm
        return None

    def __call__(self, image: np.ndarray) -> Perception:
        h, w = image.shape[:2]
        empty = np.zeros((h, w), np.uint8)
        return Perception(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros(0, np.float32),
            class_ids=np.zeros(0, np.int64),
            drivable=empty,
            lane=empty,
            timings={"preprocess": 0.0, "infer": 0.0, "postprocess": 0.0},
            class_names=self.class_names,
        )
