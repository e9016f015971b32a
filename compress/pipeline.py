"""Recipes: teacher -> prune (one-shot or iterative with recovery) -> distill -> eval, and the ablation.

A recipe is a YAML file loaded into :class:`CompressRecipe`. ``mtc-compress compress --recipe R``
writes ``<out>/student.pt`` and ``<out>/metrics.json`` (teacher, student, deltas, the prune reports
and stage wall times); ``mtc-compress ablate --recipe R`` prunes the teacher with every criterion
at the same channel ratio, evaluates each without and with distillation and writes
``<out>/ablation.json`` and ``<out>/ablation.md`` (the paper-style table).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mtc_perception.host import cpu_name

from .checkpoint import load_model, save_checkpoint
from .config_io import ConfigFileError, from_dict, read_yaml, to_dict

log = logging.getLogger(__name__)

CRITERIA_ORDER = ("task-aware", "taylor", "hessian", "magnitude", "random")


@dataclass(frozen=True)
class PruneStage:
    """How the teacher is pruned (compress.prune.PruneConfig fields plus the schedule)."""

    criterion: str = "task-aware"
    criterion_args: dict[str, Any] = field(default_factory=dict)
    budget: str = "params"  # ratio | params | macs | latency
    target: float = 0.5  # channel ratio, or fraction of params / MACs / latency to remove (of the teacher's)
    round_to: int = 8
    global_pruning: bool = False
    max_layer_ratio: float = 0.9
    batches: int = 8  # batches for gradient-based criteria
    batch_size: int = 8
    steps: int = 1  # iterative schedule: reach the budget in this many prune steps ...
    recovery_epochs: int = 1  # ... each but the last followed by this many distillation epochs
    recalibrate_batches: int = 20  # re-estimate BatchNorm statistics on this many batches after each step (0: off)
    seed: int = 0
    # per-layer ratios (compress.prune.allocate): uniform | sensitivity, and fixed ratios by module path
    allocation: str = "uniform"
    allocation_depth: int = 2
    sensitivity_probe: float = 0.5
    sensitivity_power: float = 1.0
    sensitivity_batches: int = 4
    layer_ratios: dict[str, float] = field(default_factory=dict)
    macs_target: float | None = (
        None  # with budget params / latency: also remove at least this fraction of the teacher's MACs
    )
    latency_target: float | None = None  # with budget params / macs: also remove at least this fraction of its latency
    # latency (compress.prune.latency): ONNX Runtime on this CPU, deployment input (width, height); default: training size
    latency_size: tuple[int, int] | None = None
    latency_runs: int = 15
    latency_threads: int | None = None

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"prune.steps must be >= 1, got {self.steps}")
        if self.recovery_epochs < 0:
            raise ValueError(f"prune.recovery_epochs must be >= 0, got {self.recovery_epochs}")


@dataclass(frozen=True)
class AblationConfig:
    criteria: tuple[str, ...] = CRITERIA_ORDER
    distill_epochs: int | None = None  # default: the recipe's distill epochs
    latency_iters: int = 30
    latency_threads: int | None = None  # default: torch's default for this machine
    seeds: tuple[int, ...] = (0,)  # distillation seeds per criterion: the distilled row is their mean

    def __post_init__(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigFileError(
                f"ablation.seeds: expected a list of distinct integers (e.g. [0, 1]), got {list(self.seeds)}"
            )


@dataclass(frozen=True)
class CompressRecipe:
    teacher: str  # teacher checkpoint
    out: str = "runs/compress"
    data: str | None = None  # default: the dataset the teacher was trained on
    prune: PruneStage = field(default_factory=PruneStage)
    # compress.train.TrainConfig fields for the distillation (epochs, lr, batch_size, workers,
    # distill_weight, output_weight, trajectory_weight, extra_teachers, ...); the data options and
    # input size come from the teacher's run. epochs: 0 keeps the pruned student as it is.
    distill: dict[str, Any] = field(default_factory=dict)
    eval_batch_size: int = 16
    eval_workers: int = 1
    eval_max_batches: int | None = None  # None: the whole validation split
    ablation: AblationConfig = field(default_factory=AblationConfig)


QUICK = {  # `ablate --quick` / `compress --quick`: a smoke run of every stage (CI)
    "distill": {"epochs": 1, "max_train_batches": 2, "eval_max_batches": 1},
    "prune": {"batches": 2},
    "eval_max_batches": 2,
    "ablation": {"distill_epochs": 1, "latency_iters": 3},
}


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None, quick: bool = False) -> CompressRecipe:
    data = read_yaml(path, "recipe", "; see config/compress/ for examples")
    if quick:
        data = _merge(data, QUICK)
    data = _merge(data, {k: v for k, v in (overrides or {}).items() if v is not None})
    return from_dict(CompressRecipe, data, str(path))


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# ----------------------------------------------------------------------------------------------
# stages


def split_of_run(
    tc: dict[str, Any],
    data: str | None,
    split: str,
    img_size: tuple[int, int],
    on_error: str | None = None,
    missing_data_hint: str = "the checkpoint does not record its dataset; pass --data DIR",
):  # noqa: ANN201
    """A split read the way a checkpoint's training run read it (label format, drivable mapping,
    class map, per-split options), without augmentation. ``tc`` is the checkpoint's train_config."""
    from .data import DataConfig, MultiTaskDataset

    data = data or tc.get("data")
    if not data:
        raise ValueError(missing_data_hint)
    which = (
        "val_data_options"
        if split == tc.get("val_split", "val")
        else "train_data_options"
        if split == tc.get("train_split", "train")
        else None
    )
    opts = {**tc.get("data_options", {}), **(tc.get(which, {}) if which else {})}
    dc = DataConfig.from_dict(
        {**opts, "root": data, "split": split, "on_error": on_error or tc.get("on_error", "raise")}
    )
    return MultiTaskDataset(dc, img_size=img_size, augment=None)


