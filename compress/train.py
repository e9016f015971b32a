"""Teacher training: seeded, AMP on CUDA, DDP under ``torchrun``, resumable, best/last checkpoints.

Run on one process (``mtc-compress train ...``) or several (``torchrun --nproc_per_node N -m
compress.cli train ...``): the process group comes from torchrun's environment (gloo on CPU,
nccl on CUDA); each process reads its own shard of the data through a DistributedSampler and
``batch_size`` is per process.

:func:`train` runs its steps in turn: set up the process (:func:`_setup`), the data
(:func:`build_datasets`, :func:`_loaders`), the model (:func:`_model`: resumed, initialised from a
checkpoint or built fresh) and what trains it (:func:`_trainer`: distiller, EMA, loss, optimizer,
DDP), then per epoch :func:`_train_epoch` and :func:`_end_epoch` (validation, checkpoints, the
metrics log), and :func:`_summary`. The optimisation helpers are :mod:`compress.optim`, the
process group :mod:`compress.distributed`, the distillation terms :mod:`compress.distill.student`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from .checkpoint import CheckpointError, load_checkpoint, load_model, model_from_checkpoint, save_checkpoint
from .config_io import to_dict
from .data.run_data import build_datasets, data_config, fit_anchors
from .distributed import DistInfo, init_distributed
from .evaluate import evaluate, model_profile, to_input
from .losses import MultiTaskLoss
from .metrics import fitness
from .models import ModelConfig, build_model
from .optim import ModelEMA, lr_at, param_checksum, param_groups, seed_everything
from .train_config import ExtraTeacher, TrainConfig

log = logging.getLogger(__name__)

__all__ = [
    "DistInfo",
    "ExtraTeacher",
    "ModelEMA",
    "TrainConfig",
    "build_datasets",
    "data_config",
    "fit_anchors",
    "init_distributed",
    "lr_at",
    "param_checksum",
    "seed_everything",
    "train",
]


# ----------------------------------------------------------------------------------------------
# the run, step by step


@dataclass
class _Run:
    """What one training run holds between its steps."""

    cfg: TrainConfig
    dist: DistInfo
    device: torch.device
    out: Path
    model: nn.Module = None  # type: ignore[assignment]  # the network being trained
    net: nn.Module = None  # type: ignore[assignment]  # what the optimizer trains (the model or its distiller)
    ddp_model: nn.Module = None  # type: ignore[assignment]  # what the forward pass runs (net, DDP-wrapped)
    ema: ModelEMA | None = None
    criterion: MultiTaskLoss = None  # type: ignore[assignment]
    opt: torch.optim.Optimizer = None  # type: ignore[assignment]
    scaler: Any = None
    use_amp: bool = False
    sampler: Any = None
    train_loader: Any = None
    val_loader: Any = None
    steps_per_epoch: int = 0
    profile: dict[str, Any] = field(default_factory=dict)
    start_epoch: int = 0
    best_fit: float = -1.0
    step: int = 0
    images_seen: int = 0
    last_metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def log_path(self) -> Path:
        return self.out / "metrics.jsonl"


def _setup(cfg: TrainConfig) -> _Run:
    """This process (rank, device), the run directory and the seeds."""
    dist, device = init_distributed(cfg.device)
    out = Path(cfg.out)
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed + dist.rank)
    return _Run(cfg, dist, device, out)


def _model(run: _Run, train_ds: Any, resume: str | None) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The network: resumed from ``last.pt``, initialised from ``cfg.init``, or built fresh (with
    anchors fitted to the training boxes). Returns the resumed training state and checkpoint."""
    cfg = run.cfg
    state = ckpt = None
    if resume:
        ckpt = load_checkpoint(resume)
        if "train_state" not in ckpt:
            raise CheckpointError(
                f"{resume} has no training state (it is a best/export checkpoint); resume from last.pt"
            )
        model = model_from_checkpoint(ckpt, resume)
        state = ckpt["train_state"]
        run.start_epoch, run.best_fit, run.step = state["epoch"] + 1, state["best_fitness"], state["step"]
        log.info("resuming from %s at epoch %d", resume, run.start_epoch)
    elif cfg.init:
        model, _ = load_model(cfg.init)
        log.info("starting from %s", cfg.init)
    else:
        anchors = fit_anchors(cfg, train_ds)
        names = tuple(train_ds.class_names)
        mcfg = ModelConfig(size=cfg.model_size, act=cfg.act, num_classes=len(names), class_names=names, anchors=anchors)
        model = build_model(mcfg)
    model.to(run.device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    run.model = model
    return state, ckpt


def _trainer(run: _Run, state: dict[str, Any] | None, ckpt: dict[str, Any] | None) -> None:
    """What trains the model: the distiller (with a teacher), the EMA, the loss, AdamW, the AMP
    scaler and the DDP wrapper (restored from ``state`` when resuming)."""
    from .distill.student import build_distiller

    cfg, model, device = run.cfg, run.model, run.device
    net: nn.Module = model  # what the optimizer trains and DDP wraps
    if cfg.teacher:
        net = build_distiller(cfg, model, device, state)
    ema = ModelEMA(model, cfg.ema_decay) if cfg.ema else None
    if state is not None and ema is not None and "ema_state_dict" in ckpt:
        ema.ema.load_state_dict(ckpt["ema_state_dict"])
        ema.updates = state["ema_updates"]
    if cfg.trajectory_weight:
        net.set_trajectory(ema.ema)
    run.criterion = MultiTaskLoss.for_model(model, cfg.loss)
    opt = torch.optim.AdamW(param_groups(net, cfg.weight_decay), lr=cfg.lr, betas=(0.937, 0.999))
    if state is not None:
        opt.load_state_dict(state["optimizer"])
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    if state is not None and "scaler" in state and use_amp:
        scaler.load_state_dict(state["scaler"])
    ddp_model: nn.Module = net
    if run.dist.distributed:
        ddp_model = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )
    run.net, run.ddp_model, run.ema, run.opt, run.scaler, run.use_amp = net, ddp_model, ema, opt, scaler, use_amp


