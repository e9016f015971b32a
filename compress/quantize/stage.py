"""The recipe's ``quantize:`` stage (``mtc-compress compress``, after the distillation): the student to
an INT8 bundle.

Both modes first export the distilled student as the FP32 bundle ``<out>/student_fp32``
(:func:`compress.export.export_bundle`), the source every INT8 bundle names and is compared with.

* ``ptq``: :func:`compress.quantize.ptq.quantize_bundle` of that bundle, calibrated on the recipe's
  training split (frames read and preprocessed by the runtime's own ``Preprocessor``).
* ``qat``: the student prepared for QAT (:func:`compress.quantize.qat.prepare_qat`), its activation
  ranges calibrated on ``calib_batches`` training batches, saved as ``<out>/qat/calibrated.pt``; the
  project's distillation run (:func:`compress.train.train`, the recipe's ``distill:`` losses against the
  teacher) fine-tunes it from that checkpoint for ``epochs`` at ``lr`` (no warm-up, no AMP) into
  ``<out>/qat/``; the best epoch is ``<out>/student_qat.pt``, evaluated on the validation split like
  the FP32 student; exported to Q/DQ ONNX (:func:`compress.quantize.qat_export.export_qat_onnx`,
  simplified); its Conv nodes checked against the float-kept rule (:mod:`compress.quantize.rules`:
  the head output convs have no Q/DQ, every other conv has Q/DQ on input and weight); written by
  :func:`compress.quantize.bundle.write_int8_bundle` (INT8 vs FP32 parity on validation frames);
  then ONNX Runtime vs the fake-quantized torch network on validation frames
  (:func:`compress.quantize.qat_export.qat_parity`: a mean drivable / lane mask IoU or detection F1
  below ``1 - tolerance`` removes the bundle and fails the stage) and the provenance of the QAT checkpoint
  written into its bundle.json.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .errors import QuantizeError

if TYPE_CHECKING:
    from ..pipeline import RecipeRun
    from ..recipe import CompressRecipe

log = logging.getLogger(__name__)

FP32_BUNDLE = "student_fp32"
# defaults of the quantize: section's unset options (compress.recipe.QuantizeStage)
QAT_METHOD, QAT_EPOCHS, QAT_LR, QAT_CALIB_BATCHES, QAT_AVERAGING = "minmax", 2, 1e-4, 8, 0.01
QAT_TOLERANCE = (
    0.1  # ONNX Runtime vs fake-quant torch: mean mask IoU / detection F1 >= 1 - this (qat_export.qat_parity)
)
PTQ_METHOD, PTQ_FRAMES, PTQ_PERCENTILE = "minmax", 128, 99.999


def quantize_stage(
    recipe: CompressRecipe, run: RecipeRun, student: Path, stages: dict[str, float], progress: bool = True
) -> dict[str, Any]:
    """Run the recipe's quantize: section on the distilled ``student`` checkpoint; returns the record
    that metrics.json keeps under ``quantize`` (stage wall times go into ``stages``)."""
    q = recipe.quantize
    t = time.perf_counter()
    fp32 = export_fp32(student, run, deploy_size(recipe, run))
    stages["export_fp32"] = time.perf_counter() - t
    if q.mode == "ptq":
        return _ptq(recipe, run, fp32, stages)
    return _qat(recipe, run, student, fp32, stages, progress)


def export_fp32(student: Path, run: RecipeRun, size: tuple[int, int]) -> Path:
    """``<out>/student_fp32``: the FP32 bundle of the distilled student (parity on validation frames)."""
    from ..export import ExportConfig, export_bundle

    out = run.out / FP32_BUNDLE
    export_bundle(
        student,
        out,
        ExportConfig(img_size=size, frames=str(run.val_ds.cfg.images_path()), name=FP32_BUNDLE),
    )
    return out


def deploy_size(recipe: CompressRecipe, run: RecipeRun) -> tuple[int, int]:
    """The bundles' input (width, height): the size the recipe's latency budget timed the student at
    (``prune.latency_size``: the deployment input), else the teacher's training size."""
    w, h = recipe.prune.latency_size or run.img_size
    return int(w), int(h)


def _source_of(ds: Any) -> Any:
    """A dataset split as a calibration source: the dataset and split, or its image folder."""
    from .calib import CalibSource

    cfg = ds.cfg
    if cfg.image_dir is None and cfg.root is not None:
        return CalibSource("dataset", Path(cfg.root), split=cfg.split)
    return CalibSource("folder", Path(cfg.images_path()))