def _split(ckpt: dict[str, Any], data: str | None, split: str, img_size: tuple[int, int]):  # noqa: ANN202
    return split_of_run(
        ckpt.get("train_config", {}),
        data,
        split,
        img_size,
        missing_data_hint="the teacher checkpoint does not record its dataset; set data: in the recipe",
    )


def prune_model(
    model: nn.Module, cfg: Any, train_ds: Any = None, batch_size: int = 8, seed: int = 0, meter: Any = None
) -> Any:
    """Prune ``model`` in place with ``cfg`` (a PruneConfig); data from ``train_ds`` when the
    criterion needs gradients; ``meter`` times candidates for a latency budget. Returns the PruneReport."""
    from .data import build_loader, iterate
    from .evaluate import to_input
    from .losses import MultiTaskLoss
    from .prune import CRITERIA, prune, spec_for

    torch.manual_seed(seed)
    batches = loss_fn = None
    if CRITERIA[cfg.criterion].needs_data or cfg.allocation == "sensitivity":
        if train_ds is None:
            raise ValueError(f"criterion {cfg.criterion!r} / allocation {cfg.allocation!r} needs training data")
        crit = MultiTaskLoss.for_model(model)
        loader = build_loader(train_ds, batch_size, 0, shuffle=True, seed=seed)
        batches = lambda: iterate(loader)  # noqa: E731

        def loss_fn(m, b):  # noqa: ANN001, ANN202
            out = crit(m(to_input(b["img"], "cpu")), b)
            return {k: out[k] for k in ("det", "drivable", "lane")}

    return prune(model, spec_for(model), cfg, batches=batches, loss_fn=loss_fn, meter=meter)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, dataset: Any, batches: int, batch_size: int = 16, seed: int = 0) -> int:
    """Re-estimate every BatchNorm's running statistics on ``batches`` batches (no gradients).

    Pruning removes channels the next layers' statistics were measured with; a forward pass over
    some training images (cumulative average, momentum None) makes them right again. Returns the
    number of images used."""
    from .data import build_loader, iterate
    from .evaluate import to_input

    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if batches <= 0 or not bns:
        return 0
    saved = [(m.momentum, m.training) for m in bns]
    was = model.training
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    n = 0
    loader = build_loader(dataset, batch_size, 0, shuffle=True, seed=seed)
    for i, b in enumerate(iterate(loader)):
        if i >= batches:
            break
        model(to_input(b["img"], "cpu"))
        n += b["img"].shape[0]
    for m, (mom, _) in zip(bns, saved):
        m.momentum = mom
    model.train(was)
    return n


