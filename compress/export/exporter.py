"""Export a checkpoint to a model bundle, one function per step: the model and its input size, ONNX
(checked), the torch exported program, ``bundle.json`` (:class:`mtc_perception.bundle.BundleSpec`),
parity against torch, and optionally a TensorRT 10 engine.

Everything is written into ``OUT.partial`` and renamed to ``OUT`` only when every check passed. An
existing ``OUT`` is replaced only where it is a bundle (has ``bundle.json``) or ``force`` is set; a
stale ``OUT.partial`` only where an earlier export made it (its marker file) or ``force`` is set.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtc_perception.bundle import (
    SCHEMA,
    BundleSpec,
    DetectionSpec,
    FilesSpec,
    GraphSpec,
    HeadSpec,
    InputSpec,
    Provenance,
    SegmentationSpec,
    Versions,
)
from mtc_perception.inputs import list_images
from mtc_perception.processing import PAD_VALUE

from ..checkpoint import load_model
from ..models import count_macs, count_params
from ..models.deploy import REWRITE_STAGES, deploy_model, rewritten_stages
from .config import ExportConfig
from .errors import ExportError
from .onnx import check_onnx, export_onnx, simplify_onnx
from .parity import parity
from .wrapper import INPUT_NAME, OUTPUT_NAMES, ExportWrapper

log = logging.getLogger(__name__)

SEG_ACTIVATION = "none (logits; > 0 means p > 0.5)"
PARTIAL_MARKER = ".mtc-export-partial"  # in OUT.partial while an export writes it


def _replaceable(path: Path, mine: str, force: bool) -> None:
    """Raise :class:`ExportError` unless ``path`` is absent, holds ``mine`` (bundle.json, or the partial
    marker), or ``force`` is set."""
    if force or not (path.exists() or path.is_symlink()):
        return
    if path.is_dir() and not path.is_symlink() and (path / mine).is_file():
        return
    what = "a symlink" if path.is_symlink() else "a file" if not path.is_dir() else f"a folder without {mine}"
    raise ExportError(
        f"--out {path} exists and is {what}, not a model bundle: the export would delete it; choose another "
        "--out, remove it yourself, or pass --force to replace it"
    )


def _remove(path: Path) -> None:
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def find_frames(directory: str | Path, limit: int) -> list[Path]:
    return list_images(directory)[:limit]


def default_frames_dir(ckpt: dict[str, Any]) -> Path | None:
    """The validation images of the dataset the checkpoint records: its ``image_dir`` option, YOLOP's
    ``images/<split>/`` or a BDD100K download's ``images/100k/<split>/``."""
    from compress.data.layout import bdd_download

    tc = ckpt.get("train_config", {})
    if not tc.get("data"):
        return None
    split = tc.get("val_split", "val")
    opts = {**(tc.get("data_options") or {}), **(tc.get("val_data_options") or {})}
    dl = bdd_download(Path(tc["data"]), split)
    for d in (
        Path(str(opts["image_dir"]).replace("{split}", split)) if opts.get("image_dir") else None,
        Path(tc["data"]) / "images" / split,
        dl.image_dir if dl is not None else None,
    ):
        if d is not None and d.is_dir():
            return d
    return None


def input_size(ckpt_path: str | Path, ckpt: dict[str, Any], cfg: ExportConfig) -> tuple[int, int]:
    """The network input (width, height): ``cfg.img_size``, else the training size, else 640x384."""
    trained = ckpt.get("train_config", {}).get("img_size")  # (width, height)
    w, h = cfg.img_size or ((int(trained[0]), int(trained[1])) if trained else (640, 384))
    if trained and (w, h) != (int(trained[0]), int(trained[1])):
        log.warning(
            "%s was trained at %dx%d but is exported at %dx%d: objects appear at another scale than in training, so "
            "accuracy at this input is not what its evaluation measured",
            ckpt_path,
            trained[0],
            trained[1],
            w,
            h,
        )
    return w, h


