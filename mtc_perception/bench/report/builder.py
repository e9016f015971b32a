"""The report builder: per-frame results of a reference model and any number of candidates (and
labels, paired by stamp) -> the report dict (speed, frame accounting, agreement of each candidate
with the reference, ground-truth metrics)."""

from __future__ import annotations

import heapq
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ...messages import LABEL_PARTS
from ...metrics import DetectionMetrics, SegMetrics, drivable_metrics, lane_metrics
from .agreement import detection_f1, fg_iou
from .inputs import STAGES, GroundTruthBoxes, ModelInfo, ModelOutput
from .matching import Group, StampMatcher
from .stats import latency_stats, present_class_iou

SCHEMA = 1
#: frame indices kept per error kind (``models.<m>.errors[].frames``)
FIRST_FRAMES = 5
#: distinct error kinds kept per model; further kinds are counted under ``OTHER_KIND``
MAX_KINDS = 20
OTHER_KIND = "other errors"


def error_kind(error: str) -> str:
    """The kind of an error message: the message with its numbers replaced by ``#`` (sizes, byte
    counts and indices vary between frames failing for the same cause), at most 100 characters."""
    return re.sub(r"\d+", "#", error)[:100]


class _ModelAcc:
    def __init__(self, class_names: tuple[str, ...]) -> None:
        nc = len(class_names)
        self.status: Counter[str] = Counter()
        self.latency: list[float] = []
        self.stages: dict[str, list[float]] = {k: [] for k in STAGES}
        self.errors: Counter[str] = Counter()
        self.first_error: dict[str, str] = {}
        self.error_frames: dict[str, list[int]] = {}
        self.gt_det = DetectionMetrics(nc, class_names=class_names)
        self.gt_drv = SegMetrics()
        self.gt_lane = SegMetrics()
        self.gt_frames = 0
        self.busy_s: float | None = None


class _AgreeAcc:
    """One candidate against the reference, over the frames both processed."""

    def __init__(self, nc: int) -> None:
        self.frames = 0
        self.det = DetectionMetrics(nc, ap_method="coco")
        self.drv = SegMetrics()
        self.lane = SegMetrics()

    def add(self, rp: Any, cp: Any) -> dict[str, float]:
        """The frame's agreement (detection F1, drivable and lane IoU, disagreement), accumulated."""
        self.frames += 1
        self.det.update(cp.boxes, cp.scores, cp.class_ids, rp.boxes, rp.class_ids)
        a = {"det_f1": detection_f1(rp, cp), "drivable_iou": 0.0, "lane_iou": 0.0}
        if np.shape(rp.drivable) == np.shape(cp.drivable) and np.shape(rp.lane) == np.shape(cp.lane):
            a["drivable_iou"] = fg_iou(self.drv.update(cp.drivable, rp.drivable))
            a["lane_iou"] = fg_iou(self.lane.update(cp.lane, rp.lane))
        a["disagreement"] = 1.0 - (a["det_f1"] + a["drivable_iou"] + a["lane_iou"]) / 3
        return a


