"""Detection and segmentation metrics with YOLOP's conventions (numpy only).

They live in the runtime half so that the replay benchmark (``mtc bench``) can score a student
against its teacher without torch; ``compress.metrics`` re-exports them for training and
evaluation.

Detection
    Predictions are matched to ground truth per image and IoU threshold greedily in descending
    score order (each detection takes the unmatched ground-truth box of its class with the highest
    IoU >= threshold), as COCO does. AP is computed per class over all images and averaged over
    classes. Two integrations are offered: ``"yolov5"`` (the default, as YOLOP reports: the
    precision envelope sampled at 101 recall points and integrated with the trapezoidal rule) and
    ``"coco"`` (pycocotools: mean of the envelope at 101 recall thresholds; checked against
    pycocotools in the tests). The YOLOv5 integration closes the curve with a point at
    (recall 1, precision 0) and interpolates linearly to it, so it scores above the COCO one when
    the maximum recall is below 1; both are always reported (``map50`` / ``map50_coco``). ``recall`` is YOLOP's: the recall at the confidence that maximizes
    mean recall (i.e. over all kept detections, conf >= the NMS threshold) at IoU 0.5, with the
    precision at that same confidence; the max-F1 operating point is reported too.

Segmentation
    One 2x2 confusion matrix accumulated over the whole set (not averaged per batch as YOLOP
    does), over the pixels inside the letterbox's valid region only. Drivable: ``miou`` = mean of
    background and foreground IoU, ``iou`` = foreground IoU, ``acc`` = pixel accuracy. Lane:
    ``acc`` = lane-pixel recall TP / (TP + FN) (YOLOP's "accuracy"), ``iou`` = lane-class IoU,
    ``miou`` as above.
"""

from __future__ import annotations

import numpy as np

from .processing import box_iou

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
# numpy 2 renamed trapz; the ROS distros' numpy (1.21 / 1.26) only has the old name
_trapezoid = getattr(np, "trapezoid", None) or getattr(np, "trapz")  # noqa: B009 - gone from numpy 2.x stubs


def _ap(recall: np.ndarray, precision: np.ndarray, method: str) -> float:
    """Area under the precision envelope for one class."""
    if method == "coco":
        pr = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
        thr = np.linspace(0.0, 1.0, 101)
        inds = np.searchsorted(recall, thr, side="left")
        q = np.array([pr[i] if i < len(pr) else 0.0 for i in inds])
        return float(q.mean())
    if method == "yolov5":
        mrec = np.concatenate(([0.0], recall, [1.0]))
        mpre = np.concatenate(([1.0], precision, [0.0]))
        mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
        x = np.linspace(0, 1, 101)
        return float(_trapezoid(np.interp(x, mrec, mpre), x))
    raise ValueError(f"AP method {method!r} unknown; use 'yolov5' or 'coco'")


