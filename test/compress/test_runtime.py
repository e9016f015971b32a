"""Export, bundles, engines and the Perceptor (ONNX Runtime and torch here; TensorRT where a GPU is)."""

import pytest

pytest.importorskip(
    "torch",
    reason="needs torch (the offline half, compress/): `make test` installs it; "
    "a ROS 2 machine under colcon test may not have it",
)

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from compress.checkpoint import save_checkpoint
from compress.export import ExportConfig, ExportError, export_bundle
from compress.models import ModelConfig, build_model
from mtc_perception.bundle import Bundle, BundleError
from mtc_perception.engines import EngineUnavailable, create_engine
from mtc_perception.perceptor import FrameError, Perceptor

ROOT = Path(__file__).resolve().parents[2]
ANCHORS = ((4, 5, 8, 10, 12, 9), (20, 18, 30, 25, 40, 30), (60, 50, 90, 70, 120, 100))


@pytest.fixture(scope="module")
def bundle_dir(synth_root, tmp_path_factory):
    """A small model, briefly fitted so its outputs are not degenerate, exported at 128x96."""
    from compress.train import TrainConfig, train

    d = tmp_path_factory.mktemp("bundle")
    s = train(
        TrainConfig(
            data=str(synth_root),
            out=str(d / "run"),
            model_size="tiny",
            img_size=(128, 96),
            epochs=2,
            batch_size=4,
            workers=0,
            seed=0,
        ),
        progress=False,
    )
    export_bundle(s["best"], d / "b", ExportConfig(img_size=(128, 96), parity_frames=4))
    return d / "b"


def _frames(synth_root, n=4):
    files = sorted((Path(synth_root) / "images" / "val").glob("*.jpg"))[:n]
    return [cv2.imread(str(f)) for f in files]


# ---------------------------------------------------------------------------------------------
# export and parity


def test_export_writes_a_checked_bundle(bundle_dir):
    b = Bundle.load(bundle_dir)
    spec = b.spec
    assert b.input_size == (128, 96) and spec.input.pad_value == 114 and spec.input.color == "RGB"
    assert spec.outputs["det"][0] == 1 and spec.outputs["det"][2] == 6  # static batch, 5 + 1 class
    assert list(spec.outputs["drivable"]) == [1, 1, 96, 128]
    assert spec.versions.opset >= 17 and spec.provenance.params > 0 and spec.provenance.checkpoint
    assert spec.parity.frames == 4 and max(spec.parity.max_abs_diff_normalized.values()) <= 1e-3
    assert (bundle_dir / "model.onnx").is_file() and (bundle_dir / "model.pt2").is_file() and spec.files.engine is None
    # the file is exactly the typed tree's dict (export writes it through BundleSpec only)
    assert json.loads((bundle_dir / "bundle.json").read_text()) == spec.to_dict()
    assert json.loads((bundle_dir / "bundle.json").read_text())["outputs"]["drivable"] == [1, 1, 96, 128]
    import onnx

    onnx.checker.check_model(onnx.load(str(bundle_dir / "model.onnx")))


