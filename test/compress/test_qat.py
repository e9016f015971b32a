"""Quantization-aware training (compress/quantize/qat.py, qat_export.py, stage.py): fake quantization at
every conv but the head outputs, the project's distillation loop fine-tuning it (the loss falls), the
weights_only checkpoint round trip, the Q/DQ ONNX (placement, ONNX Runtime = the fake-quantized torch
net), the recipe's quantize: section (validation) and `compress --quick` with mode qat end to end."""

import pytest

pytest.importorskip(
    "torch",
    reason="needs torch (the offline half, compress/): `make test` installs it; "
    "a ROS 2 machine under colcon test may not have it",
)
pytest.importorskip("onnxruntime", reason="the Q/DQ export is checked on ONNX Runtime")

import copy
import json

import numpy as np
import onnx
import torch
import yaml

from compress.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from compress.cli import main
from compress.config_io import ConfigFileError
from compress.data import DataConfig, MultiTaskDataset
from compress.export.wrapper import ExportWrapper
from compress.losses import MultiTaskLoss
from compress.models import HEAD_OUTPUTS
from compress.pipeline import recalibrate_bn
from compress.quantize import qat as qat_mod
from compress.quantize.qat import QatScheme, QuantConv2d, calibrate, prepare_qat, qat_convs
from compress.quantize.qat_export import conv_quantization, deploy_qat, export_qat_onnx
from compress.quantize.rules import HEAD_CONV, float_kept_rules, name_nodes
from compress.quantize.stage import calib_batches
from compress.recipe import PTQ_METHODS, QAT_METHODS, load_recipe
from compress.train import TrainConfig, train

