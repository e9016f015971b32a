"""Export a checkpoint to a model bundle: ONNX (checked + parity-tested against torch), a torch
exported program, ``bundle.json``, and optionally a TensorRT 10 engine.

The exported network decodes its detections in the graph: output ``det`` is (B, N, 5+nc) with
cx, cy, w, h in network-input pixels, objectness and class probabilities (sigmoid applied);
``drivable`` and ``lane`` are (B, 1, H, W) logits (> 0 means p > 0.5).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mtc_perception.bundle import SCHEMA, Bundle
from mtc_perception.inputs import list_images
from mtc_perception.processing import PAD_VALUE

from .checkpoint import load_model
from .models import count_macs, count_params, decode_detections
from .models.deploy import deploy_model, is_rewritten

log = logging.getLogger(__name__)

INPUT_NAME = "images"
OUTPUT_NAMES = ("det", "drivable", "lane")


class ExportError(RuntimeError):
    """An export that failed a check (parity, ONNX checker, TensorRT build)."""


class ExportWrapper(nn.Module):
    """MultiTaskNet -> (decoded detections, drivable logits, lane logits)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model(x)
        det = self.model.detect
        return decode_detections(out.det, det.anchors, det.strides), out.drivable, out.lane


@dataclass(frozen=True)
class ExportConfig:
    img_size: tuple[int, int] | None = (
        None  # network input (width, height), multiples of 32; default: the training size
    )
    opset: int = 17
    dynamic_batch: bool = False
    simplify: bool = True  # onnxslim when installed
    parity_frames: int = 8
    tolerance: float = 1e-3  # max abs difference on the normalized outputs (boxes / input size, probabilities)
    frames: str | None = (
        None  # directory of images for parity (and INT8 calibration); default: the checkpoint's val images
    )
    name: str | None = None
    engine: bool = False
    fp16: bool = False
    int8: bool = False
    calib: str | None = None  # directory of calibration images for INT8
    calib_frames: int = 64
    workspace_gb: float = 2.0
    # decoders rewritten for inference (compress.models.deploy): same outputs, work moved before
    # the nearest upsamples; parity is checked against the original model either way
    rewrite: bool = True

    def __post_init__(self) -> None:
        w, h = self.img_size or (32, 32)
        if h % 32 or w % 32 or h <= 0 or w <= 0:
            raise ValueError(f"img_size {w}x{h} (WIDTHxHEIGHT) must be positive multiples of 32, e.g. 640x384")
        if self.opset < 17:
            raise ValueError(f"opset {self.opset} is too old; use 17 or newer")
        if (self.fp16 or self.int8) and not self.engine:
            raise ValueError("--fp16/--int8 choose the TensorRT precision: add --engine")
        if self.int8 and not self.calib and not self.frames:
            raise ValueError("--int8 needs calibration images: pass --calib DIR (dataset frames)")


def find_frames(directory: str | Path, limit: int) -> list[Path]:
    return list_images(directory)[:limit]


def default_frames_dir(ckpt: dict[str, Any]) -> Path | None:
    tc = ckpt.get("train_config", {})
    if not tc.get("data"):
        return None
    d = Path(tc["data"]) / "images" / tc.get("val_split", "val")
    return d if d.is_dir() else None


def _normalized(outs: dict[str, np.ndarray], w: int, h: int) -> dict[str, np.ndarray]:
    det = outs["det"].astype(np.float64).copy()
    det[..., [0, 2]] /= w
    det[..., [1, 3]] /= h
    sig = lambda v: 1 / (1 + np.exp(-v.astype(np.float64)))  # noqa: E731
    return {"det": det, "drivable": sig(outs["drivable"]), "lane": sig(outs["lane"])}


def parity(bundle_dir: Path, wrapper: nn.Module, frames: list[Path], tolerance: float) -> dict[str, Any]:
    """ONNX Runtime (CPU) vs torch on real frames through the Perceptor's preprocessing; raises
    :class:`ExportError` above ``tolerance``."""
    import cv2

    from mtc_perception.engines import create_engine
    from mtc_perception.perceptor import Preprocessor

    bundle = Bundle.load(bundle_dir)
    eng = create_engine("onnxruntime", bundle, providers=["CPUExecutionProvider"])
    pre = Preprocessor(bundle)
    w, h = bundle.input_size
    worst = {k: 0.0 for k in OUTPUT_NAMES}
    raw = {k: 0.0 for k in OUTPUT_NAMES}
    for f in frames:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            raise ExportError(f"parity frame {f} cannot be read as an image")
        x, _ = pre([img])
        ort_out = eng.infer(x)
        with torch.no_grad():
            t_out = dict(zip(OUTPUT_NAMES, (o.numpy() for o in wrapper(torch.from_numpy(x)))))
        a, b = _normalized(ort_out, w, h), _normalized(t_out, w, h)
        for k in OUTPUT_NAMES:
            worst[k] = max(worst[k], float(np.abs(a[k] - b[k]).max()))
            raw[k] = max(raw[k], float(np.abs(ort_out[k].astype(np.float64) - t_out[k]).max()))
    res = {
        "frames": len(frames),
        "max_abs_diff_normalized": worst,
        "max_abs_diff_raw": raw,
        "tolerance": tolerance,
        "backend": eng.description,
    }
    bad = {k: v for k, v in worst.items() if v > tolerance}
    if bad:
        raise ExportError(
            f"ONNX Runtime and torch disagree on {len(frames)} frames: max abs difference {bad} > tolerance "
            f"{tolerance} (normalized outputs); the ONNX export is not faithful"
        )
    return res


