"""Parity: ONNX Runtime (CPU) vs torch on real frames, through the Perceptor's own preprocessing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from mtc_perception.bundle import Bundle, Parity

from .errors import ExportError
from .wrapper import OUTPUT_NAMES


def _normalized(outs: dict[str, np.ndarray], w: int, h: int) -> dict[str, np.ndarray]:
    det = outs["det"].astype(np.float64).copy()
    det[..., [0, 2]] /= w
    det[..., [1, 3]] /= h
    sig = lambda v: 1 / (1 + np.exp(-v.astype(np.float64)))  # noqa: E731 - a one-line formula
    return {"det": det, "drivable": sig(outs["drivable"]), "lane": sig(outs["lane"])}


def parity(bundle_dir: Path, wrapper: nn.Module, frames: list[Path], tolerance: float) -> Parity:
    """The bundle in ``bundle_dir`` on ONNX Runtime vs ``wrapper`` in torch; raises :class:`ExportError`
    when a normalized output (boxes / input size, probabilities) differs by more than ``tolerance``."""
    from mtc_perception.engines import create_engine
    from mtc_perception.imaging import ImageError, read_image
    from mtc_perception.perceptor import Preprocessor

    bundle = Bundle.load(bundle_dir)
    eng = create_engine("onnxruntime", bundle, providers=["CPUExecutionProvider"])
    pre = Preprocessor(bundle)
    w, h = bundle.input_size
    worst = dict.fromkeys(OUTPUT_NAMES, 0.0)
    raw = dict.fromkeys(OUTPUT_NAMES, 0.0)
    for f in frames:
        try:
            img = read_image(f)
        except (ImageError, OSError) as e:
            raise ExportError(f"parity frame: {e}") from None
        x, _ = pre([img])
        ort_out = eng.infer(x)
        with torch.no_grad():
            t_out = dict(zip(OUTPUT_NAMES, (o.numpy() for o in wrapper(torch.from_numpy(x)))))
        a, b = _normalized(ort_out, w, h), _normalized(t_out, w, h)
        for k in OUTPUT_NAMES:
            worst[k] = max(worst[k], float(np.abs(a[k] - b[k]).max()))
            raw[k] = max(raw[k], float(np.abs(ort_out[k].astype(np.float64) - t_out[k]).max()))
    bad = {k: v for k, v in worst.items() if v > tolerance}
    if bad:
        raise ExportError(
            f"ONNX Runtime and torch disagree on {len(frames)} frames: max abs difference {bad} > tolerance "
            f"{tolerance} (normalized outputs); the ONNX export is not faithful"
        )
    return Parity(
        frames=len(frames),
        max_abs_diff_normalized=worst,
        max_abs_diff_raw=raw,
        tolerance=tolerance,
        backend=eng.description,
    )