def _loaders(run: _Run, train_ds: Any, val_ds: Any) -> None:
    """The training loader (this process's shard under DDP) and, on the main process, the validation loader."""
    from .data import build_loader

    cfg, dist = run.cfg, run.dist
    sampler = None
    if dist.distributed:
        sampler = torch.utils.data.distributed.DistributedSampler(
            train_ds, dist.world_size, dist.rank, shuffle=True, seed=cfg.seed
        )
    train_loader = build_loader(
        train_ds,
        cfg.batch_size,
        cfg.workers,
        shuffle=sampler is None,
        sampler=sampler,
        seed=cfg.seed + dist.rank,
        drop_last=True,
    )
    val_loader = (
        build_loader(val_ds, cfg.batch_size, min(cfg.workers, 2), shuffle=False, seed=cfg.seed)
        if dist.is_main
        else None
    )
    steps_per_epoch = (
        len(train_loader) if cfg.max_train_batches is None else min(len(train_loader), cfg.max_train_batches)
    )
    if steps_per_epoch == 0:
        raise ValueError(
            f"training split of {cfg.data} has {len(train_ds)} usable images, fewer than one batch of {cfg.batch_size} "
            f"per process x {dist.world_size}; lower --batch-size or add data"
        )
    run.sampler, run.train_loader, run.val_loader, run.steps_per_epoch = (
        sampler,
        train_loader,
        val_loader,
        steps_per_epoch,
    )


def _log_start(run: _Run, train_ds: Any, val_ds: Any) -> None:
    cfg, dist = run.cfg, run.dist
    run.profile = model_profile(run.model, cfg.img_size) if dist.is_main else {}
    if dist.is_main:
        log.info(
            "network (%s): %.2fM params, %.3f GMACs at %s; %d train / %d val images; %d steps/epoch x %d process(es)",
            cfg.init or cfg.model_size,
            run.profile["params"] / 1e6,
            run.profile["gmacs"],
            run.profile["macs_at"],
            len(train_ds),
            len(val_ds),
            run.steps_per_epoch,
            dist.world_size,
        )