SIZE = (128, 96)  # network input (width, height)
HEADS = {p for paths in HEAD_OUTPUTS.values() for p in paths}
# ONNX Runtime vs the fake-quantized torch network, normalized outputs (boxes / input size,
# probabilities), 99.9th percentile: both compute the same int8 grid; float round-off (BatchNorm folded
# in the export, another conv kernel) moves a value across a rounding boundary now and then, and that
# int8 step travels on (compress.quantize.qat_export.qat_parity).
ORT_TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def teacher(synth_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("qat_teacher")
    cfg = TrainConfig(
        data=str(synth_root),
        out=str(out),
        model_size="tiny",
        img_size=SIZE,
        epochs=1,
        batch_size=4,
        workers=0,
        seed=0,
        max_train_batches=2,
    )
    best = train(cfg, progress=False)["best"]
    # two steps leave BatchNorm's running statistics at their initial values: measure them, as a
    # trained network has them (QAT calibrates and trains with running statistics)
    model, ck = load_model(best)
    ds = MultiTaskDataset(DataConfig(root=str(synth_root), split="train"), img_size=SIZE, augment=None)
    recalibrate_bn(model, ds, batches=4, batch_size=4)
    return str(save_checkpoint(out / "teacher.pt", model, train_config=ck["train_config"]))


@pytest.fixture(scope="module")
def train_ds(synth_root):
    return MultiTaskDataset(DataConfig(root=str(synth_root), split="train"), img_size=SIZE, augment=None)


def _calibrated(teacher, train_ds, method="minmax"):
    model, _ = load_model(teacher)
    prepare_qat(model, QatScheme(method))
    calibrate(model, calib_batches(train_ds, 4, 2, seed=0))
    return model.eval()


def _frames(synth_root, n=4):
    from mtc_perception.imaging import read_image
    from mtc_perception.inputs import list_images

    return [read_image(p) for p in list_images(synth_root / "images" / "val")[:n]]


def _inputs(synth_root, n=4):
    """Validation frames preprocessed as the runtime does (letterbox, RGB, / 255)."""
    from mtc_perception.processing import letterbox_image

    out = []
    for img in _frames(synth_root, n):
        x, _, _ = letterbox_image(img, SIZE)
        out.append(torch.from_numpy(np.ascontiguousarray(x[..., ::-1].transpose(2, 0, 1))).float()[None] / 255)
    return out


# ------------------------------------------------------------------------------------------------
# the prepared network


def test_prepare_quantizes_every_conv_but_the_head_outputs(teacher):
    model, _ = load_model(teacher)
    n_convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    prepare_qat(model)
    q = qat_convs(model)
    assert set(model.qat_scheme.float_convs) == HEADS
    assert len(q) == n_convs - len(HEADS) > 50
    for name, m in model.named_modules():
        if name in HEADS:
            assert type(m) is torch.nn.Conv2d  # no fake quantization at all: input, weight, output float
    conv = q["backbone.stem.conv"]
    assert conv.weight_quant.qscheme == torch.per_channel_symmetric and conv.weight_quant.ch_axis == 0
    assert conv.input_quant.qscheme == torch.per_tensor_symmetric
    assert (conv.input_quant.quant_min, conv.input_quant.quant_max, conv.input_quant.dtype) == (-128, 127, torch.qint8)
    assert isinstance(conv.input_quant, torch.ao.quantization.FakeQuantize)  # torch's own modules
    assert conv.weight_quant.scale.shape == (conv.out_channels,)
    with pytest.raises(qat_mod.QatError, match="prepared for QAT already"):
        prepare_qat(model)


def test_calibration_sets_ranges_and_eval_freezes_them(teacher, train_ds, synth_root):
    model = _calibrated(teacher, train_ds, "moving_average")
    stem = qat_convs(model)["backbone.stem.conv"]
    # the first conv reads images in [0, 1]: symmetric int8 with the maximum at 127 -> scale = max / 127
    assert 0.85 / 127 < float(stem.input_quant.scale) <= 1.0 / 127 + 1e-9
    before = {k: v.input_quant.scale.clone() for k, v in qat_convs(model).items()}
    x = _inputs(synth_root, 1)[0] * 3  # out of the calibrated range
    model.eval()
    with torch.no_grad():
        model(x)
    assert all(torch.equal(before[k], v.input_quant.scale) for k, v in qat_convs(model).items())
    model.train()  # moving_average: training mode tracks the ranges
    with torch.no_grad():
        model(x)
    assert float(stem.input_quant.scale) > float(before["backbone.stem.conv"])
    fixed = _calibrated(teacher, train_ds, "minmax").train()  # minmax: fixed after calibration, also in training
    s0 = fixed.backbone.stem.conv.input_quant.scale.clone()
    with torch.no_grad():
        fixed(x)
    assert torch.equal(s0, fixed.backbone.stem.conv.input_quant.scale)


def test_fake_quant_changes_the_function_and_calibration_is_needed(teacher, train_ds, synth_root):
    model = _calibrated(teacher, train_ds)
    float_model, _ = load_model(teacher)
    x = _inputs(synth_root, 1)[0]
    with torch.no_grad():
        (_, a), (_, b) = model(x, features=True), float_model.eval()(x, features=True)
    for tap in ("backbone.p3", "neck.enc", "neck.p5"):
        rel = float((a[tap] - b[tap]).norm() / b[tap].norm())
        assert 1e-3 < rel < 0.5, (tap, rel)  # quantized (not the float network), yet near it
    with pytest.raises(qat_mod.QatError, match="no calibration batch"):
        calibrate(prepare_qat(load_model(teacher)[0]), [])


# ------------------------------------------------------------------------------------------------
# the training loop fine-tunes it


def _objective(model, teacher, batches, crit, distill_weight):
    """The distillation run's training loss (task losses + distill_weight x feature distillation)
    of ``model`` in training mode, averaged over fixed batches; nothing is updated."""
    from compress.distill import FeatureDistiller
    from compress.prune import spec_for

    t, _ = load_model(teacher)
    s = copy.deepcopy(model)
    net = FeatureDistiller(t, s, spec_for(t), spec_for(s), torch.zeros(1, 3, SIZE[1], SIZE[0])).train()
    with torch.no_grad():
        losses = []
        for b in batches:
            out, feat = net(b["x"])
            losses.append(float(crit(out, b)["total"] + distill_weight * feat["feat"]))
    return float(np.mean(losses))


def test_qat_steps_in_the_distillation_loop_lower_the_loss(teacher, train_ds, synth_root, tmp_path):
    from compress.data import build_loader, iterate
    from compress.evaluate import to_input

    model = _calibrated(teacher, train_ds)
    init = save_checkpoint(tmp_path / "calibrated.pt", model, train_config=load_checkpoint(teacher)["train_config"])
    loader = build_loader(train_ds, 4, 0, shuffle=False)
    fixed = [{**b, "x": to_input(b["img"], "cpu")} for _, b in zip(range(3), iterate(loader))]
    crit = MultiTaskLoss.for_model(model)
    before = _objective(model, teacher, fixed, crit, 0.1)
    weights0 = model.backbone.stem.conv.weight.detach().clone()
    cfg = TrainConfig(
        data=str(synth_root),
        out=str(tmp_path / "run"),
        img_size=SIZE,
        init=str(init),
        teacher=teacher,  # the distillation losses against the teacher
        distill_weight=0.1,  # this teacher had 2 steps of training: its features teach little
        epochs=3,
        batch_size=4,
        workers=0,
        lr=3e-3,
        warmup_epochs=0.0,
        augment=False,
        ema=False,
        max_train_batches=4,
        seed=0,
    )
    summary = train(cfg, progress=False)
    trained, ck = load_model(summary["last"])
    assert "qat" in ck and isinstance(trained.backbone.stem.conv, QuantConv2d)  # it trained the QAT network
    after = _objective(trained, teacher, fixed, crit, 0.1)
    assert after < 0.9 * before, (before, after)
    assert not torch.equal(weights0, trained.backbone.stem.conv.weight)
    rec = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"epoch"' in x]
    assert "feat" in rec[0]["loss"]  # the distillation's loss terms were trained on


# ------------------------------------------------------------------------------------------------
# checkpoint


def test_qat_checkpoint_is_weights_only_data_and_round_trips(teacher, train_ds, synth_root, tmp_path):
    model = _calibrated(teacher, train_ds)
    path = save_checkpoint(tmp_path / "qat.pt", model)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["qat"]["format"] == "mtc-qat" and set(raw["qat"]["float_convs"]) == HEADS
    sd = raw["state_dict"]
    assert sd["backbone.stem.conv.input_quant.scale"].shape == (1,)
    assert sd["backbone.stem.conv.weight_quant.scale"].shape == (model.backbone.stem.conv.out_channels,)
    loaded, _ = load_model(path)
    x = _inputs(synth_root, 1)[0]
    with torch.no_grad():
        a, b = model.eval()(x), loaded.eval()(x)
    assert torch.equal(a.drivable, b.drivable) and torch.equal(a.det[0], b.det[0])
    raw["qat"]["method"] = "exec"
    torch.save(raw, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="QAT scheme cannot be applied: QAT method 'exec' is unknown"):
        load_model(tmp_path / "bad.pt")


# ------------------------------------------------------------------------------------------------
# the Q/DQ ONNX


def _randomize_bn(model):
    """BatchNorm far from identity (the export's folding is exercised) and head output convs of unit
    gain (the two-step teacher's are near their init: its outputs would hardly depend on the features)."""
    g = torch.Generator().manual_seed(0)
    for name, m in model.named_modules():
        if name in HEADS:
            m.weight.data = torch.randn(m.weight.shape, generator=g) / (m.in_channels**0.5)
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = torch.rand(m.num_features, generator=g) + 0.5
            m.bias.data = torch.rand(m.num_features, generator=g) * 0.4 - 0.2
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


@pytest.fixture(scope="module")
def exported(teacher, train_ds, tmp_path_factory):
    model, _ = load_model(teacher)
    _randomize_bn(model)
    prepare_qat(model)
    calibrate(model, calib_batches(train_ds, 4, 2, seed=0))
    path = export_qat_onnx(model.eval(), tmp_path_factory.mktemp("qdq") / "model.onnx", SIZE)
    return model, path


def test_export_puts_qdq_on_conv_inputs_and_weights_and_none_on_head_outputs(exported):
    model, path = exported
    convs = conv_quantization(path)
    by_module = {c["module"]: c for c in convs.values()}
    assert set(by_module) == {n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    for mod, c in by_module.items():
        want = mod not in HEADS
        assert (c["input"], c["weight"]) == (want, want), mod
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version == 17
    init = {i.name: i for i in proto.graph.initializer}
    producer = {o: n for n in proto.graph.node for o in n.output}

    def shape(name):  # of a constant: an initializer, a Constant node, or an Identity of one
        while name not in init and producer[name].op_type == "Identity":
            name = producer[name].input[0]
        return tuple(init[name].dims) if name in init else tuple(producer[name].attribute[0].t.dims)

    modules = dict(model.named_modules())
    for node_name, c in convs.items():
        if c["module"] in HEADS:
            continue
        node = next(n for n in proto.graph.node if n.name == node_name)
        act_dq, w_dq = producer[node.input[0]], producer[node.input[1]]
        assert shape(act_dq.input[1]) == ()  # per-tensor activation scale: a scalar (TensorRT's form)
        assert {a.name: a.i for a in w_dq.attribute}.get("axis", 1) == 0  # weights: per output channel
        assert shape(w_dq.input[1]) == (modules[c["module"]].out_channels,)
    # the project's float-kept rule (compress.quantize.rules) finds exactly the unquantized convs
    name_nodes(proto)
    heads = {n for n, r in float_kept_rules(proto).items() if r == HEAD_CONV}
    assert {conv_quantization(path)[n]["module"] for n in heads} == HEADS


def test_onnxruntime_runs_the_qdq_model_like_the_fake_quant_network(exported, synth_root):
    import onnxruntime as ort

    model, path = exported
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    float_net = copy.deepcopy(model)
    for q in qat_convs(float_net).values():  # the same weights without fake quantization
        q.input_quant.disable_fake_quant()
        q.weight_quant.disable_fake_quant()
    d_fq, d_float = {}, {}
    for x in _inputs(synth_root, 4):
        o = dict(zip(("det", "drivable", "lane"), sess.run(None, {"images": x.numpy()})))
        with torch.no_grad():
            t = dict(zip(("det", "drivable", "lane"), (v.numpy() for v in ExportWrapper(model)(x))))
            f = dict(zip(("det", "drivable", "lane"), (v.numpy() for v in ExportWrapper(float_net)(x))))
        for k in o:
            a, b, c = (v[k].astype(np.float64).copy() for v in (o, t, f))
            for v in (a, b, c):  # normalized as the export's parity: boxes / input size, probabilities
                if k == "det":
                    v[..., [0, 2]] /= SIZE[0]
                    v[..., [1, 3]] /= SIZE[1]
                else:
                    v[:] = 1 / (1 + np.exp(-v))
            d_fq.setdefault(k, []).append(np.abs(a - b).ravel())
            d_float.setdefault(k, []).append(np.abs(a - c).ravel())
    for k in d_fq:
        fq, fl = np.concatenate(d_fq[k]), np.concatenate(d_float[k])
        assert np.quantile(fq, 0.999) <= ORT_TOLERANCE, (k, np.quantile(fq, 0.999), fq.max())
        # the ONNX file computes the quantized network, not the float one
        assert np.median(fq) <= 0.01 * np.median(fl) and np.median(fl) > 0, (k, np.median(fq), np.median(fl))


def test_deploy_folds_batchnorm_into_the_quantized_convs(exported, synth_root):
    model, _ = exported
    d = deploy_qat(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())
    x = _inputs(synth_root, 1)[0]
    with torch.no_grad():
        a, b = ExportWrapper(model)(x), ExportWrapper(d)(x)
    assert float((a[1] - b[1]).abs().max()) < 0.5 and float((a[0][..., 4] - b[0][..., 4]).abs().max()) < 0.05


# ------------------------------------------------------------------------------------------------
# the recipe's quantize: section


def _write(tmp_path, **kw):
    r = {"teacher": str(tmp_path / "no-such-teacher.pt"), "out": str(tmp_path / "out"), "prune": {"target": 0.4}}
    r.update(kw)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(r))
    return path


BAD_QUANTIZE = [
    ({"mode": "int4"}, r"quantize\.mode: 'int4' is unknown; use ptq .* or qat"),
    ({"epochs": 2}, r"quantize\.mode: missing; set mode: qat or mode: ptq"),
    ({"mode": "qat", "epochz": 2}, r"quantize: unknown key\(s\) \['epochz'\]"),
    ({"mode": "ptq", "epochs": 2}, r"quantize\.epochs: is a qat option; remove it \(mode is ptq\)"),
    ({"mode": "qat", "calib_frames": 64}, r"quantize\.calib_frames: is a ptq option"),
    ({"mode": "qat", "method": "entropy"}, r"quantize\.method: 'entropy' is not a qat method; use one of \['minmax'"),
    ({"mode": "ptq", "method": "histogram"}, r"quantize\.method: 'histogram' is not a ptq method"),
    ({"mode": "qat", "epochs": 0}, r"quantize\.epochs: must be >= 1, got 0"),
    ({"mode": "qat", "lr": 0}, r"quantize\.lr: must be > 0, got 0"),
    ({"mode": "qat", "lr": "fast"}, r"quantize\.lr: .*does not fit"),
    ({"mode": "qat", "calib_batches": 0}, r"quantize\.calib_batches: must be >= 1"),
    ({"mode": "qat", "averaging_constant": 0.1}, r"quantize\.averaging_constant: is for method: moving_average"),
    (
        {"mode": "qat", "method": "moving_average", "averaging_constant": 2},
        r"quantize\.averaging_constant: must be in \(0, 1.0\]",
    ),
    ({"mode": "ptq", "percentile": 99.9}, r"quantize\.percentile: is for method: percentile only"),
    ({"mode": "qat", "name": "../elsewhere"}, r"quantize\.name: '../elsewhere' must be a plain directory name"),
    ({"mode": "qat", "name": "student_fp32"}, r"quantize\.name: student_fp32 is the FP32 bundle"),
    ({"mode": "qat", "parity_frames": -1}, r"quantize\.parity_frames: must be >= 0"),
]


@pytest.mark.parametrize("section,match", BAD_QUANTIZE)
def test_quantize_section_errors_name_the_field(tmp_path, section, match):
    with pytest.raises(ConfigFileError, match=match):
        load_recipe(_write(tmp_path, quantize=section))


def test_quantize_section_parses_and_quick_shrinks_it(tmp_path):
    from compress.quantize import ptq

    assert QAT_METHODS == qat_mod.METHODS and PTQ_METHODS == ptq.METHODS  # one list per mode
    r = load_recipe(_write(tmp_path, quantize={"mode": "qat", "method": "histogram", "epochs": 3, "lr": 1e-4}))
    assert (r.quantize.mode, r.quantize.method, r.quantize.epochs, r.quantize.lr) == ("qat", "histogram", 3, 1e-4)
    q = load_recipe(_write(tmp_path, quantize={"mode": "qat", "epochs": 3}), quick=True).quantize
    assert (q.epochs, q.calib_batches) == (1, 2)
    assert load_recipe(_write(tmp_path), quick=True).quantize.mode is None  # --quick adds no stage
    assert load_recipe(_write(tmp_path, quantize={"mode": "ptq"}), quick=True).quantize.calib_frames == 8


# ------------------------------------------------------------------------------------------------
# compress --quick with quantize: {mode: qat}


def test_compress_quick_with_qat_writes_the_int8_bundle(teacher, tmp_path, synth_root):
    from mtc_perception.bundle import Bundle
    from mtc_perception.engines import create_engine
    from mtc_perception.perceptor import Preprocessor

    recipe = {
        "teacher": teacher,
        "out": str(tmp_path / "out"),
        "prune": {"criterion": "magnitude", "budget": "params", "target": 0.3, "round_to": 4, "steps": 1},
        "distill": {"batch_size": 4, "workers": 0, "output_weight": 0.5},
        "eval_batch_size": 4,
        "eval_workers": 0,
        "quantize": {"mode": "qat", "method": "minmax", "lr": 1e-4, "batch_size": 4},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["-q", "compress", "--recipe", str(path), "--quick"]) == 0
    out = tmp_path / "out"
    m = json.loads((out / "metrics.json").read_text())
    q = m["quantize"]
    assert q["mode"] == "qat" and q["checkpoint"] == str(out / "student_qat.pt")
    for k in ("recall", "map50", "drivable_miou", "lane_iou", "params"):  # the project's eval of the QAT student
        assert k in q["metrics"]
    assert q["metrics"]["params"] == m["student"]["params"]  # same network, quantized
    assert {"export_fp32", "qat_calibrate", "qat", "eval_student_qat", "export_int8"} <= set(m["stage_seconds"])
    assert set(q["qdq"]["float_convs"]) == HEADS and len(q["qdq"]["quantized_convs"]) > 50
    par = q["onnxruntime_vs_torch"]
    assert par["frames"] == 2 and par["tolerance"] == 0.1  # --quick: 2 parity frames; QAT_TOLERANCE
    assert min(par["agreement"].values()) >= 0.9 and set(par["roundoff_floor"]) == set(par["agreement"])
    assert max(par["median_abs_diff_normalized"].values()) < 1e-5  # the same int8 grid, float round-off apart
    rec = [json.loads(x) for x in (out / "qat" / "metrics.jsonl").read_text().splitlines() if '"epoch"' in x]
    assert {"feat", "out"} <= set(rec[0]["loss"])  # fine-tuned with the recipe's distillation losses

    _, ck = load_model(out / "student_qat.pt")
    assert ck["qat"]["method"] == "minmax" and ck["train_config"]["init"] == str(out / "qat" / "calibrated.pt")
    b = Bundle.load(out / "student_int8")
    s = b.spec
    assert s.versions.precision == "int8" and s.quantization.method == "qat"
    assert s.quantization.calibration.kind == "training" and s.quantization.source_bundle == str(out / "student_fp32")
    assert s.provenance.checkpoint == str(out / "student_qat.pt") and s.provenance.parent == str(out / "student.pt")
    assert s.quantization.parity is not None and s.files.torch is None  # INT8 vs FP32 recorded, no torch file
    assert Bundle.load(out / "student_fp32").spec.quantization is None
    eng = create_engine("onnxruntime", b, providers=["CPUExecutionProvider"])
    x, _ = Preprocessor(b)([_frames(synth_root, 1)[0]])
    outs = eng.infer(x)
    assert outs["det"].shape[-1] == 6 and np.isfinite(outs["drivable"]).all()


def test_compress_quick_with_ptq_calls_the_post_training_path(teacher, tmp_path):
    from mtc_perception.bundle import Bundle

    recipe = {
        "teacher": teacher,
        "out": str(tmp_path / "out"),
        "prune": {"criterion": "magnitude", "budget": "params", "target": 0.3, "round_to": 4, "steps": 1},
        "distill": {"epochs": 0},
        "eval_batch_size": 4,
        "eval_workers": 0,
        "quantize": {"mode": "ptq", "method": "percentile", "percentile": 99.99},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["-q", "compress", "--recipe", str(path), "--quick"]) == 0
    out = tmp_path / "out"
    q = json.loads((out / "metrics.json").read_text())["quantize"]
    assert q["mode"] == "ptq" and q["method"] == "percentile" and q["bundle"] == str(out / "student_int8")
    assert q["calibration"]["kind"] == "dataset" and q["calibration"]["split"] == "train"
    assert q["calibration"]["frames"] == 8  # --quick: calib_frames 8
    s = Bundle.load(out / "student_int8").spec
    assert s.quantization.method == "percentile" and s.quantization.source_bundle == str(out / "student_fp32")
    assert not (out / "student_qat.pt").exists()


# ------------------------------------------------------------------------------------------------
# a QAT checkpoint on the command line: `mtc-compress quantize --ckpt QAT.pt`, and the parity gate


@pytest.fixture(scope="module")
def qat_ckpt(teacher, train_ds, tmp_path_factory):
    """A calibrated QAT checkpoint saved as the recipe's stage saves it: fine-tuning ``init`` ->
    ``calibrated.pt``, whose ``parent`` is the float network (here the tiny teacher)."""
    d = tmp_path_factory.mktemp("qat_ckpt")
    model, ck = load_model(teacher)
    _randomize_bn(model)  # decisive outputs: the 2-batch teacher's logits sit near 0, its masks are coin flips
    tc = ck["train_config"]
    parent = save_checkpoint(d / "float.pt", model, train_config=tc)
    prepare_qat(model)
    n = calibrate(model, calib_batches(train_ds, 4, 2, seed=0))
    model.qat_scheme = QatScheme(float_convs=model.qat_scheme.float_convs, calibration_images=n)
    calibrated = save_checkpoint(d / "calibrated.pt", model, parent=str(parent), train_config=tc)
    return save_checkpoint(d / "student_qat.pt", model.eval(), train_config={**tc, "init": str(calibrated)})


def test_quantize_cli_writes_the_int8_bundle_of_a_qat_checkpoint(qat_ckpt, teacher, synth_root, tmp_path, capsys):
    from mtc_perception.bundle import Bundle
    from mtc_perception.perceptor import Perceptor

    out = tmp_path / "int8"
    # no --fp32: the float network QAT started from (init -> parent) is exported and compared with
    rc = main(["-q", "quantize", "--ckpt", str(qat_ckpt), "--calib", f"{synth_root}:val", "--out", str(out)])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    par = printed["onnxruntime_vs_torch"]
    assert par["frames"] == 8 and min(par["agreement"].values()) >= 0.9 and par["tolerance"] == 0.1
    s = Bundle.load(out).spec
    assert s.versions.precision == "int8" and s.quantization.method == "qat"
    assert s.quantization.calibration.kind == "training" and s.quantization.calibration.frames == 8  # 2 batches of 4
    assert s.provenance.checkpoint == str(qat_ckpt) and s.provenance.parent == str(qat_ckpt.parent / "float.pt")
    assert (s.input.width, s.input.height) == SIZE and s.files.torch is None
    img = _frames(synth_root, 1)[0]
    r = Perceptor(out, backend="onnxruntime", providers=["CPUExecutionProvider"])(img)
    assert r.drivable.shape == img.shape[:2]

    # the same with an explicit FP32 bundle: its input size is the INT8 bundle's
    fp32 = tmp_path / "fp32"
    assert main(["-q", "export", "--ckpt", teacher, "--out", str(fp32), "--size", "160x128"]) == 0
    out2 = tmp_path / "int8_160"
    assert (
        main(
            [
                "-q",
                "quantize",
                "--ckpt",
                str(qat_ckpt),
                "--fp32",
                str(fp32),
                "--calib",
                f"{synth_root}:val",
                "--out",
                str(out2),
                "--parity-frames",
                "2",
            ]
        )
        == 0
    )
    s2 = Bundle.load(out2).spec
    assert (s2.input.width, s2.input.height) == (160, 128) and s2.quantization.source_bundle == str(fp32)


def test_qat_checkpoint_refused_by_export_and_ptq_flags_refused_without_one(qat_ckpt, teacher, synth_root, tmp_path):
    assert main(["-q", "export", "--ckpt", str(qat_ckpt), "--out", str(tmp_path / "b")]) == 2
    assert not (tmp_path / "b").exists()
    rc = main(
        [
            "-q",
            "quantize",
            "--ckpt",
            teacher,
            "--fp32",
            str(tmp_path),
            "--calib",
            f"{synth_root}:val",
            "--out",
            str(tmp_path / "c"),
        ]
    )
    assert rc == 2 and not (tmp_path / "c").exists()


def test_qat_parity_gate_fails_for_a_network_the_file_does_not_compute(qat_ckpt, synth_root, tmp_path):
    from compress.quantize.qat import QatError
    from compress.quantize.qat_export import qat_parity

    out = tmp_path / "int8"
    assert (
        main(
            [
                "-q",
                "quantize",
                "--ckpt",
                str(qat_ckpt),
                "--calib",
                f"{synth_root}:val",
                "--out",
                str(out),
                "--parity-frames",
                "2",
            ]
        )
        == 0
    )
    model, _ = load_model(qat_ckpt)
    model.eval()
    frames = _frames(synth_root, 3)
    ok = qat_parity(out, model, frames, 0.1)
    assert ok["frames"] == 3 and min(ok["agreement"].values()) >= 0.9
    assert min(ok["roundoff_floor"].values()) >= 0.9 and set(ok["deployed"]) == set(ok["agreement"])
    other = copy.deepcopy(model)
    with torch.no_grad():  # another network: every head's output conv sign-flipped (masks inverted)
        for name, m in other.named_modules():
            if name in HEADS:
                m.weight.neg_()
                m.bias.neg_()
    with pytest.raises(QatError, match="round-off floor"):
        qat_parity(out, other, frames, 0.1)
    with pytest.raises(QatError, match="tolerance"):
        qat_parity(out, model, frames, 1.5)
