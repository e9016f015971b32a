"""INT8 post-training quantization (compress/quantize, `mtc-compress quantize`): the float-kept rule, the Q/DQ
graph, the INT8 bundle through the runtime, calibration sources (dataset split, folder, a real rosbag2), every
bad input with its message, and the TensorRT build's explicit-quantization decision (a fake ``tensorrt``)."""

import pytest

pytest.importorskip(
    "torch",
    reason="needs torch (the offline half, compress/): `make test` installs it; "
    "a ROS 2 machine under colcon test may not have it",
)
pytest.importorskip("onnxruntime.quantization", reason="needs onnxruntime (pip install onnxruntime)")

import json
import logging
import shutil
from types import SimpleNamespace

import cv2
import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from torch import nn

from compress.checkpoint import save_checkpoint
from compress.export import ExportConfig, ExportError, ExportWrapper, export_bundle
from compress.models import ModelConfig, build_model
from compress.quantize import (
    AFTER_HEAD,
    HEAD_CONV,
    METHODS,
    PtqConfig,
    QuantizeError,
    float_kept_nodes,
    float_kept_rules,
    parse_source,
    quantize_bundle,
    write_int8_bundle,
)
from compress.quantize.calib import digest, frame_set, pick, spread
from mtc_perception.bench.report.agreement import detection_f1, mask_iou
from mtc_perception.bundle import Bundle, BundleError
from mtc_perception.imaging import read_image
from mtc_perception.perceptor import Perceptor

SIZE = (128, 96)
HEAD_PREFIXES = ("/model/detect/m.0/", "/model/detect/m.1/", "/model/detect/m.2/", "/model/drivable/out/",
                 "/model/lane/out/")  # fmt: skip


def _are_the_heads(names) -> bool:
    """The 3 detection output convs and the 2 segmentation ``out`` convs (named by the torch module path;
    a rewritten decoder's ``out`` is ``out/conv``)."""
    return len(names) == 5 and all(sum(n.startswith(p) for n in names) == 1 for p in HEAD_PREFIXES)


DECODE_OPS = {"Reshape", "Transpose", "Sigmoid", "Slice", "Mul", "Add", "Sub", "Pow", "Concat", "DepthToSpace"}


def _model(frame: np.ndarray) -> nn.Module:
    """The tiny architecture with weights that make its outputs depend on the frame (a briefly trained tiny
    model answers almost the same to every frame, so INT8 could not change anything): He-initialised convs,
    randomised BatchNorm, detection biases 0, segmentation biases set so each mask covers about half a frame."""
    torch.manual_seed(0)
    m = build_model(ModelConfig(size="tiny"))
    g = torch.Generator().manual_seed(0)
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, nonlinearity="relu", generator=g)
        if isinstance(mod, nn.BatchNorm2d):
            n = mod.num_features
            mod.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
            mod.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.25)
            mod.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            mod.bias.data.copy_(torch.randn(n, generator=g) * 0.2)
    m.eval()
    with torch.no_grad():
        for c in m.detect.m:
            c.bias.zero_()
        img = cv2.resize(frame, SIZE)[:, :, ::-1].transpose(2, 0, 1) / 255.0
        _, drv, lane = ExportWrapper(m)(torch.tensor(img[None].copy(), dtype=torch.float32))
        m.drivable.out.bias -= drv.median()
        m.lane.out.bias -= lane.median()
    return m


@pytest.fixture(scope="module")
def ckpt(synth_root, tmp_path_factory):
    frame = read_image(sorted((synth_root / "images" / "val").glob("*.jpg"))[0])
    d = tmp_path_factory.mktemp("qckpt")
    return save_checkpoint(
        d / "m.pt", _model(frame), train_config={"data": str(synth_root), "img_size": list(SIZE), "val_split": "val"}
    )


