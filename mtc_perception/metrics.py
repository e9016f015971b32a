"""Detection and segmentation metrics with YOLOP's conventions (numpy only).

They live in the runtime half so that the replay benchmark (``mtc bench``) can score a student
against its teacher without torch; ``compress.metrics`` re-exports them for training and
evaluation.

Detection
    Two protocols (``DetectionMetrics(protocol=...)``), each a full set of conventions.

    ``"default"`` (COCO-style): per image and per IoU threshold, detections in descending score
    order each take the unmatched ground-truth box of their class with the highest IoU >= the
    threshold (a detection whose best box is taken falls back to the next best). Among boxes at
    exactly the same best IoU the *last* in the ground-truth order is taken, as pycocotools does
    (its loop replaces the match on ``>=``). Boxes are not clipped (``image_size`` is ignored).

    ``"yolop"`` (YOLOP's ``validate()``, lib/core/function.py): when ``update`` gets
    ``image_size``, predictions and ground truth are first clipped to the image (YOLOP clips both
    in ``scale_coords`` -> ``clip_coords`` when it maps them back to the original image; the
    caller passes boxes in that image's pixels). Each prediction, in descending score order, is
    assigned once, at IoU 0.5, to its single best-IoU box of its class (ties: the *first* box, as
    ``torch.max`` returns). It is a true positive only if that IoU is *strictly* above 0.5 and the
    box is not taken yet by a higher-scoring prediction (no fallback to its second best), and it
    then counts at each threshold t where IoU > t (strict). The box stays taken at every
    threshold: a later, tighter prediction of it is a false positive even at IoU 0.95.

    AP is computed per class over all images and averaged over the classes present. The
    integration (``ap_method``, by default the protocol's own) samples the precision envelope at
    101 recall points and integrates with the trapezoidal rule (``"yolov5"``, the ``"default"``
    protocol's: the curve closed at (recall 1, precision 0); ``"yolop"``, the ``"yolop"``
    protocol's, YOLOP's ``compute_ap`` in lib/core/general.py: closed at (last recall + 1e-3,
    precision 0), so no linear tail to recall 1 when the maximum recall is below 1, and when it
    reaches 1 the last sample keeps the envelope there instead of 0: a perfect detector scores
    1.0, not 0.995), or is pycocotools' mean of the envelope at 101 recall thresholds
    (``"coco"``). ``map50`` / ``map50_95`` use that integration over the protocol's matching;
    ``map50_coco`` / ``map50_95_coco`` are pycocotools' numbers under every protocol (the
    ``"default"`` matching and the ``"coco"`` integration, of the same boxes, so clipped under
    ``"yolop"``; checked against pycocotools in the tests). ``recall`` is YOLOP's: the recall at
    the confidence that maximizes mean recall (i.e. over all kept detections, conf >= the NMS
    threshold) at IoU 0.5, with the precision at that same confidence, both from the protocol's
    matching; the max-F1 operating point is reported too.

Segmentation
    Over the pixels inside the letterbox's valid region only, two averagings
    (``SegMetrics(average=...)``): ``"set"``, one 2x2 confusion matrix accumulated over the whole
    set; or ``"batch"``, YOLOP's validate(): the metrics of each batch's own confusion matrix,
    averaged weighted by the batch's image count (its AverageMeter), so a batch without foreground
    scores IoU 0 and recall 0 (the caller closes each batch with :meth:`SegMetrics.end_batch`).
    Drivable: ``miou`` = mean of background and foreground IoU, ``iou`` = foreground IoU, ``acc`` =
    pixel accuracy. Lane: ``acc`` = lane-pixel recall TP / (TP + FN) (YOLOP's "accuracy"), ``iou`` =
    lane-class IoU, ``miou`` as above.
"""

from __future__ import annotations

import numpy as np

from .processing import box_iou

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
PROTOCOLS = ("default", "yolop")
AP_METHODS = ("yolov5", "yolop", "coco")
# the integration each protocol uses unless ap_method says otherwise
PROTOCOL_AP_METHOD = {"default": "yolov5", "yolop": "yolop"}
# numpy 2 renamed trapz; the ROS distros' numpy (1.21 / 1.26) only has the old name
_trapezoid = getattr(np, "trapezoid", None) or getattr(np, "trapz")  # noqa: B009 - gone from numpy 2.x stubs