def write_onnx(wrapper: nn.Module, path: Path, size: tuple[int, int], cfg: ExportConfig) -> tuple[dict, str | bool]:
    """model.onnx: exported, simplified (onnxslim when installed) and checked; returns (output shapes,
    the simplifier or False)."""
    dyn = {INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in OUTPUT_NAMES}} if cfg.dynamic_batch else None
    export_onnx(wrapper, path, size, cfg.opset, [INPUT_NAME], OUTPUT_NAMES, dyn)
    simplified = simplify_onnx(path) if cfg.simplify else False
    return check_onnx(path), simplified


def write_program(wrapper: nn.Module, path: Path, size: tuple[int, int]) -> None:
    """model.pt2: the torch exported program (the torch backend's file)."""
    w, h = size
    torch.export.save(torch.export.export(wrapper, (torch.zeros(1, 3, h, w),)), str(path))


def graph_spec(wrapper: nn.Module, model: nn.Module, folded: bool, deploy: dict[str, Any]) -> GraphSpec:
    """bundle.json's graph section: which exact rewrites the exported graph carries and the deploy target."""
    stages = rewritten_stages(wrapper)
    done = [f"decoder stages {', '.join(stages)} computed before their nearest upsamples"] if stages else []
    if folded:
        done.append("BatchNorm after each CSP Concat folded into its convolutions")
    return GraphSpec(
        decoder_rewrite=bool(stages),
        note=("; ".join(done) + " (compress.models.deploy); same function")
        if done
        else "the checkpoint's graph as trained",
        rewrite_stages=stages,
        bn_folded=folded,
        activation=getattr(getattr(model, "cfg", None), "act", None),
        deploy=deploy or None,
    )


def bundle_spec(
    model: nn.Module,
    ckpt: dict[str, Any],
    ckpt_path: str | Path,
    cfg: ExportConfig,
    name: str,
    size: tuple[int, int],
    shapes: dict[str, list[Any]],
    simplified: str | bool,
    graph: GraphSpec,
) -> BundleSpec:
    """bundle.json before parity (the parity check loads the bundle it describes)."""
    import onnx

    mcfg = model.cfg
    w, h = size
    tc = ckpt.get("train_config", {})
    trained = tc.get("img_size")
    return BundleSpec(
        schema=SCHEMA,
        name=name,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        input=InputSpec(
            name=INPUT_NAME,
            height=h,
            width=w,
            color="RGB",
            scale=1 / 255,
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
            pad_value=PAD_VALUE,
            dynamic_batch=cfg.dynamic_batch,
        ),
        detection=DetectionSpec(
            output="det",
            layout="B x N x (5 + classes): cx, cy, w, h (network-input pixels), objectness, class probabilities",
            sigmoid_applied=True,
            class_names=tuple(mcfg.class_names),
            num_classes=int(mcfg.num_classes),
            strides=tuple(float(s) for s in model.detect.strides.tolist()),
            anchors=tuple(tuple(float(v) for v in a) for a in mcfg.anchors),
        ),
        segmentation=SegmentationSpec(HeadSpec("drivable", SEG_ACTIVATION), HeadSpec("lane", SEG_ACTIVATION)),
        outputs={n: tuple(s) for n, s in shapes.items()},
        graph=graph,
        files=FilesSpec(onnx="model.onnx", torch="model.pt2", engine=None),
        provenance=Provenance(
            checkpoint=str(ckpt_path),
            parent=ckpt.get("parent"),
            params=count_params(model),
            macs=count_macs(model, h, w),
            macs_at=f"{w}x{h}",
            trained_img_size=tuple(trained) if trained else None,
            prune=ckpt.get("prune_report"),
            train_config={k: tc.get(k) for k in ("data", "img_size", "init", "teacher")},
            metrics=ckpt.get("metrics") or None,
        ),
        versions=Versions(opset=cfg.opset, torch=torch.__version__, onnx=onnx.__version__, simplified=simplified),
    )


