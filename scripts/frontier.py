"""The speed/accuracy frontier of the students built: each model's measured speed-up over the teacher
(an ``mtc bench-engines`` run, the bundles taking turns on the same frames) against its accuracy
change on the validation split (``mtc-compress eval`` JSON files), one panel per task metric.

    python scripts/frontier.py --engines runs/bench/frontier/engines.json \\
        --eval teacher=runs/eval/teacher.json --eval student=runs/eval/student.json ... \\
        --target-speedup 2.5 --out docs/img/frontier.png --json runs/bench/frontier/frontier.json

The first ``--eval`` is the reference (the teacher) and must be a bundle of the engines run too;
speed-ups are ``speedup_rounds.median`` (whole Perceptor, per round) when present, else the
throughput ratio. Writes the plot and a JSON table (speed-up, deltas in points, which models meet
the issue's bar: the target speed-up at <= 1.0 pt mAP50, <= 1.0 recall, <= 0.5 drivable mIoU,
<= 1.0 lane IoU).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

METRICS = {  # label -> (path in the eval JSON, largest allowed loss in points)
    "mAP50": (("detection", "map50"), 1.0),
    "recall": (("detection", "recall"), 1.0),
    "drivable mIoU": (("drivable", "miou"), 0.5),
    "lane IoU": (("lane", "iou"), 1.0),
}


def _get(d: dict[str, Any], path: tuple[str, ...]) -> float:
    for k in path:
        d = d[k]
    return float(d)  # type: ignore[arg-type]


def table(engines: dict[str, Any], evals: dict[str, dict[str, Any]], target: float) -> list[dict[str, Any]]:
    models = engines.get("models", engines)
    names = list(evals)
    ref = names[0]
    rows = []
    for n in names:
        if n not in models:
            raise SystemExit(f"--eval {n}: no bundle of that name in the engines run (it has {sorted(models)})")
        r = models[n]
        sr = r.get("speedup_rounds")
        speed = (sr["median"] if sr else r["speedup_vs_first"]) / (
            models[ref]["speedup_rounds"]["median"] if models[ref].get("speedup_rounds") else 1.0
        )
        deltas = {k: 100 * (_get(evals[n], p) - _get(evals[ref], p)) for k, (p, _) in METRICS.items()}  # points
        ok = all(deltas[k] >= -lim for k, (_, lim) in METRICS.items())
        rows.append(
            {
                "model": n,
                "precision": r.get("precision", "fp32"),
                "params": r.get("params"),
                "speedup": speed,
                "infer_speedup": r.get("infer_speedup_vs_first"),
                "delta_points": deltas,
                "within_accuracy_bar": ok,
                "meets_target": ok and speed >= target,
            }
        )
    return rows


def plot(rows: list[dict[str, Any]], target: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 3.6), sharex=True)
    for ax, (k, (_, lim)) in zip(axes, METRICS.items()):
        ax.axhspan(-lim, max(3.0, *(r["delta_points"][k] for r in rows)) + 0.5, color="#e8f5e9", zorder=0)
        ax.axvline(target, color="#888", ls="--", lw=1)
        for r in rows:
            ax.scatter(r["speedup"], r["delta_points"][k], s=30, zorder=3)
            ax.annotate(
                r["model"], (r["speedup"], r["delta_points"][k]), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
        ax.set_title(f"{k} (bar: -{lim} pt)", fontsize=9)
        ax.set_xlabel("speed-up over the teacher (Perceptor, 1280x720 frames)", fontsize=7)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("change vs teacher (points)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engines", required=True, help="engines.json of an mtc bench-engines run over every model")
    p.add_argument("--eval", action="append", default=[], help="NAME=eval.json (first: the reference)")
    p.add_argument(
        "--replay",
        help="report.json of an mtc bench run on a labelled recording: every model's ground-truth accuracy as "
        "deployed (conf 0.25), INT8 bundles included, instead of --eval (its teacher is the reference)",
    )
    p.add_argument("--target-speedup", type=float, default=2.5)
    p.add_argument("--out", default="docs/img/frontier.png")
    p.add_argument("--json", default="runs/bench/frontier/frontier.json")
    a = p.parse_args()
    engines = json.loads(Path(a.engines).read_text())
    evals: dict[str, dict[str, Any]] = {}
    if a.replay:
        rep = json.loads(Path(a.replay).read_text())
        gt = rep.get("ground_truth") or {}
        ref = rep["meta"].get("reference") or next(iter(rep["models"]))
        evals = {n: gt[n] for n in [ref, *(m for m in rep["models"] if m != ref)] if gt.get(n)}
        if not evals:
            raise SystemExit(f"--replay {a.replay}: the recording had no labels (no ground_truth block)")
    elif not a.eval:
        raise SystemExit("give --eval NAME=eval.json ... or --replay report.json")
    for item in a.eval:
        name, _, path = item.partition("=")
        evals[name] = json.loads(Path(path).read_text())
    rows = table(engines, evals, a.target_speedup)
    plot(rows, a.target_speedup, Path(a.out))
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps({"target_speedup": a.target_speedup, "rows": rows}, indent=2) + "\n")
    for r in rows:
        d = r["delta_points"]
        print(
            f"{r['model']:24s} {r['precision']:6s} x{r['speedup']:.2f}  "
            + "  ".join(f"{k} {v:+.2f}" for k, v in d.items())
            + ("  MEETS" if r["meets_target"] else "")
        )


if __name__ == "__main__":
    main()
