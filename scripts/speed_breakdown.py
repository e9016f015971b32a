"""Where a multi-task network spends its ONNX Runtime CPU time: the whole network (as trained, and
with the export's decoder rewrite, compress.models.deploy) vs backbone + neck + detection head
(the difference is the two segmentation decoders).

    python scripts/speed_breakdown.py runs/teacher/best.pt runs/compress/synthroad/student.pt --size 640x384

Prints one line per checkpoint (median of --runs single-frame runs). The ONNX export is the bundle
export's (compress.export.export_onnx) and the session options the runtime's own
(mtc_perception.engines.onnxruntime_engine.session_options: graph optimization `extended`, no spinning).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from compress.checkpoint import load_model
from compress.export import ExportWrapper, export_onnx
from compress.models import count_macs, count_params
from compress.models.deploy import deploy_model
from mtc_perception.engines.onnxruntime_engine import session_options
from mtc_perception.inputs import parse_size


class DetectionPath(torch.nn.Module):
    def __init__(self, m: torch.nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor):
        p3, p4, p5 = self.m.backbone(x)
        _, o3, o4, o5 = self.m.neck(p3, p4, p5)
        return tuple(self.m.detect([o3, o4, o5]))


def ort_ms(module: torch.nn.Module, h: int, w: int, runs: int) -> float:
    with tempfile.TemporaryDirectory() as d:
        path = export_onnx(module, Path(d) / "m.onnx", (w, h))
        s = ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
    xi = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    name = s.get_inputs()[0].name
    for _ in range(3):
        s.run(None, {name: xi})
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        s.run(None, {name: xi})
        ts.append((time.perf_counter() - t) * 1e3)
    return float(np.median(ts))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ckpts", nargs="+")
    p.add_argument("--size", type=lambda t: parse_size(t, multiple_of=32), default=(640, 384), help="WIDTHxHEIGHT")
    p.add_argument("--runs", type=int, default=30)
    a = p.parse_args()
    w, h = a.size
    for c in a.ckpts:
        m, _ = load_model(c)
        m.eval()
        full = ort_ms(ExportWrapper(m).eval(), h, w, a.runs)
        fast = ort_ms(ExportWrapper(deploy_model(m)).eval(), h, w, a.runs)
        det = ort_ms(DetectionPath(m).eval(), h, w, a.runs)
        print(
            f"{c}: {count_params(m) / 1e6:.2f}M params, {count_macs(m, h, w) / 1e9:.3f} GMACs at {w}x{h}; "
            f"whole network {full:.1f} ms (decoders rewritten: {fast:.1f} ms), backbone+neck+detect {det:.1f} ms, "
            f"segmentation decoders {full - det:.1f} ms "
            f"({100 * (full - det) / full:.0f}%; rewritten {fast - det:.1f} ms)"
        )


if __name__ == "__main__":
    main()
