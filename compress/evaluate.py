"""YOLOP-comparable evaluation of a multi-task model on a dataset split."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from mtc_perception.processing import select_detections

from .metrics import DetectionMetrics, SegMetrics, drivable_metrics, lane_metrics
from .models import count_macs, count_params, decode_detections

log = logging.getLogger(__name__)

CONVENTIONS = (
    "detection: NMS conf {conf} / IoU {iou}, max {max_det} per image, single-label (best class); "
    "protocol {protocol}: {matching}; AP per class ({ap_method} 101-point), averaged over classes "
    "present; map50_coco / map50_95_coco: pycocotools' matching and integration; recall = recall at "
    "the confidence maximizing mean recall (all kept detections) at IoU 0.5, precision at the same "
    "confidence. segmentation: sigmoid > 0.5, {seg_average}, letterbox "
    "padding cropped; lane acc = lane-pixel recall TP/(TP+FN), lane iou = lane-class IoU; drivable "
    "miou = mean of background and foreground IoU."
)
SEG_AVERAGING = {
    "set": "one confusion matrix over the whole split",
    "batch": "YOLOP's per-batch metrics averaged weighted by batch size ({batch_size} images per batch)",
}
#: what each protocol uses unless told otherwise: segmentation averaging, ground-truth mask resize
PROTOCOL_SEG_AVERAGE = {"default": "set", "yolop": "batch"}
PROTOCOL_MASK_RESIZE = {"default": None, "yolop": "yolop"}  # None: the data configuration's own
MATCHING = {
    "default": "greedy score-ordered matching per image and IoU threshold (IoU >= t, a taken box "
    "falls back to the next best, ties to the last box as pycocotools), boxes not clipped",
    "yolop": "YOLOP validate() matching (boxes mapped to the original image and clipped to it; each "
    "prediction to its single best box of its class, ties to the first, a hit if IoU > 0.5 and the "
    "box is free, counted at thresholds t with IoU > t, no fallback)",
}


def _to_image(boxes: np.ndarray, meta: dict) -> np.ndarray:
    """Network-input xyxy boxes -> the original image's pixels (YOLOP's scale_coords, unclipped)."""
    left, top = meta["pad"]
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    b[:, [0, 2]] = (b[:, [0, 2]] - left) / meta["ratio"]
    b[:, [1, 3]] = (b[:, [1, 3]] - top) / meta["ratio"]
    return b


def to_input(img: torch.Tensor, device: torch.device | str, channels_last: bool = False) -> torch.Tensor:
    """uint8 RGB (B,3,H,W) -> float in [0, 1] on ``device`` (the network's normalization)."""
    x = img.to(device, non_blocking=True).float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def postprocess(
    det: list[torch.Tensor], anchors: torch.Tensor, strides: torch.Tensor, conf: float, iou: float, max_det: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Decode raw head outputs and run class-aware NMS: per image (boxes xyxy, scores, classes)."""
    pred = decode_detections(det, anchors, strides).cpu().numpy()
    return [select_detections(p, conf, iou, max_det) for p in pred]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Any,
    device: torch.device | str = "cpu",
    conf_thres: float = 0.001,
    iou_thres: float = 0.6,
    max_det: int = 300,
    ap_method: str | None = None,
    progress: bool = False,
    max_batches: int | None = None,
    protocol: str = "default",
    seg_average: str | None = None,
) -> dict[str, Any]:
    """Run ``model`` over ``loader`` and return detection / drivable / lane metrics.

    ``protocol`` / ``ap_method``: see :class:`mtc_perception.metrics.DetectionMetrics` (``ap_method``
    None = the protocol's own integration). Under ``"yolop"`` the boxes are mapped back to each
    original image and clipped to it, as YOLOP's validate() does. ``seg_average``: ``"set"`` or
    ``"batch"`` (:class:`mtc_perception.metrics.SegMetrics`; None = the protocol's: set for default,
    batch for yolop, whose batches are the loader's)."""
    from .data import LoadStats, iterate
    from .data.dataset import index_skipped

    m = model.module if hasattr(model, "module") else model
    was_training = m.training
    m.eval()
    names = tuple(getattr(getattr(m, "cfg", None), "class_names", ()) or ())
    data_cfg = getattr(getattr(loader, "dataset", None), "cfg", None)
    data_names = tuple(getattr(data_cfg, "class_names", ()) or ())
    if data_names and len(data_names) != m.detect.nc:
        raise ValueError(
            f"the model detects {m.detect.nc} classes {list(names)} but the data labels {len(data_names)} "
            f"{list(data_names)}: its class ids would be compared with other classes' boxes; read the data with the "
            "model's classes (--classes bdd10 for BDD100K's 10, or class_names/class_map in the data options)"
        )
    if data_names and names and data_names != names:
        log.warning(
            "model classes %s and data classes %s differ in name; compared by index", list(names), list(data_names)
        )
    det_m = DetectionMetrics(
        m.detect.nc, ap_method, protocol=protocol, class_names=names if len(names) == m.detect.nc else None
    )
    seg_average = seg_average or PROTOCOL_SEG_AVERAGE[protocol]
    drv_m, lane_m = SegMetrics(seg_average), SegMetrics(seg_average)
    t_model = 0.0
    n_img = 0
    stats = LoadStats()
    total = len(loader) if max_batches is None else min(len(loader), max_batches)
    it = tqdm(iterate(loader, stats), total=total, desc="eval", leave=False, disable=not progress)
    channels_last = next(m.parameters()).is_contiguous(memory_format=torch.channels_last)
    t0 = time.perf_counter()
    for bi, batch in enumerate(it):
        if max_batches is not None and bi >= max_batches:
            break
        x = to_input(batch["img"], device, channels_last)
        ts = time.perf_counter()
        out = m(x)
        t_model += time.perf_counter() - ts
        dets = postprocess(out.det, m.detect.anchors, m.detect.strides, conf_thres, iou_thres, max_det)
        drv = (out.drivable[:, 0] > 0).cpu().numpy()
        lane = (out.lane[:, 0] > 0).cpu().numpy()
        gt = batch["boxes"].numpy()
        for i, (boxes, scores, cls) in enumerate(dets):
            g = gt[gt[:, 0] == i]
            meta = batch["meta"][i]
            if protocol == "yolop":
                h0, w0 = meta["orig_size"]
                det_m.update(
                    _to_image(boxes, meta),
                    scores,
                    cls,
                    _to_image(g[:, 2:6], meta),
                    g[:, 1].astype(np.int64),
                    image_size=(w0, h0),
                )
            else:
                det_m.update(boxes, scores, cls, g[:, 2:6], g[:, 1].astype(np.int64))
            top, bottom, left, right = meta["valid"]
            if meta.get("has_drivable", True):
                drv_m.update(drv[i, top:bottom, left:right], batch["drivable"][i, top:bottom, left:right].numpy())
            if meta.get("has_lane", True):
                lane_m.update(lane[i, top:bottom, left:right], batch["lane"][i, top:bottom, left:right].numpy())
            n_img += 1
        drv_m.end_batch()
        lane_m.end_batch()
    m.train(was_training)
    wall = time.perf_counter() - t0
    detection = det_m.compute()
    return {
        "detection": detection,
        "drivable": drivable_metrics(drv_m.compute()),
        "lane": lane_metrics(lane_m.compute()),
        "images": n_img,
        "skipped": index_skipped(loader) + stats.skipped,  # samples of the split not evaluated, by either cause
        "skipped_at_indexing": index_skipped(loader),
        "skipped_at_loading": stats.skipped,
        "seconds": round(wall, 2),
        "model_ms_per_image": round(1000 * t_model / max(n_img, 1), 2),
        "segmentation": {"average": seg_average, "batch_size": getattr(loader, "batch_size", None)},
        "conventions": CONVENTIONS.format(
            conf=conf_thres,
            iou=iou_thres,
            max_det=max_det,
            protocol=protocol,
            matching=MATCHING[protocol],
            ap_method=detection["ap_method"],
            seg_average=SEG_AVERAGING[seg_average].format(batch_size=getattr(loader, "batch_size", None)),
        ),
    }


def model_profile(model: nn.Module, img_size: tuple[int, int]) -> dict[str, Any]:
    """Params and MACs at ``img_size`` = (width, height)."""
    m = model.module if hasattr(model, "module") else model
    w, h = img_size
    macs = count_macs(m, h, w)
    return {"params": count_params(m), "macs": macs, "gmacs": round(macs / 1e9, 4), "macs_at": f"{w}x{h}"}
