"""The benchmark report: a reference model (the teacher) and a candidate (the student) frame by
frame -> ``report.json``, ``report.md``, ``frames.csv`` and plots. ROS-free (numpy; OpenCV and
matplotlib only for the pictures), shared by the offline replay (``mtc bench``) and a live ROS
benchmark node, so both write the same shape (DESIGN, "Benchmark report").

How a caller uses it::

    b = ReportBuilder([ModelInfo.from_bundle("teacher", tb, backend), ModelInfo.from_bundle("student", sb, backend)],
                      gt_parts=("detections", "drivable", "lane"))       # () when there are no labels
    for each input frame (in order):
        b.add_frame(stamp_ns, {"teacher": ModelOutput(perception=p, latency_ms=..., stage_ms=...),
                               "student": ModelOutput(error="inference failed: ...")}, image=bgr)
    for each label message:   b.add_ground_truth(stamp_ns, "detections", GroundTruthBoxes(boxes, class_ids))
    b.add_not_reached(n)      # frames of the recording never processed (limit, interrupt, damage)
    b.meta.update(...); b.harness_ms["read"] += ...
    b.write(out_dir)

A live node receives the models' outputs as messages: :func:`perception_from_messages` turns a
``Detection2DArray`` and the two mono8 masks back into a :class:`~mtc_perception.perceptor.Perception`,
and :class:`StampMatcher` pairs them with their input frame by header stamp (outputs that never
arrive become ``ModelOutput()`` = skipped).

Frame accounting, per model: every frame given to :meth:`ReportBuilder.add_frame` is *processed*
(a perception), *failed* (an error) or *skipped* (neither: dropped / never answered); frames
counted by :meth:`ReportBuilder.add_not_reached` are skipped for every model. Hence
``processed + failed + skipped == total`` by construction.

Agreement (candidate vs reference, over the frames both processed): detection mAP50 and recall
with the reference's detections as ground truth (COCO 101-point AP, so a model compared with
itself scores exactly 1; the YOLOv5 integration caps at 0.995), drivable mIoU and lane IoU from
one confusion matrix over all those frames. Ground-truth metrics follow YOLOP's conventions
(``mtc_perception.metrics``) on the detections as deployed (the Perceptor's conf threshold).
"""

from __future__ import annotations

import csv
import heapq
import json
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..host import host_info
from ..metrics import DetectionMetrics, SegMetrics, confusion_2x2, drivable_metrics, lane_metrics
from ..processing import box_iou

log = logging.getLogger(__name__)

SCHEMA = 1
STAGES = ("decode", "preprocess", "infer", "postprocess")
GT_PARTS = ("detections", "drivable", "lane")
#: harness work counted against the "<= 5 % of the bench time" budget
CORE_HARNESS = ("read", "decode", "report")


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------
@dataclass
class ModelInfo:
    """What the report says about a model besides its measurements."""

    name: str
    bundle: str = ""
    backend: str = ""
    params: int | None = None
    macs: int | None = None
    macs_at: str | None = None
    input_size: tuple[int, int] | None = None  # network input (w, h)
    class_names: tuple[str, ...] = ()

    @classmethod
    def from_bundle(cls, name: str, bundle: Any, backend: str = "") -> ModelInfo:
        """From a :class:`~mtc_perception.bundle.Bundle` (params / MACs from its provenance)."""
        prov = bundle.spec.provenance
        return cls(
            name,
            str(bundle.root),
            backend,
            prov.params,
            prov.macs,
            prov.macs_at,
            tuple(bundle.input_size),
            tuple(bundle.class_names),
        )


@dataclass
class ModelOutput:
    """One model on one frame. ``perception`` set: processed; ``error`` set: failed; neither:
    skipped (the model never answered this frame). ``latency_ms`` is the frame's end-to-end time
    through the model (decode + preprocess + infer + postprocess offline; receive -> output live);
    ``stage_ms`` its parts where known."""

    perception: Any = None  # Perception-like: boxes (N,4), scores (N,), class_ids (N,), drivable, lane (H,W {0,1})
    latency_ms: float | None = None
    stage_ms: Mapping[str, float] = field(default_factory=dict)
    error: str = ""

    @property
    def status(self) -> str:
        return "processed" if self.perception is not None else "failed" if self.error else "skipped"


@dataclass
class GroundTruthBoxes:
    """Labelled boxes (N, 4) xyxy in image pixels and their class ids (the models' class indices)."""

    boxes: np.ndarray
    class_ids: np.ndarray


