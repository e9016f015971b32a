"""The ablation: every pruning criterion at one budget, without and with distillation.

``mtc-compress ablate --recipe R`` prunes the teacher with every criterion of the recipe's
``ablation.criteria`` at the same budget (one-shot), evaluates each without and with distillation
(the mean over ``ablation.seeds``) and writes ``<out>/ablation.json`` and ``<out>/ablation.md``
(the paper-style table).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtc_perception.host import cpu_name

from .checkpoint import load_model, save_checkpoint
from .config_io import to_dict
from .pipeline import (
    cpu_latency_ms,
    distill_config,
    evaluate_checkpoint,
    format_metrics,
    prune_model,
    recalibrate_bn,
    start_run,
    summary_metrics,
    task_mean,
)
from .recipe import CompressRecipe

log = logging.getLogger(__name__)


def ablate(recipe: CompressRecipe, progress: bool = True) -> dict[str, Any]:
    """Every criterion at the same channel ratio (one-shot), without and with distillation."""
    from .prune import ratio_for_budget, spec_for
    from .train import train

    out, t0, teacher, tck, img_size, train_ds, val_ds = start_run(recipe)
    st = recipe.prune.for_model(img_size)  # the recipe's PruneConfig at the teacher's input size
    # uniform per-layer pruning: one channel ratio gives every criterion the same widths; global
    # pruning or the sensitivity allocation: every criterion meets the same params/MACs budget
    # with its own layer allocation (its own ranking, or probes pruned by the criterion itself)
    own = st.global_pruning or st.allocation != "uniform"
    ratio = None if own else ratio_for_budget(teacher, spec_for(teacher), st)
    epochs = (
        recipe.ablation.distill_epochs
        if recipe.ablation.distill_epochs is not None
        else distill_config(recipe, tck, "-", out).epochs
    )
    lat = recipe.ablation

    def row(name: str, distilled: bool, path: str | Path, seconds: float) -> dict[str, Any]:
        res = evaluate_checkpoint(path, val_ds, recipe)
        m, _ = load_model(path)
        r = {
            "model": name,
            "distilled": distilled,
            "checkpoint": str(path),
            **summary_metrics(res),
            "latency_ms": cpu_latency_ms(m, img_size, lat.latency_iters, lat.latency_threads)["median_ms"],
            "seconds": round(seconds, 1),
        }
        r["task_mean"] = task_mean(r)
        log.info("%s%s: %s; mean %.4f", name, " + distill" if distilled else "", format_metrics(r), r["task_mean"])
        with (out / "ablation.partial.jsonl").open("a") as f:
            f.write(json.dumps(r) + "\n")
        return r

    rows = [row("teacher", False, recipe.teacher, 0.0)]
    log.info(
        "ablation: %s at %s (%s budget %.0f%%), distillation %d epoch(s)",
        list(recipe.ablation.criteria),
        ("global pruning" if st.global_pruning else f"{st.allocation} allocation")
        if ratio is None
        else f"channel ratio {ratio:.3f}",
        st.budget,
        100 * st.target,
        epochs,
    )
    for crit in recipe.ablation.criteria:
        t = time.perf_counter()
        model, _ = load_model(recipe.teacher)
        pc = st.with_criterion(crit) if ratio is None else st.with_criterion(crit).at_ratio(ratio)
        rep = prune_model(model, pc, train_ds, st.batch_size, st.seed)
        recalibrate_bn(model, train_ds, st.recalibrate_batches, seed=st.seed)
        pruned = out / crit / "pruned.pt"
        save_checkpoint(
            pruned, model, prune_report=rep.to_dict(), parent=recipe.teacher, train_config=tck.get("train_config", {})
        )
        rows.append({**row(crit, False, pruned, time.perf_counter() - t), "channel_ratio": rep.channel_ratio})
        if epochs > 0:
            runs = []
            for seed in recipe.ablation.seeds:
                t = time.perf_counter()
                name = "distill" if len(recipe.ablation.seeds) == 1 else f"distill_seed{seed}"
                cfg = dataclasses.replace(
                    distill_config(recipe, tck, str(pruned), out / crit / name, epochs), seed=seed
                )
                summary = train(cfg, progress=progress)
                runs.append({**row(crit, True, summary["best"], time.perf_counter() - t), "seed": seed})
            rows.append(runs[0] if len(runs) == 1 else seed_mean(runs))
    result = {
        "recipe": to_dict(dataclasses.replace(recipe, prune=st)),
        "channel_ratio": ratio,
        "global_pruning": st.global_pruning,
        "allocation": st.allocation,
        "distill_epochs": epochs,
        "seeds": list(recipe.ablation.seeds),
        "img_size": list(img_size),
        "val_images": len(val_ds)
        if recipe.eval_max_batches is None
        else min(len(val_ds), recipe.eval_max_batches * recipe.eval_batch_size),
        "rows": rows,
        "order": criterion_order(rows),
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "machine": machine(),
    }
    (out / "ablation.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "ablation.md").write_text(ablation_markdown(result))
    log.info("ablation written to %s (%.1f min)", out / "ablation.md", result["wall_seconds"] / 60)
    return result


def seed_mean(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One distilled row from the runs of several seeds: every metric averaged, the runs kept
    (``runs``) and the spread of the task mean (``task_mean_min`` / ``task_mean_max``)."""
    keys = ("recall", "map50", "map50_95", "drivable_miou", "lane_acc", "lane_iou", "latency_ms", "seconds")
    r = {
        **runs[0],
        **{k: float(np.mean([x[k] for x in runs])) for k in keys},
        "seed": [x["seed"] for x in runs],
        "runs": runs,
    }
    r["task_mean"] = task_mean(r)
    r["task_mean_min"] = min(x["task_mean"] for x in runs)
    r["task_mean_max"] = max(x["task_mean"] for x in runs)
    return r


