"""Recipe stages: teacher -> prune (one-shot or iterative with recovery) -> distill -> eval [-> quantize].

``mtc-compress compress --recipe R`` (:func:`compress`) writes ``<out>/student.pt`` and
``<out>/metrics.json`` (teacher, student, deltas, the prune reports and stage wall times); with a
``quantize:`` section also the FP32 and INT8 bundles of the student (:mod:`compress.quantize.stage`). The
recipe is :class:`compress.recipe.CompressRecipe` (loaded and validated by
:func:`compress.recipe.load_recipe`); its prune section is a PruneConfig, and each step of the
iterative schedule is derived from it (:func:`compress.prune.budget.step_targets`,
``dataclasses.replace``). The ablation (every criterion at one budget) is :mod:`compress.ablation`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from .checkpoint import add_to_checkpoint, load_model, save_checkpoint
from .config_io import from_dict, to_dict
from .data.run_data import split_of_run
from .prune import budget
from .recipe import CompressRecipe, PruneStage, check_distill, load_recipe

log = logging.getLogger(__name__)

__all__ = [
    "CompressRecipe",
    "PruneStage",
    "load_recipe",
    "compress",
    "distill_config",
    "evaluate_checkpoint",
    "prune_model",
    "recalibrate_bn",
    "split_of_run",
]


def split_dataset(
    ckpt: dict[str, Any],
    data: str | None,
    split: str,
    img_size: tuple[int, int],
    overrides: dict[str, Any] | None = None,
):
    return split_of_run(
        ckpt.get("train_config", {}),
        data,
        split,
        img_size,
        missing_data_hint="the teacher checkpoint does not record its dataset; set data: in the recipe",
        overrides=overrides,
    )


def prune_model(
    model: nn.Module, cfg: Any, train_ds: Any = None, batch_size: int = 8, seed: int = 0, meter: Any = None
) -> Any:
    """Prune ``model`` in place with ``cfg`` (a PruneConfig); data from ``train_ds`` when the
    criterion needs gradients; ``meter`` times candidates for a latency budget. Returns the PruneReport."""
    from .data import build_loader, iterate
    from .evaluate import to_input
    from .losses import MultiTaskLoss
    from .prune import prune, spec_for

    torch.manual_seed(seed)
    batches = loss_fn = None
    if cfg.needs_data:
        if train_ds is None:
            raise ValueError(f"criterion {cfg.criterion!r} / allocation {cfg.allocation!r} needs training data")
        crit = MultiTaskLoss.for_model(model)
        loader = build_loader(train_ds, batch_size, 0, shuffle=True, seed=seed)
        batches = lambda: iterate(loader)  # noqa: E731 - a fresh iterator per call

        def loss_fn(m, b):
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


def distill_config(
    recipe: CompressRecipe, teacher_ckpt: dict[str, Any], init: str, out: Path, epochs: int | None = None
) -> Any:
    """TrainConfig of a distillation run: the teacher's data options and input size, the
    recipe's distill fields, then the student/teacher/out of this stage."""
    from .train import TrainConfig

    check_distill(recipe.distill)
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
    d = {**base, **recipe.distill, "init": init, "teacher": recipe.teacher, "out": str(out)}
    if isinstance(base.get("loss"), dict) and isinstance(
        recipe.distill.get("loss"), dict
    ):  # the recipe's loss keys over the teacher's
        d["loss"] = {**base["loss"], **recipe.distill["loss"]}
    if epochs is not None:
        d["epochs"] = epochs
    return from_dict(TrainConfig, d, "recipe distill").with_data_options(recipe.data_options)


def evaluate_checkpoint(path: str | Path, val_ds: Any, recipe: CompressRecipe) -> dict[str, Any]:
    from .data import build_loader
    from .evaluate import evaluate, model_profile

    model, _ = load_model(path)
    loader = build_loader(val_ds, recipe.eval_batch_size, recipe.eval_workers, shuffle=False)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    res = evaluate(model, loader, device, max_batches=recipe.eval_max_batches, protocol=recipe.eval_protocol)
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