# ---------------------------------------------------------------------------------------------
# matching by header stamp
# ---------------------------------------------------------------------------------------------
@dataclass
class Group:
    """Items of several streams that carry the same header stamp."""

    stamp_ns: int
    items: dict[str, Any]
    complete: bool


class StampMatcher:
    """Pairs items of several streams (``parts``) by header stamp, in whatever order they come.

    :meth:`add` returns the groups it finished: a group is returned as soon as every part has
    arrived (``complete``), or when more than ``max_pending`` groups wait and it is the oldest
    (``complete`` False: some part never came, or came too late). :meth:`flush` returns the rest.
    An item for a part already present in its group replaces it and counts in ``duplicates``.
    """

    def __init__(self, parts: Sequence[str], max_pending: int = 32) -> None:
        if not parts:
            raise ValueError("StampMatcher needs at least one part")
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.parts = tuple(parts)
        self.max_pending = max_pending
        self._pending: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self.duplicates = 0

    def add(self, stamp_ns: int, part: str, item: Any) -> list[Group]:
        if part not in self.parts:
            raise ValueError(f"part {part!r} is not one of {self.parts}")
        items = self._pending.setdefault(int(stamp_ns), {})
        if part in items:
            self.duplicates += 1
        items[part] = item
        done: list[Group] = []
        if len(items) == len(self.parts):
            done.append(Group(int(stamp_ns), self._pending.pop(int(stamp_ns)), True))
        while len(self._pending) > self.max_pending:
            s, its = self._pending.popitem(last=False)
            done.append(Group(s, its, False))
        return done

    def flush(self) -> list[Group]:
        out = [Group(s, its, len(its) == len(self.parts)) for s, its in self._pending.items()]
        self._pending.clear()
        return out

    @property
    def pending(self) -> int:
        return len(self._pending)