def _ap(recall: np.ndarray, precision: np.ndarray, method: str) -> float:
    """Area under the precision envelope for one class (``recall`` / ``precision`` in descending
    score order)."""
    if method == "coco":
        pr = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
        thr = np.linspace(0.0, 1.0, 101)
        inds = np.searchsorted(recall, thr, side="left")
        q = np.array([pr[i] if i < len(pr) else 0.0 for i in inds])
        return float(q.mean())
    if method in ("yolov5", "yolop"):
        # yolov5 closes the curve at (1, 0); YOLOP's compute_ap at (last recall + 1e-3, 0)
        end = 1.0 if method == "yolov5" else (float(recall[-1]) if len(recall) else 0.0) + 1e-3
        mrec = np.concatenate(([0.0], recall, [end]))
        mpre = np.concatenate(([1.0], precision, [0.0]))
        mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
        x = np.linspace(0, 1, 101)
        return float(_trapezoid(np.interp(x, mrec, mpre), x))
    raise ValueError(f"AP method {method!r} unknown; use one of {', '.join(AP_METHODS)}")


def _match_coco(iou: np.ndarray) -> np.ndarray:
    """pycocotools' greedy matching. ``iou`` (N, M): detections in descending score order against
    ground truth, -1 where the classes differ. Returns tp (N, len(IOU_THRESHOLDS))."""
    n, m = iou.shape
    tp = np.zeros((n, len(IOU_THRESHOLDS)), dtype=bool)
    if not n or not m:
        return tp
    for t, thr in enumerate(IOU_THRESHOLDS):
        taken = np.zeros(m, dtype=bool)
        for d in range(n):
            cand = np.where(taken, -1.0, iou[d])
            # the last of the boxes at the best IoU: pycocotools replaces its match on >=
            g = m - 1 - int(np.argmax(cand[::-1]))
            if cand[g] >= min(thr, 1 - 1e-10):
                taken[g] = True
                tp[d, t] = True
    return tp


def _match_yolop(iou: np.ndarray) -> np.ndarray:
    """YOLOP's validate() matching (see the module docstring); same arguments as _match_coco."""
    n, m = iou.shape
    tp = np.zeros((n, len(IOU_THRESHOLDS)), dtype=bool)
    if not n or not m:
        return tp
    best = np.argmax(iou, axis=1)  # first box on ties, as torch.max(1)
    best_iou = iou[np.arange(n), best]
    taken = np.zeros(m, dtype=bool)
    for d in range(n):
        if best_iou[d] > IOU_THRESHOLDS[0] and not taken[best[d]]:
            taken[best[d]] = True
            tp[d] = best_iou[d] > IOU_THRESHOLDS
    return tp


def _clip(boxes: np.ndarray, image_size: tuple[float, float]) -> np.ndarray:
    w, h = image_size
    out = boxes.copy()
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
    return out


