"""Regenerate ``test/data/tiny_bundle`` (a 129 k-parameter model fitted for 2 epochs on a tiny
synthroad set, exported at 128x96) and ``test/data/frame.jpg`` (one synthroad frame, 320x180).

They are committed so the ROS launch tests and the numpy-1.x runtime tests can run on machines
without torch (a ROS 2 workstation under ``colcon test``). Run: ``python scripts/make_tiny_bundle.py``
(needs the compress extra: torch, torch-pruning, onnx, onnxruntime).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from compress.data.synthroad import synthesize
    from compress.export import ExportConfig, export_bundle
    from compress.train import TrainConfig, train

    out = ROOT / "test" / "data"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize(tmp / "syn", n_train=16, n_val=8, seed=7, size=(320, 180), workers=1, progress=False)
        s = train(
            TrainConfig(
                data=str(tmp / "syn"),
                out=str(tmp / "run"),
                model_size="tiny",
                img_size=(128, 96),
                epochs=2,
                batch_size=4,
                workers=0,
                seed=0,
            ),
            progress=False,
        )
        spec = export_bundle(s["best"], tmp / "b", ExportConfig(img_size=(128, 96), parity_frames=4))
        dst = out / "tiny_bundle"
        shutil.rmtree(dst, ignore_errors=True)
        dst.mkdir(parents=True)
        shutil.copy(tmp / "b" / "model.onnx", dst / "model.onnx")
        prov = spec.provenance
        replace(
            spec,
            name="tiny",
            files=replace(spec.files, torch=None),  # keep the fixture small: ONNX only
            provenance=replace(
                prov,
                checkpoint="scripts/make_tiny_bundle.py",
                train_config={**prov.train_config, "data": "synthroad 16/8 seed 7 320x180"},
            ),
        ).write(dst)
        frame = sorted((tmp / "syn" / "images" / "val").glob("*.jpg"))[0]
        shutil.copy(frame, out / "frame.jpg")
    print(f"wrote {dst} and {out / 'frame.jpg'}")


if __name__ == "__main__":
    main()
