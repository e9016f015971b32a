"""bundle.json as a typed tree (mtc_perception.bundle): the committed schema-1 bundle reads and writes back
unchanged, every malformed field fails at load with the file, the field, what was expected and the fix,
and files that leave the bundle directory are refused. No torch, no onnxruntime."""

import copy
import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest

from mtc_perception.bundle import READABLE_SCHEMAS, SCHEMA, Bundle, BundleError, BundleSpec, InputSpec

TINY = Path(__file__).resolve().parents[1] / "data" / "tiny_bundle"
RAW = json.loads((TINY / "bundle.json").read_text())


def _bundle(tmp_path: Path, edit=None, name: str = "b") -> Path:
    """A copy of the tiny bundle with ``edit(meta)`` applied to its bundle.json."""
    d = tmp_path / name
    d.mkdir(parents=True)
    shutil.copy(TINY / "model.onnx", d / "model.onnx")
    meta = copy.deepcopy(RAW)
    if edit is not None:
        edit(meta)
    (d / "bundle.json").write_text(json.dumps(meta))
    return d


def test_the_committed_schema_1_bundle_round_trips():
    assert RAW["schema"] == 1 and 1 in READABLE_SCHEMAS and SCHEMA in READABLE_SCHEMAS
    b = Bundle.load(TINY)
    spec = b.spec
    assert spec.to_dict() == RAW  # nothing lost, nothing added
    assert list(spec.to_dict()) == list(RAW)  # and in the file's order
    assert BundleSpec.from_dict(spec.to_dict()) == spec
    # typed attributes, not keys
    assert spec.input.height == 96 and spec.input.width == 128 and spec.input.color == "RGB"
    assert spec.input.mean == (0.0, 0.0, 0.0) and spec.input.pad_value == 114 and spec.input.dynamic_batch is False
    assert spec.detection.class_names == ("vehicle",) and spec.detection.num_classes == 1
    assert spec.detection.strides == (8.0, 16.0, 32.0) and len(spec.detection.anchors) == 3
    assert spec.segmentation.drivable.output == "drivable" and spec.segmentation.lane.output == "lane"
    assert spec.outputs["det"] == (1, 756, 6)
    assert spec.files.onnx == "model.onnx" and spec.files.torch is None and spec.files.engine is None
    assert spec.provenance.params == 129000 and spec.provenance.trained_img_size == (128, 96)
    assert spec.versions.opset == 17 and spec.versions.tensorrt is None and spec.graph is None
    assert spec.parity is not None and spec.parity.frames == 4 and spec.parity.tolerance == 1e-3
    # the Bundle's accessors
    assert b.name == "tiny" and b.input_name == "images" and b.input_size == (128, 96)
    assert b.output_names == ["det", "drivable", "lane"] and b.class_names == ["vehicle"]
    assert b.output_shapes["lane"] == [1, 1, 96, 128] and b.file("onnx") == TINY / "model.onnx"
    assert b.file("engine") is None and b.dynamic_batch is False
    with pytest.raises(ValueError, match="unknown bundle file kind"):
        b.file("tflite")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.input.height = 1  # type: ignore[misc]


def test_written_through_the_dataclass_and_read_back(tmp_path):
    spec = Bundle.load(TINY).spec
    edited = dataclasses.replace(
        spec, name="other", input=dataclasses.replace(spec.input, dynamic_batch=True), parity=None
    )
    d = tmp_path / "w"
    d.mkdir()
    shutil.copy(TINY / "model.onnx", d / "model.onnx")
    edited.write(d)
    back = Bundle.load(d)
    assert back.spec == edited and back.name == "other" and back.dynamic_batch is True
    assert "parity" not in json.loads((d / "bundle.json").read_text())  # optional sections left out while None


def _set(path: str, value):
    """An edit that sets ``a.b.c`` (``value is KeyError``: deletes it)."""

    def edit(meta):
        *parents, last = path.split(".")
        d = meta
        for p in parents:
            d = d[p]
        if value is KeyError:
            del d[last]
        else:
            d[last] = value

    return edit