class DetectionMetrics:
    """Accumulates per-image detections and ground truth; :meth:`compute` returns the metrics.

    ``protocol``: ``"default"`` (COCO-style matching) or ``"yolop"`` (YOLOP's validate());
    ``ap_method``: the AP integration, by default the protocol's (``"yolov5"`` / ``"yolop"``).
    The module docstring states each convention."""

    def __init__(
        self,
        num_classes: int,
        ap_method: str | None = None,
        protocol: str = "default",
        class_names: tuple[str, ...] | list[str] | None = None,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol {protocol!r} unknown; use one of {', '.join(PROTOCOLS)}")
        ap_method = ap_method or PROTOCOL_AP_METHOD[protocol]
        if ap_method not in AP_METHODS:
            raise ValueError(f"AP method {ap_method!r} unknown; use one of {', '.join(AP_METHODS)}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names {list(class_names)} for {num_classes} classes")
        self.nc = num_classes
        self.class_names = tuple(class_names) if class_names is not None else tuple(str(c) for c in range(num_classes))
        self.ap_method = ap_method
        self.protocol = protocol
        self._tp: list[np.ndarray] = []  # the protocol's matching
        self._tp_coco: list[np.ndarray] = []  # pycocotools' matching (the same array under "default")
        self._scores: list[np.ndarray] = []
        self._cls: list[np.ndarray] = []
        self._n_gt = np.zeros(num_classes, dtype=np.int64)
        self.images = 0

    def update(
        self,
        boxes: np.ndarray,
        scores: np.ndarray,
        classes: np.ndarray,
        gt_boxes: np.ndarray,
        gt_classes: np.ndarray,
        image_size: tuple[float, float] | None = None,
    ) -> None:
        """Add one image: predictions (N,4 xyxy, N, N) and ground truth (M,4 xyxy, M).

        ``image_size`` = (w, h) of the image the boxes are in: under the ``"yolop"`` protocol both
        predictions and ground truth are clipped to it first (YOLOP's clip_coords); the
        ``"default"`` protocol does not clip."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        classes = np.asarray(classes, dtype=np.int64).reshape(-1)
        gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
        gt_classes = np.asarray(gt_classes, dtype=np.int64).reshape(-1)
        if self.protocol == "yolop" and image_size is not None:
            boxes, gt_boxes = _clip(boxes, image_size), _clip(gt_boxes, image_size)
        self.images += 1
        self._n_gt += np.bincount(gt_classes, minlength=self.nc)[: self.nc]
        order = np.argsort(-scores, kind="mergesort")
        boxes, scores, classes = boxes[order], scores[order], classes[order]
        iou = np.zeros((len(boxes), len(gt_boxes)))
        if len(boxes) and len(gt_boxes):
            iou = box_iou(boxes, gt_boxes)
            iou[classes[:, None] != gt_classes[None, :]] = -1.0
        tp_coco = _match_coco(iou)
        self._tp.append(_match_yolop(iou) if self.protocol == "yolop" else tp_coco)
        self._tp_coco.append(tp_coco)
        self._scores.append(scores)
        self._cls.append(classes)

    def compute(self) -> dict:
        empty = np.zeros((0, len(IOU_THRESHOLDS)), bool)
        tp = np.concatenate(self._tp) if self._tp else empty
        tp_coco = np.concatenate(self._tp_coco) if self._tp_coco else empty
        scores = np.concatenate(self._scores) if self._scores else np.zeros(0)
        cls = np.concatenate(self._cls) if self._cls else np.zeros(0, np.int64)
        order = np.argsort(-scores, kind="mergesort")
        tp, tp_coco, scores, cls = tp[order], tp_coco[order], scores[order], cls[order]
        ap = np.zeros((self.nc, len(IOU_THRESHOLDS)))
        ap_coco = np.zeros((self.nc, len(IOU_THRESHOLDS)))
        max_recall = np.zeros(self.nc)
        prec_at_max_recall = np.zeros(self.nc)
        conf_grid = np.linspace(0, 1, 1000)
        p_curve = np.zeros((self.nc, len(conf_grid)))
        r_curve = np.zeros((self.nc, len(conf_grid)))
        present = self._n_gt > 0

        def pr(hits: np.ndarray, n_gt: int) -> tuple[np.ndarray, np.ndarray]:
            tpc, fpc = np.cumsum(hits, 0), np.cumsum(~hits, 0)
            return tpc / n_gt, tpc / (tpc + fpc)

        for c in range(self.nc):
            m = cls == c
            n_gt = self._n_gt[c]
            if n_gt == 0 or not m.any():
                continue
            recall, precision = pr(tp[m], n_gt)
            rec_coco, prec_coco = pr(tp_coco[m], n_gt)
            for t in range(len(IOU_THRESHOLDS)):
                ap[c, t] = _ap(recall[:, t], precision[:, t], self.ap_method)
                ap_coco[c, t] = _ap(rec_coco[:, t], prec_coco[:, t], "coco")
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
            # per class name: AP50, or None where the set has no ground-truth box of the class
            "ap50_by_class": {n: float(ap[c, 0]) if present[c] else None for c, n in enumerate(self.class_names)},
            "class_names": list(self.class_names),
            "num_gt_per_class": [int(v) for v in self._n_gt],
            "num_gt": int(self._n_gt.sum()),
            "num_pred": int(len(scores)),
            "images": self.images,
            "ap_method": self.ap_method,
            "protocol": self.protocol,
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


SEG_AVERAGES = ("set", "batch")
_SCORES = ("miou", "iou", "acc", "recall", "precision")


def _seg_scores(cm: np.ndarray) -> dict[str, float]:
    """The scores of one 2x2 confusion matrix (0 where a ratio is 0/0, as YOLOP's nan -> 0)."""
    (tn, fp), (fn, tp) = cm.tolist()
    iou_fg = tp / (tp + fp + fn) if tp + fp + fn else 0.0
    iou_bg = tn / (tn + fn + fp) if tn + fn + fp else 0.0
    total = tn + fp + fn + tp
    return {
        "miou": float((iou_fg + iou_bg) / 2),
        "iou": float(iou_fg),
        "acc": float((tp + tn) / total) if total else 0.0,
        "recall": float(tp / (tp + fn)) if tp + fn else 0.0,
        "precision": float(tp / (tp + fp)) if tp + fp else 0.0,
    }


class SegMetrics:
    """Binary segmentation metrics, from one confusion matrix over the whole set (``average="set"``)
    or averaged over batches weighted by their image count (``"batch"``, YOLOP's validate())."""

    def __init__(self, average: str = "set") -> None:
        if average not in SEG_AVERAGES:
            raise ValueError(f"segmentation average {average!r} unknown; use one of {', '.join(SEG_AVERAGES)}")
        self.average = average
        # cm[t, p]: rows = target (0 background, 1 foreground), cols = prediction
        self.cm = np.zeros((2, 2), dtype=np.int64)
        self._batch_cm = np.zeros((2, 2), dtype=np.int64)
        self._batch_images = 0
        self._batches: list[tuple[np.ndarray, int]] = []

    def update(self, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Add one mask pair (one image) to the set and to the open batch; returns its own 2x2
        confusion matrix."""
        cm = confusion_2x2(pred, target)
        self.cm += cm
        self._batch_cm += cm
        self._batch_images += 1
        return cm

    def end_batch(self) -> None:
        """Close the open batch (``"batch"`` averaging: its images share one confusion matrix)."""
        if self._batch_images:
            self._batches.append((self._batch_cm, self._batch_images))
        self._batch_cm = np.zeros((2, 2), dtype=np.int64)
        self._batch_images = 0

    def compute(self) -> dict:
        self.end_batch()
        total = int(self.cm.sum())
        scores = _seg_scores(self.cm)
        if self.average == "batch" and self._batches:
            n = sum(k for _, k in self._batches)
            per = [(_seg_scores(cm), k) for cm, k in self._batches]
            scores = {s: float(sum(d[s] * k for d, k in per) / n) for s in _SCORES}
        return {
            **scores,
            "pixels": total,
            "average": self.average,
            "batches": len(self._batches),
            # False when no image of the split had this task's labels: the numbers above are then
            # not a measurement (reported as n/a, left out of the fitness)
            "available": bool(total),
        }


def lane_metrics(seg: dict) -> dict:
    """YOLOP's lane naming: accuracy is lane-pixel recall."""
    return {
        "acc": seg["recall"],
        "iou": seg["iou"],
        "miou": seg["miou"],
        "pixels": seg["pixels"],
        "available": seg.get("available", True),
        **({"average": seg["average"]} if "average" in seg else {}),
    }


def drivable_metrics(seg: dict) -> dict:
    return {
        "miou": seg["miou"],
        "iou": seg["iou"],
        "acc": seg["acc"],
        "pixels": seg["pixels"],
        "available": seg.get("available", True),
        **({"average": seg["average"]} if "average" in seg else {}),
    }


__all__ = [
    "AP_METHODS",
    "IOU_THRESHOLDS",
    "PROTOCOLS",
    "SEG_AVERAGES",
    "DetectionMetrics",
    "SegMetrics",
    "confusion_2x2",
    "drivable_metrics",
    "lane_metrics",
]