def summary_metrics(res: dict[str, Any]) -> dict[str, float]:
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
        "drivable_available": v.get("available", True),
        "lane_available": l_.get("available", True),
    }


def task_mean(m: dict[str, float]) -> float:
    """The mean of the task metrics the ablation orders criteria by (a segmentation task the split
    has no labels for is left out, as in :func:`compress.metrics.fitness`)."""
    vals = [m["map50"], m["recall"]]
    if m.get("drivable_available", True):
        vals.append(m["drivable_miou"])
    if m.get("lane_available", True):
        vals.append(m["lane_iou"])
    return sum(vals) / len(vals)


def check_single_process() -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(
            "compress/ablate run their stages in one process; for multi-GPU, run `mtc-compress prune`, then "
            "`torchrun ... -m compress.cli distill` and `mtc-compress eval` separately"
        )


class RecipeRun(NamedTuple):
    """What every recipe command starts from: the output folder, the start time, the teacher (model
    and checkpoint), its input size and the two splits of its dataset."""

    out: Path
    t0: float
    teacher: nn.Module
    tck: dict[str, Any]
    img_size: tuple[int, int]
    train_ds: Any
    val_ds: Any


def start_run(recipe: CompressRecipe) -> RecipeRun:
    """One process, the output folder made, the teacher loaded and its dataset's splits indexed."""
    check_single_process()
    out = Path(recipe.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    teacher, tck = load_model(recipe.teacher)
    tcfg = tck.get("train_config", {})
    w, h = tcfg.get("img_size", (320, 192))
    img_size = (int(w), int(h))
    train_ds = split_dataset(tck, recipe.data, tcfg.get("train_split", "train"), img_size, recipe.data_options)
    val_ds = split_dataset(tck, recipe.data, tcfg.get("val_split", "val"), img_size, recipe.data_options)
    return RecipeRun(out, t0, teacher, tck, img_size, train_ds, val_ds)


def compress(recipe: CompressRecipe, progress: bool = True) -> dict[str, Any]:
    """Run the recipe end to end; returns (and writes to ``<out>/metrics.json``) the summary."""
    run = start_run(recipe)
    out, t0, teacher, tck, img_size, train_ds, val_ds = run
    stages: dict[str, float] = {}

    t = time.perf_counter()
    teacher_res = evaluate_checkpoint(recipe.teacher, val_ds, recipe)
    stages["eval_teacher"] = time.perf_counter() - t
    log.info("teacher %s: %s", recipe.teacher, format_metrics(summary_metrics(teacher_res)))

    st = recipe.prune.for_model(img_size)  # the recipe's PruneConfig at the teacher's input size
    sched = _Schedule(st, teacher)
    current, model, reports = _prune_and_recover(recipe, sched, teacher, tck, train_ds, out, stages, progress)

    student_path = out / "student.pt"
    shutil.copyfile(current, student_path)
    if recipe.deploy is not None:  # the export reads the graph choices from the checkpoint
        add_to_checkpoint(student_path, deploy=recipe.deploy.to_dict())
    t = time.perf_counter()
    student_res = evaluate_checkpoint(student_path, val_ds, recipe)
    stages["eval_student"] = time.perf_counter() - t
    quantized = None
    if recipe.quantize.mode is not None:
        from .quantize.stage import quantize_stage

        quantized = quantize_stage(recipe, run, student_path, stages, progress)
    tm, sm = summary_metrics(teacher_res), summary_metrics(student_res)
    summary = {
        "recipe": to_dict(dataclasses.replace(recipe, prune=st)),
        "teacher": {"checkpoint": recipe.teacher, **tm},
        "student": {"checkpoint": str(student_path), **sm},
        "delta": {k: sm[k] - tm[k] for k in tm},
        "reduction": {
            "params": 1 - sm["params"] / tm["params"],
            "macs": 1 - sm["gmacs"] / tm["gmacs"],
            **({"latency": 1 - sched.relative_latency(model)} if sched.meter is not None else {}),
        },
        "prune_steps": reports,
        **({"quantize": quantized} if quantized is not None else {}),
        "stage_seconds": {k: round(v, 1) for k, v in stages.items()},
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "img_size": list(img_size),
        "val_images": student_res["images"],
        "conventions": student_res["conventions"],
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("student %s: %s", student_path, format_metrics(sm))
    return summary


def quantize_only(recipe: CompressRecipe, ckpt: str | Path, progress: bool = True) -> dict[str, Any]:
    """The recipe's ``quantize:`` section on ``ckpt`` without pruning or distilling it (``mtc-compress
    compress --quantize-only CKPT``): the FP32 bundle ``<out>/student_fp32``, the INT8 bundle and, for QAT,
    ``<out>/student_qat.pt`` fine-tuned with the recipe's distillation losses against the recipe's teacher
    (the teacher's own INT8 bundle: ``CKPT`` = the teacher). Writes ``<out>/metrics.json``: the FP32
    checkpoint's and the quantized network's metrics on the validation split and the stage record."""
    from .checkpoint import load_checkpoint

    if recipe.quantize.mode is None:
        raise ValueError(f"--quantize-only {ckpt}: the recipe has no quantize: section (mode: qat or ptq)")
    load_checkpoint(ckpt)  # a clear error before any work
    run = start_run(recipe)
    stages: dict[str, float] = {}
    t = time.perf_counter()
    base = summary_metrics(evaluate_checkpoint(ckpt, run.val_ds, recipe))
    stages["eval_fp32"] = time.perf_counter() - t
    from .quantize.stage import quantize_stage

    q = quantize_stage(recipe, run, Path(ckpt), stages, progress)
    summary = {
        "recipe": to_dict(recipe),
        "quantize_only": str(ckpt),
        "fp32": {"checkpoint": str(ckpt), **base},
        "quantize": q,
        "stage_seconds": {k: round(v, 1) for k, v in stages.items()},
        "wall_seconds": round(time.perf_counter() - run.t0, 1),
    }
    (run.out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    return q


class _Schedule:
    """The iterative schedule of a recipe: the teacher's quantities and, for a timed budget, the
    meter and an unpruned copy of the teacher that every later timing is paired with."""

    def __init__(self, st: PruneStage, teacher: nn.Module) -> None:
        from .prune import latency_meter, spec_for

        self.st = st
        self.goals = budget.targets(st)  # every constrained quantity -> the fraction of the teacher's to remove
        self.meter = latency_meter(st, spec_for(teacher)) if st.needs_meter else None
        self.teacher_ref = copy.deepcopy(teacher) if self.meter is not None else None  # `teacher` is pruned in place
        counted = ["params", "macs"] + [q for q in self.goals if q not in (budget.RATIO, "params", "macs")]
        self.base = budget.quantities(teacher, st, self.meter, counted)  # the teacher's
        if self.meter is not None:
            log.info(
                "teacher latency %.1f ms (ONNX Runtime, %s, min of %d runs)",
                self.base["latency"],
                "x".join(map(str, self.meter.size)),
                self.meter.runs,
            )

    def step_config(self, model: nn.Module, i: int) -> PruneStage:
        """The config of prune step ``i``: every target on the geometric schedule, of ``model`` as it is now."""
        now = budget.quantities(
            model, self.st, self.meter, [q for q in self.goals if q != budget.RATIO], reference=self.teacher_ref
        )  # latency: the teacher's time x the paired ratio, so drift between timings cancels
        return budget.with_targets(self.st, budget.step_targets(self.st, i, self.st.steps, self.base, now))

    def relative_latency(self, model: nn.Module) -> float:
        from .prune import relative_latency

        return relative_latency(self.meter, model, self.teacher_ref)


def _prune_and_recover(
    recipe: CompressRecipe,
    sched: _Schedule,
    teacher: nn.Module,
    tck: dict[str, Any],
    train_ds: Any,
    out: Path,
    stages: dict[str, float],
    progress: bool,
) -> tuple[str, nn.Module, list[dict[str, Any]]]:
    """Every prune step, each followed by BatchNorm recalibration and distillation (recovery
    epochs, the recipe's distillation after the last); returns the student's checkpoint, the
    student and the prune reports."""
    from .train import train

    st, base = sched.st, sched.base
    current, reports = recipe.teacher, []
    model = teacher
    if recipe.deploy is not None and recipe.deploy.act and recipe.deploy.act != teacher.cfg.act:
        current, model = _swap_activation(recipe, teacher, tck, train_ds, out, stages, progress)
    for i in range(st.steps):
        t = time.perf_counter()
        cfg = sched.step_config(model, i)
        rep = prune_model(model, cfg, train_ds, st.batch_size, st.seed + i, meter=sched.meter)
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
            f", latency -{100 * (1 - sched.relative_latency(model)):.1f}% (paired with the teacher)"
            if sched.meter is not None
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
    return current, model, reports


def _swap_activation(
    recipe: CompressRecipe,
    teacher: nn.Module,
    tck: dict[str, Any],
    train_ds: Any,
    out: Path,
    stages: dict[str, float],
    progress: bool,
) -> tuple[str, nn.Module]:
    """The deploy target's activation in place of the teacher's, before any pruning: the same widths
    and weights with the new activation, BatchNorm re-estimated, then ``act_recovery_epochs`` of
    distillation from the unchanged teacher (feature and output distillation carry it across).
    Pruning then scores channels of a network that already computes with the deployed activation,
    and every latency the budget pairs with the teacher is the deployed student's."""
    from .models.deploy import with_activation
    from .train import train

    assert recipe.deploy is not None and recipe.deploy.act
    t = time.perf_counter()
    done = out / "act" / "done.json"  # a finished swap of the same teacher and target is reused (re-runs)
    key = {"teacher": str(recipe.teacher), "act": recipe.deploy.act, "epochs": recipe.deploy.act_recovery_epochs}
    if done.is_file() and json.loads(done.read_text()).get("key") == key:
        current = json.loads(done.read_text())["checkpoint"]
        if Path(current).is_file():
            log.info("activation swap reused from %s (%s; delete %s to redo it)", current, key, done)
            stages["activation_swap"] = 0.0
            return current, load_model(current)[0]
    model = with_activation(teacher, recipe.deploy.act)
    recalibrate_bn(model, train_ds, recipe.prune.recalibrate_batches, seed=recipe.prune.seed)
    swapped = out / "act" / "swapped.pt"
    save_checkpoint(swapped, model, parent=recipe.teacher, train_config=tck.get("train_config", {}))
    current = str(swapped)
    log.info(
        "activation %s -> %s (deploy target %s); %d distillation epoch(s) before pruning",
        teacher.cfg.act,
        recipe.deploy.act,
        recipe.deploy.backend,
        recipe.deploy.act_recovery_epochs,
    )
    if recipe.deploy.act_recovery_epochs > 0:
        cfg_d = distill_config(recipe, tck, current, out / "act" / "recover", recipe.deploy.act_recovery_epochs)
        current = train(cfg_d, progress=progress)["best"]
    stages["activation_swap"] = time.perf_counter() - t
    done.write_text(json.dumps({"key": key, "checkpoint": str(current)}) + "\n")
    return current, load_model(current)[0]


def format_metrics(m: dict[str, float]) -> str:
    return (
        f"{m['params'] / 1e6:.2f}M params, {m['gmacs']:.3f} GMACs, R {m['recall']:.3f}, mAP50 {m['map50']:.3f}, "
        f"drivable mIoU {m['drivable_miou']:.3f}, lane acc {m['lane_acc']:.3f}, lane IoU {m['lane_iou']:.3f}"
    )
