"""Box geometry and non-maximum suppression in numpy (there is no torchvision here)."""

from __future__ import annotations

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = (a[:, 2] - a[:, 0]).clip(0) * (a[:, 3] - a[:, 1]).clip(0)
    area_b = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clip(0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    class_ids: np.ndarray | None = None,
    max_det: int = 300,
) -> np.ndarray:
    """Greedy NMS; returns kept indices in descending score order.

    With ``class_ids`` the suppression is class-aware: boxes of different classes never suppress
    each other. A box is suppressed when its IoU with a kept box is strictly greater than
    ``iou_threshold``.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(boxes) != len(scores):
        raise ValueError(f"nms: {len(boxes)} boxes but {len(scores)} scores; give one score per box")
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    if class_ids is not None:
        # offset each class into its own region so that classes never overlap
        offset = np.asarray(class_ids, dtype=np.float64).reshape(-1, 1) * (boxes.max() + 1.0)
        boxes = boxes + offset
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1).clip(0) * (y2 - y1).clip(0)
    keep: list[int] = []
    while order.size and len(keep) < max_det:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        w = (np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest])).clip(0)
        h = (np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest])).clip(0)
        inter = w * h
        union = areas[i] + areas[rest] - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


# ----------------------------------------------------------------------------------------------
# letterbox geometry: one definition for training (compress.data.augment) and the Perceptor

PAD_VALUE = 114  # grey padding of the image (masks pad with 0)


class Letterbox:
    """How an image of ``src`` = (w, h) maps into a network input of ``dst`` = (W, H): scaled by
    ``ratio`` keeping its aspect ratio, centred, the rest padded. ``valid`` = (top, bottom, left,
    right) are the network rows/cols holding image (exclusive ends)."""

    __slots__ = ("src", "dst", "ratio", "new", "pad", "valid")

    def __init__(self, src: tuple[int, int], dst: tuple[int, int]) -> None:
        w, h = int(src[0]), int(src[1])
        w_out, h_out = int(dst[0]), int(dst[1])
        if w <= 0 or h <= 0 or w_out <= 0 or h_out <= 0:
            raise ValueError(f"letterbox: sizes must be positive, got image {w}x{h} -> network {w_out}x{h_out}")
        r = min(w_out / w, h_out / h)
        nw, nh = max(1, int(round(w * r))), max(1, int(round(h * r)))
        left, top = int(round((w_out - nw) / 2 - 0.1)), int(round((h_out - nh) / 2 - 0.1))
        self.src, self.dst, self.ratio = (w, h), (w_out, h_out), float(r)
        self.new, self.pad = (nw, nh), (left, top)
        self.valid = (top, top + nh, left, left + nw)

    def __repr__(self) -> str:
        return f"Letterbox(src={self.src}, dst={self.dst}, ratio={self.ratio:.5f}, pad={self.pad})"

    def to_network(self, boxes: np.ndarray) -> np.ndarray:
        """xyxy boxes in image pixels -> network-input pixels."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
        b[:, [0, 2]] = b[:, [0, 2]] * self.ratio + self.pad[0]
        b[:, [1, 3]] = b[:, [1, 3]] * self.ratio + self.pad[1]
        return b

    def to_image(self, boxes: np.ndarray, clip: bool = True) -> np.ndarray:
        """xyxy boxes in network-input pixels -> image pixels (clipped to the image)."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
        b[:, [0, 2]] = (b[:, [0, 2]] - self.pad[0]) / self.ratio
        b[:, [1, 3]] = (b[:, [1, 3]] - self.pad[1]) / self.ratio
        if clip:
            b[:, [0, 2]] = b[:, [0, 2]].clip(0, self.src[0])
            b[:, [1, 3]] = b[:, [1, 3]].clip(0, self.src[1])
        return b


def letterbox_resize(img: np.ndarray, lb: Letterbox) -> np.ndarray:
    """The image part of a letterbox: ``img`` resized to ``lb.new`` (area when shrinking, bilinear
    when enlarging), unpadded; the one resize training and the Perceptor share."""
    import cv2

    if lb.new == lb.src:
        return img
    return cv2.resize(img, lb.new, interpolation=cv2.INTER_AREA if lb.ratio < 1 else cv2.INTER_LINEAR)


def letterbox_image(
    img: np.ndarray, dst: tuple[int, int], pad_value: int = PAD_VALUE, masks: list[np.ndarray] | None = None
) -> tuple[np.ndarray, list[np.ndarray], Letterbox]:
    """Resize ``img`` (HxWxC uint8) into ``dst`` = (W, H) keeping the aspect ratio and pad;
    ``masks`` (HxW) follow with nearest-neighbour resizing and 0 padding."""
    import cv2

    h, w = img.shape[:2]
    lb = Letterbox((w, h), dst)
    nw, nh = lb.new
    masks = list(masks or [])
    if (nw, nh) != (w, h):
        img = letterbox_resize(img, lb)
        masks = [cv2.resize(m, (nw, nh), interpolation=cv2.INTER_NEAREST) for m in masks]
    left, top = lb.pad
    right, bottom = lb.dst[0] - nw - left, lb.dst[1] - nh - top
    if left or right or top or bottom:
        img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(pad_value,) * 3)
        masks = [cv2.copyMakeBorder(m, top, bottom, left, right, cv2.BORDER_CONSTANT, value=0) for m in masks]
    return img, masks, lb


def restore_mask(mask: np.ndarray, lb: Letterbox) -> np.ndarray:
    """A network-resolution mask (H x W, any dtype) -> the image's resolution: the padding is
    cropped and the rest resized with nearest neighbour (every image pixel takes the value of the
    network pixel its centre maps to)."""
    import cv2

    if mask.shape[:2] != (lb.dst[1], lb.dst[0]):
        raise ValueError(
            f"restore_mask: mask is {mask.shape[1]}x{mask.shape[0]} but the network input is {lb.dst[0]}x{lb.dst[1]}"
        )
    top, bottom, left, right = lb.valid
    crop = mask[top:bottom, left:right]
    k = lb.src[0] // crop.shape[1]
    if crop.dtype.itemsize == 1 and k in _WIDEN and crop.shape[1] * k == lb.src[0] and crop.shape[0] * k == lb.src[1]:
        return upscale_nearest(crop, k)  # writes a new array: no contiguous copy of the crop needed
    crop = np.ascontiguousarray(crop)
    if crop.shape[1] == lb.src[0] and crop.shape[0] == lb.src[1]:
        return crop
    return cv2.resize(crop, lb.src, interpolation=cv2.INTER_NEAREST)


_WIDEN = {2: (np.uint16, 0x0101), 4: (np.uint32, 0x01010101), 8: (np.uint64, 0x0101010101010101)}


def upscale_nearest(a: np.ndarray, k: int) -> np.ndarray:
    """Nearest-neighbour upscaling of a 1-byte H x W array by an integer ``k`` in {2, 4, 8}:
    identical to ``cv2.resize(a, (k W, k H), INTER_NEAREST)`` and ~10x faster on 720p masks
    (a multiply by 0x0101... repeats each byte k times across a row, a broadcast repeats rows),
    the common case of a 1280x720 or 2560x1440 camera on a 640-wide network."""
    wide, rep = _WIDEN[k]
    h, w = a.shape
    row = a.astype(wide)
    row *= wide(rep)
    out = np.empty((h, k, w), wide)
    out[:] = row[:, None, :]
    return out.view(np.uint8).reshape(h * k, w * k).view(a.dtype)


def select_detections(
    pred: np.ndarray, conf: float, iou: float, max_det: int = 300, max_candidates: int = 30000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decoded predictions of one image (N x (5+nc): cx, cy, w, h, objectness, class
    probabilities) -> (boxes xyxy, scores, class ids) after the confidence threshold and
    class-aware NMS. score = objectness x best class probability."""
    pred = np.asarray(pred)
    if pred.ndim != 2 or pred.shape[1] < 6:
        raise ValueError(f"select_detections: expected N x (5 + classes) predictions, got shape {pred.shape}")
    if conf > 0:  # exact prefilter: with probabilities in [0, 1], score > conf needs objectness > conf
        pred = pred[pred[:, 4] > conf]
    cls_prob = pred[:, 5:]
    cls = cls_prob.argmax(1)
    score = pred[:, 4] * cls_prob[np.arange(len(pred)), cls]
    keep = score > conf
    p, score, cls = pred[keep], score[keep], cls[keep]
    if len(p) > max_candidates:  # bound the NMS work on a degenerate model
        top = np.argsort(-score)[:max_candidates]
        p, score, cls = p[top], score[top], cls[top]
    boxes = np.concatenate([p[:, :2] - p[:, 2:4] / 2, p[:, :2] + p[:, 2:4] / 2], 1)
    k = nms(boxes, score, iou, class_ids=cls, max_det=max_det)
    return boxes[k], score[k], cls[k]