def criterion_order(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Criteria ranked by task mean (best first), without and with distillation."""
    out = {}
    for key, distilled in (("pruned", False), ("distilled", True)):
        rs = [r for r in rows if r["model"] != "teacher" and r["distilled"] == distilled]
        out[key] = [r["model"] for r in sorted(rs, key=lambda r: -r["task_mean"])]
    return out


def machine() -> str:
    return f"{cpu_name()}, torch {torch.__version__}"


def _spread(r: dict[str, Any]) -> str:
    return f" ({r['task_mean_min']:.4f}–{r['task_mean_max']:.4f}, {len(r['runs'])} seeds)" if "runs" in r else ""


_COLUMNS = (
    "model",
    "distill",
    "params",
    "GMACs",
    "recall",
    "mAP50",
    "drivable mIoU",
    "lane acc",
    "lane IoU",
    "task mean",
    "CPU latency (ms)",
)


def _row(r: dict[str, Any]) -> str:
    distill = "yes" if r["distilled"] else ("—" if r["model"] == "teacher" else "no")
    cells = [
        r["model"],
        distill,
        f"{r['params'] / 1e6:.2f}M",
        f"{r['gmacs']:.3f}",
        f"{r['recall']:.3f}",
        f"{r['map50']:.3f}",
        f"{r['drivable_miou']:.3f}",
        f"{r['lane_acc']:.3f}",
        f"{r['lane_iou']:.3f}",
        f"{r['task_mean']:.4f}{_spread(r)}",
        f"{r['latency_ms']:.1f}",
    ]
    return "| " + " | ".join(cells) + " |"


def ablation_markdown(result: dict[str, Any]) -> str:
    head = "| " + " | ".join(_COLUMNS) + " |\n" + "|" + "---|" * len(_COLUMNS) + "\n"
    lines = [_row(r) for r in result["rows"]]
    order = result["order"]
    w, h = result["img_size"]
    if result.get("channel_ratio") is not None:
        how = f"Channel ratio {result['channel_ratio']:.3f} for every criterion (one-shot, per-layer: same widths)"
    elif result.get("global_pruning"):
        how = "Global pruning: every criterion meets the same budget with its own layer allocation (one-shot)"
    else:
        how = (
            f"{str(result.get('allocation')).capitalize()} allocation: every criterion meets the same budget with "
            "its own per-layer ratios (probes pruned by the criterion itself; one-shot)"
        )
    n_seeds = len(result.get("seeds", [0]))
    seeds = "" if n_seeds == 1 else f" x {n_seeds} seeds (distilled rows: their mean)"
    return (
        f"# Ablation: pruning criteria at equal budget\n\n{how}, distillation {result['distill_epochs']} epoch(s)"
        f"{seeds}; {result['val_images']} validation images at "
        f"{w}x{h}; task mean = mean(mAP50, recall, drivable mIoU, lane IoU); CPU latency: torch, batch 1, median; "
        f"{result['machine']}; {result['wall_seconds'] / 60:.1f} min in all.\n\n" + head + "\n".join(lines) + "\n\n"
        f"Order without distillation: {' > '.join(order['pruned'])}\n\n"
        + (f"Order with distillation: {' > '.join(order['distilled'])}\n" if order["distilled"] else "")
    )