def _ptq(recipe: CompressRecipe, run: RecipeRun, fp32: Path, stages: dict[str, float]) -> dict[str, Any]:
    from mtc_perception.bundle import Bundle

    from .ptq import PtqConfig, quantize_bundle

    q = recipe.quantize
    cfg = PtqConfig(
        method=q.method or PTQ_METHOD,
        frames=q.calib_frames or PTQ_FRAMES,
        parity_frames=q.parity_frames,
        percentile=q.percentile or PTQ_PERCENTILE,
        name=q.name,
    )
    t = time.perf_counter()
    out = quantize_bundle(fp32, _source_of(run.train_ds), run.out / q.name, cfg, source_label=str(fp32))
    stages["ptq"] = time.perf_counter() - t
    spec = Bundle.load(out).spec
    qs = spec.quantization
    return {
        "mode": "ptq",
        "method": cfg.method,
        "bundle": str(out),
        "fp32_bundle": str(fp32),
        "calibration": dataclasses.asdict(qs.calibration) if qs and qs.calibration else None,
        "int8_vs_fp32": dataclasses.asdict(qs.parity) if qs and qs.parity else None,
        "float_nodes": len(qs.float_nodes) if qs else 0,
    }


# ----------------------------------------------------------------------------------------------
# qat


def calib_batches(ds: Any, batch_size: int, batches: int, seed: int) -> Iterator[torch.Tensor]:
    """``batches`` shuffled (seeded) batches of ``ds`` as network inputs (no augmentation: the split
    of a recipe is read as evaluation reads it)."""
    from ..data import build_loader, iterate
    from ..evaluate import to_input

    loader = build_loader(ds, batch_size, 0, shuffle=True, seed=seed)
    for i, b in enumerate(iterate(loader)):
        if i >= batches:
            break
        yield to_input(b["img"], "cpu")


def _qat(
    recipe: CompressRecipe, run: RecipeRun, student: Path, fp32: Path, stages: dict[str, float], progress: bool
) -> dict[str, Any]:
    from ..checkpoint import load_model, save_checkpoint
    from ..pipeline import distill_config, evaluate_checkpoint, summary_metrics
    from ..train import train
    from .qat import QatScheme, calibrate, prepare_qat

    q = recipe.quantize
    qdir = run.out / "qat"
    scheme = QatScheme(
        method=q.method or QAT_METHOD,
        averaging_constant=q.averaging_constant or QAT_AVERAGING,
    )
    base = distill_config(recipe, run.tck, str(student), qdir, q.epochs or QAT_EPOCHS)
    batch_size = q.batch_size or base.batch_size

    t = time.perf_counter()
    model, ck = load_model(student)
    prepare_qat(model, scheme)
    n_calib = calibrate(model, calib_batches(run.train_ds, batch_size, q.calib_batches or QAT_CALIB_BATCHES, base.seed))
    model.qat_scheme = dataclasses.replace(model.qat_scheme, calibration_images=n_calib)  # type: ignore[arg-type]
    calibrated = save_checkpoint(
        qdir / "calibrated.pt",
        model,
        parent=str(student),
        train_config=ck.get("train_config", {}),
        metrics=ck.get("metrics", {}),
        profile=ck.get("profile", {}),
    )
    stages["qat_calibrate"] = time.perf_counter() - t
    log.info("QAT: %s ranges from %d training images; fine-tuning from %s", scheme.method, n_calib, calibrated)

    cfg = dataclasses.replace(
        base,
        init=str(calibrated),
        lr=q.lr or QAT_LR,
        warmup_epochs=0.0,
        amp=False,  # fp16 activations would add a rounding the int8 model does not have
        batch_size=batch_size,
    )
    t = time.perf_counter()
    summary = train(cfg, progress=progress)
    stages["qat"] = time.perf_counter() - t
    student_qat = run.out / "student_qat.pt"
    shutil.copyfile(summary["best"], student_qat)

    t = time.perf_counter()
    res = evaluate_checkpoint(student_qat, run.val_ds, recipe)
    stages["eval_student_qat"] = time.perf_counter() - t

    t = time.perf_counter()
    qat_model, qck = load_model(student_qat)
    qat_model.eval()
    bundle, report = write_qat_bundle(
        qat_model,
        qck,
        student_qat,
        student,
        fp32,
        run.out / q.name,
        q.name,
        training_calibration(run.train_ds, n_calib),
        _source_of(run.val_ds),
        q.parity_frames,
        q.tolerance or QAT_TOLERANCE,
    )
    stages["export_int8"] = time.perf_counter() - t
    m = summary_metrics(res)
    log.info("QAT student %s: %s", student_qat, {k: round(v, 4) for k, v in m.items()})
    return {
        "mode": "qat",
        "method": scheme.method,
        "checkpoint": str(student_qat),
        "bundle": str(bundle),
        "fp32_bundle": str(fp32),
        "calibration_images": n_calib,
        "train_config": {"epochs": cfg.epochs, "lr": cfg.lr, "batch_size": cfg.batch_size},
        "metrics": m,
        "val_images": res["images"],
        **report,
    }


