"""Issue 20 item 3, bring your own ONNX: `mtc bundle --onnx MODEL.onnx --layout yolop --out DIR` makes a
bundle of a graph with YOLOP's own export interface (hustvl/YOLOP export_onnx.py: input `images`
1x3xHxW, `det_out` (1, N, 6) decoded, `drive_area_seg` / `lane_line_seg` (1, 2, H, W) sigmoid scores),
which the Perceptor, `mtc infer`, `mtc bench` and `mtc bench-engines` then run beside the project's own
bundles; a file that does not fit the layout is refused naming the tensor. The graphs are built with
onnx.helper (no torch)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="builds the test graphs with onnx.helper")
pytest.importorskip(
    "onnxruntime", reason="needs onnxruntime (runs the bundles): a required dependency, see import_guards.REQUIRED"
)
from onnx import TensorProto, helper, numpy_helper

from mtc_perception.bundle import Bundle, BundleError
from mtc_perception.byo_onnx import LAYOUTS, OnnxLayoutError, check_run, inspect_onnx, write_bundle
from mtc_perception.cli import main as mtc
from mtc_perception.perceptor import Perceptor

TINY = Path(__file__).resolve().parents[1] / "data" / "tiny_bundle"
NET = 64  # network input side (YOLOP exports square inputs)
# det_out rows in network pixels: cx, cy, w, h, objectness, class probability
DET = np.array(
    [
        [32, 32, 16, 8, 0.9, 1.0],  # score 0.9
        [10, 20, 8, 8, 0.8, 0.9],  # score 0.72
        [50, 40, 8, 8, 0.3, 0.3],  # score 0.09: below conf 0.25
        [40, 5, 8, 4, 0.9, 0.9],  # entirely in the letterbox padding (rows 0..15): vanishes
    ],
    np.float32,
)


def yolop_like(
    path: Path,
    input_name: str = "images",
    input_shape: tuple = (1, 3, NET, NET),
    det_cols: int = 6,
    seg_channels: int = 2,
    seg_pool: bool = False,
) -> Path:
    """A graph with YOLOP's export interface: det_out a constant, each segmentation head
    sigmoid(concat(-x, x)) of one input channel (drivable: R, lane: B), so that its mask (channel 1 >
    channel 0) is where that colour's normalised value is > 0, i.e. brighter than ~124 (R) / ~104 (B)."""
    det = np.zeros((1, len(DET), det_cols), np.float32)
    det[0, :, : min(6, det_cols)] = DET[:, : min(6, det_cols)]
    h, w = input_shape[2], input_shape[3]
    nodes = [helper.make_node("Constant", [], ["det_out"], value=numpy_helper.from_array(det, "det"))]
    inits = [numpy_helper.from_array(np.array([1], np.int64), "axes")]
    for out, ch in (("drive_area_seg", 0), ("lane_line_seg", 2)):
        inits += [
            numpy_helper.from_array(np.array([ch], np.int64), f"{out}_s"),
            numpy_helper.from_array(np.array([ch + 1], np.int64), f"{out}_e"),
        ]
        nodes += [
            helper.make_node("Slice", [input_name, f"{out}_s", f"{out}_e", "axes"], [f"{out}_x"]),
            helper.make_node("Neg", [f"{out}_x"], [f"{out}_n"]),
        ]
        parts = [f"{out}_n", f"{out}_x"] if seg_channels == 2 else [f"{out}_x"]
        nodes.append(helper.make_node("Concat", parts, [f"{out}_c"], axis=1))
        if seg_pool:  # half the input resolution, its shape declared dynamic: only running it tells
            nodes.append(helper.make_node("MaxPool", [f"{out}_c"], [f"{out}_p"], kernel_shape=[2, 2], strides=[2, 2]))
        nodes.append(helper.make_node("Sigmoid", [f"{out}_p" if seg_pool else f"{out}_c"], [out]))
    if seg_pool:
        h, w = "sh", "sw"
    graph = helper.make_graph(
        nodes,
        "yolop_like",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(input_shape))],
        [
            helper.make_tensor_value_info("det_out", TensorProto.FLOAT, [1, len(DET), det_cols]),
            helper.make_tensor_value_info("drive_area_seg", TensorProto.FLOAT, [1, seg_channels, h, w]),
            helper.make_tensor_value_info("lane_line_seg", TensorProto.FLOAT, [1, seg_channels, h, w]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])  # YOLOP exports opset 12
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def frame() -> np.ndarray:
    """128x64 BGR: red on the left half (drivable), blue on the top half (lane)."""
    f = np.zeros((64, 128, 3), np.uint8)
    f[:, :64, 2] = 255
    f[:32, :, 0] = 255
    return f