MALFORMED = [
    ("input.height", None, r"input\.height must be an integer in \[1, 8192\], got null"),
    ("input.height", 0, r"input\.height must be an integer in \[1, 8192\], got 0"),
    ("input.height", "96", r'input\.height must be an integer in \[1, 8192\], got "96"'),
    ("input.height", 100000, r"input\.height must be an integer in \[1, 8192\], got 100000"),
    ("input.width", 100000, r"input\.width must be an integer in \[1, 8192\], got 100000"),
    ("input.width", True, r"input\.width must be an integer in \[1, 8192\], got true"),
    ("input", "images", r'input must be a JSON object, got "images"'),
    ("input.std", [0, 0, 0], r"input\.std must be a list of 3 numbers, each > 0, got \[0, 0, 0\]"),
    ("input.width", KeyError, r"missing field 'input\.width'"),
    ("input.std", [1.0, 0.0, 1.0], r"input\.std must be a list of 3 numbers, each > 0, got \[1\.0, 0\.0, 1\.0\]"),
    ("input.std", [1.0, -1.0, 1.0], r"input\.std must be .* each > 0"),
    ("input.mean", [0.0, 0.0], r"input\.mean must be a list of 3 numbers"),
    ("input.mean", "0", r"input\.mean must be a list of 3 numbers"),
    ("input.color", "rgb", r"input\.color must be one of \['RGB', 'BGR'\]"),
    ("input.scale", 0, r"input\.scale must be a positive number"),
    ("input.pad_value", 300, r"input\.pad_value must be an integer in \[0, 255\]"),
    ("input.dynamic_batch", "yes", r"input\.dynamic_batch must be true or false"),
    ("input.layout", "NHWC", r"input\.layout must be one of \['NCHW'\]"),
    ("input", [], r"input must be a JSON object, got \[\]"),
    ("detection.class_names", "vehicle", r'detection\.class_names must be a non-empty list of strings.*got "vehicle"'),
    ("detection.class_names", [], r"detection\.class_names must be a non-empty list of strings"),
    ("detection.class_names", ["vehicle", 3], r"detection\.class_names must be a non-empty list of strings"),
    ("detection.num_classes", 7, r"detection\.num_classes must be the number of class_names \(1\), got 7"),
    ("detection.strides", [8, 0, 32], r"detection\.strides must be a non-empty list of numbers, each > 0"),
    ("detection.anchors", [[4.0, 4.8]], r"detection\.anchors must be 3 lists \(one per stride\)"),
    ("detection.output", "boxes", r"detection\.output is 'boxes' but outputs has no such entry"),
    ("detection.output", KeyError, r"missing field 'detection\.output'"),
    ("segmentation.lane", KeyError, r"missing field 'segmentation\.lane'"),
    ("segmentation.drivable.output", 5, r"segmentation\.drivable\.output must be a non-empty string, got 5"),
    ("outputs", {}, r"outputs must be a non-empty JSON object"),
    ("outputs", KeyError, r"missing field 'outputs'"),
    ("outputs.det", 5, r"outputs\.det must be a list of positive integers or dynamic dimension names, got 5"),
    ("outputs.det", [1, -1, 6], r"outputs\.det must be a list of positive integers or dynamic dimension names"),
    ("files", "model.onnx", r'files must be a JSON object, got "model\.onnx"'),
    ("files", ["model.onnx"], r'files must be a JSON object, got \["model\.onnx"\]'),
    ("files.onnx", KeyError, r"missing field 'files\.onnx'"),
    ("files.onnx", None, r"files\.onnx must be a relative path inside the bundle directory"),
    ("files.onnx", "../model.onnx", r"files\.onnx must be a relative path inside the bundle directory.*\.\./model"),
    ("files.onnx", "/etc/model.onnx", r"files\.onnx must be a relative path inside the bundle directory"),
    ("files.engine", "sub/../../model.engine", r"files\.engine must be a relative path inside the bundle directory"),
    ("files.tflite", "model.tflite", r"unknown field\(s\) \['tflite'\] in files"),
    ("heigth", 96, r"unknown field\(s\) \['heigth'\] in the top level"),
    ("schema", KeyError, r"missing field 'schema'"),
    ("versions.opset", "17", r'versions\.opset must be a positive integer, got "17"'),
    ("provenance.params", "many", r"provenance\.params must be an integer in \[0, inf\]"),
    ("provenance.trained_img_size", [128], r"provenance\.trained_img_size must be \[width, height\]"),
    ("parity.frames", -1, r"parity\.frames must be an integer in \[0, inf\]"),
    ("parity.max_abs_diff_raw", {"det": "small"}, r"parity\.max_abs_diff_raw must be a JSON object"),
]


