"""Engine benchmark: bundles side by side through the Perceptor on the same frames.

``mtc bench-engines --bundle teacher=B1 --bundle student=B2 [--bundle int8=B3 ...] --frames DIR
--size 1280x720 --backend onnxruntime [--profile] --out runs/bench/engines`` writes ``engines.json``
and ``engines.md``: per bundle its precision (bundle.json ``versions.precision``, ``fp32`` where
missing), the stage times (mean / p50 / p90 ms), throughput, the Perceptor's own share (preprocess
+ postprocess relative to engine time), and every bundle compared with the first, the reference
(``meta.reference``): speed-up overall and per round, the bundles taking turns on blocks of frames
(``--block``, see :func:`bench`), and of the engine time alone. ``--profile`` adds, after the timed
runs, each bundle's time per op type under ONNX Runtime's profiler (:mod:`.profile`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from mtc_perception.host import cpu_name
from mtc_perception.imaging import read_image
from mtc_perception.inputs import list_images
from mtc_perception.perceptor import STAGES, Perceptor

from .names import check_names, default_name, parse_model_spec
from .profile import profile_bundle, profile_markdown
from .report.inputs import bundle_precision


def _stats(v: list[float]) -> dict[str, float]:
    a = np.asarray(v, np.float64)
    return {
        "mean": float(a.mean()),
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "max": float(a.max()),
    }


def load_frames(directory: str | Path, size: tuple[int, int], limit: int) -> list[np.ndarray]:
    """Images of ``directory`` resized to ``size`` = (w, h) (camera-resolution frames)."""
    import cv2

    files = list_images(directory, what="--frames")[:limit]
    frames = []
    for f in files:
        img = read_image(f)  # ImageError naming the file for anything unreadable, too large or truncated
        frames.append(
            cv2.resize(img, size, interpolation=cv2.INTER_LINEAR) if (img.shape[1], img.shape[0]) != size else img
        )
    return frames


def bench(
    bundles: dict[str, str],
    frames: list[np.ndarray],
    backend: str = "onnxruntime",
    runs: int = 1,
    warmup: int = 5,
    threads: int | None = None,
    conf: float = 0.25,
    block: int = 10,
    **engine_options: Any,
) -> dict[str, Any]:
    """Every bundle through its own Perceptor on the same frames.

    With ``block`` > 0 (the default) the bundles take turns: ``block`` frames through the first,
    the same frames through the second, ..., then the next frames. A slow spell of a shared
    machine (another process, CPU steal on a VM) then lands on every bundle alike, and every
    round gives one speed-up per bundle (``speedup_rounds``: median, min, max). The sessions are
    loaded side by side; ONNX Runtime's threads do not spin (mtc_perception's default), so an
    idle session takes no CPU. ``block=0`` runs the bundles one after the other, one session
    at a time."""
    names = list(bundles)
    per_stage: dict[str, dict[str, list[float]]] = {n: {k: [] for k in STAGES} for n in names}
    wall = dict.fromkeys(names, 0.0)
    rounds: dict[str, list[float]] = {n: [] for n in names}
    perceptors: dict[str, Perceptor] = {}

    def run(name: str, chunk: list[np.ndarray]) -> float:
        p = perceptors[name]
        t0 = time.perf_counter()
        for f in chunk:
            r = p(f)
            for k in STAGES:
                per_stage[name][k].append(r.timings[k])
        dt = time.perf_counter() - t0
        wall[name] += dt
        return dt

    def load(name: str) -> None:
        perceptors[name] = p = Perceptor(bundles[name], backend=backend, conf=conf, threads=threads, **engine_options)
        for f in frames[:warmup]:
            p(f)

    info: dict[str, tuple[str, Any, list[int], str]] = {}  # backend, provenance, input size, precision

    def keep_info(n: str) -> None:
        p = perceptors[n]
        info[n] = (p.backend, p.bundle.spec.provenance, list(p.bundle.input_size), bundle_precision(p.bundle))

    if block > 0:
        for n in names:
            load(n)
            keep_info(n)
        for _ in range(runs):
            for i in range(0, len(frames), block):
                chunk = frames[i : i + block]
                times = {n: run(n, chunk) for n in names}
                for n in names:
                    rounds[n].append(times[names[0]] / times[n])
        perceptors.clear()
    else:
        for n in names:
            load(n)
            keep_info(n)
            for _ in range(runs):
                run(n, frames)
            del perceptors[n]  # one engine at a time
    results: dict[str, Any] = {}
    for n in names:
        backend_used, m, input_size, precision = info[n]
        stage = {k: _stats(v) for k, v in per_stage[n].items()}
        own = stage["preprocess"]["mean"] + stage["postprocess"]["mean"]
        count = len(per_stage[n]["infer"])
        results[n] = {
            "bundle": str(bundles[n]),
            "backend": backend_used,
            "precision": precision,
            "input": input_size,
            "params": m.params,
            "macs": m.macs,
            "frames": count,
            "wall_s": wall[n],
            "throughput_fps": count / wall[n],
            "stage_ms": stage,
            "latency_ms": _stats([sum(x) for x in zip(*(per_stage[n][k] for k in STAGES))]),
            "perceptor_share_of_engine": own / stage["infer"]["mean"],
        }
        if rounds[n]:
            r = np.asarray(rounds[n])
            results[n]["speedup_rounds"] = {
                "median": float(np.median(r)),
                "min": float(r.min()),
                "max": float(r.max()),
                "rounds": len(r),
            }
    first = results[names[0]]
    for r in results.values():
        r["speedup_vs_first"] = r["throughput_fps"] / first["throughput_fps"]
        r["infer_speedup_vs_first"] = first["stage_ms"]["infer"]["mean"] / r["stage_ms"]["infer"]["mean"]
    return results


def _rounds(r: dict[str, Any]) -> str:
    sr = r.get("speedup_rounds")
    return f"{sr['median']:.2f}x ({sr['min']:.2f}-{sr['max']:.2f}, {sr['rounds']} rounds)" if sr else "-"


def markdown(report: dict[str, Any]) -> str:
    m = report["meta"]
    how = f"bundles taking turns on blocks of {m['block']} frames" if m.get("block") else "one bundle after the other"
    ref = m.get("reference") or next(iter(report["models"]))
    lines = [
        f"# Engine benchmark\n\n{m['frames']} frames at {m['frame_size'][0]}x{m['frame_size'][1]} x {m['runs']} run(s), {how}, backend "
        f"{m['backend']} {m.get('engine_options') or ''}, {m['machine']}. Speed-ups are against {ref}, the reference.\n",
        "| model | precision | params | GMACs | input | throughput (fps) | speed-up | speed-up per round (median, min-max) | "
        "infer ms (mean / p90) | infer speed-up | preprocess ms | postprocess ms | Perceptor share of engine time |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in report["models"].items():
        s = r["stage_ms"]
        lines.append(
            f"| {name} | {r.get('precision') or 'fp32'} | {(r['params'] or 0) / 1e6:.2f}M | {(r['macs'] or 0) / 1e9:.3f} | "
            f"{r['input'][0]}x{r['input'][1]} | {r['throughput_fps']:.1f} | {r['speedup_vs_first']:.2f}x | {_rounds(r)} | "
            f"{s['infer']['mean']:.2f} / {s['infer']['p90']:.2f} | {r.get('infer_speedup_vs_first', 1.0):.2f}x | "
            f"{s['preprocess']['mean']:.2f} | {s['postprocess']['mean']:.2f} | {100 * r['perceptor_share_of_engine']:.1f}% |"
        )
    profiled = {n: r["profile"] for n, r in report["models"].items() if r.get("profile")}
    if profiled:
        first = next(iter(profiled.values()))
        lines += [
            "",
            "## Time per op type",
            "",
            f"ONNX Runtime's profiler ({first['backend']}) in a pass of its own after the timed runs, every frame once "
            "after a warm-up: each op type's kernel time per frame and its share of the session's node time.",
        ]
        for n, prof in profiled.items():
            lines += ["", *profile_markdown(n, prof, report["models"][n].get("precision", ""))]
    return "\n".join(lines) + "\n"


def named_bundles(specs: list[str]) -> dict[str, str]:
    """``--bundle [NAME=]DIR`` list -> {name: dir} in order; an unnamed bundle takes its directory's
    name; names checked (:func:`~mtc_perception.bench.names.check_names`: none twice)."""
    pairs = []
    for spec in specs:
        name, path = parse_model_spec(spec)
        pairs.append((name or default_name(path), path))
    check_names([n for n, _ in pairs], "bundle")
    return dict(pairs)


def profile(
    bundles: dict[str, str],
    frames: list[np.ndarray],
    threads: int | None = None,
    warmup: int = 5,
    conf: float = 0.25,
    **engine_options: Any,
) -> dict[str, dict[str, Any]]:
    """Every bundle's time per op type (:func:`~mtc_perception.bench.profile.profile_bundle`), one
    after the other: run after :func:`bench`, never during it."""
    return {
        n: profile_bundle(path, frames, threads=threads, warmup=warmup, conf=conf, **engine_options)
        for n, path in bundles.items()
    }


def main(a: Any) -> int:
    bundles = named_bundles(a.bundle)
    frames = load_frames(a.frames, a.size, a.max_frames)
    opts = {"graph_optimization": a.graph_optimization} if a.graph_optimization else {}
    block = getattr(a, "block", 10)
    models = bench(bundles, frames, a.backend, a.runs, threads=a.threads, block=block, **opts)
    if getattr(a, "profile", False):  # after the timed runs: the profiler costs time per node
        for n, prof in profile(bundles, frames, threads=a.threads, **opts).items():
            models[n]["profile"] = prof
    report = {
        "meta": {
            "frames": len(frames),
            "frame_size": list(a.size),
            "runs": a.runs,
            "block": block,
            "backend": a.backend,
            "threads": a.threads,
            "engine_options": opts,
            "machine": cpu_name(),
            "frames_dir": str(a.frames),
            "reference": next(iter(bundles)),
            "profile": bool(getattr(a, "profile", False)),
        },
        "models": models,
    }
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "engines.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "engines.md").write_text(markdown(report))
    print(markdown(report))
    return 0