# ---------------------------------------------------------------------------------------------
# messages -> arrays (for a live node's outputs, and for label topics)
# ---------------------------------------------------------------------------------------------
def detections_from_msg(msg: Any, class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """A ``vision_msgs/Detection2DArray`` (4.x) -> (boxes (N,4) xyxy, scores, class ids, number of
    detections whose class name is not in ``class_names``, which are left out)."""
    index = {n: i for i, n in enumerate(class_names)}
    boxes, scores, cls = [], [], []
    unknown = 0
    for d in msg.detections:
        hyp = d.results[0].hypothesis if len(d.results) else None
        name = str(hyp.class_id) if hyp is not None else ""
        if name not in index:
            if name.isdigit() and int(name) < len(class_names):
                name = class_names[int(name)]
            else:
                unknown += 1
                continue
        cx, cy = float(d.bbox.center.position.x), float(d.bbox.center.position.y)
        w, h = float(d.bbox.size_x), float(d.bbox.size_y)
        boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        scores.append(float(hyp.score) if hyp is not None else 1.0)
        cls.append(index[name])
    return (
        np.asarray(boxes, np.float64).reshape(-1, 4),
        np.asarray(scores, np.float64),
        np.asarray(cls, np.int64),
        unknown,
    )


def mask_from_msg(msg: Any) -> np.ndarray:
    """A mask ``sensor_msgs/Image`` (mono8 0/255 as the node writes; any encoding) -> uint8 {0, 1}."""
    from ..imaging import ImageError, image_to_bgr

    if str(msg.encoding) in ("mono8", "8UC1"):  # the common case, without a BGR detour
        h, w, step = int(msg.height), int(msg.width), int(msg.step)
        data = (
            msg.data.view(np.uint8).reshape(-1)
            if isinstance(msg.data, np.ndarray)
            else np.frombuffer(bytes(msg.data), np.uint8)
        )
        if h <= 0 or w <= 0 or step < w or data.size != step * h:
            raise ImageError(
                f"mask Image {w}x{h}, step {step}, {data.size} bytes: expected step >= width and step x height bytes"
            )
        return (data.reshape(h, step)[:, :w] > 0).view(np.uint8)
    return (image_to_bgr(msg)[..., 0] > 0).view(np.uint8)


def perception_from_messages(detections: Any, drivable: Any, lane: Any, class_names: Sequence[str]) -> Any:
    """A :class:`~mtc_perception.perceptor.Perception` rebuilt from a node's output messages."""
    from ..perceptor import Perception

    boxes, scores, cls, _ = detections_from_msg(detections, class_names)
    return Perception(
        boxes.astype(np.float32),
        scores.astype(np.float32),
        cls,
        mask_from_msg(drivable),
        mask_from_msg(lane),
        class_names=tuple(class_names),
    )


# ---------------------------------------------------------------------------------------------
# per-frame agreement
# ---------------------------------------------------------------------------------------------
def _fg_iou(cm: np.ndarray) -> float:
    """Foreground IoU of a 2x2 confusion matrix; 1 when neither mask has foreground."""
    union = int(cm[0, 1] + cm[1, 0] + cm[1, 1])
    return 1.0 if union == 0 else float(cm[1, 1] / union)


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    return _fg_iou(confusion_2x2(a, b)) if np.shape(a) == np.shape(b) else 0.0


def detection_f1(ref: Any, cand: Any, iou: float = 0.5) -> float:
    """F1 of ``cand``'s boxes against ``ref``'s (greedy in score order, same class, IoU >= ``iou``);
    1 when both are empty."""
    n_r, n_c = len(ref.boxes), len(cand.boxes)
    if n_r == 0 and n_c == 0:
        return 1.0
    if n_r == 0 or n_c == 0:
        return 0.0
    m = box_iou(np.asarray(cand.boxes), np.asarray(ref.boxes))
    m[np.asarray(cand.class_ids)[:, None] != np.asarray(ref.class_ids)[None, :]] = -1.0
    taken = np.zeros(n_r, bool)
    tp = 0
    for d in np.argsort(-np.asarray(cand.scores), kind="mergesort"):
        row = np.where(taken, -1.0, m[d])
        g = int(np.argmax(row))
        if row[g] >= iou:
            taken[g] = True
            tp += 1
    return 2.0 * tp / (n_r + n_c)


def frame_agreement(ref: Any, cand: Any) -> dict[str, float]:
    """Per-frame agreement of two Perception-likes: detection F1 @ IoU 0.5, drivable IoU, lane IoU
    (each 1 when both are empty) and ``disagreement`` = 1 - their mean."""
    a = {
        "det_f1": detection_f1(ref, cand),
        "drivable_iou": _mask_iou(ref.drivable, cand.drivable),
        "lane_iou": _mask_iou(ref.lane, cand.lane),
    }
    a["disagreement"] = 1.0 - float(np.mean(list(a.values())))
    return a


# ---------------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------------
def _present_class_iou(cm: np.ndarray) -> dict[str, Any]:
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


def _r(v: Any, nd: int = 4) -> Any:
    if isinstance(v, float):
        return round(v, nd)
    if isinstance(v, dict):
        return {k: _r(x, nd) for k, x in v.items()}
    if isinstance(v, list):
        return [_r(x, nd) for x in v]
    return v


# ---------------------------------------------------------------------------------------------
# the builder
# ---------------------------------------------------------------------------------------------
class _ModelAcc:
    def __init__(self, nc: int) -> None:
        self.status: Counter[str] = Counter()
        self.latency: list[float] = []
        self.stages: dict[str, list[float]] = {k: [] for k in STAGES}
        self.errors: Counter[str] = Counter()
        self.first_error: dict[str, str] = {}
        self.gt_det = DetectionMetrics(nc)
        self.gt_drv = SegMetrics()
        self.gt_lane = SegMetrics()
        self.gt_frames = 0
        self.busy_s: float | None = None


class ReportBuilder:
    """Collects per-frame results of one or two models and writes the benchmark report.

    ``models``: the reference first (the teacher), then the candidate (the student); agreement is
    the candidate against the reference. ``gt_parts``: which label streams the recording carries
    (subset of ``("detections", "drivable", "lane")``); labels are paired with frames by stamp
    (:class:`StampMatcher`, up to ``max_pending`` frames apart). ``mosaic`` frames with the
    largest disagreement are kept (image + both perceptions) for the mosaic. ``meta`` is merged
    into the report's ``meta``; ``harness_ms`` collects the harness' own time (``read``,
    ``decode``, ... in ms), and :meth:`write` adds ``report`` and the shares of the wall time
    since ``started`` (a ``time.perf_counter()`` value; default: construction).
    """

    def __init__(
        self,
        models: Sequence[ModelInfo],
        gt_parts: Sequence[str] = (),
        meta: Mapping[str, Any] | None = None,
        mosaic: int = 6,
        max_pending: int = 32,
        started: float | None = None,
    ) -> None:
        if not 1 <= len(models) <= 2:
            raise ValueError(f"a report compares one or two models (reference, candidate), got {len(models)}")
        names = [m.name for m in models]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must differ, got {names}")
        bad = [p for p in gt_parts if p not in GT_PARTS]
        if bad:
            raise ValueError(f"unknown ground-truth parts {bad}; use {GT_PARTS}")
        self.models = list(models)
        self.class_names = tuple(models[0].class_names) or ("object",)
        self.meta: dict[str, Any] = dict(meta or {})
        self.warnings: list[str] = []
        self.harness_ms: dict[str, float] = {}
        self.started = time.perf_counter() if started is None else started
        self._acc = {m.name: _ModelAcc(len(self.class_names)) for m in models}
        self._frames = 0
        self._not_reached = 0
        self._rows: list[dict[str, Any]] = []
        self._agree_frames = 0
        self._agree_det = DetectionMetrics(len(self.class_names), ap_method="coco")
        self._agree_drv = SegMetrics()
        self._agree_lane = SegMetrics()
        self._mosaic_k = mosaic
        self._worst: list[tuple[float, int, Any]] = []
        self.gt_parts = tuple(gt_parts)
        self._matcher = StampMatcher(("frame", *self.gt_parts), max_pending) if self.gt_parts else None
        self._gt_match: Counter[str] = Counter()
        self._gt_unmatched: Counter[str] = Counter()
        self._gt_examples: list[int] = []
        self._gt_errors: Counter[str] = Counter()

    # -- input -----------------------------------------------------------------------------------
    @property
    def reference(self) -> str:
        return self.models[0].name

    @property
    def candidate(self) -> str | None:
        return self.models[1].name if len(self.models) > 1 else None

    def add_frame(
        self,
        stamp_ns: int,
        outputs: Mapping[str, ModelOutput],
        image: np.ndarray | None = None,
        index: int | None = None,
    ) -> dict[str, float] | None:
        """Record one input frame: each model's :class:`ModelOutput` (a model missing from
        ``outputs`` is skipped for this frame). ``image`` (BGR, optional) feeds the mosaic.
        Returns the frame's agreement (see :func:`frame_agreement`) when both models processed it.
        Its own time (scoring) goes to ``harness_ms["score"]``."""
        t0 = time.perf_counter()
        try:
            return self._add_frame(stamp_ns, outputs, image, index)
        finally:
            self._score_time(t0)

    def _score_time(self, t0: float) -> None:
        self.harness_ms["score"] = self.harness_ms.get("score", 0.0) + (time.perf_counter() - t0) * 1e3

    def _add_frame(
        self, stamp_ns: int, outputs: Mapping[str, ModelOutput], image: np.ndarray | None, index: int | None
    ) -> dict[str, float] | None:
        unknown = set(outputs) - set(self._acc)
        if unknown:
            raise ValueError(f"outputs for unknown models {sorted(unknown)}; the report has {list(self._acc)}")
        i = self._frames if index is None else int(index)
        self._frames += 1
        row: dict[str, Any] = {"index": i, "stamp_ns": int(stamp_ns)}
        for m in self.models:
            out = outputs.get(m.name, ModelOutput())
            acc = self._acc[m.name]
            st = out.status
            acc.status[st] += 1
            row[f"{m.name}_status"] = st
            row[f"{m.name}_latency_ms"] = None
            if st == "processed" and out.latency_ms is not None:
                acc.latency.append(float(out.latency_ms))
                row[f"{m.name}_latency_ms"] = float(out.latency_ms)
                for k in STAGES:
                    if k in out.stage_ms:
                        acc.stages[k].append(float(out.stage_ms[k]))
            elif st == "failed":
                kind = out.error.split(":", 1)[0][:80]
                acc.errors[kind] += 1
                acc.first_error.setdefault(kind, out.error)
        agreement = None
        ref = outputs.get(self.reference, ModelOutput())
        cand = outputs.get(self.candidate, ModelOutput()) if self.candidate else ModelOutput()
        if ref.perception is not None and cand.perception is not None:
            rp, cp = ref.perception, cand.perception
            self._agree_frames += 1
            self._agree_det.update(cp.boxes, cp.scores, cp.class_ids, rp.boxes, rp.class_ids)
            agreement = {"det_f1": detection_f1(rp, cp), "drivable_iou": 0.0, "lane_iou": 0.0}
            if np.shape(rp.drivable) == np.shape(cp.drivable) and np.shape(rp.lane) == np.shape(cp.lane):
                agreement["drivable_iou"] = _fg_iou(self._agree_drv.update(cp.drivable, rp.drivable))
                agreement["lane_iou"] = _fg_iou(self._agree_lane.update(cp.lane, rp.lane))
            agreement["disagreement"] = (
                1.0 - (agreement["det_f1"] + agreement["drivable_iou"] + agreement["lane_iou"]) / 3
            )
            row.update(agreement)
            if image is not None and self._mosaic_k > 0:
                item = (agreement["disagreement"], -i, (i, int(stamp_ns), image, rp, cp, agreement))
                if len(self._worst) < self._mosaic_k:
                    heapq.heappush(self._worst, item)
                elif item[:2] > self._worst[0][:2]:
                    heapq.heapreplace(self._worst, item)
        self._rows.append(row)
        if self._matcher is not None:
            preds = {name: o.perception for name, o in outputs.items() if o.perception is not None}
            self._take(self._matcher.add(stamp_ns, "frame", preds))
        return agreement

    def add_ground_truth(self, stamp_ns: int, part: str, value: GroundTruthBoxes | np.ndarray) -> None:
        """A label of the frame stamped ``stamp_ns``: ``"detections"`` (:class:`GroundTruthBoxes`),
        ``"drivable"`` or ``"lane"`` (uint8 {0, 1} mask at the frame's resolution)."""
        if self._matcher is None or part not in self.gt_parts:
            raise ValueError(f"ground-truth part {part!r} was not announced (gt_parts={self.gt_parts})")
        t0 = time.perf_counter()
        self._take(self._matcher.add(stamp_ns, part, value))
        self._score_time(t0)

    def add_label_error(self, part: str, error: str) -> None:
        """A label message that could not be read (counted and reported, not fatal)."""
        self._gt_errors[part] += 1
        if self._gt_errors[part] == 1:
            self.warnings.append(f"unreadable {part} label: {error}")

    def add_not_reached(self, n: int, reason: str = "") -> None:
        """``n`` frames of the input were never processed (limit, interrupt, damaged recording):
        skipped for every model."""
        if n < 0:
            raise ValueError(f"not-reached frame count must be >= 0, got {n}")
        self._not_reached += n
        if n and reason:
            self.warnings.append(f"{n} frames not processed: {reason}")

    def set_busy_time(self, model: str, seconds: float) -> None:
        """The model's busy time for ``throughput_fps`` (default: the sum of its latencies)."""
        self._acc[model].busy_s = float(seconds)

    def _take(self, groups: list[Group]) -> None:
        for g in groups:
            preds = g.items.get("frame")
            labels = {p: g.items[p] for p in self.gt_parts if p in g.items}
            if preds is None:
                for p in labels:
                    self._gt_unmatched[p] += 1
                if len(self._gt_examples) < 3:
                    self._gt_examples.append(g.stamp_ns)
                continue
            self._gt_match["frames_with_all_labels" if g.complete else "frames_missing_labels"] += 1
            if not labels:
                continue
            for name, p in preds.items():
                acc = self._acc[name]
                acc.gt_frames += 1
                if "detections" in labels:
                    gt = labels["detections"]
                    acc.gt_det.update(p.boxes, p.scores, p.class_ids, gt.boxes, gt.class_ids)
                for part, seg in (("drivable", acc.gt_drv), ("lane", acc.gt_lane)):
                    if part in labels:
                        mask = getattr(p, part)
                        if np.shape(labels[part]) != np.shape(mask):
                            self._gt_errors[f"{part} size"] += 1
                            if self._gt_errors[f"{part} size"] == 1:
                                self.warnings.append(
                                    f"{part} label of stamp {g.stamp_ns} is {np.shape(labels[part])[::-1]} "
                                    f"but the frame is {np.shape(mask)[::-1]}; such labels are not scored"
                                )
                            continue
                        seg.update(mask, labels[part])

    # -- output ----------------------------------------------------------------------------------
    @property
    def total(self) -> int:
        return self._frames + self._not_reached

    def _model_block(self, m: ModelInfo) -> dict[str, Any]:
        acc = self._acc[m.name]
        processed, failed = acc.status["processed"], acc.status["failed"]
        skipped = acc.status["skipped"] + self._not_reached
        busy = acc.busy_s if acc.busy_s is not None else sum(acc.latency) / 1e3
        return {
            "bundle": m.bundle,
            "backend": m.backend,
            "params": m.params,
            "macs": m.macs,
            "macs_at": m.macs_at,
            "input_size": list(m.input_size) if m.input_size else None,
            "latency_ms": latency_stats(acc.latency),
            "stage_ms": {k: (float(np.mean(v)) if v else None) for k, v in acc.stages.items()},
            "throughput_fps": (processed / busy) if busy > 0 else None,
            "frames": {"total": self.total, "processed": processed, "failed": failed, "skipped": skipped},
            "errors": [{"kind": k, "count": n, "first": acc.first_error[k]} for k, n in acc.errors.most_common()],
        }

    def _agreement(self) -> dict[str, Any] | None:
        if self.candidate is None:
            return None
        det = self._agree_det.compute()
        has_ref = det["num_gt"] > 0
        drv, lane = _present_class_iou(self._agree_drv.cm), _present_class_iou(self._agree_lane.cm)
        return {
            "reference": self.reference,
            "model": self.candidate,
            "frames": self._agree_frames,
            "detection": {
                "map50": det["map50"] if has_ref else None,
                "recall": det["recall"] if has_ref else None,
                "precision": det["precision"] if has_ref else None,
                "map50_95": det["map50_95"] if has_ref else None,
                "reference_boxes": det["num_gt"],
                "model_boxes": det["num_pred"],
                "ap_method": "coco",
                **({} if has_ref else {"note": "the reference made no detection: mAP50 and recall are undefined"}),
            },
            "drivable": {"miou": drv["miou"], "iou": drv["iou"], "pixels": drv["pixels"]},
            "lane": {
                "iou": lane["iou"],
                "recall": lane["recall"],
                "pixels": lane["pixels"],
                **(
                    {"note": "no lane pixel in either model: IoU undefined"}
                    if lane["iou"] is None and lane["pixels"]
                    else {}
                ),
            },
            "conventions": "the reference's outputs are the ground truth; mIoU averages the classes (background, "
            "foreground) present in either model's masks, so identical masks score 1",
        }

    def _ground_truth(self) -> dict[str, Any] | None:
        if not self.gt_parts:
            return None
        matching = {
            "label_topics": list(self.gt_parts),
            "frames_with_all_labels": self._gt_match["frames_with_all_labels"],
            "frames_missing_labels": self._gt_match["frames_missing_labels"],
            "labels_without_frame": {p: self._gt_unmatched[p] for p in self.gt_parts},
            "duplicate_stamps": self._matcher.duplicates if self._matcher else 0,
            "label_errors": dict(self._gt_errors),
        }
        out: dict[str, Any] = {
            "matching": matching,
            "conventions": "YOLOP: mAP50 101-point YOLOv5 integration, recall at the "
            "confidence maximizing mean recall; one confusion matrix per task over the matched frames; "
            "detections as deployed (the Perceptor's conf threshold), not YOLOP's conf 0.001 evaluation",
        }
        for m in self.models:
            acc = self._acc[m.name]
            if acc.gt_frames == 0:
                out[m.name] = None
                continue
            block: dict[str, Any] = {"frames": acc.gt_frames}
            if "detections" in self.gt_parts:
                d = acc.gt_det.compute()
                block["detection"] = {
                    k: d[k] for k in ("map50", "map50_95", "map50_coco", "recall", "precision", "num_gt", "num_pred")
                }
            if "drivable" in self.gt_parts and acc.gt_drv.cm.sum():
                block["drivable"] = drivable_metrics(acc.gt_drv.compute())
            if "lane" in self.gt_parts and acc.gt_lane.cm.sum():
                block["lane"] = lane_metrics(acc.gt_lane.compute())
            out[m.name] = block
        return out

    def _finish_matching(self) -> None:
        if self._matcher is not None:
            self._take(self._matcher.flush())
            unmatched = sum(self._gt_unmatched.values())
            missing = self._gt_match["frames_missing_labels"]
            if unmatched and not any(w.startswith("label stamps") for w in self.warnings):
                self.warnings.append(
                    f"label stamps do not match the frames: {unmatched} label messages have no camera frame with "
                    f"their header stamp (e.g. {self._gt_examples}); {missing} frames lack some label"
                )
            elif missing and not any(w.startswith("frames lack") for w in self.warnings):
                self.warnings.append(
                    f"frames lack labels: {missing} frames have no label of some label topic with their stamp"
                )

    def report(self) -> dict[str, Any]:
        """The report as a dict (what ``report.json`` holds)."""
        self._finish_matching()
        meta = dict(self.meta)
        meta.setdefault("frames", {})
        meta["frames"] = {
            **meta["frames"],
            "total": self.total,
            "given": self._frames,
            "not_reached": self._not_reached,
        }
        meta["warnings"] = list(meta.get("warnings", [])) + self.warnings
        meta["backends"] = {m.name: m.backend for m in self.models}
        if self.harness_ms:
            meta["harness_ms"] = dict(self.harness_ms)
        return {
            "schema": SCHEMA,
            "meta": meta,
            "models": {m.name: self._model_block(m) for m in self.models},
            "agreement": self._agreement(),
            "ground_truth": self._ground_truth(),
        }

    @property
    def rows(self) -> list[dict[str, Any]]:
        """Per-frame rows (what ``frames.csv`` holds)."""
        return list(self._rows)

    def write(self, out_dir: str | Path, plots: bool = True) -> dict[str, Path]:
        """Write ``frames.csv``, the plots (``latency_cdf.png``, ``agreement.png``,
        ``disagreement_mosaic.jpg``; skipped with a warning without matplotlib), ``report.md`` and
        ``report.json`` into ``out_dir``. Its own time goes to ``harness_ms["report"]``, with the
        harness' share of the wall time since ``started`` (the final JSON dump is not counted)."""
        t0 = time.perf_counter()
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"frames_csv": out / "frames.csv"}
        cols = (
            ["index", "stamp_ns"]
            + [f"{m.name}_{k}" for m in self.models for k in ("status", "latency_ms")]
            + ["det_f1", "drivable_iou", "lane_iou", "disagreement"]
        )
        with open(paths["frames_csv"], "w", newline="") as fh:
            w = csv.DictWriter(fh, cols, extrasaction="ignore")
            w.writeheader()
            for r in sorted(self._rows, key=lambda r: r["index"]):  # a live run reports frames as they complete
                w.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})
        if plots:
            from . import plots as P

            worst = [item[2] for item in sorted(self._worst, reverse=True)]
            try:
                paths.update(
                    P.write_plots(
                        out,
                        {m.name: self._acc[m.name].latency for m in self.models},
                        self._rows,
                        worst,
                        (self.reference, self.candidate),
                    )
                )
            except ImportError as e:
                self.warnings.append(f"plots skipped: {e} (pip install matplotlib)")
                if worst:
                    paths.update(P.write_mosaic(out, worst, (self.reference, self.candidate)))
        rep = self.report()
        rep["meta"]["plots"] = [paths[k].name for k in ("latency_cdf", "agreement", "mosaic") if k in paths]
        self.harness_ms["report"] = (time.perf_counter() - t0) * 1e3
        wall_ms = (time.perf_counter() - self.started) * 1e3
        rep["meta"]["harness_ms"] = {**self.harness_ms, "wall": wall_ms}
        core = sum(self.harness_ms.get(k, 0.0) for k in CORE_HARNESS)
        rep["meta"]["harness_share"] = {
            "read_decode_report": core / wall_ms if wall_ms > 0 else None,
            "hash": self.harness_ms.get("hash", 0.0) / wall_ms if wall_ms > 0 else None,
            "all_harness": sum(self.harness_ms.values()) / wall_ms if wall_ms > 0 else None,
            "note": "read_decode_report = (read + decode + report) / wall: read = opening the "
            "recording, storage and CDR deserialization; decode = message -> BGR image (also "
            "in each model's stage_ms.decode) and label masks; report = csv, plots, markdown. "
            "hash = the md5 of the recording for meta.bag (--no-md5 skips it). all_harness "
            "adds everything: hash, score (agreement and ground-truth metrics per frame), "
            "output_bag.",
        }
        paths["report_md"] = out / "report.md"
        paths["report_md"].write_text(markdown(rep))
        paths["report_json"] = out / "report.json"
        paths["report_json"].write_text(json.dumps(_r(rep, 6), indent=2) + "\n")
        self.last_report = rep
        return paths


