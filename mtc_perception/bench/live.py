"""The live benchmark's decisions, without rclpy: which frames went out, which outputs came back
from each perception node, matched by header stamp, and the report (the same shape as
``mtc bench``'s, through :class:`~mtc_perception.bench.report.ReportBuilder`).

The ``benchmark_node`` feeds it: :meth:`LiveBench.frame_sent` for every camera frame it plays
(or sees, when ``ros2 bag play`` plays the bag), :meth:`LiveBench.output` for every message on
``/<model>/detections``, ``/<model>/drivable_mask`` and ``/<model>/lane_mask``, and
:meth:`LiveBench.finish` when the bag has ended and the outputs have drained.

Per model and frame: all three outputs arrived -> *processed*, with the end-to-end latency = the
last of the three arrivals - the moment the frame was sent. A frame without its outputs was either
rejected by the node (a bad frame, an inference error: the node publishes nothing and counts it
``failed`` in its ``/diagnostics``) or never processed (dropped by the middleware, replaced in the
node's newest-frame slot, an output lost). As offline, the first are *failed* and the rest
*skipped*: the node's last ``failed`` count (at most its unanswered frames) moves that many from
skipped to failed, named by its ``last_error``; frames.csv still marks every unanswered frame
skipped, since the node's count says how many, not which. The nodes' last diagnostics stay in
``meta.node_diagnostics``. Frames of the recording that were never sent (stopped early) are skipped
for every model, so ``processed + failed + skipped == total`` holds as offline.

``throughput_fps`` is the offline report's: processed frames over the model's busy time, the sum of
its (here end-to-end) latencies — what the model with its transport sustains, not the rate the
camera fed it. The rate of answered frames over the run's wall time, which the camera's rate caps,
is ``meta.answered_fps`` per model.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..messages import OUTPUT_PARTS, perception_from_messages
from . import r2b
from .report import GroundTruthBoxes, ModelInfo, ModelOutput, ReportBuilder, StampMatcher, write_report


def node_failures(values: Mapping[str, str]) -> tuple[int, str]:
    """(frames the node failed on, its last error) from a perception node's ``/diagnostics``
    key/values (strings); (0, "") where it published none or the count is unreadable."""
    try:
        n = int(values.get("failed", "0"))
    except ValueError:
        return 0, ""
    error = values.get("last_error", "") or "rejected by the node (no error text in its diagnostics)"
    return max(n, 0), f"node: {error}"


class LiveBench:
    """``models``: reference (teacher) first, then the candidates (students); their names are the
    namespaces of the nodes. ``total``: frames of the camera topic in the recording."""

    def __init__(
        self,
        models: Sequence[ModelInfo],
        total: int,
        gt_parts: Sequence[str] = (),
        meta: Mapping[str, Any] | None = None,
        max_pending: int = 256,
    ) -> None:
        self.models = list(models)
        self.total = int(total)
        self.builder = ReportBuilder(self.models, gt_parts=gt_parts, meta={"mode": "live", **dict(meta or {})})
        self.parts = ["frame"] + [f"{m.name}/{p}" for m in self.models for p in OUTPUT_PARTS]
        self._matcher = StampMatcher(self.parts, max_pending=max_pending)
        self._index: dict[int, int] = {}
        self.sent = 0
        self.late = 0  # outputs for a frame already reported (came after the matching window)
        self.unknown = 0  # outputs whose stamp matches no frame that was sent
        self._done: set[int] = set()
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.first_diagnostics: dict[str, dict[str, str]] = {}  # the first reading of each node (CPU use)
        self.answered = {m.name: 0 for m in self.models}  # frames with all three outputs, per model
        self.sent_at: dict[int, float] = {}  # stamp -> send time, in send order (ros2_benchmark metrics)
        self.answered_at: dict[str, dict[int, float]] = {m.name: {} for m in self.models}

    # -- input -----------------------------------------------------------------------------------
    def frame_sent(self, stamp_ns: int, t_sent: float, image: np.ndarray | None = None) -> None:
        """A camera frame went out at ``t_sent`` (``time.monotonic()``; the image is optional and
        only feeds the disagreement mosaic)."""
        stamp_ns = int(stamp_ns)
        self._index[stamp_ns] = self.sent
        self.sent_at[stamp_ns] = float(t_sent)
        self.sent += 1
        self._take(self._matcher.add(stamp_ns, "frame", (t_sent, image)))

    def output(self, model: str, part: str, stamp_ns: int, msg: Any, t_recv: float | None = None) -> None:
        """One output message of a node (``part`` in :data:`mtc_perception.messages.OUTPUT_PARTS`)."""
        stamp_ns = int(stamp_ns)
        key = f"{model}/{part}"
        if key not in self.parts:
            raise ValueError(f"unknown output {key!r}; expected one of {self.parts[1:]}")
        if stamp_ns in self._done:
            self.late += 1
            return
        # an output may overtake its frame's frame_sent() (another thread); it waits in the matcher
        self._take(self._matcher.add(stamp_ns, key, (time.monotonic() if t_recv is None else t_recv, msg)))

    def ground_truth(self, stamp_ns: int, part: str, value: GroundTruthBoxes | np.ndarray) -> None:
        self.builder.add_ground_truth(stamp_ns, part, value)

    def node_diagnostics(self, name: str, values: Mapping[str, str]) -> None:
        """The latest ``/diagnostics`` key/values of a perception node."""
        self.diagnostics[name] = dict(values)
        self.first_diagnostics.setdefault(name, dict(values))

    # -- matching --------------------------------------------------------------------------------
    def _take(self, groups: list[Any]) -> None:
        for g in groups:
            if "frame" not in g.items:  # outputs whose stamp matches no frame that was sent
                self.unknown += len(g.items)
                continue
            t_sent, image = g.items["frame"]
            outputs = {}
            for m in self.models:
                got = [g.items.get(f"{m.name}/{p}") for p in OUTPUT_PARTS]
                if any(x is None for x in got):
                    outputs[m.name] = ModelOutput()
                    continue
                t_last = max(x[0] for x in got)
                try:
                    p = perception_from_messages(
                        got[0][1], got[1][1], got[2][1], m.class_names or self.builder.class_names
                    )
                    outputs[m.name] = ModelOutput(perception=p, latency_ms=(t_last - t_sent) * 1e3)
                    self.answered[m.name] += 1
                    self.answered_at[m.name][g.stamp_ns] = t_last
                except ValueError as e:  # a malformed output message
                    outputs[m.name] = ModelOutput(error=f"unreadable output: {e}")
            self._done.add(g.stamp_ns)
            self.builder.add_frame(g.stamp_ns, outputs, image=image, index=self._index[g.stamp_ns])

    def pending(self) -> int:
        return self._matcher.pending

    def complete(self) -> bool:
        """Every sent frame has all its outputs (nothing more to wait for)."""
        return self._matcher.pending == 0 and len(self._done) == self.sent

    # -- output ----------------------------------------------------------------------------------
    def ros2_benchmark(
        self, resource: Mapping[str, float] | None = None, meta: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The ``ros2_benchmark`` section: per model, r2b's ``BasicPerformanceMetrics`` of its answers
        (:func:`~mtc_perception.bench.r2b.basic_performance`) with the machine's CPU use (``resource``,
        r2b's ``ResourceMetrics``) and, under ``extra``, what r2b lacks: latency percentiles and the
        node's own CPU use from its /diagnostics; ``metadata``: r2b's ``BenchmarkMetadata``."""
        out: dict[str, Any] = {}
        for m in self.models:
            answered = self.answered_at[m.name]
            extra: dict[str, Any] = r2b.latency_percentiles(self.sent_at, answered)
            cpu = r2b.node_cpu_percent(self.first_diagnostics.get(m.name, {}), self.diagnostics.get(m.name, {}))
            if cpu is not None:
                extra["node_cpu_percent"] = cpu
            out[m.name] = {**r2b.basic_performance(self.sent_at, answered), **dict(resource or {}), "extra": extra}
        out["metadata"] = dict(meta or {})
        return out

    def finish(
        self,
        out_dir: str | Path,
        wall_s: float,
        plots: bool = True,
        reason: str = "",
        resource: Mapping[str, float] | None = None,
        r2b_meta: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Report whatever is still pending (missing outputs -> skipped), count unsent frames as
        skipped, write report.json/md, frames.csv and plots into ``out_dir``, with the
        :meth:`ros2_benchmark` section (``resource``, ``r2b_meta``)."""
        self._take(self._matcher.flush())
        if self.total > self.sent:
            self.builder.add_not_reached(self.total - self.sent, reason or "not played")
        b = self.builder
        failed_from = {}
        for m in self.models:
            n, error = node_failures(self.diagnostics.get(m.name, {}))
            if n:
                failed_from[m.name] = b.add_unmatched_failures(m.name, n, error)
        b.meta.update(
            {
                "frames_sent": self.sent,
                "late_outputs": self.late,
                "unknown_outputs": self.unknown,
                "wall_s": round(wall_s, 3),
                "answered_fps": {m.name: self.answered[m.name] / wall_s if wall_s > 0 else None for m in self.models},
                "failed_from_node_diagnostics": failed_from,
                "node_diagnostics": self.diagnostics,
            }
        )
        b.sections["ros2_benchmark"] = self.ros2_benchmark(resource, r2b_meta)
        write_report(b, out_dir, plots=plots)
        assert b.last_report is not None  # write_report sets it or raises
        return b.last_report
