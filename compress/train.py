"""Teacher training: seeded, AMP on CUDA, DDP under ``torchrun``, resumable, best/last checkpoints.

Run on one process (``mtc-compress train ...``) or several (``torchrun --nproc_per_node N -m
compress.cli train ...``): the process group comes from torchrun's environment (gloo on CPU,
nccl on CUDA); each process reads its own shard of the data through a DistributedSampler and
``batch_size`` is per process.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .checkpoint import CheckpointError, load_checkpoint, load_model, model_from_checkpoint, save_checkpoint
from .config_io import to_dict
from .evaluate import evaluate, model_profile, to_input
from .losses import LossConfig, MultiTaskLoss
from .metrics import fitness
from .models import ModelConfig, build_model
from .models.anchors import kmeans_anchors
from .models.config import YOLOP_ANCHORS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtraTeacher:
    """A further teacher for adaptive multi-teacher distillation (e.g. a single-task specialist)."""

    ckpt: str
    tasks: tuple[str, ...]  # the tasks it teaches: det, drivable, lane
    name: str | None = None  # default: the checkpoint's parent directory name


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (saved into every checkpoint it writes)."""

    data: str = "data/synthroad"
    # compress.data.DataConfig fields for both splits (label_format, drivable_mapping, class_names,
    # class_map, ...) and per-split ones (e.g. label_json / image_dir of the official BDD100K files)
    data_options: dict[str, Any] = field(default_factory=dict)
    train_data_options: dict[str, Any] = field(default_factory=dict)
    val_data_options: dict[str, Any] = field(default_factory=dict)
    out: str = "runs/teacher"
    model_size: str = "teacher"
    act: str = "silu"
    img_size: tuple[int, int] = (320, 192)  # network input (width, height)
    epochs: int = 30
    batch_size: int = 16  # per process
    workers: int = 2
    lr: float = 2e-3  # AdamW
    lr_final: float = 0.05  # final lr as a fraction of lr (cosine)
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    grad_clip: float = 10.0
    ema: bool = True
    ema_decay: float = 0.999
    anchors: str = "auto"  # auto (k-means on the training boxes) | yolop
    augment: bool = True
    eval_interval: int = 1
    eval_max_batches: int | None = None  # select best.pt on a prefix of val (whole val reported at the end)
    seed: int = 0
    amp: bool = True  # used on CUDA only
    channels_last: bool = True  # NHWC activations: ~1.6x faster training on CPU (oneDNN)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    train_split: str = "train"
    val_split: str = "val"
    max_train_batches: int | None = None  # cap per epoch (tests, smoke runs)
    time_limit_min: float | None = None  # stop after the epoch that crosses it
    on_error: str = "raise"  # raise | skip (bad samples)
    # start from a checkpoint (e.g. a pruned student) instead of a fresh model_size network
    init: str | None = None
    # feature distillation from this teacher checkpoint's taps (issue 3); None = plain training
    teacher: str | None = None
    distill_weight: float = 1.0
    distill_taps: tuple[str, ...] | None = None  # default: every tap both models share
    # adaptive multi-teacher mode: specialists beside ``teacher``, weighted by the student's gap
    extra_teachers: tuple[ExtraTeacher, ...] = ()
    adaptive_temperature: float = 1.0
    output_weight: float = 0.0  # output-level distillation from the main teacher (0 = off)
    trajectory_weight: float = 0.0  # drift penalty towards the student's own EMA features (0 = off)
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        if (self.extra_teachers or self.output_weight or self.trajectory_weight) and not self.teacher:
            raise ValueError(
                "extra_teachers / output_weight / trajectory_weight need a teacher; set teacher (--teacher CKPT)"
            )
        if self.trajectory_weight and not self.ema:
            raise ValueError("trajectory_weight uses the student's EMA as its memory; set ema: true")
        for w in ("distill_weight", "output_weight", "trajectory_weight"):
            if getattr(self, w) < 0:
                raise ValueError(f"{w} must be >= 0, got {getattr(self, w)}")