@pytest.fixture(scope="module")
def fp32(ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("qfp32") / "fp32"
    export_bundle(ckpt, out, ExportConfig(img_size=SIZE, parity_frames=2))
    return out


@pytest.fixture(scope="module")
def int8(fp32, synth_root, tmp_path_factory):
    """Calibrated on 8 of the 16 train frames; parity on 8 others."""
    out = tmp_path_factory.mktemp("qint8") / "int8"
    quantize_bundle(fp32, parse_source(f"{synth_root}:train"), out, PtqConfig(frames=8, parity_frames=8))
    return out


def _val(synth_root, n=8):
    return [read_image(p) for p in sorted((synth_root / "images" / "val").glob("*.jpg"))[:n]]


# ---------------------------------------------------------------------------------------------
# the float-kept rule


def _graph(nodes, outputs):
    """A float graph of input x (1x4x8x8) with ``nodes``; every Conv has weight W (4x4x1x1)."""
    w = helper.make_tensor("W", TensorProto.FLOAT, [4, 4, 1, 1], np.eye(4, dtype=np.float32).ravel().tolist())
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])], outs, initializer=[w]
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_the_rule_keeps_the_last_conv_of_every_path_to_an_output_and_what_follows():
    conv = lambda name, i, o: helper.make_node("Conv", [i, "W"], [o], name=name)  # noqa: E731
    model = _graph(
        [
            conv("stem", "x", "a"),
            helper.make_node("Sigmoid", ["a"], ["a2"], name="act"),
            conv("head1", "a2", "h1"),
            helper.make_node("Sigmoid", ["h1"], ["s1"], name="decode_sig"),
            helper.make_node("Mul", ["s1", "a2"], ["y1"], name="decode_mul"),  # reads a body tensor too
            conv("mid", "a2", "b"),
            conv("head2", "b", "y2"),  # straight to an output
            helper.make_node("DepthToSpace", ["h1"], ["y3"], name="d2s", blocksize=2),
        ],
        ["y1", "y2", "y3"],
    )
    rules = float_kept_rules(model)
    assert rules == {
        "head1": HEAD_CONV,
        "decode_sig": AFTER_HEAD,
        "decode_mul": AFTER_HEAD,
        "head2": HEAD_CONV,
        "d2s": AFTER_HEAD,
        "act": AFTER_HEAD,  # decode_mul reads it: on a path to an output after the last conv
        "stem": HEAD_CONV,  # ... so the conv before it is the last conv of that path
    }
    assert float_kept_nodes(model) == [n.name for n in model.graph.node if n.name in rules]
    assert "mid" not in rules


def test_the_rule_on_the_exported_model_finds_the_five_heads_and_the_decode(fp32):
    rules = float_kept_rules(onnx.load(str(fp32 / "model.onnx")))
    heads = {n for n, r in rules.items() if r == HEAD_CONV}
    assert _are_the_heads(heads), heads
    model = onnx.load(str(fp32 / "model.onnx"))
    ops = {n.name: n.op_type for n in model.graph.node}
    after = [ops[n] for n, r in rules.items() if r == AFTER_HEAD]
    assert set(after) <= DECODE_OPS and after.count("Sigmoid") == 3  # the decode's sigmoids, not the SiLUs
    assert Bundle.load(fp32).spec.graph.decoder_rewrite and "DepthToSpace" in after  # the rewritten decoders
    assert sum(op == "Conv" for op in ops.values()) > 40  # the body stays quantizable


# ---------------------------------------------------------------------------------------------
# the Q/DQ graph and the INT8 bundle


