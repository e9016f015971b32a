"""The one frame path: a camera message -> BGR image -> Perceptor -> output messages.

The perception node (:class:`~mtc_perception.node_core.processor.FrameProcessor`), the offline replay
(``mtc bench``) and the live benchmark's player all go through these functions, so a frame is
decoded, inferred and turned into messages the same way everywhere:

- :func:`decode`: :func:`~mtc_perception.imaging.message_to_bgr` (raw ``Image`` in any encoding or
  ``CompressedImage``) with its time;
- :func:`infer`: the Perceptor on one image; a failure comes back as an error, never raised;
- :func:`~mtc_perception.messages.perception_messages`: the output messages (detections, masks,
  overlay) with the input's header.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .imaging import ImageError, message_kind, message_to_bgr
from .messages import perception_messages

__all__ = ["Decoded", "Inference", "decode", "infer", "perception_messages"]


@dataclass
class Decoded:
    """A camera message as an image (``image`` None: it did not decode, ``error`` says why and
    ``error_kind`` names the kind of message, for rate-limited warnings)."""

    image: np.ndarray | None
    decode_ms: float = 0.0
    error: str = ""
    error_kind: str = ""


@dataclass
class Inference:
    """One model on one image: ``perception`` and the Perceptor's wall time, or ``error``."""

    perception: Any = None
    latency_ms: float = 0.0  # set whenever perception is
    error: str = ""
    error_kind: str = ""


def decode(msg: Any) -> Decoded:
    """A camera message -> BGR image; a malformed message is an error, not an exception."""
    t0 = time.perf_counter()
    try:
        image = message_to_bgr(msg)
    except ImageError as e:
        kind = message_kind(msg)
        return Decoded(None, (time.perf_counter() - t0) * 1e3, f"bad frame ({kind}): {e}", kind)
    return Decoded(image, (time.perf_counter() - t0) * 1e3)


def infer(perceptor: Any, image: np.ndarray) -> Inference:
    """``perceptor(image)`` timed; any exception becomes ``Inference.error`` (one model failing on
    one frame is a counted failure, never the end of a node or a run)."""
    t0 = time.perf_counter()
    try:
        p = perceptor(image)
    except Exception as e:  # noqa: BLE001 - an inference failure must not kill the node or the run
        return Inference(error=f"inference failed: {type(e).__name__}: {e}", error_kind=type(e).__name__)
    return Inference(p, (time.perf_counter() - t0) * 1e3)
