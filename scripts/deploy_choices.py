"""Which deployment choices make a multi-task network faster on this machine: measured, not assumed.

For a network (a checkpoint, or the teacher architecture with random weights: latency does not
depend on the weights' values) at one or more width scales, every variant below is exported as the
bundle export does (compress.export.export_onnx, compress.models.deploy) and run with the runtime's
own ONNX Runtime session options; the variants take turns frame by frame, so a slow spell of the
machine lands on all of them alike, and each one's speed is given relative to the first variant of
its scale (the ratio of the minima, and of the medians).

    python scripts/deploy_choices.py --scales 1.0 0.5 0.35 --size 640x384 --runs 40 --out runs/bench/deploy_choices.json

Variants (one factor at a time from the export as it was before these choices): BatchNorm after
the CSP Concat folded; ReLU / Hardswish instead of SiLU; widths rounded to 16 (ONNX Runtime's
AVX-512 NCHWc block) instead of 4 / 8; the decoders' sub-pixel rewrite per stage (all, none, the
last stage only). Writes a JSON file with every figure and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compress.checkpoint import load_model
from compress.export import ExportWrapper, export_onnx
from compress.models import build_model, count_macs, count_params
from compress.models.config import ModelConfig
from compress.models.deploy import deploy_model
from compress.models.yolop import HEAD_OUTPUTS, extract_widths
from mtc_perception.engines.onnxruntime_engine import session_options
from mtc_perception.host import cpu_name
from mtc_perception.inputs import parse_size

PROTECTED = {p for paths in HEAD_OUTPUTS.values() for p in paths}

# name -> (activation or None for the model's own, round_to or None for the scale's default, rewrite stages, fold)
VARIANTS: dict[str, tuple[str | None, int | None, tuple[str, ...], bool]] = {
    "as before (rewrite all, BN unfolded)": (None, None, ("csp1", "c3", "out"), False),
    "+ CSP BatchNorm folded": (None, None, ("csp1", "c3", "out"), True),
    "+ fold, no rewrite": (None, None, (), True),
    "+ fold, rewrite out only": (None, None, ("out",), True),
    "+ fold, rewrite c3+out": (None, None, ("c3", "out"), True),
    "+ fold, relu": ("relu", None, ("csp1", "c3", "out"), True),
    "+ fold, hardswish": ("hardswish", None, ("csp1", "c3", "out"), True),
    "+ fold, relu, round 16": ("relu", 16, ("csp1", "c3", "out"), True),
    "+ fold, relu, round 4": ("relu", 4, ("csp1", "c3", "out"), True),
}


def scaled(model: torch.nn.Module, scale: float, round_to: int, act: str | None) -> torch.nn.Module:
    """``model``'s architecture with every prunable width x ``scale`` rounded to ``round_to`` (never wider
    than the original: pruning does not widen a layer)."""
    cfg = model.cfg
    widths = {
        k: (v if k in PROTECTED else min(v, max(round_to, int(round(v * scale / round_to)) * round_to)))
        for k, v in extract_widths(model).items()
    }
    return build_model(cfg.replace(widths=widths, act=act or cfg.act)).eval()


def session(model: torch.nn.Module, rewrite: tuple[str, ...], fold: bool, size: tuple[int, int], threads: int | None):
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as d:
        path = export_onnx(
            ExportWrapper(deploy_model(model, rewrite=rewrite, fold_bn_after_concat=fold)).eval(),
            Path(d) / "m.onnx",
            size,
        )
        return ort.InferenceSession(str(path), session_options(threads=threads), providers=["CPUExecutionProvider"])


def measure(sessions: dict[str, Any], size: tuple[int, int], runs: int, warmup: int = 5) -> dict[str, list[float]]:
    w, h = size
    x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    feeds = {n: {s.get_inputs()[0].name: x} for n, s in sessions.items()}
    for _ in range(warmup):
        for n, s in sessions.items():
            s.run(None, feeds[n])
    times: dict[str, list[float]] = {n: [] for n in sessions}
    for _ in range(runs):  # the variants take turns run by run
        for n, s in sessions.items():
            t = time.perf_counter()
            s.run(None, feeds[n])
            times[n].append((time.perf_counter() - t) * 1e3)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", help="checkpoint (default: the teacher architecture with random weights)")
    p.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.5, 0.35], help="width scales")
    p.add_argument("--round-to", type=int, default=8, help="default width rounding of the scaled models")
    p.add_argument("--size", type=lambda t: parse_size(t, multiple_of=32), default=(640, 384), help="WIDTHxHEIGHT")
    p.add_argument("--runs", type=int, default=40)
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: every core)")
    p.add_argument("--note", default="", help="what else ran on the machine (recorded)")
    p.add_argument("--out", default="runs/bench/deploy_choices.json")
    a = p.parse_args()
    torch.manual_seed(0)
    base = load_model(a.ckpt)[0].eval() if a.ckpt else build_model(ModelConfig(size="teacher")).eval()
    w, h = a.size
    result: dict[str, Any] = {
        "command": "python scripts/deploy_choices.py " + " ".join(__import__("sys").argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "host": {"cpu": cpu_name(), "machine": platform.machine()},
        "note": a.note,
        "size": [w, h],
        "scales": {},
    }
    for scale in a.scales:
        sessions, info = {}, {}
        for name, (act, rnd, rewrite, fold) in VARIANTS.items():
            m = scaled(base, scale, rnd or a.round_to, act)
            sessions[name] = session(m, rewrite, fold, a.size, a.threads)
            info[name] = {"params": count_params(m), "gmacs": count_macs(m, h, w) / 1e9}
        t0 = time.perf_counter()
        times = measure(sessions, a.size, a.runs)
        ref = next(iter(times))
        rows = {}
        for n, ts in times.items():
            rows[n] = {
                **info[n],
                "min_ms": min(ts),
                "p50_ms": float(np.median(ts)),
                "speedup_min": min(times[ref]) / min(ts),
                "speedup_p50": float(np.median(times[ref]) / np.median(ts)),
            }
        result["scales"][str(scale)] = {"rows": rows, "seconds": round(time.perf_counter() - t0, 1)}
        print(f"\nwidth scale {scale} ({w}x{h}, {a.runs} runs each, variants in turn)")
        print(
            f"{'variant':40s} {'params M':>9s} {'GMACs':>7s} {'min ms':>8s} {'p50 ms':>8s} {'x min':>6s} {'x p50':>6s}"
        )
        for n, r in rows.items():
            print(
                f"{n:40s} {r['params'] / 1e6:9.3f} {r['gmacs']:7.3f} {r['min_ms']:8.2f} {r['p50_ms']:8.2f} "
                f"{r['speedup_min']:6.2f} {r['speedup_p50']:6.2f}"
            )
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten {a.out}")


if __name__ == "__main__":
    main()