@pytest.mark.parametrize("field,value,message", MALFORMED, ids=[f"{f}={v!r}" for f, v, _ in MALFORMED])
def test_every_malformed_field_is_named_at_load(tmp_path, field, value, message):
    d = _bundle(tmp_path, _set(field, value))
    with pytest.raises(BundleError, match=message) as e:
        Bundle.load(d)
    text = str(e.value)
    assert text.startswith(str(d / "bundle.json") + ": "), text  # the file
    assert "mtc-compress export" in text, text  # and the fix


def test_other_schemas_and_non_objects_are_refused(tmp_path):
    with pytest.raises(BundleError, match=r"schema 2 but this mtc_perception reads schema 1; re-export"):
        Bundle.load(_bundle(tmp_path, _set("schema", 2), "s2"))
    d = tmp_path / "list"
    d.mkdir()
    (d / "bundle.json").write_text("[1, 2]")
    with pytest.raises(BundleError, match=r"bundle\.json: the top level must be a JSON object, got \[1, 2\]"):
        Bundle.load(d)
    (d / "bundle.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        Bundle.load(d)
    with pytest.raises(BundleError, match="not a model bundle"):
        Bundle.load(tmp_path / "nothing")
    with pytest.raises(BundleError, match=r"^where\.json: input\.height must be an integer in \[1, 8192\], got null"):
        BundleSpec.from_dict(_edited(_set("input.height", None)), "where.json")


def _edited(edit):
    meta = copy.deepcopy(RAW)
    edit(meta)
    return meta


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_files_resolving_outside_the_bundle_are_refused(tmp_path):
    outside = tmp_path / "elsewhere.onnx"
    shutil.copy(TINY / "model.onnx", outside)
    d = _bundle(tmp_path)
    (d / "model.onnx").unlink()
    (d / "model.onnx").symlink_to(outside)
    with pytest.raises(
        BundleError, match=r"files\.onnx 'model\.onnx' resolves to .*elsewhere\.onnx, outside the bundle"
    ):
        Bundle.load(d)
    # a symlinked directory that leaves the bundle is the same
    d2 = _bundle(tmp_path, _set("files.onnx", "sub/model.onnx"), "b2")
    (d2 / "sub").symlink_to(tmp_path)
    shutil.copy(TINY / "model.onnx", tmp_path / "model.onnx")
    with pytest.raises(BundleError, match=r"outside the bundle directory"):
        Bundle.load(d2)
    # a link that stays inside is a file of the bundle
    d3 = _bundle(tmp_path, _set("files.onnx", "current.onnx"), "b3")
    (d3 / "current.onnx").symlink_to(d3 / "model.onnx")
    assert Bundle.load(d3).require_file("onnx") == d3 / "current.onnx"


def test_a_missing_model_file_fails_where_it_is_needed(tmp_path):
    """bundle.json is valid without its files present; the engine that needs one names it."""
    d = _bundle(tmp_path)
    (d / "model.onnx").unlink()
    b = Bundle.load(d)
    with pytest.raises(BundleError, match=r"model\.onnx is named in .* but does not exist"):
        b.require_file("onnx")
    with pytest.raises(BundleError, match=r"no engine file.*--engine"):
        b.require_file("engine")


def test_the_input_section_alone_builds_the_preprocessor():
    """What the Perceptor reads: attributes of InputSpec (defaults for what export always writes)."""
    spec = InputSpec(
        name="images", height=96, width=128, color="BGR", scale=1 / 255, mean=(0, 0, 0), std=(1, 1, 1), pad_value=0
    )
    assert spec.layout == "NCHW" and spec.dtype == "float32" and spec.dynamic_batch is False


def test_a_huge_declared_input_is_refused_before_any_allocation(tmp_path):
    """A bundle.json declaring 100000x100000 (112 GiB as float32) fails at load, in a few kB."""
    import tracemalloc

    from mtc_perception.bundle import MAX_INPUT_SIDE

    d = _bundle(tmp_path, lambda m: m["input"].update(height=100000, width=100000))
    tracemalloc.start()
    try:
        with pytest.raises(BundleError, match=rf"input\.height must be an integer in \[1, {MAX_INPUT_SIDE}\]"):
            Bundle.load(d)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 * 2**20, peak
    ok = _bundle(tmp_path, lambda m: m["input"].update(height=MAX_INPUT_SIDE, width=MAX_INPUT_SIDE), "max")
    assert Bundle.load(ok).input_size == (MAX_INPUT_SIDE, MAX_INPUT_SIDE)


UNLOADABLE = {
    "files.onnx null": _set("files.onnx", None),
    "files.onnx ../x": _set("files.onnx", "../x.onnx"),
    "files.onnx absolute": _set("files.onnx", "/tmp/x.onnx"),
    "files a list": _set("files", ["model.onnx"]),
    "input a string": _set("input", "images"),
    "outputs empty": _set("outputs", {}),
}


@pytest.mark.parametrize("case", list(UNLOADABLE))
def test_no_backend_is_tried_for_an_unloadable_bundle(tmp_path, case, monkeypatch):
    """--backend auto (and every backend) stops at bundle.json: it never falls through to torch."""
    from mtc_perception.engines import ENGINES, create_engine

    tried = []
    for cls in ENGINES.values():
        monkeypatch.setattr(cls, "load", lambda self, _n=cls.name: tried.append(_n))
    d = _bundle(tmp_path, UNLOADABLE[case])
    (d / "model.pt2").write_bytes(b"never opened")
    for backend in ("auto", "torch"):
        with pytest.raises(BundleError, match=str(d / "bundle.json")):
            create_engine(backend, d)
    assert tried == []


# ---------------------------------------------------------------------------------------------
# fuzz: seeded bundle.json mutations; only BundleError (or a valid bundle) comes out

FUZZ_VALUES = [
    None,
    0,
    -1,
    1,
    2**70,
    1e308,
    float("nan"),
    float("inf"),
    True,
    "",
    "x",
    "../x",
    "/abs",
    [],
    [0],
    [1, 2, 3],
    [[]],
    {},
    {"a": 1},
    "vehicle",
    8193,
    96,
    [0, 0, 0],
    ["a"],
    "model.onnx",
]


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


def _mutate(meta, rng):
    for _ in range(rng.randint(1, 3)):
        paths = [p for p in _paths(meta) if p]
        p = rng.choice(paths)
        parent = meta
        for k in p[:-1]:
            parent = parent[k]
        op = rng.random()
        if op < 0.15 and isinstance(parent, dict):
            del parent[p[-1]]
        elif op < 0.25 and isinstance(parent, dict):
            parent["extra_" + str(rng.randint(0, 9))] = rng.choice(FUZZ_VALUES)
        else:
            parent[p[-1]] = copy.deepcopy(rng.choice(FUZZ_VALUES))
    return meta


def test_fuzzed_bundle_json_raises_only_bundle_error(tmp_path):
    """A few hundred seeded mutations (MTC_FUZZ_CASES for a longer run): each either loads, with sane
    sizes, or fails with BundleError naming bundle.json; nothing else comes out."""
    import random

    rng = random.Random(17)
    n = int(os.environ.get("MTC_FUZZ_CASES", "300"))
    d = _bundle(tmp_path)
    f = d / "bundle.json"
    outcomes = {"loaded": 0, "refused": 0}
    for i in range(n):
        meta = _mutate(copy.deepcopy(RAW), rng)
        f.write_text(json.dumps(meta))  # NaN / Infinity are written as JSON's extensions: read back too
        try:
            b = Bundle.load(d)
        except BundleError as e:
            assert str(e).startswith(str(f)) or str(d) in str(e), (i, str(e))
            assert len(str(e)) < 1000, (i, len(str(e)))
            outcomes["refused"] += 1
            continue
        w, h = b.input_size
        assert 0 < w <= 8192 and 0 < h <= 8192 and b.output_names and all(n in b.output_shapes for n in b.output_names)
        outcomes["loaded"] += 1
    assert outcomes["refused"] > n // 2 and outcomes["loaded"] > 0, outcomes


# ---------------------------------------------------------------------------------------------
# the quantization section (INT8 bundles; compress/quantize writes it)

QUANT = {
    "method": "minmax",
    "weight_type": "int8",
    "activation_type": "uint8",
    "per_channel": True,
    "symmetric_weights": True,
    "symmetric_activations": False,
    "precision": "int8",
    "format": "QDQ",
    "calibration": {
        "kind": "bag",
        "source": "rec.mcap",
        "frames": 8,
        "available": 20,
        "topic": "/camera/image_raw",
        "digest": "0" * 32,
    },
    "float_nodes": {"/model/detect/m.0/Conv": "head_output_conv", "/Sigmoid": "after_head_output_conv"},
    "float_rule": "walk back from every graph output",
    "source_bundle": "bundles/fp32",
    "onnxruntime": "1.32.0",
    "parity": {
        "frames": 4,
        "independent": True,
        "max_abs_diff_normalized": {"det": 0.01, "drivable": 0.02, "lane": 0.03},
        "mask_agreement": {"drivable": 0.99, "lane": 0.98},
        "mask_iou": {"drivable": 0.97, "lane": 0.9},
        "detections": {"fp32": 10, "int8": 9, "matched": 9, "f1": 0.947},
        "conf": 0.25,
        "match_iou": 0.5,
        "backend": "onnxruntime",
    },
}


def _int8(meta):
    meta["quantization"] = copy.deepcopy(QUANT)
    meta["versions"]["precision"] = "int8"


def test_an_int8_bundle_reads_typed_and_writes_back(tmp_path):
    from mtc_perception.bundle import Quantization

    assert Bundle.load(TINY).spec.quantization is None  # a bundle without the section still reads
    d = _bundle(tmp_path, _int8)
    b = Bundle.load(d)
    q = b.spec.quantization
    assert isinstance(q, Quantization) and q.method == "minmax" and q.per_channel is True
    assert q.weight_type == "int8" and q.activation_type == "uint8" and b.spec.versions.precision == "int8"
    assert q.calibration is not None and q.calibration.kind == "bag" and q.calibration.topic == "/camera/image_raw"
    assert q.calibration.frames == 8 and q.calibration.split is None
    assert q.float_nodes["/model/detect/m.0/Conv"] == "head_output_conv"
    assert q.parity is not None and q.parity.mask_iou["lane"] == 0.9 and q.parity.detections["matched"] == 9
    written = b.spec.to_dict()
    assert written["quantization"]["calibration"] == QUANT["calibration"]  # optional None fields left out
    assert BundleSpec.from_dict(written) == b.spec
    assert "mtc-compress quantize --bundle bundles/fp32 --calib rec.mcap --method minmax" in b.rebuild_hint


QUANT_MALFORMED = [
    ("quantization.method", "fp8", r"quantization\.method must be one of \['minmax', 'entropy', 'percentile', 'qat'\]"),
    ("quantization.weight_type", "int4", r"quantization\.weight_type must be one of \['int8', 'uint8'\]"),
    ("quantization.per_channel", "yes", r"quantization\.per_channel must be true or false"),
    ("quantization.float_nodes", ["/Sigmoid"], r"quantization\.float_nodes must be a JSON object of node name -> rule"),
    ("quantization.calibration.kind", "video", r"quantization\.calibration\.kind must be one of \['dataset'"),
    ("quantization.calibration.frames", -1, r"quantization\.calibration\.frames must be an integer in \[0, inf\]"),
    (
        "quantization.parity.mask_iou",
        {"lane": 1.5},
        r"quantization\.parity\.mask_iou must be a JSON object .* \[0\.0, 1",
    ),
    ("quantization.calibraton", {}, r"unknown field\(s\) \['calibraton'\] in quantization"),
    ("versions.precision", "fp32", r"quantization\.precision is 'int8' but versions\.precision is \"fp32\""),
    ("files.torch", "model.pt2", r"an INT8 bundle .* names a torch file 'model\.pt2'.*FP32 weights"),
]


@pytest.mark.parametrize("field,value,message", QUANT_MALFORMED, ids=[f for f, _, _ in QUANT_MALFORMED])
def test_a_malformed_quantization_section_is_named_at_load(tmp_path, field, value, message):
    def edit(meta):
        _int8(meta)
        _set(field, value)(meta)

    d = _bundle(tmp_path, edit)
    with pytest.raises(BundleError, match=message) as e:
        Bundle.load(d)
    assert str(e.value).startswith(str(d / "bundle.json") + ": ")
    assert "mtc-compress" in str(e.value)  # the fix


def test_an_int8_bundle_asks_for_another_backend_than_torch(tmp_path):
    b = Bundle.load(_bundle(tmp_path, _int8))
    with pytest.raises(BundleError, match=r"an INT8 bundle has no torch program .* --backend onnxruntime"):
        b.require_file("torch")
    assert b.require_file("onnx") == b.root / "model.onnx"
