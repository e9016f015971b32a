"""The Perceptor: a camera frame in, boxes and masks at the frame's resolution out.

One code path for every backend: letterbox -> engine -> (decoded) detections -> confidence
threshold + class-aware NMS -> boxes in image pixels; drivable and lane logits thresholded (or, for
2-channel heads, channel 1 > channel 0) and restored to the image resolution. Only numpy and
OpenCV are needed besides the chosen backend.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .bundle import Bundle
from .imaging import ImageError, decode_bytes
from .processing import Letterbox, letterbox_resize, restore_mask, select_detections

STAGES = ("decode", "preprocess", "infer", "postprocess")


class FrameError(ValueError):
    """A frame the Perceptor cannot use (wrong shape, dtype, corrupt encoding)."""


@dataclass
class Perception:
    """What one frame yields (identical from every backend)."""

    boxes: np.ndarray  # (N, 4) float32 xyxy in input-image pixels
    scores: np.ndarray  # (N,) float32
    class_ids: np.ndarray  # (N,) int64
    drivable: np.ndarray  # (H, W) uint8 {0, 1}
    lane: np.ndarray  # (H, W) uint8 {0, 1}
    timings: dict[str, float] = field(default_factory=dict)  # ms per stage
    class_names: Sequence[str] = ()

    def to_dict(self) -> dict:
        return {
            "detections": [
                {
                    "box": [round(float(v), 2) for v in b],
                    "score": round(float(s), 4),
                    "class_id": int(c),
                    "class": self.class_names[int(c)] if int(c) < len(self.class_names) else str(int(c)),
                }
                for b, s, c in zip(self.boxes, self.scores, self.class_ids)
            ],
            "drivable_fraction": float(self.drivable.mean()) if self.drivable.size else 0.0,
            "lane_fraction": float(self.lane.mean()) if self.lane.size else 0.0,
            "image_size": [int(self.drivable.shape[1]), int(self.drivable.shape[0])],
            "timings_ms": {k: round(v, 3) for k, v in self.timings.items()},
        }


def check_frame(frame: object) -> np.ndarray:
    """A BGR uint8 H x W x 3 image, or :class:`FrameError` saying what is wrong."""
    if not isinstance(frame, np.ndarray):
        raise FrameError(f"frame must be a numpy array (BGR uint8 HxWx3), got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise FrameError(f"frame must be uint8 BGR, got dtype {frame.dtype}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise FrameError(f"frame must be HxWx3 BGR, got shape {frame.shape}")
    if frame.shape[0] < 2 or frame.shape[1] < 2:
        raise FrameError(f"frame of {frame.shape[1]}x{frame.shape[0]} pixels is too small")
    return frame


def decode_image(data: bytes | np.ndarray) -> np.ndarray:
    """JPEG/PNG bytes -> BGR uint8 image, or :class:`FrameError`."""
    try:
        return decode_bytes(data)
    except ImageError as e:
        raise FrameError(str(e)) from None


class Preprocessor:
    """BGR frames -> the network input a bundle describes (letterbox, colour order, scale,
    mean/std), exactly as training prepared its images."""

    def __init__(self, bundle: Bundle) -> None:
        inp = bundle.spec.input
        self.size = bundle.input_size
        self.pad_value = inp.pad_value
        self.rgb = inp.color == "RGB"
        self.scale = inp.scale
        self.mean = np.asarray(inp.mean, np.float32).reshape(1, 3, 1, 1)
        self.std = np.asarray(inp.std, np.float32).reshape(1, 3, 1, 1)
        self._plain_norm = bool(np.all(self.mean == 0) and np.all(self.std == 1))

    def __call__(self, frames: Sequence[np.ndarray]) -> tuple[np.ndarray, list[Letterbox]]:
        """BGR frames -> (B, 3, H, W) float32 network input and each frame's letterbox."""
        import cv2

        w, h = self.size
        x = np.empty((len(frames), 3, h, w), np.float32)
        scale = np.float32(self.scale)
        pad = np.float32(self.pad_value) * scale
        order = (2, 1, 0) if self.rgb else (0, 1, 2)
        lbs = []
        for i, f in enumerate(frames):
            f = check_frame(f)
            lb = Letterbox((f.shape[1], f.shape[0]), self.size)
            # the letterbox of training (processing.letterbox_image) written straight into the
            # float input: the padding is filled, the resized image converted channel by channel
            channels = cv2.split(letterbox_resize(f, lb))
            top, bottom, left, right = lb.valid
            xi = x[i]
            xi[:, :top] = pad
            xi[:, bottom:] = pad
            xi[:, top:bottom, :left] = pad
            xi[:, top:bottom, right:] = pad
            for c, src in enumerate(order):
                np.multiply(channels[src], scale, out=xi[c, top:bottom, left:right], casting="unsafe")
            lbs.append(lb)
        if not self._plain_norm:
            x = (x - self.mean) / self.std
        return x, lbs