def _train_epoch(run: _Run, epoch: int, stats: Any, progress: bool) -> dict[str, Any]:
    """One pass over (at most ``steps_per_epoch`` batches of) the training data; returns the
    epoch's record for the metrics log (mean losses, lr, throughput)."""
    from .data import iterate
    from .distill.student import distill_terms

    cfg, dist, device, net, opt, scaler, ema = run.cfg, run.dist, run.device, run.net, run.opt, run.scaler, run.ema
    steps_per_epoch = run.steps_per_epoch
    if run.sampler is not None:
        run.sampler.set_epoch(epoch)
    run.ddp_model.train()
    sums: dict[str, float] = {}
    t_ep = time.perf_counter()
    n_ep = 0
    bar = tqdm(
        total=steps_per_epoch,
        desc=f"epoch {epoch + 1}/{cfg.epochs}",
        disable=not (progress and dist.is_main),
        leave=False,
    )
    for bi, batch in enumerate(iterate(run.train_loader, stats)):
        if bi >= steps_per_epoch:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(run.step, steps_per_epoch, cfg)
        x = to_input(batch["img"], device, cfg.channels_last)
        with torch.autocast(device_type=device.type, enabled=run.use_amp):
            outputs = run.ddp_model(x)
        feat: dict[str, torch.Tensor] = {}
        if cfg.teacher:
            outputs, feat = outputs
        losses = run.criterion(outputs, batch)
        if feat:
            losses.update(distill_terms(cfg, net, run.criterion, batch, outputs, losses, feat))
        opt.zero_grad(set_to_none=True)
        scaler.scale(losses["total"]).backward()
        scaler.unscale_(opt)
        nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        scaler.step(opt)
        scaler.update()
        if ema is not None:
            ema.update(run.model)
        run.step += 1
        n_ep += x.shape[0]
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        bar.update(1)
        bar.set_postfix(
            {
                k: f"{sums[k] / (bi + 1):.3f}"
                for k in ("total", "det", "drivable", "lane", "feat", "out", "trajectory")
                if k in sums
            }
        )
    bar.close()
    run.images_seen += n_ep
    ep_time = time.perf_counter() - t_ep
    return {
        "epoch": epoch + 1,
        "lr": opt.param_groups[0]["lr"],
        "loss": {k: round(v / max(steps_per_epoch, 1), 5) for k, v in sums.items()},
        "epoch_seconds": round(ep_time, 2),
        "train_images_per_s": round(n_ep * dist.world_size / max(ep_time, 1e-9), 2),
        "skipped": stats.skipped,
        "skipped_at_indexing": _index_skips(run),
    }


def _index_skips(run: _Run) -> dict[str, int]:
    """Samples of each split dropped while indexing (skip mode); the loaders' LoadStats never see them."""
    from .data.dataset import index_skipped

    return {"train": index_skipped(run.train_loader), "val": index_skipped(run.val_loader)}


def _end_epoch(run: _Run, epoch: int, record: dict[str, Any], evaluate_now: bool) -> None:
    """Main process: validation (every ``eval_interval`` epochs, the last and a stop), best.pt when
    the fitness improved, last.pt with the training state, and the epoch's line in metrics.jsonl."""
    cfg, ema, model = run.cfg, run.ema, run.model
    eval_model = ema.ema if ema is not None else model
    if evaluate_now:
        # every selection eval uses the same images, so fitness values are comparable
        run.last_metrics = evaluate(eval_model, run.val_loader, run.device, max_batches=cfg.eval_max_batches)
        record["val"] = {k: run.last_metrics[k] for k in ("detection", "drivable", "lane")}
        record["val"]["images"] = run.last_metrics["images"]
        record["val"]["skipped"] = run.last_metrics["skipped"]
        record["fitness"] = fitness(run.last_metrics)
    train_state = {
        "epoch": epoch,
        "step": run.step,
        "best_fitness": run.best_fit,
        "optimizer": run.opt.state_dict(),
        "ema_updates": ema.updates if ema else 0,
        "scaler": run.scaler.state_dict(),
    }
    if cfg.teacher:
        train_state["adapters"] = {k: v.detach().cpu() for k, v in run.net.adapters.state_dict().items()}
    extra: dict[str, Any] = {
        "train_config": to_dict(cfg),
        "epoch": epoch + 1,
        "metrics": record.get("val", {}),
        "profile": run.profile,
    }
    if ema is not None:
        extra["ema_state_dict"] = {k: v.detach().cpu() for k, v in ema.ema.state_dict().items()}
    if "fitness" in record and record["fitness"] > run.best_fit:
        run.best_fit = record["fitness"]
        train_state["best_fitness"] = run.best_fit
        save_checkpoint(run.out / "best.pt", eval_model, **extra)
        record["best"] = True
    save_checkpoint(run.out / "last.pt", model, train_state=train_state, **extra)
    with run.log_path.open("a") as f:
        f.write(json.dumps(record) + "\n")
    v = record.get("val")
    if v:
        na = lambda t, k: f"{v[t][k]:.3f}" if v[t].get("available", True) else "n/a"  # noqa: E731
        log.info(
            "epoch %d/%d: loss %.4f  mAP50 %.3f  recall %.3f  drivable mIoU %s  lane IoU %s  (%.0fs, %.1f img/s)",
            epoch + 1,
            cfg.epochs,
            record["loss"].get("total", float("nan")),
            v["detection"]["map50"],
            v["detection"]["recall"],
            na("drivable", "miou"),
            na("lane", "iou"),
            record["epoch_seconds"],
            record["train_images_per_s"],
        )


