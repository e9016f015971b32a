"""Where a model's time goes, per op type (``mtc bench-engines --profile``): ONNX Runtime's profiler
on the benchmark's frames, its JSON trace summed by op type.

The profile is a pass of its own, after the timed runs (the profiler costs time per node, so a
profiled run is never a timed one): a fresh ONNX Runtime session of the bundle with the runtime's
options (:func:`~mtc_perception.engines.onnxruntime_engine.session_options` with a profile file
prefix) runs through the :class:`~mtc_perception.perceptor.Perceptor` — the letterboxed NCHW float
input the vehicle runs — on a few warm-up frames and then every frame once. The trace
(:func:`parse_trace`) holds a ``model_run`` event per run and a ``<node>_kernel_time`` event per node
and run, with the node's op type (``args.op_name``: ``Conv``, ``FusedConv``, ``QuickGelu``,
``Sigmoid``, ``Mul``, ``DepthToSpace``, ``ReorderInput`` / ``ReorderOutput`` of the NCHWc layout,
``Concat``, ``QLinearConv``, ``QuantizeLinear``, ...); only the last runs, one per frame, are
counted, so warm-up runs are not. Per op type: milliseconds per frame and the share of the node
time; the node time against the ``model_run`` time shows what the executor adds around the nodes.
Op types are ONNX Runtime's after its graph optimizations (a BatchNormalization folded into its
Conv does not appear; ``FusedConv`` is a Conv with its activation).
"""

from __future__ import annotations

import bisect
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["parse_trace", "profile_bundle", "profile_markdown"]


def parse_trace(trace: str | Path | Sequence[dict[str, Any]], runs: int | None = None) -> dict[str, Any]:
    """An ONNX Runtime profile (a file or its events) -> time per op type.

    ``runs``: count only the last ``runs`` ``model_run`` events and the nodes inside them (None: all).
    Returns ``runs``, ``run_ms`` (mean ``model_run`` time), ``node_ms`` (mean sum of the node
    kernel times per run), ``node_share_of_run``, ``providers`` and ``ops`` = {op type: {``ms``
    per run, ``share`` of the node time, ``nodes`` (distinct nodes), ``calls`` per run}}, the op
    types by time, largest first. A ValueError names a trace with fewer runs than asked."""
    events = json.loads(Path(trace).read_text()) if isinstance(trace, (str, Path)) else list(trace)
    if isinstance(events, dict):  # some writers wrap the events
        events = events.get("traceEvents", [])
    windows = sorted(
        (int(e["ts"]), int(e["ts"]) + int(e["dur"]))
        for e in events
        if e.get("cat") == "Session" and e.get("name") == "model_run"
    )
    if runs is not None:
        if len(windows) < runs:
            raise ValueError(f"the profile has {len(windows)} model runs, fewer than the {runs} profiled frames")
        windows = windows[len(windows) - runs :]
    if not windows:
        raise ValueError("the profile has no model run")
    starts = [w[0] for w in windows]

    def inside(ts: int) -> bool:
        k = bisect.bisect_right(starts, ts) - 1
        return k >= 0 and ts <= windows[k][1]

    per_op: dict[str, list[float]] = {}
    nodes: dict[str, set[str]] = {}
    providers: set[str] = set()
    for e in events:
        name = str(e.get("name", ""))
        if e.get("cat") != "Node" or not name.endswith("_kernel_time") or not inside(int(e["ts"])):
            continue
        args = e.get("args") or {}
        op = str(args.get("op_name") or "?")
        per_op.setdefault(op, []).append(float(e["dur"]))
        nodes.setdefault(op, set()).add(name[: -len("_kernel_time")])
        if args.get("provider"):
            providers.add(str(args["provider"]))
    n = len(windows)
    node_us = sum(sum(v) for v in per_op.values())
    run_us = float(sum(b - a for a, b in windows))
    ops = {
        op: {
            "ms": sum(v) / n / 1e3,
            "share": sum(v) / node_us if node_us > 0 else None,
            "nodes": len(nodes[op]),
            "calls": len(v) / n,
        }
        for op, v in sorted(per_op.items(), key=lambda kv: -sum(kv[1]))
    }
    return {
        "runs": n,
        "run_ms": run_us / n / 1e3,
        "node_ms": node_us / n / 1e3,
        "node_share_of_run": node_us / run_us if run_us > 0 else None,
        "providers": sorted(providers),
        "ops": ops,
    }


def profile_bundle(
    bundle: str | Path,
    frames: Sequence[np.ndarray],
    threads: int | None = None,
    warmup: int = 5,
    conf: float = 0.25,
    **engine_options: Any,
) -> dict[str, Any]:
    """The bundle's per-op profile on ``frames`` (see the module): a profiling ONNX Runtime session,
    ``warmup`` frames, then every frame once; the trace (in a temporary directory, removed) parsed
    by :func:`parse_trace` over the frames' runs, plus ``backend`` (the session's description) and
    ``frames``."""
    from ..engines.onnxruntime_engine import OnnxRuntimeEngine
    from ..perceptor import Perceptor

    if not frames:
        raise ValueError("no frames to profile")
    with tempfile.TemporaryDirectory(prefix="mtc-profile-") as d:
        p = Perceptor(
            bundle,
            backend="onnxruntime",
            conf=conf,
            threads=threads,
            profile=str(Path(d) / "ort"),
            **engine_options,
        )
        for f in frames[:warmup]:
            p(f)
        for f in frames:
            p(f)
        if not isinstance(p.engine, OnnxRuntimeEngine):  # backend="onnxruntime" makes one
            raise RuntimeError(f"profiling needs the ONNX Runtime engine, got {type(p.engine).__name__}")
        trace = p.engine.end_profiling()
        result = parse_trace(trace, runs=len(frames))
    return {"backend": p.backend, "frames": len(frames), **result}


def profile_markdown(name: str, prof: dict[str, Any], precision: str = "") -> list[str]:
    """One bundle's profile as a markdown table (op type, nodes, calls, ms per frame, % of node time)."""
    share = prof.get("node_share_of_run")
    lines = [
        f"### {name}{f' ({precision})' if precision else ''}: {prof['node_ms']:.2f} ms of node time per frame "
        f"over {prof['runs']} frames, {prof['run_ms']:.2f} ms per run"
        + (f" (nodes {100 * share:.1f} % of it)" if share is not None else ""),
        "",
        "| op type | nodes | calls per frame | ms per frame | % of node time |",
        "|---|---|---|---|---|",
    ]
    for op, o in prof["ops"].items():
        pct = f"{100 * o['share']:.1f}" if o["share"] is not None else "–"
        lines.append(f"| {op} | {o['nodes']} | {o['calls']:g} | {o['ms']:.3f} | {pct} |")
    return lines
