"""``/diagnostics`` of a perception node: counters and rolling latencies (:class:`Stats`), the
health level of a period (:func:`health`) and the ``DiagnosticArray`` message."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import numpy as np

from ..messages import DIAGNOSTICS_TYPE, Types


class Stats:
    """Counters and a rolling window of latencies for diagnostics."""

    def __init__(self, window: int = 300) -> None:
        self.window = window
        self.latency_ms: deque[float] = deque(maxlen=window)
        self.done_at: deque[float] = deque(maxlen=window)
        self.stage_ms: dict[str, deque[float]] = {}  # stage name -> rolling window (ms)
        self.processed = 0
        self.failed = 0
        self.last_error = ""
        self._lock = threading.Lock()  # the worker writes, the diagnostics timer reads

    def ok(self, latency_ms: float, now: float | None = None, stages: dict[str, float] | None = None) -> None:
        """A processed frame: its latency in the node (received -> published) and, optionally, the
        time of each stage (``wait``, ``decode``, ``infer`` ...)."""
        with self._lock:
            self.processed += 1
            self.latency_ms.append(latency_ms)
            self.done_at.append(time.monotonic() if now is None else now)
            for name, ms in (stages or {}).items():
                self.stage_ms.setdefault(name, deque(maxlen=self.window)).append(float(ms))

    def fail(self, error: str) -> None:
        with self._lock:
            self.failed += 1
            self.last_error = error

    def summary(self, received: int, skipped: int) -> dict[str, float | int | str]:
        with self._lock:
            lat = np.asarray(self.latency_ms, np.float64)
            t = np.asarray(self.done_at, np.float64)
            stages = {k: np.asarray(v, np.float64) for k, v in self.stage_ms.items()}
        rate = (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0
        out: dict[str, float | int | str] = {
            "rate_hz": float(rate),
            "latency_p50_ms": float(np.percentile(lat, 50)) if lat.size else 0.0,
            "latency_p99_ms": float(np.percentile(lat, 99)) if lat.size else 0.0,
            "received": received,
            "processed": self.processed,
            "skipped": skipped,
            "failed": self.failed,
            "last_error": self.last_error,
            # this process's CPU time (all threads) so far: a monitor's two readings give CPU use
            "cpu_s": time.process_time(),
            "monotonic_s": time.monotonic(),
        }
        for name, v in stages.items():
            if v.size:
                out[f"{name}_p50_ms"] = float(np.percentile(v, 50))
        return out


def health(now: dict[str, Any], before: dict[str, Any] | None, topic: str) -> tuple[str, str]:
    """(level name, message) of one diagnostics period from two :meth:`Stats.summary` snapshots.

    STALE: no frame has arrived yet; ERROR: frames arrived this period and every one failed;
    WARN: some failed; OK otherwise (skipped frames are normal when the camera is faster)."""
    before = before or {"received": 0, "processed": 0, "failed": 0, "skipped": 0}
    d = {k: now[k] - before[k] for k in ("received", "processed", "failed", "skipped")}
    if now["received"] == 0:
        return "STALE", f"no frames received yet on {topic}"
    if d["failed"] and not d["processed"]:
        return "ERROR", f"all {d['failed']} frames of the last period failed: {now['last_error']}"
    if d["failed"]:
        return "WARN", f"{d['failed']} of {d['received']} frames failed: {now['last_error']}"
    if d["received"] == 0:
        return "WARN", f"no frames in the last period on {topic}"
    return "OK", f"{now['rate_hz']:.1f} Hz, p50 {now['latency_p50_ms']:.1f} ms"


def diagnostic_array(
    types: Types,
    stamp: Any,
    name: str,
    hardware_id: str,
    summary: dict[str, Any],
    level: str,
    message: str,
    extra: dict[str, Any] | None = None,
) -> Any:
    """A ``diagnostic_msgs/DiagnosticArray`` with one status for this node. The level constant is
    read off the message class, so it is bytes for rclpy and an int for rosbags as each expects."""
    Status, KV = types("diagnostic_msgs/msg/DiagnosticStatus"), types("diagnostic_msgs/msg/KeyValue")
    Header = types("std_msgs/msg/Header")
    values = {**summary, **(extra or {})}
    kvs = [KV(key=k, value=f"{v:.3f}" if isinstance(v, float) else str(v)) for k, v in values.items()]
    st = Status(level=getattr(Status, level), name=name, message=message, hardware_id=hardware_id, values=kvs)
    return types(DIAGNOSTICS_TYPE)(header=Header(stamp=stamp, frame_id=""), status=[st])