def training_calibration(train_ds: Any, images: int) -> Any:
    """The bundle's calibration record of a QAT network: its ranges came from ``images`` training images."""
    from mtc_perception.bundle import Calibration
    from mtc_perception.imaging import display_path

    cfg = train_ds.cfg
    return Calibration(
        kind="training",
        source=display_path(cfg.root if cfg.root is not None else cfg.images_path()),
        frames=images,
        available=len(train_ds),
        split=cfg.split,
    )


def write_qat_bundle(
    model: torch.nn.Module,
    ckpt: dict[str, Any],
    ckpt_path: Path,
    parent: Path | None,
    fp32: Path,
    out: Path,
    name: str | None,
    calibration: Any,
    parity_source: Any,
    parity_frames: int,
    tolerance: float,
) -> tuple[Path, dict[str, Any]]:
    """The QAT network ``model`` (checkpoint ``ckpt_path``, fine-tuned from ``parent``) as the INT8 bundle
    ``out`` next to its FP32 source bundle ``fp32`` (input size, names, the INT8-vs-FP32 record);
    ``calibration``: where its activation ranges came from (:class:`mtc_perception.bundle.Calibration`);
    ``parity_frames`` frames spread over ``parity_source`` (a :class:`compress.quantize.calib.CalibSource`)
    for both parity records (INT8 vs FP32, and the gate :func:`compress.quantize.qat_export.qat_parity`
    with ``tolerance``, whose failure removes the bundle). Returns the bundle and the record of its graph
    and parity."""
    import onnx

    from mtc_perception.bundle import Bundle, Quantization

    from ..export.exporter import _remove
    from ..export.onnx import simplify_onnx
    from .bundle import write_int8_bundle
    from .calib import frame_set, pick
    from .qat_export import export_qat_onnx, qat_parity
    from .rules import RULE, float_kept_rules, name_nodes

    images = pick(frame_set(parity_source), max(parity_frames, 1), required=False, what="parity").images
    if not images:
        raise QuantizeError(
            f"{parity_source.path}: no decodable frame to check the QAT export on; give a source with images"
        )
    with tempfile.TemporaryDirectory(prefix="mtc-qat-") as tmp:
        path = Path(tmp) / "model.onnx"
        src = Bundle.load(fp32).spec.input  # the FP32 source bundle's input size
        export_qat_onnx(model, path, (src.width, src.height))
        simplify_onnx(path)
        proto = onnx.load(str(path))
        if name_nodes(proto):
            onnx.save(proto, str(path))
        kept = float_kept_rules(proto)
        graph = check_qdq_placement(path, kept)
        info = Quantization(
            method="qat",
            weight_type="int8",
            activation_type="int8",
            per_channel=True,
            symmetric_weights=True,
            symmetric_activations=True,
            calibration=calibration,
            float_nodes=kept,
            float_rule=RULE + "; in QAT those convolutions have no fake quantization (compress.quantize.qat)",
            source_bundle=str(fp32),
        )
        write_int8_bundle(
            fp32, path, out, info, parity_frames=images[:parity_frames], parity_independent=True, name=name
        )
    try:
        par = qat_parity(out, model, images, tolerance)
    except Exception:
        _remove(out)  # a Q/DQ file that does not compute what the QAT network computes is no bundle
        raise
    spec = Bundle.load(out).spec
    tc = ckpt.get("train_config", {})
    spec = dataclasses.replace(  # its weights are the QAT checkpoint's, not the FP32 source's
        spec,
        provenance=dataclasses.replace(
            spec.provenance,
            checkpoint=str(ckpt_path),
            parent=str(parent) if parent is not None else spec.provenance.parent,
            train_config={k: tc.get(k) for k in ("data", "img_size", "init", "teacher")},
            metrics=ckpt.get("metrics") or None,
        ),
    )
    tmp_json = out / "bundle.json.tmp"  # spec.write's text, replaced atomically
    tmp_json.write_text(json.dumps(spec.to_dict(), indent=2) + "\n")
    os.replace(tmp_json, out / "bundle.json")
    Bundle.load(out)  # what is written reads back
    report = {
        "qdq": graph,
        "onnxruntime_vs_torch": par,
        "int8_vs_fp32": dataclasses.asdict(spec.quantization.parity)
        if spec.quantization and spec.quantization.parity
        else None,
    }
    log.info(
        "QAT INT8 bundle %s: %d convolutions with Q/DQ, %d kept float; Q/DQ file vs torch agreement %s "
        "(ONNX Runtime's fused kernels %s; round-off floor %s)",
        out,
        len(graph["quantized_convs"]),
        len(graph["float_convs"]),
        {k: f"{v:.4f}" for k, v in par["agreement"].items()},
        {k: f"{v:.4f}" for k, v in par["deployed"].items()},
        {k: f"{v:.4f}" for k, v in par["roundoff_floor"].items()},
    )
    return out, report