class ReportBuilder:
    """Collects per-frame results of the models and writes the benchmark report.

    ``models``: the reference first (the teacher), then any number of candidates (the students);
    each candidate's agreement is against the reference. ``gt_parts``: which label streams the recording carries
    (subset of ``("detections", "drivable", "lane")``); labels are paired with frames by stamp
    (:class:`StampMatcher`, up to ``max_pending`` frames apart). ``mosaic`` frames with the
    largest disagreement (of the candidate that disagrees most) are kept (image + every model's
    perception) for the mosaic. ``meta`` is merged
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
        if not models:
            raise ValueError("a report needs at least one model (the reference)")
        names = [m.name for m in models]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must differ, got {names}")
        bad = [p for p in gt_parts if p not in LABEL_PARTS]
        if bad:
            raise ValueError(f"unknown ground-truth parts {bad}; use {LABEL_PARTS}")
        self.models = list(models)
        self.class_names = tuple(models[0].class_names) or ("object",)
        self.meta: dict[str, Any] = dict(meta or {})
        self.warnings: list[str] = []
        self.harness_ms: dict[str, float] = {}
        self.started = time.perf_counter() if started is None else started
        self._acc = {m.name: _ModelAcc(self.class_names) for m in models}
        self._frames = 0
        self._not_reached = 0
        self._rows: list[dict[str, Any]] = []
        self._agree = {m.name: _AgreeAcc(len(self.class_names)) for m in models[1:]}
        self._mosaic_k = mosaic
        self._worst: list[tuple[float, int, Any]] = []
        self.gt_parts = tuple(gt_parts)
        self._matcher = StampMatcher(("frame", *self.gt_parts), max_pending) if self.gt_parts else None
        self._gt_match: Counter[str] = Counter()
        self._gt_unmatched: Counter[str] = Counter()
        self._gt_examples: list[int] = []
        self._gt_errors: Counter[str] = Counter()
        self.last_report: dict[str, Any] | None = None  # the last report written (write_report)
        #: further top-level sections of report.json, written as given (the live run's ``ros2_benchmark``)
        self.sections: dict[str, Any] = {}

    # -- input -----------------------------------------------------------------------------------
    @property
    def reference(self) -> str:
        return self.models[0].name

    @property
    def candidates(self) -> list[str]:
        """Every model compared with the reference, in order."""
        return [m.name for m in self.models[1:]]

    @property
    def candidate(self) -> str | None:
        """The first candidate (the one of a teacher-vs-student report), or None."""
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
        Returns the first candidate's agreement on the frame (see :func:`frame_agreement`) when it and
        the reference processed it (every candidate's is in :attr:`rows`). Its own time (scoring) goes to ``harness_ms["score"]``."""
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
            row[f"{m.name}_error"] = out.error or out.reason
            if st == "processed" and out.latency_ms is not None:
                acc.latency.append(float(out.latency_ms))
                row[f"{m.name}_latency_ms"] = float(out.latency_ms)
                for k in STAGES:
                    if k in out.stage_ms:
                        acc.stages[k].append(float(out.stage_ms[k]))
            elif st == "failed":
                kind = error_kind(out.error)
                if kind not in acc.errors and len(acc.errors) >= MAX_KINDS:
                    kind = OTHER_KIND
                acc.errors[kind] += 1
                acc.first_error.setdefault(kind, out.error)
                frames = acc.error_frames.setdefault(kind, [])
                if len(frames) < FIRST_FRAMES:
                    frames.append(i)
        agreements: dict[str, dict[str, float]] = {}
        rp = outputs.get(self.reference, ModelOutput()).perception
        for c, acc_c in self._agree.items():
            cp = outputs.get(c, ModelOutput()).perception
            if rp is not None and cp is not None:
                agreements[c] = acc_c.add(rp, cp)
                row.update({f"{c}_{k}": v for k, v in agreements[c].items()})
        if agreements and image is not None and self._mosaic_k > 0:
            perceptions = tuple(outputs.get(m.name, ModelOutput()).perception for m in self.models)
            worst = max(a["disagreement"] for a in agreements.values())
            item = (worst, -i, (i, int(stamp_ns), image, *perceptions, agreements))
            if len(self._worst) < self._mosaic_k:
                heapq.heappush(self._worst, item)
            elif item[:2] > self._worst[0][:2]:
                heapq.heapreplace(self._worst, item)
        self._rows.append(row)
        if self._matcher is not None:
            preds = {name: o.perception for name, o in outputs.items() if o.perception is not None}
            self._take(self._matcher.add(stamp_ns, "frame", preds))
        return agreements.get(self.candidate) if self.candidate else None

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

    def add_unmatched_failures(self, model: str, n: int, error: str) -> int:
        """``n`` of the model's skipped frames were frames it failed on, known only as a count (the
        live benchmark: a node publishes nothing for a frame it rejects, and counts it as failed in
        its ``/diagnostics``). At most as many as it has skipped move from skipped to failed, under
        ``error``; frames.csv cannot say which ones. Returns how many moved."""
        if n < 0:
            raise ValueError(f"failure count must be >= 0, got {n}")
        acc = self._acc[model]
        moved = min(n, acc.status["skipped"])
        if moved:
            acc.status["skipped"] -= moved
            acc.status["failed"] += moved
            kind = error_kind(error)
            acc.errors[kind] += moved
            acc.first_error.setdefault(kind, error)
            acc.error_frames.setdefault(kind, [])
        return moved

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
    def given(self) -> int:
        """Frames given to :meth:`add_frame` so far."""
        return self._frames

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
            "precision": m.precision,
            "params": m.params,
            "macs": m.macs,
            "macs_at": m.macs_at,
            "input_size": list(m.input_size) if m.input_size else None,
            "latency_ms": latency_stats(acc.latency),
            "stage_ms": {k: (float(np.mean(v)) if v else None) for k, v in acc.stages.items()},
            "throughput_fps": (processed / busy) if busy > 0 else None,
            "frames": {"total": self.total, "processed": processed, "failed": failed, "skipped": skipped},
            "errors": [
                {"kind": k, "count": n, "first": acc.first_error[k], "frames": acc.error_frames[k]}
                for k, n in acc.errors.most_common()
            ],
        }

    def _agreement(self, candidate: str) -> dict[str, Any]:
        acc = self._agree[candidate]
        det = acc.det.compute()
        has_ref = det["num_gt"] > 0
        drv, lane = present_class_iou(acc.drv.cm), present_class_iou(acc.lane.cm)
        return {
            "reference": self.reference,
            "model": candidate,
            "frames": acc.frames,
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
                if len(self.class_names) > 1:  # AP50 per class name (None: no labelled box of the class)
                    block["detection"]["ap50_by_class"] = d["ap50_by_class"]
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
        meta["reference"] = self.reference
        meta["precisions"] = {m.name: m.precision for m in self.models}
        if self.harness_ms:
            meta["harness_ms"] = dict(self.harness_ms)
        agreements = {c: self._agreement(c) for c in self.candidates}
        return {
            "schema": SCHEMA,
            "meta": meta,
            "models": {m.name: self._model_block(m) for m in self.models},
            # the first candidate's (the one of a teacher-vs-student report), as before there were several
            "agreement": agreements[self.candidate] if self.candidate else None,
            "agreements": agreements,
            "ground_truth": self._ground_truth(),
            **self.sections,
        }

    @property
    def rows(self) -> list[dict[str, Any]]:
        """Per-frame rows (what ``frames.csv`` holds)."""
        return list(self._rows)

    def latencies(self) -> dict[str, list[float]]:
        """Each model's latencies (ms) of its processed frames, in arrival order."""
        return {m.name: list(self._acc[m.name].latency) for m in self.models}

    def worst_frames(self) -> list[Any]:
        """The kept frames of largest disagreement, worst first: (index, stamp, image, each model's
        perception in :attr:`models` order (None where it did not process the frame), {candidate:
        agreement} of the candidates that did)."""
        return [item[2] for item in sorted(self._worst, reverse=True)]