def _prune_config(
    stage: PruneStage,
    img_size: tuple[int, int],
    budget: str,
    target: float,
    criterion: str | None = None,
    macs_target: float | None = None,
    latency_target: float | None = None,
) -> Any:
    from .prune import PruneConfig

    criterion = criterion or stage.criterion
    args = dict(stage.criterion_args) if criterion == stage.criterion else {}  # knobs of the recipe's own criterion
    return PruneConfig(
        criterion=criterion,
        criterion_args=args,
        budget=budget,
        target=target,
        round_to=stage.round_to,
        global_pruning=stage.global_pruning,
        max_layer_ratio=stage.max_layer_ratio,
        batches=stage.batches,
        img_size=img_size,
        allocation=stage.allocation,
        allocation_depth=stage.allocation_depth,
        sensitivity_probe=stage.sensitivity_probe,
        sensitivity_power=stage.sensitivity_power,
        sensitivity_batches=stage.sensitivity_batches,
        layer_ratios=dict(stage.layer_ratios),
        macs_target=macs_target,
        latency_target=latency_target,
        latency_size=tuple(stage.latency_size) if stage.latency_size else None,
        latency_runs=stage.latency_runs,
        latency_threads=stage.latency_threads,
    )


def distill_config(
    recipe: CompressRecipe, teacher_ckpt: dict[str, Any], init: str, out: Path, epochs: int | None = None
) -> Any:
    """TrainConfig of a distillation run: the teacher's data options and input size, the
    recipe's distill fields, then the student/teacher/out of this stage."""
    from .train import TrainConfig

    known = {f.name for f in dataclasses.fields(TrainConfig)}
    tc = {k: v for k, v in teacher_ckpt.get("train_config", {}).items() if k in known}
    for k in (
        "out",
        "init",
        "teacher",
        "time_limit_min",
        "max_train_batches",
        "eval_max_batches",
        "extra_teachers",
        "output_weight",
        "trajectory_weight",
        "distill_taps",
        "distill_weight",
        "epochs",
        "eval_interval",
    ):
        tc.pop(k, None)
    base = {"epochs": 8, "eval_interval": 1, **tc}
    if recipe.data:
        base["data"] = recipe.data
    unknown = sorted(set(recipe.distill) - known)
    if unknown:
        raise ConfigFileError(f"recipe distill: unknown key(s) {unknown}; known: {sorted(known)}")
    d = {**base, **recipe.distill, "init": init, "teacher": recipe.teacher, "out": str(out)}
    if isinstance(base.get("loss"), dict) and isinstance(
        recipe.distill.get("loss"), dict
    ):  # the recipe's loss keys over the teacher's
        d["loss"] = {**base["loss"], **recipe.distill["loss"]}
    if epochs is not None:
        d["epochs"] = epochs
    return from_dict(TrainConfig, d, "recipe distill")


def evaluate_checkpoint(path: str | Path, val_ds: Any, recipe: CompressRecipe) -> dict[str, Any]:
    from .data import build_loader
    from .evaluate import evaluate, model_profile

    model, _ = load_model(path)
    loader = build_loader(val_ds, recipe.eval_batch_size, recipe.eval_workers, shuffle=False)
    res = evaluate(model, loader, "cpu", max_batches=recipe.eval_max_batches)
    return {**model_profile(model, val_ds.img_size), **res}