def test_qdq_feeds_every_quantized_conv_and_nothing_kept_float(int8, fp32):
    model = onnx.load(str(int8 / "model.onnx"))
    kept = Bundle.load(int8).spec.quantization.float_nodes
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inits = {t.name for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == sum(n.op_type == "Conv" for n in onnx.load(str(fp32 / "model.onnx")).graph.node)
    for c in convs:
        kinds = [producer[i].op_type if i in producer else "initializer" for i in c.input[:2]]
        if c.name in kept:
            assert kinds[0] != "DequantizeLinear" and c.input[1] in inits, (c.name, kinds)
        else:
            assert kinds == ["DequantizeLinear", "DequantizeLinear"], (c.name, kinds)
            w = producer[c.input[1]]
            assert w.input[0] in inits and len(w.input) == 3  # an int8 weight with its scales: per channel
            scale = next(t for t in model.graph.initializer if t.name == w.input[1])
            assert scale.dims[0] > 1, c.name
    for n in model.graph.node:
        if n.name in kept:
            assert not any(i in producer and producer[i].op_type == "DequantizeLinear" for i in n.input), n.name
            assert not any(d.op_type == "QuantizeLinear" for o in n.output for d in consumers.get(o, [])), n.name
    assert _are_the_heads({n for n, r in kept.items() if r == HEAD_CONV})
    onnx.checker.check_model(model, full_check=True)


def test_the_int8_bundle_json(int8, fp32):
    b = Bundle.load(int8)
    s, q = b.spec, b.spec.quantization
    assert s.versions.precision == "int8" and s.files.torch is None and s.files.engine is None and s.parity is None
    assert not (int8 / "model.pt2").exists()
    assert q.method == "minmax" and q.weight_type == "int8" and q.activation_type == "uint8" and q.per_channel
    assert q.symmetric_weights and not q.symmetric_activations and q.format == "QDQ"
    assert q.calibration.kind == "dataset" and q.calibration.split == "train" and q.calibration.frames == 8
    assert q.calibration.available == 16 and len(q.calibration.digest) == 32
    assert q.source_bundle == str(fp32) and q.onnxruntime and q.float_rule
    assert set(q.float_nodes.values()) == {HEAD_CONV, AFTER_HEAD}
    p = q.parity
    assert p.frames == 8 and p.independent  # the 8 train frames the calibration did not use
    assert set(p.max_abs_diff_normalized) == {"det", "drivable", "lane"}
    assert 0 < max(p.max_abs_diff_normalized.values())  # INT8 is not FP32: the record measures the difference
    assert p.detections["fp32"] > 0 and p.detections["matched"] <= min(p.detections["fp32"], p.detections["int8"])
    # the input, outputs and decode description are the source's
    src = Bundle.load(fp32).spec
    assert s.input == src.input and s.detection == src.detection and s.outputs == src.outputs and s.name == "int8"


# Measured on this fixture (calibration on 8 train frames, ONNX Runtime 1.32 CPU; a random model whose
# segmentation logits sit around 0 by construction, so a mask edge moves with any rounding, and whose deep
# activations span wide ranges, coarse in 8 bits): on the 8 val frames drivable IoU 0.85, lane IoU 0.85, pixel
# agreement 0.90 / 0.92, detection F1 0.85 with ~78 FP32 boxes a frame at conf 0.25. The bounds sit below
# those figures; a wrong scale, a quantized head or decode, or a broken graph fails them (an untouched
# FP32 run is caught by the difference > 0 check).
MIN_MASK_IOU = {"drivable": 0.75, "lane": 0.75}
MIN_AGREEMENT = 0.85
MIN_DET_F1 = 0.7


def test_the_int8_bundle_runs_through_the_perceptor_close_to_fp32(int8, fp32, synth_root):
    ref = Perceptor(fp32, backend="onnxruntime")
    cand = Perceptor(int8, backend="onnxruntime")
    assert "onnxruntime" in cand.backend
    frames = _val(synth_root)
    diffs, f1, agree, ious = [], [], [], {"drivable": [], "lane": []}
    for img in frames:
        a, b = ref(img), cand(img)
        assert b.drivable.shape == img.shape[:2] and b.lane.dtype == np.uint8
        x, _ = ref.preprocess([img])
        diffs.append(np.abs(ref.engine.infer(x)["drivable"] - cand.engine.infer(x)["drivable"]).max())
        f1.append(detection_f1(a, b))
        for k in ious:
            ious[k].append(mask_iou(getattr(a, k), getattr(b, k)))
            agree.append(float(np.mean(getattr(a, k) == getattr(b, k))))
    assert min(diffs) > 0  # not the FP32 model under another name
    for k, lo in MIN_MASK_IOU.items():
        assert np.mean(ious[k]) >= lo, (k, ious[k])
    assert np.mean(f1) >= MIN_DET_F1, f1
    assert min(agree) >= MIN_AGREEMENT, agree
    assert Perceptor(int8, backend="auto").backend.startswith("onnxruntime")


def test_the_torch_backend_refuses_an_int8_bundle_by_name(int8):
    with pytest.raises(BundleError, match="INT8 bundle has no torch program.*--backend onnxruntime"):
        Perceptor(int8, backend="torch")


def test_mtc_infer_and_bench_engines_run_an_int8_bundle(int8, fp32, synth_root, tmp_path):
    from mtc_perception.cli import main as mtc

    frames = synth_root / "images" / "val"
    assert mtc(["infer", "--bundle", str(int8), "--input", str(frames), "--out", str(tmp_path / "inf")]) == 0
    assert json.loads((tmp_path / "inf" / "summary.json").read_text())["failed"] == 0
    argv = ["bench-engines", "--bundle", f"fp32={fp32}", "--bundle", f"int8={int8}", "--frames", str(frames)]
    argv += ["--size", "320x180", "--max-frames", "4", "--out", str(tmp_path / "eng")]
    assert mtc(argv) == 0
    assert "int8" in (tmp_path / "eng" / "engines.md").read_text()


# ---------------------------------------------------------------------------------------------
# calibration sources


def test_frames_are_spread_evenly_and_bad_ones_replaced(tmp_path):
    assert spread(list(range(16)), 4) == [0, 5, 10, 15] and spread([3, 4], 5) == [3, 4] and spread([1], 0) == []
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(10):
        img = np.full((20, 30, 3), i * 20, np.uint8)
        cv2.imwrite(str(d / f"{i:02d}.png"), img)
    (d / "00.png").write_bytes(b"not a png")  # the first of the spread is unreadable
    fs = frame_set(parse_source(str(d)))
    got = pick(fs, 3)
    assert len(got.images) == 3 and 0 in got.bad and 0 not in got.indices
    assert got.indices[1:] == [4, 9] or set(got.indices) >= {4, 9}  # the good ones of the spread kept
    with pytest.raises(QuantizeError, match=r"only 9 of the 10 calibration frames .* lower --frames to 9"):
        pick(frame_set(parse_source(str(d))), 10)


def test_calibration_from_a_folder_and_a_split_record_their_source(fp32, synth_root, tmp_path):
    folder = tmp_path / "imgs"
    shutil.copytree(synth_root / "images" / "val", folder)
    out = quantize_bundle(fp32, parse_source(str(folder)), tmp_path / "q", PtqConfig(frames=4, parity_frames=2))
    cal = Bundle.load(out).spec.quantization.calibration
    assert cal.kind == "folder" and cal.split is None and cal.frames == 4 and cal.available == 8
    split = parse_source(f"{synth_root}:val")
    assert (split.kind, split.split) == ("dataset", "val")
    same = pick(frame_set(split), 4)
    assert digest(same.images) == cal.digest  # the split's val images are the folder's: the same frames


def test_calibration_from_a_real_rosbag2(fp32, synth_root, tmp_path):
    from mtc_perception.bags import SourceFrame, WriteConfig, write_bag

    frames = _val(synth_root)
    bag = tmp_path / "rec"
    write_bag(bag, [SourceFrame(str(i), f) for i, f in enumerate(frames)], WriteConfig(storage="mcap"))
    src = parse_source(str(bag))
    assert src.kind == "bag"
    out = quantize_bundle(fp32, src, tmp_path / "qb", PtqConfig(frames=4, parity_frames=2))
    q = Bundle.load(out).spec.quantization
    assert q.calibration.kind == "bag" and q.calibration.topic == "/camera/image_raw" and q.calibration.frames == 4
    assert q.calibration.available == 8 and q.parity.independent
    assert q.calibration.digest == digest([frames[i] for i in spread(list(range(8)), 4)])  # raw frames: exact pixels
    # a lone .mcap file and a compressed topic, named
    jbag = tmp_path / "jpeg"
    write_bag(jbag, [SourceFrame(str(i), f) for i, f in enumerate(frames)], WriteConfig(transport="compressed"))
    (mcap,) = jbag.glob("*.mcap")
    fs = frame_set(parse_source(str(mcap), topic="/camera/image_raw/compressed"))
    assert fs.count == 8 and len(pick(fs, 2).images) == 2
    with pytest.raises(QuantizeError, match=r"(?s)topic '/nope' is not in .*/camera/image_raw/compressed"):
        frame_set(parse_source(str(jbag), topic="/nope"))


# ---------------------------------------------------------------------------------------------
# bad input: each an error naming the input, what was expected and the fix


def test_bad_calibration_sources(tmp_path, synth_root):
    (tmp_path / "empty").mkdir()
    with pytest.raises(QuantizeError, match=r"--calib .*empty: no images .* under calibration folder"):
        frame_set(parse_source(str(tmp_path / "empty")))
    with pytest.raises(QuantizeError, match=r"--calib .*missing does not exist; give ROOT:SPLIT"):
        parse_source(str(tmp_path / "missing"))
    with pytest.raises(QuantizeError, match=r"is a dataset root: name the split, e\.g\. --calib .*:train"):
        parse_source(str(synth_root))
    with pytest.raises(QuantizeError, match=r"has no split 'tset' .* its splits: \['train', 'val'\]"):
        parse_source(f"{synth_root}:tset")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(QuantizeError, match=r"is a file but not a rosbag2 storage file"):
        parse_source(str(tmp_path / "a.txt"))
    with pytest.raises(QuantizeError, match=r"--topic /cam is for a rosbag2 recording"):
        parse_source(str(tmp_path / "empty"), topic="/cam")
    broken = tmp_path / "broken"
    broken.mkdir()
    for i in range(3):
        (broken / f"{i}.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(QuantizeError, match=r"only 0 of the 2 calibration frames .* 3 unreadable"):
        pick(frame_set(parse_source(str(broken))), 2)


def test_an_already_quantized_bundle_is_refused(int8, fp32, tmp_path):
    with pytest.raises(QuantizeError, match=r"is already quantized \(its bundle.json has a quantization section\)"):
        quantize_bundle(int8, parse_source(str(tmp_path)), tmp_path / "q", PtqConfig())
    disguised = tmp_path / "disguised"  # an FP32 bundle.json over a Q/DQ file
    shutil.copytree(fp32, disguised)
    shutil.copy(int8 / "model.onnx", disguised / "model.onnx")
    with pytest.raises(QuantizeError, match=r"is already quantized \(\d+ Q/DQ nodes\).*give the FP32 bundle"):
        quantize_bundle(disguised, parse_source(str(tmp_path)), tmp_path / "q", PtqConfig())
    assert not (tmp_path / "q").exists()


def test_unknown_method_and_bad_counts():
    with pytest.raises(QuantizeError, match=r"--method 'kl' is unknown; choose one of minmax, entropy, percentile"):
        PtqConfig(method="kl")
    with pytest.raises(QuantizeError, match=r"--frames 0"):
        PtqConfig(frames=0)
    with pytest.raises(QuantizeError, match=r"--fp16 .* add --engine"):
        PtqConfig(fp16=True)


def test_out_that_is_not_a_bundle_is_not_replaced(fp32, synth_root, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "keep.jpg").write_bytes(b"x")
    with pytest.raises(ExportError, match=r"--out .*photos exists and is a folder without bundle.json"):
        quantize_bundle(fp32, parse_source(f"{synth_root}:val"), photos, PtqConfig(frames=2))
    assert (photos / "keep.jpg").read_bytes() == b"x"


def test_a_runtime_without_the_kernels_is_an_error_not_a_fallback(fp32, int8, tmp_path, monkeypatch):
    import mtc_perception.engines as engines

    def no_kernels(backend, bundle, **kw):
        raise BundleError(f"{bundle.file('onnx')}: ONNX Runtime cannot load it (NOT_IMPLEMENTED: DequantizeLinear)")

    monkeypatch.setattr(engines, "create_engine", no_kernels)
    q = Bundle.load(int8).spec.quantization
    with pytest.raises(QuantizeError, match=r"cannot run the INT8 model .* lacks the kernels .* never silently"):
        write_int8_bundle(fp32, int8 / "model.onnx", tmp_path / "q", q)
    assert not (tmp_path / "q").exists()


def test_write_int8_bundle_checks_the_qdq_file(fp32, int8, tmp_path):
    q = Bundle.load(int8).spec.quantization
    with pytest.raises(QuantizeError, match=r"has no QuantizeLinear/DequantizeLinear nodes"):
        write_int8_bundle(fp32, fp32 / "model.onnx", tmp_path / "q", q)
    with pytest.raises(QuantizeError, match=r"source bundle .* is already INT8"):
        write_int8_bundle(int8, int8 / "model.onnx", tmp_path / "q", q)
    out = write_int8_bundle(fp32, int8 / "model.onnx", tmp_path / "q", q, name="qat-like")
    b = Bundle.load(out)
    assert b.name == "qat-like" and b.spec.quantization.parity == q.parity  # none measured without frames


def test_percentile_calibrates_other_ranges_than_minmax(fp32, int8, synth_root, tmp_path):
    from onnx import numpy_helper

    out = quantize_bundle(
        fp32, parse_source(f"{synth_root}:train"), tmp_path / "p", PtqConfig(method="percentile", frames=8)
    )

    def scales(path):
        m = onnx.load(str(path / "model.onnx"))
        return {
            t.name: float(numpy_helper.to_array(t)) for t in m.graph.initializer if t.name.endswith("output_0_scale")
        }

    a, b = scales(int8), scales(out)
    assert a.keys() == b.keys() and sum(a[k] != b[k] for k in a) > len(a) // 2
    assert Bundle.load(out).spec.quantization.method == "percentile"
    from compress.quantize.ptq import CALIBRATIONS

    opts = CALIBRATIONS["entropy"][1]  # more bins than quantized bins, or entropy is minmax (ORT's default)
    assert opts["num_bins"] > opts["num_quantized_bins"]


# ---------------------------------------------------------------------------------------------
# the command line


@pytest.fixture
def cli_logs(logs):
    """``logs`` with the mtc-compress command's own logger too (where its error messages go)."""
    cli = logging.getLogger("mtc-compress")
    cli.addHandler(logs)
    yield logs
    cli.removeHandler(logs)


def test_cli(fp32, ckpt, synth_root, tmp_path, cli_logs, capsys):
    from compress.cli import QUANT_METHODS, main

    logs = cli_logs
    assert QUANT_METHODS == METHODS
    with pytest.raises(SystemExit) as e:
        main(["quantize", "--help"])
    assert e.value.code == 0 and "ROOT:SPLIT" in capsys.readouterr().out
    out = tmp_path / "q"
    assert main(["quantize", "--ckpt", str(ckpt), "--size", "128x96", "--calib", f"{synth_root}:train",
                 "--frames", "4", "--parity-frames", "2", "--out", str(out)]) == 0  # fmt: skip
    printed = json.loads(capsys.readouterr().out)
    assert printed["quantization"]["calibration"]["frames"] == 4 and printed["float_nodes"] > 5
    q = Bundle.load(out).spec.quantization
    assert q.source_bundle.startswith("FP32 export of") and q.parity.independent
    # bad input: exit 2 and the message
    for argv, message in (
        (["--bundle", str(out), "--calib", f"{synth_root}:val"], "is already quantized"),
        (["--bundle", str(fp32), "--calib", f"{synth_root}:val", "--frames", "50"], "lower --frames to 8"),
        (["--bundle", str(fp32), "--calib", str(synth_root)], "is a dataset root: name the split"),
        (["--bundle", str(fp32), "--calib", f"{synth_root}:val", "--size", "64x64"], "--size applies to --ckpt"),
    ):
        logs.clear()
        assert main(["quantize", *argv, "--out", str(tmp_path / "bad")]) == 2, argv
        assert message in logs.text, (argv, logs.text)
    with pytest.raises(SystemExit) as e:
        main(["quantize", "--bundle", str(fp32), "--calib", "x", "--out", "y", "--method", "kl"])
    assert e.value.code == 2 and "invalid choice: 'kl'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


# ---------------------------------------------------------------------------------------------
# TensorRT: explicit quantization for a Q/DQ model (a fake tensorrt: the decision, not TensorRT)


class _FakeConfig:
    def __init__(self):
        self.flags, self.int8_calibrator = [], None

    def set_memory_pool_limit(self, *a):
        pass

    def create_timing_cache(self, data):
        return SimpleNamespace(serialize=lambda: b"cache")

    def set_timing_cache(self, cache, ignore_mismatch):
        self.cache = cache

    def get_timing_cache(self):
        return self.cache

    def set_flag(self, flag):
        self.flags.append(flag)

    def add_optimization_profile(self, p):
        pass


def _fake_trt(configs):
    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    class Builder:
        platform_has_fast_int8 = platform_has_fast_fp16 = True

        def __init__(self, logger):
            pass

        def create_network(self, flags):
            return SimpleNamespace()

        def create_builder_config(self):
            configs.append(_FakeConfig())
            return configs[-1]

        def build_serialized_network(self, network, config):
            return b"plan"

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            pass

        def parse(self, data):
            return True

    return SimpleNamespace(
        __version__="10.3.0",
        Logger=Logger,
        Builder=Builder,
        OnnxParser=OnnxParser,
        MemoryPoolType=SimpleNamespace(WORKSPACE="workspace"),
        BuilderFlag=SimpleNamespace(FP16="FP16", INT8="INT8"),
    )


@pytest.mark.parametrize(
    "model,ask_int8,flags,calibrator,warned",
    [
        ("int8", True, ["INT8"], False, False),
        ("int8", False, ["INT8"], False, False),
        ("fp32", True, ["INT8"], True, True),
        ("fp32", False, [], False, False),
    ],
    ids=["qdq-explicit", "qdq-explicit-without-int8-flag", "fp32-implicit-deprecated", "fp32-no-int8"],
)
def test_the_engine_build_quantizes_explicitly_from_qdq(
    fp32, int8, tmp_path, monkeypatch, logs, model, ask_int8, flags, calibrator, warned
):
    import compress.export.engine as engine
    import mtc_perception.engines.tensorrt_engine as trt_engine

    configs: list = []
    fake = _fake_trt(configs)
    monkeypatch.setattr(engine, "_require_tensorrt", lambda: fake)
    monkeypatch.setattr(trt_engine, "gpu_identity", lambda: {"gpu": "Fake GPU", "compute_capability": "8.9"})
    monkeypatch.setattr(engine, "_calibrator", lambda *a: "calibrator")
    src = {"int8": int8, "fp32": fp32}[model]
    cfg = ExportConfig(engine=True, int8=ask_int8, calib="frames" if ask_int8 else None)
    built = engine.build_engine(src / "model.onnx", tmp_path / "m.engine", cfg, [], tmp_path / "t.cache")
    assert configs[0].flags == flags
    assert (configs[0].int8_calibrator == "calibrator") is calibrator
    assert ("deprecated since TensorRT 10.1" in logs.text) is warned
    assert built["precision"] == ("int8" if flags else "fp32") and (tmp_path / "m.engine").read_bytes() == b"plan"
    assert engine.int8_mode(True, False) == "explicit" and engine.int8_mode(False, True) == "implicit"
    assert engine.int8_mode(False, False) is None


def test_a_checkpoint_without_data_and_a_bag_asks_for_an_fp32_bundle(synth_root, tmp_path):
    from compress.quantize import export_then_quantize
    from mtc_perception.bags import SourceFrame, WriteConfig, write_bag

    ck = save_checkpoint(tmp_path / "m.pt", build_model(ModelConfig(size="tiny")))  # names no dataset
    write_bag(tmp_path / "rec", [SourceFrame(str(i), f) for i, f in enumerate(_val(synth_root, 2))], WriteConfig())
    with pytest.raises(QuantizeError, match=r"--ckpt .*m\.pt: the export before quantizing needs image frames"):
        export_then_quantize(ck, SIZE, parse_source(str(tmp_path / "rec")), tmp_path / "q", PtqConfig(frames=1))
    assert not (tmp_path / "q").exists()
