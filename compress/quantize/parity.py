"""INT8 vs FP32: both bundles on ONNX Runtime (CPU) over the same frames, through the Perceptor's own
preprocessing and postprocessing. A measured record (:class:`mtc_perception.bundle.QuantParity`), not a
pass/fail check: how much INT8 changes a model is for the user to judge against their task."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mtc_perception.bundle import Bundle, QuantParity

CONF = 0.25  # the Perceptor's deployment threshold
MATCH_IOU = 0.5


def _normalized(outs: dict[str, np.ndarray], bundle: Bundle) -> dict[str, np.ndarray]:
    """Boxes / input size and probabilities (the segmentation logits through a sigmoid)."""
    w, h = bundle.input_size
    det_name, drv, lane = bundle.output_names
    det = outs[det_name].astype(np.float64).copy()
    det[..., [0, 2]] /= w
    det[..., [1, 3]] /= h
    return {det_name: det, **{n: 1 / (1 + np.exp(-outs[n].astype(np.float64))) for n in (drv, lane)}}


def int8_parity(fp32: Bundle, int8: Bundle, images: Sequence[np.ndarray], independent: bool) -> QuantParity:
    """Compare ``int8`` with ``fp32`` on ``images`` (BGR): the max abs difference of the normalized outputs,
    the drivable / lane masks' pixel agreement and IoU (INT8 against FP32), and the detections matched."""
    from mtc_perception.bench.report.agreement import detection_f1, mask_iou
    from mtc_perception.perceptor import Perceptor

    ref = Perceptor(fp32, backend="onnxruntime", conf=CONF, providers=["CPUExecutionProvider"])
    cand = Perceptor(int8, backend="onnxruntime", conf=CONF, providers=["CPUExecutionProvider"])
    names = fp32.output_names
    worst = dict.fromkeys(names, 0.0)
    agree = {"drivable": 0.0, "lane": 0.0}
    iou = {"drivable": 0.0, "lane": 0.0}
    n_ref = n_cand = matched = 0.0
    for img in images:
        x, lbs = ref.preprocess([img])
        a, b = ref.engine.infer(x), cand.engine.infer(x)
        na, nb = _normalized(a, fp32), _normalized(b, fp32)
        for k in names:
            worst[k] = max(worst[k], float(np.abs(na[k] - nb[k]).max()))
        pr, pc = ref.postprocess(a, lbs)[0], cand.postprocess(b, lbs)[0]
        for part in ("drivable", "lane"):
            ma, mb = getattr(pr, part), getattr(pc, part)
            agree[part] += float(np.mean(ma == mb))
            iou[part] += mask_iou(ma, mb)
        nr, nc = len(pr.boxes), len(pc.boxes)
        n_ref, n_cand = n_ref + nr, n_cand + nc
        matched += round(detection_f1(pr, pc, MATCH_IOU) * (nr + nc) / 2) if nr + nc else 0
    n = max(len(images), 1)
    return QuantParity(
        frames=len(images),
        independent=independent,
        max_abs_diff_normalized=worst,
        mask_agreement={k: v / n for k, v in agree.items()},
        mask_iou={k: v / n for k, v in iou.items()},
        detections={
            "fp32": n_ref,
            "int8": n_cand,
            "matched": matched,
            "f1": 1.0 if n_ref + n_cand == 0 else 2 * matched / (n_ref + n_cand),
        },
        conf=CONF,
        match_iou=MATCH_IOU,
        backend=cand.backend,
    )