def export_bundle(ckpt_path: str | Path, out: str | Path, cfg: ExportConfig) -> BundleSpec:
    """Write the bundle directory ``out``; returns its bundle.json."""
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    _replaceable(out, "bundle.json", cfg.force)  # before any work: nothing measured is lost to a bad --out
    _replaceable(tmp, PARTIAL_MARKER, cfg.force)
    model, ckpt = load_model(ckpt_path)
    if "qat" in ckpt:
        raise ExportError(
            f"{ckpt_path} is a QAT checkpoint (fake-quantized): its bundle is INT8; write it with "
            f"`mtc-compress quantize --ckpt {ckpt_path} --calib FRAMES --out DIR` (the ranges come from the checkpoint)"
        )
    model.eval().float()
    reference = ExportWrapper(model).eval()  # what parity compares against: the checkpoint's own graph
    deploy = ckpt.get("deploy") or {}  # a recipe's deploy target (compress.models.deploy.DeployTarget)
    stages = (
        ()
        if not cfg.rewrite
        else cfg.rewrite_stages
        if cfg.rewrite_stages is not None
        else tuple(deploy.get("rewrite", REWRITE_STAGES))
    )
    fold = cfg.fold_bn and bool(deploy.get("fold_bn", True))
    wrapper = ExportWrapper(deploy_model(model, rewrite=stages, fold_bn_after_concat=fold)).eval()
    size = input_size(ckpt_path, ckpt, cfg)
    frames_dir = cfg.frames or default_frames_dir(ckpt)
    if frames_dir is None:
        raise FileNotFoundError(
            f"no frames for the parity check: {ckpt_path} records no dataset with validation images (YOLOP's "
            "images/val/ or BDD100K's images/100k/val/; an imported model records none); pass --frames DIR "
            "(any folder of camera images)"
        )
    frames = find_frames(frames_dir, cfg.parity_frames)
    _replaceable(tmp, PARTIAL_MARKER, cfg.force)
    _remove(tmp)
    tmp.mkdir(parents=True)
    (tmp / PARTIAL_MARKER).write_text("written by mtc-compress export; removed when the bundle is complete\n")

    shapes, simplified = write_onnx(wrapper, tmp / "model.onnx", size, cfg)
    write_program(wrapper, tmp / "model.pt2", size)
    graph = graph_spec(wrapper, model, fold, deploy)
    spec = bundle_spec(model, ckpt, ckpt_path, cfg, cfg.name or out.name, size, shapes, simplified, graph)
    spec.write(tmp)
    import onnxruntime

    spec = dataclasses.replace(
        spec,
        parity=parity(tmp, reference, frames, cfg.tolerance),
        versions=dataclasses.replace(spec.versions, onnxruntime=onnxruntime.__version__),
    )
    if cfg.engine:
        from .engine import build_engine

        calib = find_frames(cfg.calib or frames_dir, cfg.calib_frames) if cfg.int8 else []
        built = build_engine(tmp / "model.onnx", tmp / "model.engine", cfg, calib, tmp / "timing.cache")
        spec = dataclasses.replace(
            spec,
            files=dataclasses.replace(spec.files, engine="model.engine"),
            versions=dataclasses.replace(spec.versions, **{k: str(v) for k, v in built.items()}),
        )
    BundleSpec.from_dict(spec.to_dict(), str(tmp / "bundle.json"))  # what is written reads back
    spec.write(tmp)
    (tmp / PARTIAL_MARKER).unlink()
    _replaceable(out, "bundle.json", cfg.force)  # again: OUT may have appeared while the export ran
    _remove(out)
    tmp.rename(out)
    w, h = size
    log.info(
        "bundle written to %s (%.2fM params, %.3f GMACs at %dx%d; parity max diff %s)",
        out,
        (spec.provenance.params or 0) / 1e6,
        (spec.provenance.macs or 0) / 1e9,
        w,
        h,
        {k: f"{v:.2e}" for k, v in spec.parity.max_abs_diff_normalized.items()} if spec.parity else {},
    )
    return spec
