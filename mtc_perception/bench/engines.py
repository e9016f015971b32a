"""Engine benchmark: bundles side by side through the Perceptor on the same frames.

``mtc bench-engines --bundle teacher=B1 --bundle student=B2 --frames DIR --size 1280x720
--backend onnxruntime --out runs/bench/engines`` writes ``engines.json`` and ``engines.md``: per
bundle the stage times (mean / p50 / p90 ms), throughput, the Perceptor's own share (preprocess
+ postprocess relative to engine time), and every bundle's speed-up over the first.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from mtc_perception.perceptor import STAGES, Perceptor


def _stats(v: list[float]) -> dict[str, float]:
    a = np.asarray(v, np.float64)
    return {"mean": float(a.mean()), "p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)), "max": float(a.max())}


def load_frames(directory: str | Path, size: tuple[int, int], limit: int) -> list[np.ndarray]:
    """Images of ``directory`` resized to ``size`` = (w, h) (camera-resolution frames)."""
    import cv2

    files = sorted(p for p in Path(directory).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:limit]
    if not files:
        raise FileNotFoundError(f"no .jpg/.png images under {directory}")
    frames = []
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"{f} is not a readable image")
        frames.append(cv2.resize(img, size, interpolation=cv2.INTER_LINEAR) if (img.shape[1], img.shape[0]) != size else img)
    return frames


def bench(bundles: dict[str, str], frames: list[np.ndarray], backend: str = "onnxruntime", runs: int = 1, warmup: int = 5,
          threads: int | None = None, conf: float = 0.25, **engine_options: Any) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, path in bundles.items():
        p = Perceptor(path, backend=backend, conf=conf, threads=threads, **engine_options)
        for f in frames[:warmup]:
            p(f)
        per_stage: dict[str, list[float]] = {k: [] for k in STAGES}
        t0 = time.perf_counter()
        n = 0
        for _ in range(runs):
            for f in frames:
                r = p(f)
                for k in STAGES:
                    per_stage[k].append(r.timings[k])
                n += 1
        wall = time.perf_counter() - t0
        stage = {k: _stats(v) for k, v in per_stage.items()}
        own = stage["preprocess"]["mean"] + stage["postprocess"]["mean"]
        meta = p.bundle.meta
        results[name] = {
            "bundle": str(path), "backend": p.backend, "input": list(p.bundle.input_size),
            "params": meta.get("provenance", {}).get("params"), "macs": meta.get("provenance", {}).get("macs"),
            "frames": n, "wall_s": wall, "throughput_fps": n / wall, "stage_ms": stage,
            "latency_ms": _stats([sum(x) for x in zip(*(per_stage[k] for k in STAGES))]),
            "perceptor_share_of_engine": own / stage["infer"]["mean"],
        }
        del p  # one engine at a time: an idle session's threads must not compete with the next
    first = next(iter(results.values()))
    for r in results.values():
        r["speedup_vs_first"] = r["throughput_fps"] / first["throughput_fps"]
    return results


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs"


def markdown(report: dict[str, Any]) -> str:
    m = report["meta"]
    lines = [f"# Engine benchmark\n\n{m['frames']} frames at {m['frame_size'][0]}x{m['frame_size'][1]} x {m['runs']} run(s), backend "
             f"{m['backend']} {m.get('engine_options') or ''}, {m['machine']}.\n",
             "| model | params | GMACs | input | throughput (fps) | speed-up | infer ms (mean / p90) | preprocess ms | postprocess ms | "
             "Perceptor share of engine time |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in report["models"].items():
        s = r["stage_ms"]
        lines.append(f"| {name} | {(r['params'] or 0) / 1e6:.2f}M | {(r['macs'] or 0) / 1e9:.3f} | {r['input'][0]}x{r['input'][1]} | "
                     f"{r['throughput_fps']:.1f} | {r['speedup_vs_first']:.2f}x | {s['infer']['mean']:.2f} / {s['infer']['p90']:.2f} | "
                     f"{s['preprocess']['mean']:.2f} | {s['postprocess']['mean']:.2f} | {100 * r['perceptor_share_of_engine']:.1f}% |")
    return "\n".join(lines) + "\n"


def main(a: Any) -> int:
    bundles = {}
    for spec in a.bundle:
        name, _, path = spec.partition("=")
        if not path:
            name, path = Path(spec).name, spec
        bundles[name] = path
    frames = load_frames(a.frames, a.size, a.max_frames)
    opts = {"graph_optimization": a.graph_optimization} if a.graph_optimization else {}
    models = bench(bundles, frames, a.backend, a.runs, threads=a.threads, **opts)
    report = {"meta": {"frames": len(frames), "frame_size": list(a.size), "runs": a.runs, "backend": a.backend, "threads": a.threads,
                       "engine_options": opts,
                       "machine": machine(), "frames_dir": str(a.frames)}, "models": models}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "engines.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "engines.md").write_text(markdown(report))
    print(markdown(report))
    return 0