def cpu_latency_ms(
    model: nn.Module, img_size: tuple[int, int], iters: int = 30, threads: int | None = None
) -> dict[str, float]:
    """Batch-1 forward latency of ``model`` in torch on this CPU (median / p90 over ``iters``)."""
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        model = model.eval()
        x = torch.rand(1, 3, img_size[1], img_size[0])
        times = []
        with torch.inference_mode():
            for _ in range(3):
                model(x)
            for _ in range(max(iters, 1)):
                t = time.perf_counter()
                model(x)
                times.append((time.perf_counter() - t) * 1e3)
    finally:
        torch.set_num_threads(old)
    times.sort()
    return {
        "median_ms": times[len(times) // 2],
        "p90_ms": times[min(len(times) - 1, int(0.9 * len(times)))],
        "threads": threads or old,
        "iters": len(times),
    }


def _summary_metrics(res: dict[str, Any]) -> dict[str, float]:
    d, v, l_ = res["detection"], res["drivable"], res["lane"]
    return {
        "params": res["params"],
        "gmacs": res["gmacs"],
        "recall": d["recall"],
        "map50": d["map50"],
        "map50_95": d["map50_95"],
        "drivable_miou": v["miou"],
        "lane_acc": l_["acc"],
        "lane_iou": l_["iou"],
    }


def task_mean(m: dict[str, float]) -> float:
    """The mean of the task metrics the ablation orders criteria by."""
    return (m["map50"] + m["recall"] + m["drivable_miou"] + m["lane_iou"]) / 4


def _check_single_process() -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(
            "compress/ablate run their stages in one process; for multi-GPU, run `mtc-compress prune`, then "
            "`torchrun ... -m compress.cli distill` and `mtc-compress eval` separately"
        )


def _schedule(goal: float, steps: int) -> list[float]:
    """Cumulative fraction removed (of the teacher's params/MACs/latency) after each step: what is
    kept shrinks by the same factor at every step."""
    return [1 - (1 - goal) ** ((i + 1) / steps) for i in range(steps)]


def _step_targets(stage: PruneStage) -> list[float]:
    return _schedule(stage.target, stage.steps)


def compress(recipe: CompressRecipe, progress: bool = True) -> dict[str, Any]:
    """Run the recipe end to end; returns (and writes to ``<out>/metrics.json``) the summary."""
    from .models.profile import count_macs, count_params
    from .train import train

    _check_single_process()
    out = Path(recipe.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    teacher, tck = load_model(recipe.teacher)
    img_size = tuple(tck.get("train_config", {}).get("img_size", (320, 192)))
    train_ds = _split(tck, recipe.data, tck.get("train_config", {}).get("train_split", "train"), img_size)
    val_ds = _split(tck, recipe.data, tck.get("train_config", {}).get("val_split", "val"), img_size)
    stages: dict[str, float] = {}

    t = time.perf_counter()
    teacher_res = evaluate_checkpoint(recipe.teacher, val_ds, recipe)
    stages["eval_teacher"] = time.perf_counter() - t
    log.info("teacher %s: %s", recipe.teacher, _fmt(_summary_metrics(teacher_res)))

    st = recipe.prune
    w, h = img_size
    goals = {st.budget: st.target}  # every constrained quantity -> the fraction of the teacher's to remove
    if st.macs_target:
        goals["macs"] = st.macs_target
    if st.latency_target:
        goals["latency"] = st.latency_target
    meter = None
    if "latency" in goals:
        from .prune import latency_meter, relative_latency, spec_for

        meter = latency_meter(_prune_config(st, img_size, "params", 0.5), spec_for(teacher))
    teacher_ref = copy.deepcopy(teacher) if meter is not None else None  # `teacher` itself is pruned in place

    def quantity(m: nn.Module, q: str) -> float:
        if q == "latency":  # the teacher's time x the paired ratio (drift between timings cancels)
            return base["latency"] * relative_latency(meter, m, teacher_ref)
        return float(count_params(m) if q == "params" else count_macs(m, h, w))

    base = {"params": float(count_params(teacher)), "macs": float(count_macs(teacher, h, w))}
    if meter is not None:
        base["latency"] = meter(teacher)
        log.info(
            "teacher latency %.1f ms (ONNX Runtime, %s, min of %d runs)",
            base["latency"],
            "x".join(map(str, meter.size)),
            meter.runs,
        )
    current, reports = recipe.teacher, []
    model = teacher
    for i in range(st.steps):
        t = time.perf_counter()
        step: dict[str, float] = {}
        for q, goal in goals.items():  # each quantity on the same geometric schedule
            if q == "ratio":  # kept channels multiply
                step[q] = 1 - (1 - goal) ** (1 / st.steps)
            else:  # this step removes what is left to reach the cumulative target, of the current model
                cum = _schedule(goal, st.steps)[i]
                step[q] = max(1e-3, 1 - base[q] * (1 - cum) / quantity(model, q))
        cfg = _prune_config(
            st,
            img_size,
            st.budget,
            step[st.budget],
            macs_target=step.get("macs") if st.budget != "macs" else None,
            latency_target=step.get("latency") if st.budget != "latency" else None,
        )
        rep = prune_model(model, cfg, train_ds, st.batch_size, st.seed + i, meter=meter)
        recalibrate_bn(model, train_ds, st.recalibrate_batches, seed=st.seed + i)
        pruned = out / f"step{i + 1}" / "pruned.pt"
        save_checkpoint(
            pruned, model, prune_report=rep.to_dict(), parent=str(current), train_config=tck.get("train_config", {})
        )
        reports.append({**rep.to_dict(), "step": i + 1, "checkpoint": str(pruned)})
        stages[f"prune_step{i + 1}"] = time.perf_counter() - t
        log.info(
            "prune step %d/%d (%s): params %.2fM (-%.1f%% of the teacher), MACs %.3fG (-%.1f%%)%s",
            i + 1,
            st.steps,
            st.criterion,
            rep.params_after / 1e6,
            100 * (1 - rep.params_after / base["params"]),
            rep.macs_after / 1e9,
            100 * (1 - rep.macs_after / base["macs"]),
            f", latency -{100 * (1 - relative_latency(meter, model, teacher_ref)):.1f}% (paired with the teacher)"
            if meter is not None
            else "",
        )
        last = i + 1 == st.steps
        epochs = None if last else st.recovery_epochs
        run_dir = out / "distill" if last else out / f"step{i + 1}" / "recover"
        cfg_d = distill_config(recipe, tck, str(pruned), run_dir, epochs)
        if cfg_d.epochs > 0:
            t = time.perf_counter()
            summary = train(cfg_d, progress=progress)
            stages["distill" if last else f"recover_step{i + 1}"] = time.perf_counter() - t
            current = summary["best"]
        else:
            current = str(pruned)
        model, _ = load_model(current)

    student_path = out / "student.pt"
    shutil.copyfile(current, student_path)
    t = time.perf_counter()
    student_res = evaluate_checkpoint(student_path, val_ds, recipe)
    stages["eval_student"] = time.perf_counter() - t
    tm, sm = _summary_metrics(teacher_res), _summary_metrics(student_res)
    summary = {
        "recipe": to_dict(recipe),
        "teacher": {"checkpoint": recipe.teacher, **tm},
        "student": {"checkpoint": str(student_path), **sm},
        "delta": {k: sm[k] - tm[k] for k in tm},
        "reduction": {
            "params": 1 - sm["params"] / tm["params"],
            "macs": 1 - sm["gmacs"] / tm["gmacs"],
            **({"latency": 1 - relative_latency(meter, model, teacher_ref)} if meter is not None else {}),
        },
        "prune_steps": reports,
        "stage_seconds": {k: round(v, 1) for k, v in stages.items()},
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "img_size": list(img_size),
        "val_images": student_res["images"],
        "conventions": student_res["conventions"],
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("student %s: %s", student_path, _fmt(sm))
    return summary


def _fmt(m: dict[str, float]) -> str:
    return (
        f"{m['params'] / 1e6:.2f}M params, {m['gmacs']:.3f} GMACs, R {m['recall']:.3f}, mAP50 {m['map50']:.3f}, "
        f"drivable mIoU {m['drivable_miou']:.3f}, lane acc {m['lane_acc']:.3f}, lane IoU {m['lane_iou']:.3f}"
    )


# ----------------------------------------------------------------------------------------------
# ablation


def ablate(recipe: CompressRecipe, progress: bool = True) -> dict[str, Any]:
    """Every criterion at the same channel ratio (one-shot), without and with distillation."""
    from .prune import CRITERIA, ratio_for_budget, spec_for
    from .train import train

    _check_single_process()
    unknown = [c for c in recipe.ablation.criteria if c not in CRITERIA]
    if unknown:
        raise ConfigFileError(f"ablation.criteria: unknown {unknown}; known: {sorted(CRITERIA)}")
    out = Path(recipe.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    teacher, tck = load_model(recipe.teacher)
    tcfg = tck.get("train_config", {})
    img_size = tuple(tcfg.get("img_size", (320, 192)))
    train_ds = _split(tck, recipe.data, tcfg.get("train_split", "train"), img_size)
    val_ds = _split(tck, recipe.data, tcfg.get("val_split", "val"), img_size)
    st = recipe.prune
    # uniform per-layer pruning: one channel ratio gives every criterion the same widths; global
    # pruning or the sensitivity allocation: every criterion meets the same params/MACs budget
    # with its own layer allocation (its own ranking, or probes pruned by the criterion itself)
    own = st.global_pruning or st.allocation != "uniform"
    ratio = (
        None
        if own
        else ratio_for_budget(
            teacher,
            spec_for(teacher),
            _prune_config(
                st, img_size, st.budget, st.target, macs_target=st.macs_target, latency_target=st.latency_target
            ),
        )
    )
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
            **_summary_metrics(res),
            "latency_ms": cpu_latency_ms(m, img_size, lat.latency_iters, lat.latency_threads)["median_ms"],
            "seconds": round(seconds, 1),
        }
        r["task_mean"] = task_mean(r)
        log.info("%s%s: %s; mean %.4f", name, " + distill" if distilled else "", _fmt(r), r["task_mean"])
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
        pc = (
            _prune_config(
                st, img_size, st.budget, st.target, crit, macs_target=st.macs_target, latency_target=st.latency_target
            )
            if ratio is None
            else _prune_config(st, img_size, "ratio", ratio, crit)
        )
        rep = prune_model(model, pc, train_ds, st.batch_size, st.seed)
        recalibrate_bn(model, train_ds, st.recalibrate_batches, seed=st.seed)
        pruned = out / crit / "pruned.pt"
        save_checkpoint(pruned, model, prune_report=rep.to_dict(), parent=recipe.teacher, train_config=tcfg)
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
        "recipe": to_dict(recipe),
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


def ablation_markdown(result: dict[str, Any]) -> str:
    rows = result["rows"]
    head = (
        "| model | distill | params | GMACs | recall | mAP50 | drivable mIoU | lane acc | lane IoU | task mean | CPU latency (ms) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        lines.append(
            f"| {r['model']} | {'yes' if r['distilled'] else ('—' if r['model'] == 'teacher' else 'no')} | {r['params'] / 1e6:.2f}M | "
            f"{r['gmacs']:.3f} | {r['recall']:.3f} | {r['map50']:.3f} | {r['drivable_miou']:.3f} | {r['lane_acc']:.3f} | "
            f"{r['lane_iou']:.3f} | {r['task_mean']:.4f}{_spread(r)} | {r['latency_ms']:.1f} |"
        )
    order = result["order"]
    w, h = result["img_size"]
    how = (
        f"Channel ratio {result['channel_ratio']:.3f} for every criterion (one-shot, per-layer: same widths)"
        if result.get("channel_ratio") is not None
        else "Global pruning: every criterion meets the same budget with its own layer allocation (one-shot)"
        if result.get("global_pruning")
        else f"{str(result.get('allocation')).capitalize()} allocation: every criterion meets the same budget with its own per-layer ratios "
        "(probes pruned by the criterion itself; one-shot)"
    )
    return (
        f"# Ablation: pruning criteria at equal budget\n\n{how}, distillation {result['distill_epochs']} epoch(s)"
        f"{'' if len(result.get('seeds', [0])) == 1 else ' x ' + str(len(result['seeds'])) + ' seeds (distilled rows: their mean)'}; {result['val_images']} validation images at "
        f"{w}x{h}; task mean = mean(mAP50, recall, drivable mIoU, lane IoU); CPU latency: torch, batch 1, median; "
        f"{result['machine']}; {result['wall_seconds'] / 60:.1f} min in all.\n\n" + head + "\n".join(lines) + "\n\n"
        f"Order without distillation: {' > '.join(order['pruned'])}\n\n"
        + (f"Order with distillation: {' > '.join(order['distilled'])}\n" if order["distilled"] else "")
    )