def check_qdq_placement(path: Path, kept: dict[str, str]) -> dict[str, list[str]]:
    """Every Conv of the Q/DQ file has Q/DQ on input and weight except the float-kept ones, which have
    none; :class:`QuantizeError` otherwise. Returns the module paths of both kinds."""
    from .qat_export import conv_quantization
    from .rules import HEAD_CONV

    quantized: list[str] = []
    floats: list[str] = []
    wrong: list[str] = []
    for node, c in conv_quantization(path).items():
        if kept.get(node) == HEAD_CONV:
            (floats if not (c["input"] or c["weight"]) else wrong).append(c["module"] or node)
        else:
            (quantized if c["input"] and c["weight"] else wrong).append(c["module"] or node)
    if wrong or not quantized:
        raise QuantizeError(
            f"{path}: Q/DQ placement is not the QAT rule (input and weight of every conv quantized, none on the "
            f"head outputs): wrong at {wrong[:5]}, {len(quantized)} quantized; the network was not prepared "
            "with compress.quantize.qat.prepare_qat"
        )
    return {"quantized_convs": quantized, "float_convs": floats}


def qat_checkpoint_to_bundle(
    ckpt: str | Path,
    parity_source: Any,
    out: str | Path,
    fp32: str | Path | None = None,
    size: tuple[int, int] | None = None,
    parity_frames: int = 8,
    tolerance: float = QAT_TOLERANCE,
    name: str | None = None,
    force: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """``mtc-compress quantize --ckpt QAT.pt``: a QAT checkpoint (its activation ranges are in it; nothing
    is calibrated) as the INT8 bundle ``out``. ``fp32``: the FP32 bundle it is compared with and takes its
    input size from; default: the float network QAT started from (the checkpoint's fine-tuning
    ``init`` -> its ``parent``) exported to a temporary bundle at ``size`` (default its training size).
    ``parity_source`` (a :class:`compress.quantize.calib.CalibSource`) gives the parity frames. Returns the
    bundle and the record of its graph and parity (:func:`write_qat_bundle`)."""
    from ..checkpoint import load_checkpoint, load_model
    from ..export import ExportConfig, export_bundle
    from ..export.exporter import _replaceable
    from .calib import frame_set, pick
    from .qat import is_qat

    out = Path(out)
    _replaceable(out, "bundle.json", force)
    model, ck = load_model(ckpt)
    if not is_qat(model):
        raise QuantizeError(
            f"{ckpt} is not a QAT checkpoint (no qat scheme); quantize it with --ckpt and --calib (PTQ)"
        )
    model.eval()
    tc = ck.get("train_config", {})
    calibration = None
    parent: Path | None = None
    init = tc.get("init")
    if init and Path(init).is_file():  # <out>/qat/calibrated.pt: its parent is the FP32 student
        init_ck = load_checkpoint(init)
        parent = Path(init_ck["parent"]) if isinstance(init_ck.get("parent"), str) else None
    from mtc_perception.bundle import Calibration

    calibration = Calibration(
        kind="training",
        source=str(tc.get("data") or "unknown (not in the checkpoint)"),
        frames=int(ck["qat"].get("calibration_images", 0)),
    )
    with tempfile.TemporaryDirectory(prefix="mtc-qat-fp32-") as tmp:
        if fp32 is None:
            if parent is None or not parent.is_file():
                raise QuantizeError(
                    f"{ckpt}: the float network QAT started from is not found (fine-tuning init {init!r}); "
                    "pass the FP32 bundle to compare with: --fp32 BUNDLE"
                )
            if size is None and tc.get("img_size"):
                size = (int(tc["img_size"][0]), int(tc["img_size"][1]))
            pics = pick(frame_set(parity_source), 1, required=False, what="parity")
            if not pics.images:
                raise QuantizeError(f"{parity_source.path}: no decodable frame; give --calib a source with images")
            fdir = Path(tmp) / "frames"
            fdir.mkdir()
            import cv2

            cv2.imwrite(str(fdir / "frame.png"), pics.images[0])
            fp32 = Path(tmp) / f"{out.name}-fp32"
            export_bundle(parent, fp32, ExportConfig(img_size=size, frames=str(fdir)))
            log.info("FP32 source: %s exported at %s to a temporary bundle", parent, size)
        return write_qat_bundle(
            model,
            ck,
            Path(ckpt),
            parent,
            Path(fp32),
            out,
            name,
            calibration,
            parity_source,
            parity_frames,
            tolerance,
        )