def export_bundle(ckpt_path: str | Path, out: str | Path, cfg: ExportConfig) -> dict[str, Any]:
    """Write the bundle directory ``out``; returns bundle.json's content."""
    import onnx

    out = Path(out)
    model, ckpt = load_model(ckpt_path)
    model.eval().float()
    reference = ExportWrapper(model).eval()  # what parity compares against: the checkpoint's own graph
    wrapper = ExportWrapper(deploy_model(model)).eval() if cfg.rewrite else reference
    rewritten = cfg.rewrite and is_rewritten(wrapper)
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
    x = torch.zeros(1, 3, h, w)
    frames_dir = cfg.frames or default_frames_dir(ckpt)
    if frames_dir is None:
        raise FileNotFoundError(
            f"no frames for the parity check: {ckpt_path} does not name a dataset with images/val; pass --frames DIR"
        )
    frames = find_frames(frames_dir, cfg.parity_frames)
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)

    onnx_path = tmp / "model.onnx"
    dyn = {INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in OUTPUT_NAMES}} if cfg.dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter announces its deprecation
        torch.onnx.export(
            wrapper,
            (x,),
            str(onnx_path),
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            opset_version=cfg.opset,
            dynamic_axes=dyn,
            do_constant_folding=True,
            dynamo=False,
        )
    simplified = False
    if cfg.simplify:
        try:
            import onnxslim

            onnx.save(onnxslim.slim(onnx.load(str(onnx_path))), str(onnx_path))
            simplified = "onnxslim " + getattr(onnxslim, "__version__", "?")
        except ImportError:
            log.info(
                "onnxslim is not installed: the ONNX graph is exported with constant folding only (pip install onnxslim)"
            )
    proto = onnx.load(str(onnx_path))
    onnx.checker.check_model(proto, full_check=True)
    shapes = {
        o.name: [d.dim_param if d.dim_param else d.dim_value for d in o.type.tensor_type.shape.dim]
        for o in proto.graph.output
    }

    ep = torch.export.export(wrapper, (x,))
    torch.export.save(ep, str(tmp / "model.pt2"))

    mcfg = model.cfg
    params, macs = count_params(model), count_macs(model, h, w)
    meta: dict[str, Any] = {
        "schema": SCHEMA,
        "name": cfg.name or out.name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "input": {
            "name": INPUT_NAME,
            "height": h,
            "width": w,
            "layout": "NCHW",
            "dtype": "float32",
            "color": "RGB",
            "scale": 1 / 255,
            "mean": [0.0, 0.0, 0.0],
            "std": [1.0, 1.0, 1.0],
            "pad_value": PAD_VALUE,
            "letterbox": "keep aspect ratio, centred, pad_value grey",
            "dynamic_batch": cfg.dynamic_batch,
        },
        "detection": {
            "output": "det",
            "layout": "B x N x (5 + classes): cx, cy, w, h (network-input pixels), objectness, class probabilities",
            "sigmoid_applied": True,
            "class_names": list(mcfg.class_names),
            "num_classes": int(mcfg.num_classes),
            "strides": [float(s) for s in model.detect.strides.tolist()],
            "anchors": [[float(v) for v in a] for a in mcfg.anchors],
        },
        "segmentation": {
            "drivable": {"output": "drivable", "activation": "none (logits; > 0 means p > 0.5)"},
            "lane": {"output": "lane", "activation": "none (logits; > 0 means p > 0.5)"},
        },
        "outputs": shapes,
        "graph": {
            "decoder_rewrite": rewritten,
            "note": "segmentation decoders computed before their nearest upsamples (compress.models.deploy); same function"
            if rewritten
            else "the checkpoint's graph as trained",
        },
        "files": {"onnx": "model.onnx", "torch": "model.pt2", "engine": None},
        "provenance": {
            "checkpoint": str(ckpt_path),
            "parent": ckpt.get("parent"),
            "params": params,
            "macs": macs,
            "macs_at": f"{w}x{h}",
            "trained_img_size": list(trained) if trained else None,
            "prune": ckpt.get("prune_report"),
            "train_config": {k: ckpt.get("train_config", {}).get(k) for k in ("data", "img_size", "init", "teacher")},
            "metrics": ckpt.get("metrics") or None,
        },
        "versions": {
            "opset": cfg.opset,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "simplified": simplified,
        },
    }
    (tmp / "bundle.json").write_text(json.dumps(meta, indent=2) + "\n")
    meta["parity"] = parity(tmp, reference, frames, cfg.tolerance)
    import onnxruntime

    meta["versions"]["onnxruntime"] = onnxruntime.__version__
    if cfg.engine:
        from .trt_build import build_engine

        calib = find_frames(cfg.calib or frames_dir, cfg.calib_frames) if cfg.int8 else []
        meta["files"]["engine"] = "model.engine"
        meta["versions"].update(build_engine(onnx_path, tmp / "model.engine", cfg, calib, tmp / "timing.cache"))
    (tmp / "bundle.json").write_text(json.dumps(meta, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    log.info(
        "bundle written to %s (%.2fM params, %.3f GMACs at %dx%d; parity max diff %s)",
        out,
        params / 1e6,
        macs / 1e9,
        w,
        h,
        {k: f"{v:.2e}" for k, v in meta["parity"]["max_abs_diff_normalized"].items()},
    )
    return meta