# ---------------------------------------------------------------------------------------------
# markdown
# ---------------------------------------------------------------------------------------------
def _f(v: Any, fmt: str = "{:.2f}", none: str = "–") -> str:
    return none if v is None else fmt.format(v)


def markdown(rep: dict[str, Any]) -> str:
    """``report.md``: the report's tables."""
    meta, models = rep["meta"], rep["models"]
    names = list(models)
    title = " vs ".join(reversed(names)) if len(names) == 2 else names[0]
    bag = meta.get("bag", {})
    fr = meta.get("frames", {})
    lines = [f"# Benchmark: {title}", ""]
    if bag:
        lines.append(
            f"Recording `{bag.get('path')}` ({bag.get('storage')}, md5 `{bag.get('md5')}`), topic `{bag.get('topic')}` "
            f"({bag.get('msgtype')}): {fr.get('total')} frames, {fr.get('read', fr.get('given'))} read, "
            f"{fr.get('not_reached')} not reached."
        )
    host = meta.get("host", {})
    if host:
        lines.append(f"Host `{host.get('hostname')}`: {host.get('cpu')}; GPU: {host.get('gpu') or 'none'}.")
    lines.append("Backends: " + ", ".join(f"{n} = {b}" for n, b in meta.get("backends", {}).items()) + ".")
    if meta.get("interrupted"):
        lines.append("\n**Interrupted (Ctrl-C): the figures cover the frames measured before it.**")
    if meta.get("error"):
        lines.append(f"\n**Recording damaged: {meta['error']}** — figures cover the frames up to the last good one.")
    for w in meta.get("warnings", []):
        lines.append(f"\n> warning: {w}")
    lines += [
        "",
        "## Speed",
        "",
        "| model | params | GMACs | latency mean | p50 | p90 | p99 | max (ms) | throughput (fps) | processed | failed | skipped | total |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, m in models.items():
        lat, f = m["latency_ms"], m["frames"]
        lines.append(
            f"| {n} | {_f(m['params'] and m['params'] / 1e6, '{:.2f}M')} | {_f(m['macs'] and m['macs'] / 1e9, '{:.3f}')} | "
            f"{_f(lat['mean'])} | {_f(lat['p50'])} | {_f(lat['p90'])} | {_f(lat['p99'])} | {_f(lat['max'])} | "
            f"{_f(m['throughput_fps'], '{:.1f}')} | {f['processed']} | {f['failed']} | {f['skipped']} | {f['total']} |"
        )
    lines += [
        "",
        "Mean time per stage (ms):",
        "",
        "| model | " + " | ".join(STAGES) + " |",
        "|---|" + "---|" * len(STAGES),
    ]
    for n, m in models.items():
        lines.append(f"| {n} | " + " | ".join(_f(m["stage_ms"].get(k)) for k in STAGES) + " |")
    for n, m in models.items():
        for e in m.get("errors", []):
            lines.append(f"\n{n}: {e['count']} x {e['first']}")
    a = rep.get("agreement")
    if a:
        d = a["detection"]
        lines += [
            "",
            f"## Agreement ({a['model']} against {a['reference']} as reference)",
            "",
            "| frames | det mAP50 | det recall | det precision | drivable mIoU | lane IoU |",
            "|---|---|---|---|---|---|",
            (
                f"| {a['frames']} | {_f(d['map50'], '{:.3f}')} | {_f(d['recall'], '{:.3f}')} | {_f(d['precision'], '{:.3f}')} | "
                f"{_f(a['drivable']['miou'], '{:.3f}')} | {_f(a['lane']['iou'], '{:.3f}')} |"
            ),
            "",
            f"Reference boxes: {d['reference_boxes']}, model boxes: {d['model_boxes']} (AP: {d['ap_method']} 101-point).",
        ]
    g = rep.get("ground_truth")
    if g:
        lines += [
            "",
            "## Ground truth",
            "",
            "| model | frames | mAP50 | recall | drivable mIoU | lane acc | lane IoU |",
            "|---|---|---|---|---|---|---|",
        ]
        for n in models:
            b = g.get(n)
            if b is None:
                lines.append(f"| {n} | 0 | – | – | – | – | – |")
                continue
            det, drv, ln = b.get("detection", {}), b.get("drivable", {}), b.get("lane", {})
            lines.append(
                f"| {n} | {b['frames']} | {_f(det.get('map50'), '{:.3f}')} | {_f(det.get('recall'), '{:.3f}')} | "
                f"{_f(drv.get('miou'), '{:.3f}')} | {_f(ln.get('acc'), '{:.3f}')} | {_f(ln.get('iou'), '{:.3f}')} |"
            )
        mt = g["matching"]
        lines += [
            "",
            (
                f"Label matching by header stamp: {mt['frames_with_all_labels']} frames with all labels, "
                f"{mt['frames_missing_labels']} missing some, labels without a frame: {mt['labels_without_frame']}."
            ),
        ]
    h, s = meta.get("harness_ms"), meta.get("harness_share")
    if h:
        lines += [
            "",
            "## Harness",
            "",
            "| " + " | ".join(h) + " |",
            "|" + "---|" * len(h),
            "| " + " | ".join(f"{v:.0f} ms" for v in h.values()) + " |",
        ]
        if s and s.get("read_decode_report") is not None:
            lines.append(
                f"\nReading and decoding the recording plus writing the report: {100 * s['read_decode_report']:.1f} % "
                f"of the total bench time; hashing the recording {100 * (s.get('hash') or 0):.1f} %; "
                f"{100 * s['all_harness']:.1f} % with everything the harness does."
            )
    titles = {
        "latency_cdf.png": "latency CDF",
        "agreement.png": "agreement over time",
        "disagreement_mosaic.jpg": "where they disagree most (reference | model)",
    }
    if meta.get("plots"):
        lines += ["", "## Plots", ""] + [f"![{titles.get(p, p)}]({p})" for p in meta["plots"]]
    return "\n".join(lines) + "\n"


__all__ = [
    "GroundTruthBoxes",
    "Group",
    "ModelInfo",
    "ModelOutput",
    "ReportBuilder",
    "StampMatcher",
    "detection_f1",
    "detections_from_msg",
    "frame_agreement",
    "host_info",
    "latency_stats",
    "markdown",
    "mask_from_msg",
    "perception_from_messages",
]