# ----------------------------------------------------------------------------------------------
# distributed helpers


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str) -> tuple[DistInfo, torch.device]:
    """Join torchrun's process group if its environment is set; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} asked for but CUDA is not available here; use --device cpu")
    if use_cuda:
        dev = torch.device(device if ":" in device else f"cuda:{local}")
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, local, world), dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class ModelEMA:
    """Exponential moving average of weights with YOLOv5's warm-up ramp of the decay."""

    def __init__(self, model: nn.Module, decay: float, tau: float = 500.0, updates: int = 0) -> None:
        self.ema = copy.deepcopy(model).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.decay_max, self.tau, self.updates = decay, tau, updates

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay_max * (1 - math.exp(-self.updates / self.tau))
        msd = model.state_dict()
        for k, v in self.ema.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(msd[k].detach(), alpha=1 - d)
            else:
                v.copy_(msd[k])


def param_checksum(model: nn.Module) -> str:
    """Hash of the trainable parameters (BatchNorm running stats are per-process under DDP)."""
    h = hashlib.sha1()
    for v in model.parameters():
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def lr_at(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Linear warm-up then cosine decay from ``lr`` to ``lr * lr_final``."""
    total = max(cfg.epochs * steps_per_epoch, 1)
    warm = int(cfg.warmup_epochs * steps_per_epoch)
    if step < warm:
        return cfg.lr * (0.1 + 0.9 * step / max(warm, 1))
    t = (step - warm) / max(total - warm, 1)
    return cfg.lr * (cfg.lr_final + (1 - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# ----------------------------------------------------------------------------------------------


def data_config(cfg: TrainConfig, which: str):  # noqa: ANN201
    """The DataConfig of the ``train`` or ``val`` split of a run."""
    from .data import DataConfig

    split = cfg.train_split if which == "train" else cfg.val_split
    per_split = cfg.train_data_options if which == "train" else cfg.val_data_options
    return DataConfig.from_dict(
        {"root": cfg.data, "split": split, "on_error": cfg.on_error, **cfg.data_options, **per_split}
    )


def build_datasets(cfg: TrainConfig):  # noqa: ANN201
    from .data import AugmentConfig, MultiTaskDataset

    train_dc, val_dc = data_config(cfg, "train"), data_config(cfg, "val")
    aug = AugmentConfig() if cfg.augment else None
    train = MultiTaskDataset(train_dc, img_size=cfg.img_size, augment=aug)
    val = MultiTaskDataset(val_dc, img_size=cfg.img_size, augment=None)
    return train, val


def fit_anchors(cfg: TrainConfig, dataset: Any, max_images: int = 1000) -> tuple[tuple[float, ...], ...]:
    """Anchors for the run: k-means on the training boxes at the network input size, or YOLOP's."""
    if cfg.anchors == "yolop":
        scale = cfg.img_size[0] / 640
        return tuple(tuple(v * scale for v in a) for a in YOLOP_ANCHORS)
    if cfg.anchors != "auto":
        raise ValueError(f"anchors {cfg.anchors!r} unknown; use auto or yolop")
    from .data import MultiTaskDataset

    plain = MultiTaskDataset(dataset.cfg, img_size=cfg.img_size, augment=None)  # no augmentation
    rng = np.random.default_rng(cfg.seed)
    idx = rng.permutation(len(plain))[:max_images]
    wh = []
    for i in idx:
        item = plain[int(i)]
        if "error" in item:
            continue
        b = item["boxes"].numpy()
        wh.append(b[:, 3:5] - b[:, 1:3])
    return kmeans_anchors(np.concatenate(wh) if wh else np.zeros((0, 2)), seed=cfg.seed)


def _build_distiller(
    cfg: TrainConfig, model: nn.Module, device: torch.device, state: dict[str, Any] | None
) -> nn.Module:
    from .distill import FeatureDistiller, Teacher
    from .prune import spec_for

    def _load(path: str) -> nn.Module:
        t, _ = load_model(path)
        t.to(device)
        if cfg.channels_last:
            t.to(memory_format=torch.channels_last)
        return t

    teacher = _load(cfg.teacher)
    extras = []
    for i, et in enumerate(cfg.extra_teachers):
        tm = _load(et.ckpt)
        name = et.name or Path(et.ckpt).parent.name or f"teacher{i + 1}"
        extras.append(Teacher(name if name != "main" else f"teacher{i + 1}", tm, spec_for(tm), tuple(et.tasks)))
    example = torch.zeros(1, 3, cfg.img_size[1], cfg.img_size[0], device=device)
    net = FeatureDistiller(
        teacher, model, spec_for(teacher), spec_for(model), example, cfg.distill_taps, extra_teachers=extras
    ).to(device)
    if state is not None and "adapters" in state:
        net.adapters.load_state_dict(state["adapters"])
    log.info(
        "distilling from %s on taps %s (weight %.2f)%s%s%s",
        cfg.teacher,
        net.names,
        cfg.distill_weight,
        "".join(
            f"; specialist {t.name} ({'/'.join(t.tasks)}) from {et.ckpt}" for t, et in zip(extras, cfg.extra_teachers)
        ),
        f"; output distillation x{cfg.output_weight:g}" if cfg.output_weight else "",
        f"; knowledge trajectory x{cfg.trajectory_weight:g}" if cfg.trajectory_weight else "",
    )
    return net


TASKS = ("det", "drivable", "lane")


def _distill_terms(
    cfg: TrainConfig,
    net: nn.Module,
    criterion: MultiTaskLoss,
    batch: dict,
    outputs: Any,
    losses: dict[str, torch.Tensor],
    feat: dict[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Distillation losses added to the task losses: weighted feature terms (adaptive over several
    teachers), optional output distillation and knowledge-trajectory drift; returns the updated
    ``total`` plus the terms for logging."""
    from .distill.adaptive import output_distill_loss, task_gaps, teacher_weights

    terms: dict[str, torch.Tensor] = {}
    teachers = net.teachers
    if len(teachers) > 1:
        with torch.no_grad():
            t_losses = {t.name: criterion(net.teacher_outputs[t.name], batch) for t in teachers}
        tasks = {t.name: t.tasks or TASKS for t in teachers}
        weights = teacher_weights(
            task_gaps({k: losses[k].detach() for k in TASKS}, t_losses, tasks), cfg.adaptive_temperature
        )
        feat_total = sum(weights[t.name] * feat[f"feat/{t.name}"] for t in teachers) / len(teachers)
        for t in teachers:
            terms[f"w/{t.name}"] = torch.tensor(weights[t.name])
            terms[f"feat/{t.name}"] = feat[f"feat/{t.name}"]
    else:
        feat_total = feat["feat"]
    terms["feat"] = feat_total
    total = losses["total"] + cfg.distill_weight * feat_total
    if cfg.output_weight:
        out_l = output_distill_loss(outputs, net.teacher_outputs[teachers[0].name])
        terms["out"] = torch.stack(list(out_l.values())).sum()
        total = total + cfg.output_weight * terms["out"]
    if cfg.trajectory_weight and "trajectory" in feat:
        terms["trajectory"] = feat["trajectory"]
        total = total + cfg.trajectory_weight * feat["trajectory"]
    terms["total"] = total
    return terms


def train(cfg: TrainConfig, resume: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Train a multi-task model; returns a summary (paths, final metrics, throughput)."""
    from .data import LoadStats, build_loader, iterate

    dist, device = init_distributed(cfg.device)
    out = Path(cfg.out)
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed + dist.rank)
    train_ds, val_ds = build_datasets(cfg)

    start_epoch, best_fit, step = 0, -1.0, 0
    state: dict[str, Any] | None = None
    if resume:
        ckpt = load_checkpoint(resume)
        if "train_state" not in ckpt:
            raise CheckpointError(
                f"{resume} has no training state (it is a best/export checkpoint); resume from last.pt"
            )
        model = model_from_checkpoint(ckpt, resume)
        state = ckpt["train_state"]
        start_epoch, best_fit, step = state["epoch"] + 1, state["best_fitness"], state["step"]
        log.info("resuming from %s at epoch %d", resume, start_epoch)
    elif cfg.init:
        model, _ = load_model(cfg.init)
        log.info("starting from %s", cfg.init)
    else:
        anchors = fit_anchors(cfg, train_ds)
        names = tuple(train_ds.class_names)
        mcfg = ModelConfig(size=cfg.model_size, act=cfg.act, num_classes=len(names), class_names=names, anchors=anchors)
        model = build_model(mcfg)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    net: nn.Module = model  # what the optimizer trains and DDP wraps
    if cfg.teacher:
        net = _build_distiller(cfg, model, device, state)
    ema = ModelEMA(model, cfg.ema_decay) if cfg.ema else None
    if state is not None and ema is not None and "ema_state_dict" in ckpt:
        ema.ema.load_state_dict(ckpt["ema_state_dict"])
        ema.updates = state["ema_updates"]
    if cfg.trajectory_weight:
        net.set_trajectory(ema.ema)
    criterion = MultiTaskLoss.for_model(model, cfg.loss)
    opt = torch.optim.AdamW(_param_groups(net, cfg.weight_decay), lr=cfg.lr, betas=(0.937, 0.999))
    if state is not None:
        opt.load_state_dict(state["optimizer"])
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    if state is not None and "scaler" in state and use_amp:
        scaler.load_state_dict(state["scaler"])
    ddp_model: nn.Module = net
    if dist.distributed:
        ddp_model = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )

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
    log_path = out / "metrics.jsonl"
    profile = model_profile(model, cfg.img_size) if dist.is_main else {}
    if dist.is_main:
        log.info(
            "network (%s): %.2fM params, %.3f GMACs at %s; %d train / %d val images; %d steps/epoch x %d process(es)",
            cfg.init or cfg.model_size,
            profile["params"] / 1e6,
            profile["gmacs"],
            profile["macs_at"],
            len(train_ds),
            len(val_ds),
            steps_per_epoch,
            dist.world_size,
        )
    t_start = time.perf_counter()
    images_seen = 0
    stats = LoadStats()
    last_metrics: dict[str, Any] = {}
    epoch = start_epoch - 1
    for epoch in range(start_epoch, cfg.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        ddp_model.train()
        sums: dict[str, float] = {}
        t_ep = time.perf_counter()
        n_ep = 0
        bar = tqdm(
            total=steps_per_epoch,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=not (progress and dist.is_main),
            leave=False,
        )
        for bi, batch in enumerate(iterate(train_loader, stats)):
            if bi >= steps_per_epoch:
                break
            for g in opt.param_groups:
                g["lr"] = lr_at(step, steps_per_epoch, cfg)
            x = to_input(batch["img"], device, cfg.channels_last)
            with torch.autocast(device_type=device.type, enabled=use_amp):
                outputs = ddp_model(x)
            feat: dict[str, torch.Tensor] = {}
            if cfg.teacher:
                outputs, feat = outputs
            losses = criterion(outputs, batch)
            if feat:
                losses.update(_distill_terms(cfg, net, criterion, batch, outputs, losses, feat))
            opt.zero_grad(set_to_none=True)
            scaler.scale(losses["total"]).backward()
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            if ema is not None:
                ema.update(model)
            step += 1
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
        images_seen += n_ep
        ep_time = time.perf_counter() - t_ep
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": opt.param_groups[0]["lr"],
            "loss": {k: round(v / max(steps_per_epoch, 1), 5) for k, v in sums.items()},
            "epoch_seconds": round(ep_time, 2),
            "train_images_per_s": round(n_ep * dist.world_size / max(ep_time, 1e-9), 2),
            "skipped": stats.skipped,
        }
        final_epoch = epoch + 1 == cfg.epochs
        over_time = cfg.time_limit_min is not None and (time.perf_counter() - t_start) / 60 >= cfg.time_limit_min
        if dist.is_main:
            eval_model = ema.ema if ema is not None else model
            if (epoch + 1) % cfg.eval_interval == 0 or final_epoch or over_time:
                # every selection eval uses the same images, so fitness values are comparable
                last_metrics = evaluate(eval_model, val_loader, device, max_batches=cfg.eval_max_batches)
                record["val"] = {k: last_metrics[k] for k in ("detection", "drivable", "lane")}
                record["val"]["images"] = last_metrics["images"]
                record["fitness"] = fitness(last_metrics)
            train_state = {
                "epoch": epoch,
                "step": step,
                "best_fitness": best_fit,
                "optimizer": opt.state_dict(),
                "ema_updates": ema.updates if ema else 0,
                "scaler": scaler.state_dict(),
            }
            if cfg.teacher:
                train_state["adapters"] = {k: v.detach().cpu() for k, v in net.adapters.state_dict().items()}
            extra: dict[str, Any] = {
                "train_config": to_dict(cfg),
                "epoch": epoch + 1,
                "metrics": record.get("val", {}),
                "profile": profile,
            }
            if ema is not None:
                extra["ema_state_dict"] = {k: v.detach().cpu() for k, v in ema.ema.state_dict().items()}
            if "fitness" in record and record["fitness"] > best_fit:
                best_fit = record["fitness"]
                train_state["best_fitness"] = best_fit
                save_checkpoint(out / "best.pt", eval_model, **extra)
                record["best"] = True
            save_checkpoint(out / "last.pt", model, train_state=train_state, **extra)
            with log_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
            v = record.get("val")
            if v:
                log.info(
                    "epoch %d/%d: loss %.4f  mAP50 %.3f  recall %.3f  drivable mIoU %.3f  lane IoU %.3f  (%.0fs, %.1f img/s)",
                    epoch + 1,
                    cfg.epochs,
                    record["loss"].get("total", float("nan")),
                    v["detection"]["map50"],
                    v["detection"]["recall"],
                    v["drivable"]["miou"],
                    v["lane"]["iou"],
                    ep_time,
                    record["train_images_per_s"],
                )
        stop = torch.tensor([1.0 if over_time else 0.0])
        if dist.distributed:
            torch.distributed.broadcast(stop, 0)
            torch.distributed.barrier()
        if stop.item() > 0:
            log.info("time limit of %.1f min reached after epoch %d; stopping", cfg.time_limit_min, epoch + 1)
            break

    wall = time.perf_counter() - t_start
    summary: dict[str, Any] = {
        "out": str(out),
        "epochs_run": epoch + 1 - start_epoch,
        "wall_seconds": round(wall, 1),
        "train_images_per_s": round(images_seen * dist.world_size / max(wall, 1e-9), 2),
        "world_size": dist.world_size,
        "device": str(device),
        "skipped": stats.skipped,
    }
    if dist.distributed:
        # evidence that the processes trained one model on disjoint shards
        local = {"rank": dist.rank, "checksum": param_checksum(model), "images_seen": images_seen}
        gathered: list[Any] = [None] * dist.world_size
        torch.distributed.all_gather_object(gathered, local)
        summary["ranks"] = gathered
    if dist.is_main:
        if (out / "best.pt").is_file():
            # the summary reports the chosen checkpoint on the whole validation split
            best_model, _ = load_model(out / "best.pt")
            last_metrics = evaluate(best_model.to(device), val_loader, device)
        summary.update(
            {"best": str(out / "best.pt"), "last": str(out / "last.pt"), "metrics": last_metrics, "profile": profile}
        )
        with log_path.open("a") as f:
            f.write(json.dumps({"summary": {k: v for k, v in summary.items() if k != "metrics"}}) + "\n")
    if dist.distributed:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return summary