@pytest.fixture
def byo(tmp_path):
    src = yolop_like(tmp_path / "yolop-64-64.onnx")
    out = tmp_path / "yolop_user"
    assert mtc(["bundle", "--onnx", str(src), "--layout", "yolop", "--out", str(out), "--name", "yolop"]) == 0
    return out


def test_mtc_bundle_writes_a_bundle_with_yolops_interface(byo, tmp_path):
    meta = json.loads((byo / "bundle.json").read_text())
    assert (byo / "model.onnx").read_bytes() == (tmp_path / "yolop-64-64.onnx").read_bytes()
    assert meta["name"] == "yolop" and meta["files"]["onnx"] == "model.onnx"
    inp = meta["input"]
    assert (inp["name"], inp["height"], inp["width"], inp["color"], inp["pad_value"]) == (
        "images",
        NET,
        NET,
        "RGB",
        114,
    )
    assert inp["scale"] == pytest.approx(1 / 255)
    assert inp["mean"] == [0.485, 0.456, 0.406] and inp["std"] == [0.229, 0.224, 0.225]
    assert meta["detection"]["output"] == "det_out" and meta["detection"]["class_names"] == ["vehicle"]
    seg = meta["segmentation"]
    assert seg["drivable"]["output"] == "drive_area_seg" and seg["lane"]["output"] == "lane_line_seg"
    assert seg["drivable"]["channels"] == 2 and seg["lane"]["channels"] == 2
    assert meta["outputs"] == {
        "det_out": [1, 4, 6],
        "drive_area_seg": [1, 2, NET, NET],
        "lane_line_seg": [1, 2, NET, NET],
    }
    src = meta["provenance"]["source"]
    assert src["kind"] == "user-onnx" and src["layout"] == "yolop" and len(src["sha256"]) == 64
    assert meta["versions"]["opset"] == 12
    b = Bundle.load(byo)
    assert b.spec.segmentation.drivable.mask_channels == 2
    assert b.rebuild_hint.startswith("mtc bundle --onnx ")
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial directory left


def test_the_perceptor_undoes_the_letterbox_and_takes_channel_1_over_channel_0(byo):
    p = Perceptor(byo, backend="onnxruntime")(frame())
    # 128x64 into 64x64: ratio 0.5, image rows 16..47 of the network; box x / 0.5, (y - 16) / 0.5
    np.testing.assert_allclose(p.boxes, [[48, 24, 80, 40], [12, 0, 28, 16]], atol=1e-4)
    np.testing.assert_allclose(p.scores, [0.9, 0.72], atol=1e-6)
    assert p.class_ids.tolist() == [0, 0] and p.to_dict()["detections"][0]["class"] == "vehicle"
    assert p.drivable.shape == p.lane.shape == (64, 128)
    want_drivable = np.zeros((64, 128), np.uint8)
    want_drivable[:, :64] = 1
    want_lane = np.zeros((64, 128), np.uint8)
    want_lane[:32] = 1
    np.testing.assert_array_equal(p.drivable, want_drivable)
    np.testing.assert_array_equal(p.lane, want_lane)


def test_one_channel_heads_keep_the_logit_rule(tmp_path):
    b = Bundle.load(TINY)
    assert b.spec.segmentation.drivable.channels is None and b.spec.segmentation.lane.mask_channels == 1
    assert "channels" not in b.spec.to_dict()["segmentation"]["drivable"]  # old bundles write back unchanged
    pc = Perceptor(TINY, backend="onnxruntime")
    assert pc.seg_two == (False, False)
    outs = {
        "det": np.zeros((1, 1, 6), np.float32),
        "drivable": np.full((1, 1, 96, 128), -1.0, np.float32),
        "lane": np.full((1, 1, 96, 128), 1.0, np.float32),
    }
    lbs = pc.preprocess([np.zeros((96, 128, 3), np.uint8)])[1]
    (r,) = pc.postprocess(outs, lbs)
    assert r.drivable.max() == 0 and r.lane.min() == 1


