"""Ablation of recovery strategies for one pruned student: the same pruned checkpoint recovered
by each strategy for the same number of epochs (same seed, data order, learning-rate schedule),
then evaluated on the validation split the same way. What it answers: at high compression, what
buys back accuracy per epoch of this machine's time.

    python scripts/recovery_ablation.py --recipe config/compress/synthroad_deploy.yaml \\
        --pruned runs/compress/synthroad_deploy/step1/pruned.pt --epochs 3 \\
        --out runs/ablation/recovery

Strategies (``--strategies``, default all):

* ``task``: task losses only (the student's own ground-truth training, no teacher signal);
* ``output``: + output distillation (the teacher's detection and segmentation outputs);
* ``feature``: + feature distillation (the recipe's taps), no output distillation;
* ``feature_output``: both (what the deploy recipe does).

Every other field is the recipe's ``distill`` section. Each run is resumable (a finished strategy's
``result.json`` is reused; ``--fresh`` redoes them). Writes ``<out>/<strategy>/`` (best.pt, last.pt,
metrics.jsonl, result.json) and ``<out>/ablation.json`` + ``ablation.md`` (a row per strategy, the
deltas against the teacher in points and the wall time).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

STRATEGIES: dict[str, dict[str, float]] = {
    "task": {"distill_weight": 0.0, "output_weight": 0.0},
    "output": {"distill_weight": 0.0, "output_weight": 0.5},
    "feature": {"distill_weight": 1.0, "output_weight": 0.0},
    "feature_output": {"distill_weight": 1.0, "output_weight": 0.5},
}
KEYS = ("map50", "recall", "drivable_miou", "lane_iou")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", required=True, help="compress recipe (teacher, data, distill section)")
    ap.add_argument("--pruned", required=True, help="the pruned, unrecovered student checkpoint")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", required=True)
    ap.add_argument("--strategies", nargs="+", choices=list(STRATEGIES), default=list(STRATEGIES))
    ap.add_argument("--fresh", action="store_true", help="redo strategies that have a result.json")
    ap.add_argument("--max-train-batches", type=int, default=None, help="smoke runs only")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    from compress.pipeline import distill_config, evaluate_checkpoint, start_run, summary_metrics
    from compress.recipe import load_recipe
    from compress.train import train

    pruned = Path(args.pruned)
    if not pruned.is_file():
        print(
            f"error: --pruned {pruned} does not exist; pass a checkpoint written by `mtc-compress prune`",
            file=sys.stderr,
        )
        return 2
    recipe = load_recipe(args.recipe)
    out = Path(args.out)
    recipe = dataclasses.replace(recipe, out=str(out))
    run = start_run(recipe)

    rows: dict[str, Any] = {}
    ref_path = out / "teacher.json"
    if ref_path.is_file() and not args.fresh:
        ref = json.loads(ref_path.read_text())
    else:
        ref = summary_metrics(evaluate_checkpoint(recipe.teacher, run.val_ds, recipe))
        ref_path.write_text(json.dumps(ref, indent=2) + "\n")
    start = summary_metrics(evaluate_checkpoint(pruned, run.val_ds, recipe))
    rows["pruned (no recovery)"] = {"metrics": start, "epochs": 0, "wall_seconds": 0.0}
    for name in args.strategies:
        sdir = out / name
        res_path = sdir / "result.json"
        if res_path.is_file() and not args.fresh:
            rows[name] = json.loads(res_path.read_text())
            logging.info("%s: reusing %s", name, res_path)
            continue
        cfg = distill_config(recipe, run.tck, str(pruned), sdir, args.epochs)
        cfg = dataclasses.replace(cfg, **STRATEGIES[name])
        if args.max_train_batches:
            cfg = dataclasses.replace(cfg, max_train_batches=args.max_train_batches)
        logging.info("%s: %s for %d epochs", name, STRATEGIES[name], args.epochs)
        t = time.perf_counter()
        summary = train(cfg, progress=False)
        wall = time.perf_counter() - t
        m = summary_metrics(evaluate_checkpoint(summary["best"], run.val_ds, recipe))
        rows[name] = {"metrics": m, "epochs": args.epochs, "wall_seconds": round(wall, 1), **STRATEGIES[name]}
        res_path.write_text(json.dumps(rows[name], indent=2) + "\n")
        logging.info("%s: %s", name, {k: round(m[k], 4) for k in KEYS})

    for r in rows.values():
        r["delta_points"] = {k: round(100 * (r["metrics"][k] - ref[k]), 2) for k in KEYS}
    report = {"recipe": args.recipe, "pruned": str(pruned), "epochs": args.epochs, "teacher": ref, "rows": rows}
    (out / "ablation.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "| strategy | epochs | wall s | ΔmAP50 | Δrecall | Δdrivable mIoU | Δlane IoU |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        d = r["delta_points"]
        lines.append(
            f"| {name} | {r['epochs']} | {r['wall_seconds']:.0f} | " + " | ".join(f"{d[k]:+.2f}" for k in KEYS) + " |"
        )
    (out / "ablation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