def test_onnxruntime_and_torch_agree_through_the_perceptor(bundle_dir, synth_root):
    frames = [cv2.resize(f, (320, 180)) for f in _frames(synth_root)] + [_frames(synth_root)[0][:150, :100]]
    ort_p = Perceptor(bundle_dir, backend="onnxruntime", conf=0.001)
    pt_p = Perceptor(bundle_dir, backend="torch", conf=0.001)
    assert "CPUExecutionProvider" in ort_p.backend and pt_p.backend.startswith("torch")
    total = 0
    for f in frames:
        a, b = ort_p(f), pt_p(f)
        assert a.drivable.shape == f.shape[:2] and a.lane.shape == f.shape[:2] and a.drivable.dtype == np.uint8
        assert set(np.unique(a.drivable)) <= {0, 1}
        assert (a.drivable != b.drivable).mean() < 1e-3 and (a.lane != b.lane).mean() < 1e-3
        # at conf 0.001 the briefly trained model scores many boxes almost alike: a box whose score
        # or overlap sits on the threshold can flip by float noise (1e-6), so one box may differ
        assert abs(len(a.boxes) - len(b.boxes)) <= max(1, len(a.boxes) // 50), (len(a.boxes), len(b.boxes))
        if len(a.boxes) and len(b.boxes):
            # the same boxes: the last places of the score order (and the max_det cut) may differ by float noise
            from mtc_perception.processing import box_iou

            assert (box_iou(a.boxes, b.boxes).max(1) > 0.999).mean() >= 0.9
            assert (box_iou(b.boxes, a.boxes).max(1) > 0.999).mean() >= 0.9
            assert np.allclose(np.sort(a.scores)[-10:], np.sort(b.scores)[-10:], atol=1e-4)
        assert (a.boxes[:, [0, 2]] <= f.shape[1]).all() and (a.boxes[:, [1, 3]] <= f.shape[0]).all()
        assert set(a.timings) == {"decode", "preprocess", "infer", "postprocess"}
        total += len(a.boxes)
    assert total > 0  # the comparison covered real detections
    # a batch gives the same as frame by frame
    batch = ort_p.infer_batch(frames[:3])
    for f, r in zip(frames[:3], batch):
        assert np.allclose(r.boxes, ort_p(f).boxes)
    # JPEG bytes are decoded by the Perceptor
    ok, jpg = cv2.imencode(".jpg", frames[0])
    assert ort_p(jpg.tobytes()).drivable.shape == frames[0].shape[:2]


def test_bad_frames_are_clear_errors(bundle_dir):
    p = Perceptor(bundle_dir, backend="onnxruntime")
    with pytest.raises(FrameError, match="uint8"):
        p(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(FrameError, match="HxWx3"):
        p(np.zeros((10, 10), np.uint8))
    with pytest.raises(FrameError, match="decodable"):
        p(b"\xff\xd8 not really a jpeg")


def test_parity_failure_stops_the_export(synth_root, tmp_path, monkeypatch):
    """The real parity check against a torch reference that drifts (+0.5 on the drivable logits)."""
    import compress.export.exporter as ex

    m = build_model(ModelConfig(size="tiny", anchors=ANCHORS))
    ck = save_checkpoint(tmp_path / "m.pt", m, train_config={"data": str(synth_root)})
    real = ex.parity

    class Drift(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            det, drv, lane = self.inner(x)
            return det, drv + 0.5, lane

    monkeypatch.setattr(ex, "parity", lambda d, wrapper, frames, tol: real(d, Drift(wrapper), frames, tol))
    with pytest.raises(ExportError, match="disagree.*drivable"):
        export_bundle(ck, tmp_path / "bad", ExportConfig(img_size=(128, 96), parity_frames=2))
    assert not (tmp_path / "bad").exists()  # nothing half-written is left as a bundle


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_engine_without_tensorrt_is_a_clear_export_error(synth_root, tmp_path):
    """--engine goes through the export's TensorRT step (compress.export.engine), which names the install;
    nothing half-written is left as a bundle."""
    m = build_model(ModelConfig(size="tiny", anchors=ANCHORS))
    ck = save_checkpoint(tmp_path / "m.pt", m, train_config={"data": str(synth_root)})
    with pytest.raises(ExportError, match=r"--engine needs TensorRT 10.*pip install 'tensorrt>=10,<11'"):
        export_bundle(ck, tmp_path / "e", ExportConfig(img_size=(128, 96), parity_frames=1, engine=True))
    assert not (tmp_path / "e").exists()


# ---------------------------------------------------------------------------------------------
# bundle mismatches and missing backends


def _copy(bundle_dir, tmp_path, edit):
    d = tmp_path / "b"
    shutil.copytree(bundle_dir, d)
    meta = json.loads((d / "bundle.json").read_text())
    edit(meta, d)
    (d / "bundle.json").write_text(json.dumps(meta))
    return d


def test_bundle_mismatches_name_the_file_and_the_fix(bundle_dir, tmp_path):
    def rename_output(m, d):
        m["outputs"]["seg_drivable"] = m["outputs"].pop("drivable")
        m["segmentation"]["drivable"]["output"] = "seg_drivable"

    with pytest.raises(BundleError, match=r"model.onnx.*seg_drivable.*mtc-compress export"):
        create_engine("onnxruntime", _copy(bundle_dir, tmp_path / "1", rename_output))

    def other_size(m, d):
        m["input"]["height"] = 192

    with pytest.raises(BundleError, match=r"model.onnx: input 'images' has shape .* 192"):
        create_engine("onnxruntime", _copy(bundle_dir, tmp_path / "2", other_size))

    def wrong_shape(m, d):
        m["outputs"]["lane"] = [1, 1, 48, 64]

    with pytest.raises(
        BundleError, match=r"output 'lane' has shape \[1, 1, 96, 128\] but bundle.json says \[1, 1, 48, 64\]"
    ):
        create_engine("onnxruntime", _copy(bundle_dir, tmp_path / "3", wrong_shape))

    def missing_file(m, d):
        (d / "model.onnx").unlink()

    with pytest.raises(BundleError, match=r"model.onnx is named in .* but does not exist"):
        create_engine("onnxruntime", _copy(bundle_dir, tmp_path / "4", missing_file))

    def old_schema(m, d):
        m["schema"] = 0

    with pytest.raises(BundleError, match="schema 0"):
        Bundle.load(_copy(bundle_dir, tmp_path / "5", old_schema))

    with pytest.raises(BundleError, match="no engine file.*--engine"):
        Bundle.load(bundle_dir).require_file("engine")
    with pytest.raises(BundleError, match="not a model bundle"):
        Bundle.load(tmp_path)

    def corrupt_onnx(m, d):
        (d / "model.onnx").write_bytes(b"garbage")

    with pytest.raises(BundleError, match="ONNX Runtime cannot load"):
        create_engine("onnxruntime", _copy(bundle_dir, tmp_path / "6", corrupt_onnx))


def test_missing_backend_package_is_a_clear_message(bundle_dir, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(EngineUnavailable, match="pip install onnxruntime"):
        create_engine("onnxruntime", bundle_dir)
    with pytest.raises(ValueError, match="unknown backend"):
        create_engine("openvino", bundle_dir)


def test_auto_without_engine_file_uses_onnxruntime(bundle_dir):
    eng = create_engine("auto", bundle_dir)
    assert eng.name == "onnxruntime"
    assert eng.warmup(2) > 0


def test_runtime_imports_without_torch_or_onnxruntime():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'onnxruntime', 'tensorrt', 'compress'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import mtc_perception, mtc_perception.perceptor, mtc_perception.engines, mtc_perception.bundle, mtc_perception.processing\n"
        "import mtc_perception.viz\n"
        "from mtc_perception.engines import ENGINES\n"
        "assert set(ENGINES) == {'tensorrt', 'onnxruntime', 'torch'}\n"
        "assert not any(m.split('.')[0] in ('torch', 'onnxruntime', 'tensorrt') for m in sys.modules)\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_infer_command_writes_overlays_and_json(bundle_dir, synth_root, tmp_path):
    from mtc_perception.cli import main

    src = tmp_path / "in"
    src.mkdir()
    for i, f in enumerate(_frames(synth_root, 3)):
        cv2.imwrite(str(src / f"f{i}.jpg"), f)
    (src / "broken.jpg").write_bytes(b"not an image")
    rc = main(
        [
            "infer",
            "--bundle",
            str(bundle_dir),
            "--input",
            str(src),
            "--out",
            str(tmp_path / "out"),
            "--backend",
            "onnxruntime",
        ]
    )
    assert rc == 1  # one frame failed, and it is counted, not dropped
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["frames"] == 3 and summary["failed"] == 1
    assert (
        summary["failures"][0]["frame"] == "broken.jpg" and "not a decodable image" in summary["failures"][0]["error"]
    )
    rec = json.loads((tmp_path / "out" / "f0.jpg.json").read_text())
    assert rec["image_size"] == [320, 180] and "detections" in rec and rec["timings_ms"]["infer"] > 0
    assert cv2.imread(str(tmp_path / "out" / "f0.jpg.jpg")).shape == (180, 320, 3)
    assert main(["infer", "--bundle", str(tmp_path), "--input", str(src), "--out", str(tmp_path / "x")]) == 2


# ---------------------------------------------------------------------------------------------
# TensorRT: only where a GPU and TensorRT 10 exist


def _trt_reason():
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (pip install 'tensorrt>=10,<11' on a machine with an NVIDIA GPU)"
    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine"
    return None


@pytest.mark.skipif(_trt_reason() is not None, reason=str(_trt_reason()))
def test_tensorrt_engine_matches_onnxruntime(synth_root, tmp_path):  # pragma: no cover - GPU machines only
    from compress.train import TrainConfig, train

    s = train(
        TrainConfig(
            data=str(synth_root),
            out=str(tmp_path / "run"),
            model_size="tiny",
            img_size=(128, 96),
            epochs=1,
            batch_size=4,
            workers=0,
            seed=0,
        ),
        progress=False,
    )
    export_bundle(s["best"], tmp_path / "b", ExportConfig(img_size=(128, 96), parity_frames=2, engine=True, fp16=True))
    versions = Bundle.load(tmp_path / "b").spec.versions
    assert versions.tensorrt.startswith("10.") and versions.gpu and versions.precision == "fp16"
    trt_p = Perceptor(tmp_path / "b", backend="tensorrt", conf=0.05, cuda_graph=True)
    ort_p = Perceptor(tmp_path / "b", backend="onnxruntime", conf=0.05)
    for f in _frames(synth_root):
        a, b = trt_p(f), ort_p(f)
        assert (a.drivable != b.drivable).mean() < 0.01 and (a.lane != b.lane).mean() < 0.01


def test_bench_engines_report(bundle_dir, synth_root, tmp_path):
    from mtc_perception.cli import main

    rc = main(
        [
            "bench-engines",
            "--bundle",
            f"a={bundle_dir}",
            "--bundle",
            f"b={bundle_dir}",
            "--frames",
            str(Path(synth_root) / "images" / "val"),
            "--size",
            "640x360",
            "--max-frames",
            "3",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    rep = json.loads((tmp_path / "engines.json").read_text())
    assert rep["meta"]["frame_size"] == [640, 360] and rep["meta"]["frames"] == 3
    a = rep["models"]["a"]
    assert a["frames"] == 3 and a["throughput_fps"] > 0 and a["speedup_vs_first"] == 1.0
    assert a["stage_ms"]["infer"]["mean"] > 0 and a["perceptor_share_of_engine"] > 0
    assert "| b |" in (tmp_path / "engines.md").read_text()
    # the bundles took turns on blocks of frames (default 10: one round of 3 frames); --block 0: one after the other
    assert rep["meta"]["block"] == 10 and rep["models"]["b"]["speedup_rounds"]["rounds"] == 1
    assert a["speedup_rounds"]["median"] == 1.0
    rc = main(
        [
            "bench-engines",
            "--bundle",
            f"a={bundle_dir}",
            "--bundle",
            f"b={bundle_dir}",
            "--frames",
            str(Path(synth_root) / "images" / "val"),
            "--size",
            "640x360",
            "--max-frames",
            "4",
            "--runs",
            "2",
            "--block",
            "3",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    rep = json.loads((tmp_path / "r" / "engines.json").read_text())
    assert (
        rep["models"]["b"]["frames"] == 8 and rep["models"]["b"]["speedup_rounds"]["rounds"] == 4
    )  # blocks of 3 + 1, twice
    rc = main(
        [
            "bench-engines",
            "--bundle",
            f"a={bundle_dir}",
            "--bundle",
            f"b={bundle_dir}",
            "--frames",
            str(Path(synth_root) / "images" / "val"),
            "--size",
            "640x360",
            "--max-frames",
            "2",
            "--block",
            "0",
            "--out",
            str(tmp_path / "s"),
        ]
    )
    rep = json.loads((tmp_path / "s" / "engines.json").read_text())
    assert rep["models"]["b"]["frames"] == 2 and "speedup_rounds" not in rep["models"]["b"]
    assert "one bundle after the other" in (tmp_path / "s" / "engines.md").read_text()