class DetectionMetrics:
    """Accumulates per-image detections and ground truth; :meth:`compute` returns the metrics."""

    def __init__(self, num_classes: int, ap_method: str = "yolov5") -> None:
        if ap_method not in ("yolov5", "coco"):
            raise ValueError(f"AP method {ap_method!r} unknown; use 'yolov5' or 'coco'")
        self.nc = num_classes
        self.ap_method = ap_method
        self._tp: list[np.ndarray] = []
        self._scores: list[np.ndarray] = []
        self._cls: list[np.ndarray] = []
        self._n_gt = np.zeros(num_classes, dtype=np.int64)
        self.images = 0

    def update(
        self, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, gt_boxes: np.ndarray, gt_classes: np.ndarray
    ) -> None:
        """Add one image: predictions (N,4 xyxy, N, N) and ground truth (M,4 xyxy, M)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        classes = np.asarray(classes, dtype=np.int64).reshape(-1)
        gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
        gt_classes = np.asarray(gt_classes, dtype=np.int64).reshape(-1)
        self.images += 1
        self._n_gt += np.bincount(gt_classes, minlength=self.nc)[: self.nc]
        order = np.argsort(-scores, kind="mergesort")
        boxes, scores, classes = boxes[order], scores[order], classes[order]
        tp = np.zeros((len(boxes), len(IOU_THRESHOLDS)), dtype=bool)
        if len(boxes) and len(gt_boxes):
            iou = box_iou(boxes, gt_boxes)
            iou[classes[:, None] != gt_classes[None, :]] = -1.0
            for t, thr in enumerate(IOU_THRESHOLDS):
                taken = np.zeros(len(gt_boxes), dtype=bool)
                for d in range(len(boxes)):
                    cand = np.where(taken, -1.0, iou[d])
                    g = int(np.argmax(cand))
                    if cand[g] >= min(thr, 1 - 1e-10):
                        taken[g] = True
                        tp[d, t] = True
        self._tp.append(tp)
        self._scores.append(scores)
        self._cls.append(classes)

    def compute(self) -> dict:
        tp = np.concatenate(self._tp) if self._tp else np.zeros((0, len(IOU_THRESHOLDS)), bool)
        scores = np.concatenate(self._scores) if self._scores else np.zeros(0)
        cls = np.concatenate(self._cls) if self._cls else np.zeros(0, np.int64)
        order = np.argsort(-scores, kind="mergesort")
        tp, scores, cls = tp[order], scores[order], cls[order]
        ap = np.zeros((self.nc, len(IOU_THRESHOLDS)))
        ap_coco = np.zeros((self.nc, len(IOU_THRESHOLDS)))
        max_recall = np.zeros(self.nc)
        prec_at_max_recall = np.zeros(self.nc)
        conf_grid = np.linspace(0, 1, 1000)
        p_curve = np.zeros((self.nc, len(conf_grid)))
        r_curve = np.zeros((self.nc, len(conf_grid)))
        present = self._n_gt > 0
        for c in range(self.nc):
            m = cls == c
            n_gt = self._n_gt[c]
            if n_gt == 0:
                continue
            tpc = np.cumsum(tp[m], 0)
            fpc = np.cumsum(~tp[m], 0)
            if len(tpc) == 0:
                continue
            recall = tpc / n_gt
            precision = tpc / (tpc + fpc)
            for t in range(len(IOU_THRESHOLDS)):
                ap[c, t] = _ap(recall[:, t], precision[:, t], self.ap_method)
                ap_coco[c, t] = _ap(recall[:, t], precision[:, t], "coco")
            max_recall[c] = recall[-1, 0]
            prec_at_max_recall[c] = precision[-1, 0]
            # P/R as functions of confidence (for the max-F1 operating point)
            sc = scores[m]
            r_curve[c] = np.interp(-conf_grid, -sc, recall[:, 0], left=0)
            p_curve[c] = np.interp(-conf_grid, -sc, precision[:, 0], left=1)
        nc_present = max(int(present.sum()), 1)
        f1 = 2 * p_curve * r_curve / np.maximum(p_curve + r_curve, 1e-16)
        best = int(f1[present].mean(0).argmax()) if present.any() else 0
        return {
            "map50": float(ap[present, 0].sum() / nc_present),
            "map50_95": float(ap[present].mean(1).sum() / nc_present),
            "map50_coco": float(ap_coco[present, 0].sum() / nc_present),
            "map50_95_coco": float(ap_coco[present].mean(1).sum() / nc_present),
            "recall": float(max_recall[present].sum() / nc_present),
            "precision": float(prec_at_max_recall[present].sum() / nc_present),
            "best_f1": {
                "conf": float(conf_grid[best]),
                "precision": float(p_curve[present, best].mean()) if present.any() else 0.0,
                "recall": float(r_curve[present, best].mean()) if present.any() else 0.0,
                "f1": float(f1[present, best].mean()) if present.any() else 0.0,
            },
            "ap50_per_class": [float(v) for v in ap[:, 0]],
            "num_gt": int(self._n_gt.sum()),
            "num_pred": int(len(scores)),
            "images": self.images,
            "ap_method": self.ap_method,
        }


def confusion_2x2(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """cm[t, p] of two binary masks (nonzero = foreground): rows target, columns prediction.
    Counted with ``count_nonzero`` (about 10x faster than a bincount over every pixel)."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.size != target.size:
        raise ValueError(f"prediction has {pred.size} pixels, target {target.size}; they must match")
    p = pred.astype(bool, copy=False).ravel()
    t = target.astype(bool, copy=False).ravel()
    tp = np.count_nonzero(p & t)
    fp, fn = np.count_nonzero(p) - tp, np.count_nonzero(t) - tp
    return np.array([[p.size - tp - fp - fn, fp], [fn, tp]], np.int64)


class SegMetrics:
    """Binary segmentation metrics from one confusion matrix over the whole set."""

    def __init__(self) -> None:
        # cm[t, p]: rows = target (0 background, 1 foreground), cols = prediction
        self.cm = np.zeros((2, 2), dtype=np.int64)

    def update(self, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Add one mask pair; returns its own 2x2 confusion matrix."""
        cm = confusion_2x2(pred, target)
        self.cm += cm
        return cm

    def compute(self) -> dict:
        (tn, fp), (fn, tp) = self.cm.tolist()
        iou_fg = tp / (tp + fp + fn) if tp + fp + fn else 0.0
        iou_bg = tn / (tn + fn + fp) if tn + fn + fp else 0.0
        total = tn + fp + fn + tp
        return {
            "miou": float((iou_fg + iou_bg) / 2),
            "iou": float(iou_fg),
            "acc": float((tp + tn) / total) if total else 0.0,
            "recall": float(tp / (tp + fn)) if tp + fn else 0.0,
            "precision": float(tp / (tp + fp)) if tp + fp else 0.0,
            "pixels": int(total),
        }


def lane_metrics(seg: dict) -> dict:
    """YOLOP's lane naming: accuracy is lane-pixel recall."""
    return {"acc": seg["recall"], "iou": seg["iou"], "miou": seg["miou"], "pixels": seg["pixels"]}


def drivable_metrics(seg: dict) -> dict:
    return {"miou": seg["miou"], "iou": seg["iou"], "acc": seg["acc"], "pixels": seg["pixels"]}


__all__ = ["IOU_THRESHOLDS", "DetectionMetrics", "SegMetrics", "confusion_2x2", "drivable_metrics", "lane_metrics"]
