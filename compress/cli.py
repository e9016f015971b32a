"""``mtc-compress``: the offline half (data, teacher training, evaluation, pruning, distillation, recipes,
export, INT8 quantization, and ``demo``: the whole mission on synthroad).

Exit codes: 0 success; 2 a problem with the user's input (bad arguments, config, data or
checkpoint: the message says what and how to fix it); 1 an unexpected internal error.

Over ~400 lines on purpose: it is the one argument table of every command (each ``cmd_*`` only
turns its flags into the config of the module that does the work), so a flag, its help text and
its default read in one place.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from mtc_perception.cli import add_bag_arguments
from mtc_perception.inputs import parse_size

log = logging.getLogger("mtc-compress")

#: `eval --batch-size` unless given: YOLOP's TEST.BATCH_SIZE_PER_GPU (24, one GPU) under its protocol
EVAL_BATCH_SIZE = {"default": 16, "yolop": 24}
# `prune --budget` / `--criterion` choices, kept literal so that `--help` does not import torch;
# test_prune checks them against compress.prune.budget_names() and compress.prune.CRITERIA
BUDGETS = ("ratio", "params", "macs", "latency")
CRITERIA_NAMES = ("task-aware", "taylor", "hessian", "magnitude", "random")
QUANT_METHODS = ("minmax", "entropy", "percentile")  # compress.quantize.ptq.METHODS (checked by test_quantize)


def _net_size(text: str) -> tuple[int, int]:
    """A network input size WIDTHxHEIGHT (stride 32: multiples of 32)."""
    return parse_size(text, multiple_of=32)


def _setup_logging(verbose: bool) -> None:
    import os

    rank = int(os.environ.get("RANK", "0"))
    level = logging.DEBUG if verbose else (logging.INFO if rank == 0 else logging.WARNING)
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s %(levelname)s [rank {rank}] %(name)s: %(message)s"
        if "WORLD_SIZE" in os.environ
        else "%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def cmd_synth(a: argparse.Namespace) -> int:
    from .data.synthroad import synthesize

    t = time.perf_counter()
    summary = synthesize(Path(a.out), a.train, a.val, a.seed, size=a.size, workers=a.workers, progress=not a.quiet)
    log.info("synthroad written to %s in %.1f s", a.out, time.perf_counter() - t)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _train_overrides(a: argparse.Namespace) -> dict[str, Any]:
    keys = {
        "data": a.data,
        "out": a.out,
        "model_size": a.model_size,
        "img_size": a.img_size,
        "epochs": a.epochs,
        "batch_size": a.batch_size,
        "workers": a.workers,
        "lr": a.lr,
        "seed": a.seed,
        "device": a.device,
        "time_limit_min": a.time_limit,
        "max_train_batches": a.max_train_batches,
        "eval_max_batches": a.eval_max_batches,
        "on_error": a.on_error,
        "anchors": a.anchors,
        "init": a.init,
        "teacher": a.teacher,
        "distill_weight": a.distill_weight,
        "output_weight": getattr(a, "output_weight", None),
        "trajectory_weight": getattr(a, "trajectory_weight", None),
    }
    return {k: v for k, v in keys.items() if v is not None}


def cmd_train(a: argparse.Namespace) -> int:
    from .config_io import from_dict, load_yaml
    from .train import TrainConfig, train

    ov = _train_overrides(a)
    cfg = load_yaml(TrainConfig, a.config, ov) if a.config else from_dict(TrainConfig, ov, "command line")
    cfg = cfg.with_data_options(_data_flags(a))
    summary = train(cfg, resume=a.resume, progress=not a.quiet)
    if "metrics" in summary:
        m = summary["metrics"]
        print(
            json.dumps(
                {
                    "best": summary["best"],
                    "last": summary["last"],
                    "wall_seconds": summary["wall_seconds"],
                    "train_images_per_s": summary["train_images_per_s"],
                    "detection": m.get("detection"),
                    "drivable": m.get("drivable"),
                    "lane": m.get("lane"),
                    "profile": summary["profile"],
                },
                indent=2,
            )
        )
    return 0


def _split_dataset(
    ckpt_path: str,
    tc: dict[str, Any],
    data: str | None,
    split: str,
    on_error: str,
    img_size: tuple[int, int],
    overrides: dict[str, Any] | None = None,
):
    """A split read the way the checkpoint's run read it (label format, drivable mapping, class map, ...),
    with the command line's data options (``overrides``) replacing the run's."""
    from .data.run_data import split_of_run

    return split_of_run(
        tc, data, split, img_size, on_error, f"{ckpt_path} does not record its dataset; pass --data DIR", overrides
    )


LAYOUT_PATHS = ("label_json", "image_dir", "drivable_dir", "lane_dir")
# DataConfig choices, literal so that `--help` does not import the data package (checked by test_cli_help)
LANE_MAPPINGS = ("binary", "bdd_toolkit")
MASK_RESIZES = ("nearest", "yolop")
CLASS_PRESETS = ("vehicle", "bdd10")


def _layout_overrides(a: argparse.Namespace, both_splits: bool = False) -> dict[str, Any]:
    """The official BDD100K layout flags of a command, as DataConfig options (a label file means
    ``label_format: bdd_official``). ``both_splits``: the command reads the train and the val split
    with them, so a path flag must hold ``{split}``."""
    out: dict[str, Any] = {}
    for key in (*LAYOUT_PATHS, "drivable_mapping", "lane_mapping", "mask_resize"):
        v = getattr(a, key, None)
        if v:
            out[key] = v
    if "label_json" in out:
        out["label_format"] = "bdd_official"
    one = [k for k in LAYOUT_PATHS if k in out and "{split}" not in str(out[k])]
    if both_splits and one:
        flag = "--" + one[0].replace("_", "-")
        raise ValueError(
            f"{flag} {out[one[0]]} names one file or folder for both the train and the val split; put {{split}} "
            "where the split's name goes (e.g. bdd100k/labels/det_20/det_{split}.json), or leave the flags out "
            "and point --data at the BDD100K download (its files are found for each split)"
        )
    return out


def _data_flags(a: argparse.Namespace) -> dict[str, Any]:
    """The data flags of a command reading both splits (train, distill, compress): the layout flags and
    ``--classes``, as DataConfig options."""
    out = _layout_overrides(a, both_splits=True)
    if getattr(a, "classes", None):
        out["classes"] = a.classes
    return out


def _add_layout_flags(p: argparse.ArgumentParser, replaces: str = "the checkpoint's own") -> None:
    g = p.add_argument_group(
        "BDD100K as downloaded: --data at the download finds these for each split; each flag replaces "
        f"{replaces}, and {{split}} in a path is the split's name"
    )
    g.add_argument("--label-json", help="official detection label file, e.g. bdd100k/labels/det_20/det_val.json")
    g.add_argument("--image-dir", help="image folder, e.g. bdd100k/images/100k/val")
    g.add_argument("--drivable-dir", help="drivable masks, e.g. bdd100k/labels/drivable/masks/val")
    g.add_argument("--lane-dir", help="lane masks, e.g. bdd100k/labels/lane/masks/val")
    g.add_argument(
        "--drivable-mapping",
        help="how drivable mask values become drivable: yolop_binary, bdd_v1, bdd_toolkit "
        "(default: bdd_toolkit for a download's own masks, else yolop_binary)",
    )
    g.add_argument(
        "--lane-mapping",
        choices=LANE_MAPPINGS,
        help="how lane mask values become lane: binary (nonzero) or bdd_toolkit (255 background) "
        "(default: bdd_toolkit for a download's own masks, else binary)",
    )
    g.add_argument(
        "--mask-resize",
        choices=MASK_RESIZES,
        help="ground-truth masks to the network size: nearest, or yolop (YOLOP's area/linear resize, then > 1; "
        "thin lanes grow) (default: nearest; eval --protocol yolop: yolop)",
    )


def cmd_eval(a: argparse.Namespace) -> int:
    import torch

    from .checkpoint import load_model
    from .data import build_loader
    from .evaluate import PROTOCOL_MASK_RESIZE, evaluate, model_profile
    from .metrics import fitness

    model, ckpt = load_model(a.ckpt, use_ema=True)
    tc = ckpt.get("train_config", {})
    img_size = a.img_size or tuple(tc.get("img_size", (320, 192)))
    data_opts = _layout_overrides(a)
    if a.classes:
        data_opts["classes"] = a.classes
    if "mask_resize" not in data_opts and PROTOCOL_MASK_RESIZE[a.protocol]:
        data_opts["mask_resize"] = PROTOCOL_MASK_RESIZE[a.protocol]  # the protocol's ground truth
    ds = _split_dataset(a.ckpt, tc, a.data, a.split, a.on_error, img_size, data_opts)
    if a.threads:
        torch.set_num_threads(a.threads)
    batch_size = a.batch_size or EVAL_BATCH_SIZE[a.protocol]
    loader = build_loader(ds, batch_size, a.workers, shuffle=False)
    res = evaluate(
        model,
        loader,
        a.device,
        conf_thres=a.conf,
        iou_thres=a.iou,
        ap_method=a.ap_method,
        protocol=a.protocol,
        progress=not a.quiet,
        seg_average=a.seg_average,
    )
    res = {
        "checkpoint": str(a.ckpt),
        "data": str(ds.cfg.root),
        "split": a.split,
        "img_size": list(img_size),
        "mask_resize": ds.cfg.mask_resize,
        **model_profile(model, img_size),
        **res,
    }
    text = json.dumps(res, indent=2)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text + "\n")
        log.info("metrics written to %s", a.out)
    d, v, l_ = res["detection"], res["drivable"], res["lane"]
    print(
        f"{a.ckpt}: {res['params'] / 1e6:.2f}M params, {res['gmacs']:.3f} GMACs @ {res['macs_at']}, {res['images']} images"
        f", {res['skipped']} skipped ({res['skipped_at_indexing']} while indexing, {res['skipped_at_loading']} while loading)"
    )
    print(
        f"  detection  P {d['precision']:.3f}  R {d['recall']:.3f}  mAP50 {d['map50']:.3f}  mAP50-95 {d['map50_95']:.3f}"
    )
    if len(d.get("ap50_by_class", {})) > 1:
        for name, ap, n_gt in zip(d["class_names"], d["ap50_by_class"].values(), d["num_gt_per_class"]):
            print(f"    {name:14s} AP50 {'n/a (no box)' if ap is None else f'{ap:.3f}'}  ({n_gt} boxes)")
    no_labels = "n/a (no image of the split has these labels; left out of the fitness)"
    if v.get("available", True):
        print(f"  drivable   mIoU {v['miou']:.3f}  IoU {v['iou']:.3f}  acc {v['acc']:.3f}")
    else:
        print(f"  drivable   {no_labels}")
    if l_.get("available", True):
        print(f"  lane       acc {l_['acc']:.3f}  IoU {l_['iou']:.3f}")
    else:
        print(f"  lane       {no_labels}")
    seg = res["segmentation"]
    how = "per-batch mean, as YOLOP" if seg["average"] == "batch" else "one confusion matrix over the split"
    print(f"  segmentation: {how} (batch {seg['batch_size']}), ground truth resized {res['mask_resize']}")
    print(f"  fitness    {fitness(res):.4f}")
    if not a.out:
        print(text)
    return 0


def cmd_prune(a: argparse.Namespace) -> int:
    from .checkpoint import load_model, save_checkpoint
    from .pipeline import prune_model, recalibrate_bn
    from .prune import PruneConfig

    model, ckpt = load_model(a.ckpt, use_ema=True)
    tc = ckpt.get("train_config", {})
    img_size = a.img_size or tuple(tc.get("img_size", (320, 192)))
    args = {}
    if a.conflict_weight is not None:
        args["conflict_weight"] = a.conflict_weight
    if a.safe_fraction is not None:
        args["safe_fraction"] = a.safe_fraction
    cfg = PruneConfig(
        criterion=a.criterion,
        criterion_args=args,
        budget=a.budget,
        target=a.target,
        round_to=a.round_to,
        batches=a.batches,
        img_size=img_size,
        global_pruning=a.global_pruning,
        allocation=a.allocation,
        max_layer_ratio=a.max_layer_ratio,
        macs_target=a.macs_target,
        latency_target=a.latency_target,
        latency_size=a.latency_size,
        latency_runs=a.latency_runs,
        latency_threads=a.latency_threads,
    )
    needs_data = cfg.needs_data or a.recalibrate_batches > 0
    ds = _split_dataset(a.ckpt, tc, a.data, a.split, a.on_error, img_size, _layout_overrides(a)) if needs_data else None
    report = prune_model(model, cfg, ds, a.batch_size, a.seed)
    if a.recalibrate_batches > 0:
        n = recalibrate_bn(model, ds, a.recalibrate_batches, seed=a.seed)
        log.info("BatchNorm statistics re-estimated on %d %s images", n, a.split)
    extra = {k: ckpt[k] for k in ("train_config",) if k in ckpt}
    save_checkpoint(a.out, model, prune_report=report.to_dict(), parent=str(a.ckpt), **extra)
    text = json.dumps({"checkpoint": str(a.out), "parent": str(a.ckpt), **report.to_dict()}, indent=2)
    Path(a.out).with_suffix(".json").write_text(text + "\n")
    print(text)
    return 0


def _rewrite_stages(text: str) -> tuple[str, ...]:
    from .models.deploy import REWRITE_STAGES

    stages = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [t for t in stages if t not in REWRITE_STAGES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown decoder stage(s) {unknown}; choose from {','.join(REWRITE_STAGES)}")
    return stages


def _imgsz_deprecated(text: str) -> tuple[int, int]:
    """The old ``--imgsz HEIGHTxWIDTH`` (YOLOP's order) -> (width, height), with a deprecation message."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--imgsz {text!r} must be HEIGHTxWIDTH, e.g. 384x640") from e
    log.warning(
        "--imgsz %s (HEIGHTxWIDTH) is deprecated: every size flag is WIDTHxHEIGHT now; use --size %dx%d", text, w, h
    )
    return parse_size(f"{w}x{h}", multiple_of=32)


def cmd_export(a: argparse.Namespace) -> int:
    from .export import ExportConfig, export_bundle

    cfg = ExportConfig(
        img_size=a.size or a.imgsz,
        opset=a.opset,
        dynamic_batch=a.dynamic_batch,
        simplify=not a.no_simplify,
        parity_frames=a.parity_frames,
        tolerance=a.tolerance,
        frames=a.frames,
        name=a.name,
        engine=a.engine,
        fp16=a.fp16,
        int8=a.int8,
        calib=a.calib,
        workspace_gb=a.workspace,
        rewrite=not a.no_rewrite,
        rewrite_stages=a.rewrite_stages,
        fold_bn=not a.no_fold_bn,
        force=a.force,
    )
    spec = export_bundle(a.ckpt, a.out, cfg)
    p = spec.parity
    print(
        json.dumps(
            {
                "bundle": str(a.out),
                "files": spec.to_dict()["files"],
                "input": f"{spec.input.width}x{spec.input.height}",
                "params": spec.provenance.params,
                "macs": spec.provenance.macs,
                "parity": {
                    "frames": p.frames,
                    "max_abs_diff_normalized": p.max_abs_diff_normalized,
                    "tolerance": p.tolerance,
                }
                if p
                else None,
                "versions": spec.to_dict()["versions"],
            },
            indent=2,
        )
    )
    return 0


def cmd_quantize(a: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint
    from .quantize import PtqConfig, export_then_quantize, parse_source, quantize_bundle

    if a.size and not a.ckpt:
        raise ValueError("--size applies to --ckpt (the export before quantizing); a --bundle keeps its input size")
    cfg = PtqConfig(
        method=a.method,
        frames=a.frames,
        parity_frames=a.parity_frames,
        percentile=a.percentile,
        name=a.name,
        force=a.force,
        engine=a.engine,
        fp16=a.fp16,
        workspace_gb=a.workspace,
    )
    calib = parse_source(a.calib, a.topic)
    qat_report: dict[str, Any] | None = None
    if a.ckpt and "qat" in load_checkpoint(a.ckpt):  # quantization-aware trained: its ranges are in it
        from .quantize.stage import QAT_TOLERANCE, qat_checkpoint_to_bundle

        out, qat_report = qat_checkpoint_to_bundle(
            a.ckpt,
            calib,
            a.out,
            fp32=a.fp32,
            size=a.size,
            parity_frames=a.parity_frames,
            tolerance=a.tolerance if a.tolerance is not None else QAT_TOLERANCE,
            name=a.name,
            force=a.force,
        )
    elif a.fp32 or a.tolerance is not None:
        raise ValueError("--fp32 and --tolerance apply to a QAT checkpoint (--ckpt from a quantize: {mode: qat} run)")
    else:
        out = (
            quantize_bundle(a.bundle, calib, a.out, cfg)
            if a.bundle
            else export_then_quantize(a.ckpt, a.size, calib, a.out, cfg)
        )
    from mtc_perception.bundle import Bundle

    written = Bundle.load(out).spec.to_dict()
    q = written["quantization"]
    print(
        json.dumps(
            {
                "bundle": str(out),
                "files": written["files"],
                "quantization": {k: v for k, v in q.items() if k != "float_nodes"},
                "float_nodes": len(q["float_nodes"]),
                **({"onnxruntime_vs_torch": qat_report["onnxruntime_vs_torch"]} if qat_report else {}),
            },
            indent=2,
        )
    )
    return 0


def cmd_import(a: argparse.Namespace) -> int:
    from .importers.yolop import import_yolop
    from .models import count_macs, count_params

    names = tuple(n.strip() for n in a.class_names.split(",")) if a.class_names else None
    model, path = import_yolop(a.weights, a.out, class_names=names, img_size=a.img_size)
    c = model.cfg
    w, h = a.img_size
    print(
        f"{a.weights} -> {path}: YOLOP layout, {count_params(model) / 1e6:.3f}M params, "
        f"{count_macs(model, h, w) / 1e9:.2f} GMACs at {w}x{h}, {c.num_classes} class(es) {list(c.class_names)}, "
        f"strides {list(c.strides)}, anchors {[list(x) for x in c.anchors]}"
    )
    print(
        f"next: mtc-compress eval --ckpt {path} --data BDD100K_DIR --protocol yolop   "
        "(config/compress/bdd100k_yolop.yaml compresses it)"
    )
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    try:
        from .demo import run
    except ImportError as e:  # the offline half without its extras
        log.error("%s: the demo needs the offline extras: pip install -e '.[compress]' (torch==2.13.0 first on CPU)", e)
        return 2
    return run(a)


def _recipe(a: argparse.Namespace):
    from .recipe import load_recipe

    ov: dict[str, Any] = {"out": a.out, "teacher": a.teacher, "data": a.data, "data_options": _data_flags(a) or None}
    return load_recipe(a.recipe, {k: v for k, v in ov.items() if v is not None}, quick=a.quick)


def cmd_compress(a: argparse.Namespace) -> int:
    from .pipeline import compress, quantize_only

    if a.quantize_only:
        r = quantize_only(_recipe(a), a.quantize_only, progress=not a.quiet)
        print(json.dumps({k: r[k] for k in ("checkpoint", "bundle", "fp32_bundle", "metrics") if k in r}, indent=2))
        return 0
    s = compress(_recipe(a), progress=not a.quiet)
    t, st, d = s["teacher"], s["student"], s["delta"]
    print(
        f"student {st['checkpoint']}: {st['params'] / 1e6:.2f}M params (-{100 * s['reduction']['params']:.1f}%), "
        f"{st['gmacs']:.3f} GMACs (-{100 * s['reduction']['macs']:.1f}%); {s['wall_seconds'] / 60:.1f} min"
    )
    for k, name in (
        ("recall", "recall"),
        ("map50", "mAP50"),
        ("drivable_miou", "drivable mIoU"),
        ("lane_acc", "lane acc"),
        ("lane_iou", "lane IoU"),
    ):
        print(f"  {name:14s} teacher {t[k]:.3f}  student {st[k]:.3f}  ({100 * d[k]:+.1f} pt)")
    print(f"metrics: {Path(s['recipe']['out']) / 'metrics.json'}")
    return 0


def cmd_ablate(a: argparse.Namespace) -> int:
    from .ablation import ablate

    res = ablate(_recipe(a), progress=not a.quiet)
    print((Path(res["recipe"]["out"]) / "ablation.md").read_text())
    return 0


def cmd_bag(a: argparse.Namespace) -> int:
    """``mtc bag`` plus ``--dataset``: a dataset split's frames and labels (the runtime never reads datasets)."""
    from mtc_perception.cli import record_bag, source_frames

    if not a.dataset:
        return record_bag(a, source_frames(Path(a.input)))
    from .data.frames import dataset_frames

    frames = dataset_frames(
        a.dataset,
        a.split,
        label_format="bdd_official" if a.label_json else "yolop",
        label_json=a.label_json,
        drivable_mapping=a.drivable_mapping,
        lane_mapping=a.lane_mapping,
    )
    return record_bag(a, frames)


def _add_train_args(t: argparse.ArgumentParser) -> None:
    t.add_argument("--config", help="training recipe YAML (compress.train.TrainConfig fields); flags below override it")
    t.add_argument("--data", help="dataset root: YOLOP's layout, or BDD100K as downloaded (found by itself)")
    t.add_argument("--out", help="run directory (best.pt, last.pt, metrics.jsonl)")
    t.add_argument("--model-size", choices=["tiny", "small", "teacher", "yolop"], help="named model size")
    t.add_argument("--img-size", type=_net_size, help="network input WIDTHxHEIGHT, multiples of 32")
    t.add_argument("--epochs", type=int, help="training epochs (overrides the config)")
    t.add_argument("--batch-size", type=int, help="per process")
    t.add_argument("--workers", type=int, help="DataLoader workers per process")
    t.add_argument("--lr", type=float, help="initial learning rate (overrides the config)")
    t.add_argument("--seed", type=int, help="random seed: same seed, same data order and initialization")
    t.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    t.add_argument(
        "--anchors", choices=["auto", "yolop"], help="k-means on training boxes, or YOLOP's scaled to the input"
    )
    t.add_argument(
        "--time-limit", type=float, help="minutes; stop after the epoch that crosses it (final eval still runs)"
    )
    t.add_argument("--max-train-batches", type=int, help="cap batches per epoch (smoke tests)")
    t.add_argument(
        "--eval-max-batches", type=int, help="validate on this many batches during training (full val at the end)"
    )
    t.add_argument(
        "--on-error", choices=["raise", "skip"], help="bad samples: stop with an error, or skip and count them"
    )
    t.add_argument("--resume", help="last.pt of an interrupted run to continue")
    _add_layout_flags(t, "the config's data options")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mtc-compress",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="cmd", required=True)

    d = sub.add_parser(
        "demo",
        help="the whole mission on generated synthroad scenes: data, teacher, two students, bundles, bag, replay "
        "report",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Generate synthroad, train a teacher, build two students from it (compress: the accuracy "
        "student, MACs budget; deploy: the deployable one, the recipe's deploy: target and a latency budget), "
        "export the three, record a rosbag2 and replay it through them; print what compression cost and bought. "
        "Stages, in order: data, teacher, compress, deploy, export, bag, bench, overlays. Finished stages are "
        "reused on a re-run; one that runs again makes every later one run again.",
    )
    d.add_argument("--out", default="runs/demo", help="working directory of the demo")
    d.add_argument(
        "--full",
        action="store_true",
        help="benchmark-size configuration: 2000/500 images, config/train/teacher_synthroad.yaml, "
        "config/compress/synthroad.yaml and synthroad_deploy.yaml (hours on a 2-core CPU)",
    )
    d.add_argument(
        "--recipe",
        help="teacher training recipe (default: config/train/demo.yaml, or teacher_synthroad.yaml with --full)",
    )
    d.add_argument(
        "--compress-recipe",
        help="the accuracy student's recipe, stage compress (default: config/compress/demo.yaml, or "
        "synthroad.yaml with --full)",
    )
    d.add_argument(
        "--deploy-recipe",
        help="the deployable student's recipe, stage deploy (default: config/compress/demo_deploy.yaml, or "
        "synthroad_deploy.yaml with --full)",
    )
    d.add_argument("--train-images", type=int, default=500, help="synthroad training images")
    d.add_argument("--val-images", type=int, default=150, help="synthroad validation images")
    d.add_argument("--bag-frames", type=int, default=60, help="validation frames recorded into the demo bag")
    d.add_argument(
        "--bag-size",
        type=parse_size,
        help="resize the demo bag's frames to WIDTHxHEIGHT (default: synthroad's 640x360)",
    )
    d.add_argument("--force", action="store_true", help="redo every stage instead of reusing finished ones")
    d.add_argument(
        "--from-stage",
        choices=["data", "teacher", "compress", "deploy", "export", "bag", "bench", "overlays"],
        help="redo this stage and the ones after it, in the order listed (deploy: the deployable student "
        "and what follows, the accuracy student reused)",
    )
    d.add_argument(
        "--publish-docs", action="store_true", help="copy the overlay and plots into docs/img (what the README shows)"
    )
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(fn=cmd_demo)

    d = sub.add_parser("data", help="dataset tools")
    dsub = d.add_subparsers(dest="data_cmd", required=True)
    s = dsub.add_parser(
        "synth",
        help="generate a synthroad dataset in the BDD100K/YOLOP layout",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    s.add_argument(
        "--out",
        required=True,
        help="output directory (images/, det_annotations/, da_seg_annotations/, ll_seg_annotations/)",
    )
    s.add_argument("--train", type=int, default=2000, help="number of training images")
    s.add_argument("--val", type=int, default=500, help="number of validation images")
    s.add_argument("--seed", type=int, default=0, help="generator seed (same seed -> same dataset)")
    s.add_argument("--size", type=parse_size, default=(640, 360), help="image size WIDTHxHEIGHT")
    s.add_argument("--workers", type=int, default=1, help="generator processes")
    s.set_defaults(fn=cmd_synth)

    t = sub.add_parser(
        "train",
        help="train a multi-task model (DDP: torchrun --nproc_per_node N -m compress.cli train ...)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_train_args(t)
    t.add_argument(
        "--init", help="start from this checkpoint (e.g. a pruned student) instead of a fresh --model-size network"
    )
    t.add_argument("--teacher", help="also distill features from this teacher checkpoint")
    t.add_argument("--distill-weight", type=float, help="weight of the feature-distillation loss (default 1.0)")
    t.add_argument(
        "--classes",
        choices=CLASS_PRESETS,
        help="detection classes: vehicle (YOLOP's one merged class, the default) or bdd10 (BDD100K's 10 classes, "
        "both releases' category names); the model gets one output per class",
    )
    t.set_defaults(fn=cmd_train)

    di = sub.add_parser(
        "distill",
        help="recover a pruned student: task losses + feature distillation from the teacher "
        "(specialist teachers for the adaptive multi-teacher mode: extra_teachers in --config)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    di.add_argument(
        "--student", dest="init", metavar="CKPT", required=True, help="student checkpoint (e.g. from `prune`)"
    )
    di.add_argument("--teacher", required=True, help="teacher checkpoint whose backbone/neck taps the student learns")
    di.add_argument("--distill-weight", type=float, help="weight of the feature-distillation loss (default 1.0)")
    di.add_argument("--output-weight", type=float, help="weight of output-level distillation (default 0: off)")
    di.add_argument(
        "--trajectory-weight", type=float, help="weight of the knowledge-trajectory drift term (default 0: off)"
    )
    _add_train_args(di)
    di.set_defaults(fn=cmd_train)

    e = sub.add_parser(
        "eval",
        help="evaluate a checkpoint; writes YOLOP-comparable metrics JSON",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    e.add_argument("--ckpt", required=True, help="checkpoint (.pt) from train/prune/distill")
    e.add_argument("--data", help="dataset root (default: the one the checkpoint was trained on)")
    e.add_argument("--split", default="val", help="dataset split to evaluate on")
    _add_layout_flags(e)
    e.add_argument(
        "--classes",
        choices=CLASS_PRESETS,
        help="detection classes the data is read with (default: the checkpoint's): vehicle or bdd10; they must "
        "be the model's (e.g. bdd10 for an imported 10-class YOLOP fine-tune)",
    )
    e.add_argument("--img-size", type=_net_size, help="network input WIDTHxHEIGHT (default: the training size)")
    e.add_argument(
        "--batch-size",
        type=int,
        help="images per forward pass (default: 16; 24 under --protocol yolop, whose segmentation scores "
        "are per-batch means)",
    )
    e.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    e.add_argument("--threads", type=int, help="torch CPU threads")
    e.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    e.add_argument("--conf", type=float, default=0.001, help="NMS confidence threshold (YOLOP evaluates at 0.001)")
    e.add_argument("--iou", type=float, default=0.6, help="NMS IoU threshold (YOLOP: 0.6)")
    e.add_argument(
        "--protocol",
        choices=["default", "yolop"],
        default="default",
        help="scoring conventions: default (COCO-style greedy, pycocotools' ties; one segmentation confusion "
        "matrix; nearest-resized ground truth) or yolop (YOLOP's validate(): its matching, AP closing and "
        "clipping, per-batch segmentation means, its mask resize, batch 24); docs/DESIGN.md, 'Metrics'",
    )
    e.add_argument(
        "--ap-method",
        choices=["yolov5", "yolop", "coco"],
        help="AP integration (default: the protocol's: yolov5 for default, yolop for yolop)",
    )
    e.add_argument(
        "--seg-average",
        choices=["set", "batch"],
        help="segmentation scores: one confusion matrix over the split (set), or YOLOP's per-batch scores "
        "averaged weighted by batch size (batch) (default: the protocol's: set for default, batch for yolop)",
    )
    e.add_argument(
        "--on-error",
        choices=["raise", "skip"],
        default="raise",
        help="bad samples: stop with an error, or skip and count them",
    )
    e.add_argument("--out", help="write the metrics JSON here")
    e.set_defaults(fn=cmd_eval)
    pr = sub.add_parser(
        "prune",
        help="structured pruning of a checkpoint to a budget (torch-pruning DepGraph)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    pr.add_argument("--ckpt", required=True, help="checkpoint to prune (EMA weights are used when present)")
    pr.add_argument("--out", required=True, help="pruned checkpoint (.pt); a .json report is written beside it")
    pr.add_argument(
        "--criterion",
        default="task-aware",
        choices=list(CRITERIA_NAMES),
        help="channel importance (docs/DESIGN.md, Pruning)",
    )
    pr.add_argument(
        "--budget",
        default="params",
        choices=list(BUDGETS),
        help="what --target means: channel ratio, or fraction of params / MACs / measured latency to remove "
        "(latency: ONNX Runtime on this machine at --latency-size, docs/DESIGN.md 'Latency budget')",
    )
    pr.add_argument(
        "--target",
        type=float,
        default=0.5,
        help="channel ratio, or fraction of params / MACs / latency to remove (see --budget)",
    )
    pr.add_argument(
        "--macs-target", type=float, help="also remove at least this fraction of the MACs (budget params or latency)"
    )
    pr.add_argument(
        "--latency-target",
        type=float,
        help="also remove at least this fraction of the measured latency (budget params or macs)",
    )
    pr.add_argument(
        "--latency-size",
        type=_net_size,
        help="WIDTHxHEIGHT the latency is measured at, e.g. 640x384 (default: --img-size)",
    )
    pr.add_argument("--latency-runs", type=int, default=15, help="timed runs per candidate (the minimum counts)")
    pr.add_argument(
        "--latency-threads", type=int, help="ONNX Runtime intra-op threads for the latency (default: its own)"
    )
    pr.add_argument("--round-to", type=int, default=8, help="keep layer widths multiples of this")
    pr.add_argument(
        "--global-pruning",
        action="store_true",
        help="rank channels across layers (the criterion decides how many each layer keeps) "
        "instead of the same ratio per layer",
    )
    pr.add_argument(
        "--allocation",
        default="uniform",
        choices=["uniform", "sensitivity"],
        help="per-layer ratios: the same everywhere, or from a task-aware probe of each block "
        "(docs/DESIGN.md, Allocation)",
    )
    pr.add_argument(
        "--max-layer-ratio",
        type=float,
        default=0.9,
        help="never remove more than this fraction of one layer's channels",
    )
    pr.add_argument("--batches", type=int, default=8, help="batches of data for gradient-based criteria")
    pr.add_argument("--conflict-weight", type=float, help="task-aware: penalty weight beta in [0, 1] (default 0.5)")
    pr.add_argument("--safe-fraction", type=float, help="task-aware: per-task top fraction kept (default 0.1)")
    pr.add_argument(
        "--recalibrate-batches",
        type=int,
        default=20,
        help="re-estimate BatchNorm statistics on this many batches after pruning (0: off)",
    )
    pr.add_argument("--data", help="dataset root (default: the checkpoint's)")
    pr.add_argument("--split", default="train", help="split whose batches feed the gradient-based criteria")
    _add_layout_flags(pr)
    pr.add_argument("--img-size", type=_net_size, help="default: the checkpoint's training size")
    pr.add_argument("--batch-size", type=int, default=8, help="images per gradient batch")
    pr.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    pr.add_argument("--seed", type=int, default=0, help="seed of the batch order (and of the random criterion)")
    pr.add_argument(
        "--on-error",
        choices=["raise", "skip"],
        default="raise",
        help="bad samples: stop with an error, or skip and count them",
    )
    pr.set_defaults(fn=cmd_prune)
    ex = sub.add_parser(
        "export",
        help="checkpoint -> model bundle (ONNX + parity check, torch program, bundle.json, optional TensorRT engine)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ex.add_argument("--ckpt", required=True, help="checkpoint (.pt) to export")
    ex.add_argument(
        "--out",
        required=True,
        help="bundle directory (an existing bundle there is replaced; anything else needs --force)",
    )
    ex.add_argument("--force", action="store_true", help="replace --out even where it is not a model bundle")
    ex.add_argument(
        "--size",
        type=_net_size,
        help="network input WIDTHxHEIGHT, multiples of 32 (default: the size the checkpoint was trained at)",
    )
    ex.add_argument(
        "--imgsz", type=_imgsz_deprecated, help="deprecated: HEIGHTxWIDTH (YOLOP's order); use --size WIDTHxHEIGHT"
    )
    ex.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")
    ex.add_argument("--dynamic-batch", action="store_true", help="dynamic batch dimension (default: static batch 1)")
    ex.add_argument("--no-simplify", action="store_true", help="skip onnxslim")
    ex.add_argument(
        "--no-rewrite",
        action="store_true",
        help="export the decoders as trained instead of with their work moved before the upsamples "
        "(compress.models.deploy; same outputs, checked by the parity run)",
    )
    ex.add_argument(
        "--rewrite-stages",
        type=_rewrite_stages,
        help="decoder stages to rewrite, comma-separated from csp1,c3,out (default: the checkpoint's deploy "
        "target's choice, else all; scripts/deploy_choices.py measures which win on this machine)",
    )
    ex.add_argument(
        "--no-fold-bn",
        action="store_true",
        help="keep the BatchNorm after each CSP Concat as a separate node (default: folded; same function)",
    )
    ex.add_argument(
        "--frames", help="images for the ONNX Runtime vs torch parity check (default: the checkpoint's val images)"
    )
    ex.add_argument(
        "--parity-frames", type=int, default=8, help="real frames for the ONNX Runtime vs torch parity check"
    )
    ex.add_argument(
        "--tolerance", type=float, default=1e-3, help="max abs difference of normalized outputs before the export fails"
    )
    ex.add_argument("--name", help="bundle name (default: the directory name)")
    ex.add_argument(
        "--engine", action="store_true", help="also build a TensorRT 10 engine (needs an NVIDIA GPU + tensorrt<11)"
    )
    ex.add_argument("--fp16", action="store_true", help="TensorRT FP16 (an error where the GPU has no fast FP16)")
    ex.add_argument("--int8", action="store_true", help="TensorRT INT8, calibrated on --calib images")
    ex.add_argument("--calib", help="directory of calibration images for --int8 (dataset frames)")
    ex.add_argument("--workspace", type=float, default=2.0, help="TensorRT workspace limit in GiB")
    ex.set_defaults(fn=cmd_export)
    qz = sub.add_parser(
        "quantize",
        help="FP32 bundle (or checkpoint) -> INT8 bundle: ONNX Runtime post-training quantization to a Q/DQ ONNX "
        "(head output convs and the decode kept float), calibrated on a dataset split, image folder or rosbag2",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    src = qz.add_mutually_exclusive_group(required=True)
    src.add_argument("--bundle", help="the FP32 model bundle to quantize")
    src.add_argument(
        "--ckpt",
        help="a checkpoint: exported to a temporary FP32 bundle first (mtc-compress export); a QAT checkpoint "
        "(quantize: {mode: qat}) is exported with its own ranges, --calib then gives the parity frames only",
    )
    qz.add_argument(
        "--calib",
        required=True,
        help="calibration frames: ROOT:SPLIT (a dataset split, e.g. data/synthroad:val), an image folder, or a "
        "rosbag2 recording (directory, .mcap or .db3)",
    )
    qz.add_argument("--out", required=True, help="the INT8 bundle directory (an existing bundle there is replaced)")
    qz.add_argument("--force", action="store_true", help="replace --out even where it is not a model bundle")
    qz.add_argument(
        "--method",
        choices=QUANT_METHODS,
        default="minmax",
        help="activation range calibration (entropy: KL over 512-bin histograms, slow on large models)",
    )
    qz.add_argument(
        "--frames", type=int, default=128, help="calibration frames, spread evenly over the source (an error if fewer)"
    )
    qz.add_argument(
        "--parity-frames",
        type=int,
        default=8,
        help="frames the calibration did not use, for the INT8-vs-FP32 record in bundle.json",
    )
    qz.add_argument("--percentile", type=float, default=99.999, help="--method percentile: the range's percentile")
    qz.add_argument(
        "--topic", help="rosbag2 camera topic (default: /camera/image_raw, its /compressed, or the only image topic)"
    )
    qz.add_argument("--size", type=_net_size, help="--ckpt: network input WIDTHxHEIGHT (default: the training size)")
    qz.add_argument(
        "--fp32",
        help="QAT --ckpt: the FP32 bundle to compare with and take the input size from (default: the float network "
        "QAT started from, exported at --size)",
    )
    qz.add_argument(
        "--tolerance",
        type=float,
        help="QAT --ckpt: largest loss of agreement (mask IoU, detection F1) between ONNX Runtime and the "
        "fake-quantized torch network on the parity frames (default 0.1)",
    )
    qz.add_argument("--name", help="bundle name (default: the directory name)")
    qz.add_argument(
        "--engine",
        action="store_true",
        help="also build a TensorRT 10 engine from the Q/DQ ONNX (explicit quantization; needs an NVIDIA GPU)",
    )
    qz.add_argument("--fp16", action="store_true", help="--engine: the float-kept layers in FP16")
    qz.add_argument("--workspace", type=float, default=2.0, help="TensorRT workspace limit in GiB")
    qz.set_defaults(fn=cmd_quantize)
    for name, fn, text in (
        ("compress", cmd_compress, "teacher -> prune -> distill -> eval from a recipe (student.pt + metrics.json)"),
        (
            "ablate",
            cmd_ablate,
            "every pruning criterion at the same budget, without and with distillation (JSON + Markdown table)",
        ),
    ):
        c = sub.add_parser(name, help=text, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        c.add_argument(
            "--recipe",
            required=True,
            help="recipe YAML (compress.recipe.CompressRecipe), e.g. config/compress/synthroad.yaml",
        )
        c.add_argument("--teacher", help="teacher checkpoint (overrides the recipe's)")
        c.add_argument("--out", help="output directory (overrides the recipe's)")
        c.add_argument("--data", help="dataset root (overrides the recipe's; default: the teacher's)")
        _add_layout_flags(c, "the teacher's and the recipe's data options")
        c.add_argument(
            "--quick", action="store_true", help="smoke run: 1 distillation epoch of 2 batches, 2 val batches (CI)"
        )
        if name == "compress":
            c.add_argument(
                "--quantize-only",
                metavar="CKPT",
                help="skip pruning and distillation: run the recipe's quantize: section on CKPT (e.g. the teacher, "
                "for its own INT8 bundle; QAT distils it from the recipe's teacher)",
            )
        c.set_defaults(fn=fn)
    g = sub.add_parser(
        "bag",
        help="record a dataset split with its labels (or a video / an image folder) into a rosbag2",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_bag_arguments(g)
    g.set_defaults(fn=cmd_bag)
    im = sub.add_parser(
        "import",
        help="convert a model you already have (YOLOP's End-to-end.pth or a fine-tune) to an mtc checkpoint",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    im.add_argument("source", choices=["yolop"], help="the model family of --weights")
    im.add_argument("--weights", required=True, help="YOLOP checkpoint (.pth, read with weights_only=True)")
    im.add_argument("--out", required=True, help="the mtc checkpoint to write, e.g. runs/yolop/teacher.pt")
    im.add_argument(
        "--class-names",
        help="comma-separated detection class names, one per class of the file (default: vehicle for YOLOP's one class)",
    )
    im.add_argument(
        "--img-size",
        type=_net_size,
        default=(640, 384),
        help="input WIDTHxHEIGHT recorded as the model's training size (YOLOP: 640x384)",
    )
    im.set_defaults(fn=cmd_import)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    from mtc_perception.bundle import BundleError
    from mtc_perception.engines import EngineUnavailable

    from .checkpoint import CheckpointError
    from .config_io import ConfigFileError
    from .data.errors import DataConfigError, DatasetError
    from .export import ExportError
    from .models import ConfigError
    from .prune import BudgetError, LatencyError, SpecError

    try:
        return args.fn(args)
    except (
        DatasetError,
        DataConfigError,
        CheckpointError,
        ConfigFileError,
        ConfigError,
        BudgetError,
        SpecError,
        FileNotFoundError,
        ValueError,
        ExportError,
        BundleError,
        EngineUnavailable,
        LatencyError,
    ) as e:
        if args.verbose:
            log.exception("%s", e)
        else:
            log.error("%s", e)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