class Perceptor:
    """``Perceptor(bundle, backend="auto")(frame) -> Perception``.

    ``conf``/``iou``/``max_det``: detection threshold, NMS IoU and cap (deployment defaults; the
    YOLOP evaluation protocol uses conf 0.001 / IoU 0.6). ``engine_options`` go to the backend
    (``threads``, ``providers``, ``device``, ``cuda_graph``, ...).
    """

    def __init__(
        self,
        bundle: Bundle | str | Path,
        backend: str = "auto",
        conf: float = 0.25,
        iou: float = 0.45,
        max_det: int = 100,
        **engine_options: object,
    ) -> None:
        from .engines import create_engine

        self.bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
        if not 0.0 <= conf <= 1.0 or not 0.0 <= iou <= 1.0:
            raise ValueError(f"conf ({conf}) and iou ({iou}) must be in [0, 1]")
        self.conf, self.iou, self.max_det = conf, iou, max_det
        self.engine = create_engine(backend, self.bundle, **engine_options)
        self.pre = Preprocessor(self.bundle)
        spec = self.bundle.spec
        self.det_name = spec.detection.output
        self.seg_names = (spec.segmentation.drivable.output, spec.segmentation.lane.output)
        # a 2-channel head (background, foreground) is argmax: mask = channel 1 > channel 0; else logits > 0
        self.seg_two = tuple(h.mask_channels == 2 for h in (spec.segmentation.drivable, spec.segmentation.lane))
        self.class_names = self.bundle.class_names

    @property
    def backend(self) -> str:
        return self.engine.description

    def warmup(self, runs: int = 3) -> float:
        return self.engine.warmup(runs)

    # -- stages ---------------------------------------------------------------------------------
    def preprocess(self, frames: Sequence[np.ndarray]) -> tuple[np.ndarray, list[Letterbox]]:
        return self.pre(frames)

    def postprocess(self, outputs: dict[str, np.ndarray], lbs: Sequence[Letterbox]) -> list[Perception]:
        det = outputs[self.det_name]
        drv, lane = (outputs[n] for n in self.seg_names)
        out = []
        for i, lb in enumerate(lbs):
            boxes, scores, cls = select_detections(det[i], self.conf, self.iou, self.max_det)
            boxes = lb.to_image(boxes).astype(np.float32)
            keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # boxes entirely in the padding vanish
            masks = [
                restore_mask((np.greater(m[i, 1], m[i, 0]) if two else np.greater(m[i, 0], 0)).view(np.uint8), lb)
                for m, two in ((drv, self.seg_two[0]), (lane, self.seg_two[1]))
            ]
            out.append(
                Perception(
                    boxes[keep],
                    scores[keep].astype(np.float32),
                    cls[keep].astype(np.int64),
                    masks[0],
                    masks[1],
                    class_names=self.class_names,
                )
            )
        return out

    # -- entry points ---------------------------------------------------------------------------
    def __call__(self, frame: np.ndarray | bytes) -> Perception:
        return self.infer_batch([frame])[0]

    def infer_batch(self, frames: Sequence[np.ndarray | bytes]) -> list[Perception]:
        """Frames (BGR arrays or JPEG/PNG bytes) -> one Perception each; timings are per batch
        divided by the number of frames."""
        t0 = time.perf_counter()
        imgs = [decode_image(f) if isinstance(f, (bytes, bytearray, memoryview)) else f for f in frames]
        t1 = time.perf_counter()
        x, lbs = self.preprocess(imgs)
        t2 = time.perf_counter()
        outputs = self.engine.infer(x)
        t3 = time.perf_counter()
        results = self.postprocess(outputs, lbs)
        t4 = time.perf_counter()
        n = max(len(frames), 1)
        timings = {
            "decode": (t1 - t0) * 1e3 / n,
            "preprocess": (t2 - t1) * 1e3 / n,
            "infer": (t3 - t2) * 1e3 / n,
            "postprocess": (t4 - t3) * 1e3 / n,
        }
        for r in results:
            r.timings = dict(timings)
        return results