def _edited(tmp_path, edit):
    d = tmp_path / "edited"
    shutil.copytree(TINY, d)
    meta = json.loads((d / "bundle.json").read_text())
    edit(meta)
    (d / "bundle.json").write_text(json.dumps(meta))
    return d


@pytest.mark.parametrize("value", [0, 3, "2", True, 1.5])
def test_a_channels_value_other_than_1_or_2_is_refused_naming_the_field(tmp_path, value):
    d = _edited(tmp_path, lambda m: m["segmentation"]["drivable"].update(channels=value))
    with pytest.raises(BundleError, match=r"segmentation\.drivable\.channels must be 1 .* or 2"):
        Bundle.load(d)


def test_channels_must_agree_with_the_output_shape(tmp_path):
    d = _edited(tmp_path, lambda m: m["segmentation"]["lane"].update(channels=2))
    with pytest.raises(BundleError, match=r"segmentation\.lane\.channels is 2 but outputs\.lane has 1 channels"):
        Bundle.load(d)
    d2 = _edited(tmp_path / "b", lambda m: m["segmentation"]["lane"].update(channels=1))
    b = Bundle.load(d2)  # an explicit 1 is today's rule, and writes back as it was read
    assert b.spec.to_dict()["segmentation"]["lane"]["channels"] == 1


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"input_name": "input"}, r"input\(s\) \['input'\]: expected one input named 'images'"),
        ({"det_cols": 7}, r"output 'det_out' is float32 \(1, 4, 7\): expected float32 \(1, N, 6\)"),
        (
            {"seg_channels": 1},
            r"output 'drive_area_seg' is float32 \(1, 1, 64, 64\): expected float32 \(1, 2, 64, 64\)",
        ),
        ({"input_shape": (1, 3, "height", "width")}, r"input 'images' \(1, 3, height, width\): .*dynamic input size"),
    ],
    ids=["input-name", "det-columns", "one-channel-seg", "dynamic-size"],
)
def test_a_file_that_does_not_fit_is_refused_naming_the_tensor(tmp_path, logs, kwargs, pattern):
    src = yolop_like(tmp_path / "bad.onnx", **kwargs)
    with pytest.raises(OnnxLayoutError, match=pattern):
        inspect_onnx(src, "yolop")
    out = tmp_path / "out"
    assert mtc(["bundle", "--onnx", str(src), "--out", str(out)]) == 2
    assert not out.exists() and "does not fit layout 'yolop'" in logs.text
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_output_sizes_are_checked_statically_and_by_running_it(tmp_path):
    src = yolop_like(tmp_path / "pooled.onnx", seg_pool=True)  # declared (1, 2, sh, sw), inferred (1, 2, 32, 32)
    with pytest.raises(OnnxLayoutError, match=r"output 'drive_area_seg' is float32 \(1, 2, 32, 32\): expected"):
        write_bundle(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    iface = inspect_onnx(yolop_like(tmp_path / "ok.onnx"))
    check_run(iface)  # fits
    with pytest.raises(
        OnnxLayoutError, match=r"output 'det_out' came out as \(1, 4, 6\) on a 64x64 input; expected \(1, N, 7\)"
    ):
        check_run(iface, num_classes=2)


def test_every_misfit_is_listed_at_once(tmp_path):
    src = yolop_like(tmp_path / "bad.onnx", det_cols=7, seg_channels=1)
    with pytest.raises(OnnxLayoutError) as e:
        inspect_onnx(src)
    problems = str(e.value).split("\nthe file has")[0].split("\n  - ")[1:]
    assert [p.split()[1] for p in problems] == ["'det_out'", "'drive_area_seg'", "'lane_line_seg'"]


def test_more_classes_need_as_many_columns(tmp_path):
    src = yolop_like(tmp_path / "m.onnx", det_cols=7)
    b = write_bundle(src, tmp_path / "two", class_names=["car", "bus"])
    assert b.class_names == ["car", "bus"] and b.output_shapes["det_out"] == [1, 4, 7]
    with pytest.raises(OnnxLayoutError, match=r"output 'det_out' is float32 \(1, 4, 7\): expected float32 \(1, N, 6\)"):
        write_bundle(src, tmp_path / "three", class_names=["car"])
    with pytest.raises(OnnxLayoutError, match="distinct"):
        write_bundle(src, tmp_path / "four", class_names=["car", "car"])


def test_bad_arguments_exit_2(tmp_path, logs):
    src = yolop_like(tmp_path / "m.onnx")
    assert mtc(["bundle", "--onnx", str(src), "--layout", "yolov8", "--out", str(tmp_path / "a")]) == 2
    assert "unknown ONNX layout 'yolov8'; known layouts: yolop" in logs.text
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("keep")
    assert mtc(["bundle", "--onnx", str(src), "--out", str(busy)]) == 2
    assert "not an empty directory" in logs.text and (busy / "x").read_text() == "keep"
    assert mtc(["bundle", "--onnx", str(tmp_path / "none.onnx"), "--out", str(tmp_path / "b")]) == 2
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    assert mtc(["bundle", "--onnx", str(tmp_path / "junk.onnx"), "--out", str(tmp_path / "c")]) == 2
    assert "not an ONNX model" in logs.text
    empty = tmp_path / "empty"
    empty.mkdir()
    assert mtc(["bundle", "--onnx", str(src), "--out", str(empty), "--class-names", "car"]) == 0
    assert Bundle.load(empty).class_names == ["car"] and Bundle.load(empty).name == "empty"
    assert set(LAYOUTS) == {"yolop"}


def test_mtc_infer_runs_it(byo, tmp_path):
    img = tmp_path / "f.png"
    import cv2

    cv2.imwrite(str(img), frame())
    out = tmp_path / "infer"
    assert mtc(["infer", "--bundle", str(byo), "--input", str(img), "--out", str(out), "--backend", "onnxruntime"]) == 0
    res = json.loads((out / "f.png.json").read_text())
    assert [d["box"] for d in res["detections"]] == [[48.0, 24.0, 80.0, 40.0], [12.0, 0.0, 28.0, 16.0]]
    assert res["drivable_fraction"] == pytest.approx(0.5) and res["lane_fraction"] == pytest.approx(0.5)


def test_bench_engines_runs_it_beside_a_project_bundle(byo, tmp_path):
    import cv2

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(2):
        cv2.imwrite(str(frames / f"{i}.png"), frame())
    out = tmp_path / "engines"
    args = ["bench-engines", "--bundle", f"yolop={byo}", "--bundle", f"tiny={TINY}", "--frames", str(frames)]
    assert mtc([*args, "--size", "128x64", "--max-frames", "2", "--out", str(out)]) == 0
    assert (out / "engines.json").is_file()


def test_mtc_bench_with_it_as_the_teacher(byo, tmp_path):
    from bag_helpers import check_accounting, report_json

    from mtc_perception.bags import SourceFrame, WriteConfig, write_bag

    bag = tmp_path / "bag"
    write_bag(bag, [SourceFrame(str(i), frame()) for i in range(3)], WriteConfig())
    out = tmp_path / "rep"
    args = ["bench", "--bag", str(bag), "--teacher", str(byo), "--student", str(TINY), "--out", str(out)]
    assert mtc([*args, "--backend", "onnxruntime", "--no-plots", "--no-md5", "--no-progress", "--warmup", "1"]) == 0
    rep = report_json(out)
    check_accounting(rep, 3)
    assert rep["models"]["teacher"]["frames"]["processed"] == 3


def test_onnx_runtime_alone_reads_the_interface(tmp_path, monkeypatch):
    """onnxruntime is the runtime's one hard dependency; onnx only adds the opset and parameter count."""
    import sys

    src = yolop_like(tmp_path / "m.onnx")
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    iface = inspect_onnx(src)
    assert iface.size == (NET, NET) and iface.opset is None and iface.params is None
    assert [o.name for o in iface.outputs] == ["det_out", "drive_area_seg", "lane_line_seg"]
    b = write_bundle(src, tmp_path / "b")
    assert b.spec.versions.opset is None and b.spec.segmentation.lane.mask_channels == 2
