"""ros2_benchmark's numbers, without ROS: the metric names and definitions of NVIDIA's
``ros2_benchmark`` (``BasicPerformanceMetrics``, ``ResourceMetrics``, ``BenchmarkMetadata``), so a live
report can be read side by side with an r2b JSON, and its peak-throughput search.

Keys are written as ros2_benchmark's JSON export writes its enum keys (``str(enum member)``:
``"BasicPerformanceMetrics.MEAN_FRAME_RATE"``); values are floats in the units the metric's name
gives (ms, fps, %). The definitions follow ros2_benchmark's ``BasicPerformanceCalculator``:

- ``NUM_FRAMES_SENT``: frames published; ``NUM_MISSED_FRAMES``: sent - answered;
- ``MEAN_PLAYBACK_FRAME_RATE``: frames sent / (last send - first send), as r2b computes it (N, not
  N - 1, over the span);
- ``RECEIVED_DURATION``: last answer - first answer (ms); ``MEAN_FRAME_RATE``: answers / that span;
- ``FIRST/LAST_SENT_RECEIVED_LATENCY``: first answer - first send, last answer - last send (ms);
- ``FIRST/LAST_INPUT_LATENCY``, ``MIN/MAX/MEAN_LATENCY``: end-to-end latency of each answered frame,
  matched by its key (r2b's ``message_key_match``; here the header stamp), send -> answer (ms);
- ``MIN/MAX/MEAN_JITTER``, ``STD_DEV_JITTER``: ``|diff(diff(answer times))|`` (ms), with >= 3 answers.

What ros2_benchmark does not have and our report adds beside it (``extra``): p50/p90/p99 latency and
each node's own CPU use. An answer, for a perception node, is the last of its three outputs
(detections, drivable_mask, lane_mask) for that frame.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BASIC = "BasicPerformanceMetrics"
RESOURCE = "ResourceMetrics"
METADATA = "BenchmarkMetadata"


def key(group: str, name: str) -> str:
    """The JSON key ros2_benchmark writes for an enum member (``BasicPerformanceMetrics.MEAN_FRAME_RATE``)."""
    return f"{group}.{name}"


def basic_performance(sent: Mapping[Any, float], answered: Mapping[Any, float]) -> dict[str, float | int]:
    """ros2_benchmark's ``BasicPerformanceMetrics`` of one node from the send time of every frame
    (``sent``: key -> seconds, in send order) and the answer time of the answered ones (``answered``:
    key -> seconds; keys a subset of ``sent``'s). Metrics that need more frames than there are are
    left out, as r2b leaves them out."""
    out: dict[str, float | int] = {}
    unknown = set(answered) - set(sent)
    if unknown:
        raise ValueError(f"{len(unknown)} answered frames were never sent (e.g. {sorted(unknown, key=str)[:3]})")
    send = np.asarray(list(sent.values()), np.float64) * 1e3
    recv_keys = sorted(answered, key=lambda k: answered[k])
    recv = np.asarray([answered[k] for k in recv_keys], np.float64) * 1e3
    out[key(BASIC, "NUM_FRAMES_SENT")] = len(send)
    out[key(BASIC, "NUM_MISSED_FRAMES")] = len(send) - len(recv)
    if len(send) > 1 and send[-1] > send[0]:
        out[key(BASIC, "MEAN_PLAYBACK_FRAME_RATE")] = len(send) / ((send[-1] - send[0]) / 1e3)
    if len(recv) == 0:
        return out
    span = float(recv[-1] - recv[0])
    out[key(BASIC, "RECEIVED_DURATION")] = span
    if span > 0:
        out[key(BASIC, "MEAN_FRAME_RATE")] = len(recv) / (span / 1e3)
    out[key(BASIC, "FIRST_SENT_RECEIVED_LATENCY")] = float(recv[0] - send[0])
    out[key(BASIC, "LAST_SENT_RECEIVED_LATENCY")] = float(recv[-1] - send[-1])
    lat = np.asarray([(answered[k] - sent[k]) * 1e3 for k in sent if k in answered], np.float64)  # send order
    out[key(BASIC, "FIRST_INPUT_LATENCY")] = float(lat[0])
    out[key(BASIC, "LAST_INPUT_LATENCY")] = float(lat[-1])
    out[key(BASIC, "MAX_LATENCY")] = float(lat.max())
    out[key(BASIC, "MIN_LATENCY")] = float(lat.min())
    out[key(BASIC, "MEAN_LATENCY")] = float(lat.mean())
    if len(recv) > 2:
        jitter = np.abs(np.diff(np.diff(recv)))
        out[key(BASIC, "MAX_JITTER")] = float(jitter.max())
        out[key(BASIC, "MIN_JITTER")] = float(jitter.min())
        out[key(BASIC, "MEAN_JITTER")] = float(jitter.mean())
        out[key(BASIC, "STD_DEV_JITTER")] = float(jitter.std())
    return out


def latency_percentiles(sent: Mapping[Any, float], answered: Mapping[Any, float]) -> dict[str, float]:
    """Our addition beside r2b's: end-to-end latency p50 / p90 / p99 (ms) of the answered frames."""
    lat = np.asarray([(answered[k] - sent[k]) * 1e3 for k in answered if k in sent], np.float64)
    if not lat.size:
        return {}
    return {f"latency_p{q}_ms": float(np.percentile(lat, q)) for q in (50, 90, 99)}


def sustainable(metrics: Mapping[str, float | int], loss_fraction: float = 0.05, rate_drop: float = 0.0) -> bool:
    """r2b's test of one probe: missed frames <= ceil(sent x ``loss_fraction``) and the answer rate
    within ``rate_drop`` fps of the playback rate (``rate_drop`` <= 0: only the loss is checked,
    which is the issue's "< 5 % missed frames")."""
    sent = int(metrics.get(key(BASIC, "NUM_FRAMES_SENT"), 0))
    missed = int(metrics.get(key(BASIC, "NUM_MISSED_FRAMES"), sent))
    if sent == 0 or missed > math.ceil(sent * loss_fraction):
        return False
    if rate_drop > 0:
        got = float(metrics.get(key(BASIC, "MEAN_FRAME_RATE"), 0.0))
        played = float(metrics.get(key(BASIC, "MEAN_PLAYBACK_FRAME_RATE"), 0.0))
        return got >= played - rate_drop
    return True


@dataclass
class PeakSearch:
    """The outcome of :func:`peak_throughput`: the highest sustainable rate found (0.0 when even
    ``lower`` was not) and every probe in the order it ran (rate, sustainable, metrics)."""

    rate_hz: float
    probes: list[tuple[float, bool, dict[str, Any]]] = field(default_factory=list)
    at_bound: str = ""  # "upper" / "lower": the answer sits at an end of the search window

    def as_dict(self) -> dict[str, Any]:
        return {
            key(METADATA, "PEAK_THROUGHPUT_PREDICTION"): self.rate_hz,
            "at_bound": self.at_bound,
            "probes": [{"rate_hz": r, "sustainable": ok, "metrics": m} for r, ok, m in self.probes],
        }


def peak_throughput(
    probe: Callable[[float], Mapping[str, Any]],
    lower: float,
    upper: float,
    *,
    terminal_width: float = 2.0,
    step: float = 1.0,
    loss_fraction: float = 0.05,
    rate_drop: float = 0.0,
    on_probe: Callable[[float, bool, Mapping[str, Any]], None] | None = None,
) -> PeakSearch:
    """The highest publishing rate (Hz) a node sustains (:func:`sustainable`), r2b's way: a binary
    search between ``lower`` and ``upper`` until the window is ``terminal_width`` wide, then a linear
    scan upwards in ``step`` from the last sustainable rate until a probe fails or ``upper`` is
    passed. ``probe(rate)`` plays frames at ``rate`` and returns their :func:`basic_performance`."""
    if not (0 < lower <= upper):
        raise ValueError(f"peak search needs 0 < lower <= upper, got lower={lower}, upper={upper}")
    if terminal_width <= 0 or step <= 0:
        raise ValueError(f"terminal_width and step must be positive, got {terminal_width}, {step}")
    result = PeakSearch(0.0)

    def run(rate: float) -> bool:
        metrics = dict(probe(rate))
        ok = sustainable(metrics, loss_fraction, rate_drop)
        result.probes.append((rate, ok, metrics))
        if on_probe is not None:
            on_probe(rate, ok, metrics)
        return ok

    lo, hi = lower, upper
    best = 0.0
    if run(lo):
        best = lo
        if run(hi):
            best, lo = hi, hi
        while hi - lo > terminal_width:
            mid = (lo + hi) / 2
            if run(mid):
                best = lo = mid
            else:
                hi = mid
        rate = best + step
        while rate <= upper and best < upper:
            if not run(rate):
                break
            best = rate
            rate += step
    result.rate_hz = best
    result.at_bound = "upper" if best >= upper else ("lower" if best <= lower else "")
    return result


class CpuSampler:
    """The machine's overall CPU use, sampled from ``/proc/stat`` every ``interval`` s in a thread
    while a run lasts: r2b's ``ResourceMetrics`` ``MEAN/MAX/MIN/STDDEV_OVERALL_CPU_UTILIZATION`` (%).
    ``read`` is injectable (tests); where ``/proc/stat`` does not exist the result is empty."""

    def __init__(self, interval: float = 0.5, read: Callable[[], Sequence[int] | None] | None = None) -> None:
        self.interval = interval
        self.read = read or _proc_stat
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: Sequence[int] | None = None

    def sample(self) -> None:
        now = self.read()
        if now is not None and self._last is not None:
            total = sum(now) - sum(self._last)
            idle = (now[3] + now[4]) - (self._last[3] + self._last[4])  # idle + iowait
            if total > 0:
                self.samples.append(100.0 * (total - idle) / total)
        self._last = now

    def start(self) -> CpuSampler:
        self.sample()

        def loop() -> None:
            while not self._stop.wait(self.interval):
                self.sample()

        self._thread = threading.Thread(target=loop, name="mtc-cpu", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.interval + 1)
        self.sample()
        return self.metrics()

    def metrics(self) -> dict[str, float]:
        if not self.samples:
            return {}
        s = np.asarray(self.samples, np.float64)
        return {
            key(RESOURCE, "RESOURCE_PROFILING_SAMPLING_RATE"): 1.0 / self.interval,
            key(RESOURCE, "MAX_OVERALL_CPU_UTILIZATION"): float(s.max()),
            key(RESOURCE, "MIN_OVERALL_CPU_UTILIZATION"): float(s.min()),
            key(RESOURCE, "MEAN_OVERALL_CPU_UTILIZATION"): float(s.mean()),
            key(RESOURCE, "STDDEV_OVERALL_CPU_UTILIZATION"): float(s.std()),
        }


def _proc_stat() -> list[int] | None:
    try:
        with open("/proc/stat", encoding="ascii") as f:
            first = f.readline().split()
    except OSError:
        return None
    return [int(v) for v in first[1:8]] if first and first[0] == "cpu" else None


def node_cpu_percent(first: Mapping[str, str], last: Mapping[str, str]) -> float | None:
    """A perception node's own CPU use over a run (% of one core, all its threads) from two of its
    ``/diagnostics`` readings (``cpu_s``: its process CPU time, ``monotonic_s``: the clock); None where
    either lacks them or no time passed."""
    try:
        dc = float(last["cpu_s"]) - float(first["cpu_s"])
        dt = float(last["monotonic_s"]) - float(first["monotonic_s"])
    except (KeyError, ValueError):
        return None
    return 100.0 * dc / dt if dt > 0 else None