def _stop_everywhere(run: _Run, over_time: bool) -> bool:
    """The main process's time-limit decision, shared with every process."""
    stop = torch.tensor([1.0 if over_time else 0.0])
    if run.dist.distributed:
        torch.distributed.broadcast(stop, 0)
        torch.distributed.barrier()
    return stop.item() > 0


def _summary(run: _Run, epoch: int, wall: float, stats: Any) -> dict[str, Any]:
    """The run's summary; on the main process the best checkpoint re-evaluated on the whole
    validation split and the summary line of metrics.jsonl. Ends the process group."""
    dist, out = run.dist, run.out
    summary: dict[str, Any] = {
        "out": str(out),
        "epochs_run": epoch + 1 - run.start_epoch,
        "wall_seconds": round(wall, 1),
        "train_images_per_s": round(run.images_seen * dist.world_size / max(wall, 1e-9), 2),
        "world_size": dist.world_size,
        "device": str(run.device),
        "skipped": stats.skipped,
        "skipped_at_indexing": _index_skips(run),
    }
    if dist.distributed:
        # evidence that the processes trained one model on disjoint shards
        local = {"rank": dist.rank, "checksum": param_checksum(run.model), "images_seen": run.images_seen}
        gathered: list[Any] = [None] * dist.world_size
        torch.distributed.all_gather_object(gathered, local)
        summary["ranks"] = gathered
    if dist.is_main:
        last_metrics = run.last_metrics
        if (out / "best.pt").is_file():
            # the summary reports the chosen checkpoint on the whole validation split
            best_model, _ = load_model(out / "best.pt")
            last_metrics = evaluate(best_model.to(run.device), run.val_loader, run.device)
        summary.update(
            {
                "best": str(out / "best.pt"),
                "last": str(out / "last.pt"),
                "metrics": last_metrics,
                "profile": run.profile,
            }
        )
        with run.log_path.open("a") as f:
            f.write(json.dumps({"summary": {k: v for k, v in summary.items() if k != "metrics"}}) + "\n")
    if dist.distributed:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return summary


def train(cfg: TrainConfig, resume: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Train a multi-task model; returns a summary (paths, final metrics, throughput)."""
    from .data import LoadStats

    run = _setup(cfg)
    train_ds, val_ds = build_datasets(cfg)
    state, ckpt = _model(run, train_ds, resume)
    _trainer(run, state, ckpt)
    _loaders(run, train_ds, val_ds)
    _log_start(run, train_ds, val_ds)
    t_start = time.perf_counter()
    stats = LoadStats()
    epoch = run.start_epoch - 1
    for epoch in range(run.start_epoch, cfg.epochs):
        record = _train_epoch(run, epoch, stats, progress)
        final_epoch = epoch + 1 == cfg.epochs
        over_time = cfg.time_limit_min is not None and (time.perf_counter() - t_start) / 60 >= cfg.time_limit_min
        if run.dist.is_main:
            _end_epoch(run, epoch, record, (epoch + 1) % cfg.eval_interval == 0 or final_epoch or over_time)
        if _stop_everywhere(run, over_time):
            log.info("time limit of %.1f min reached after epoch %d; stopping", cfg.time_limit_min, epoch + 1)
            break
    return _summary(run, epoch, time.perf_counter() - t_start, stats)
