"""Model bundles: a directory with ``bundle.json`` and the model files (see docs/DESIGN.md).

``bundle.json`` is the contract the two halves share: ``compress`` writes it, the runtime reads it.
Its content is one typed tree of frozen dataclasses (:class:`BundleSpec` and its sections) with
``to_dict()`` / ``from_dict()``; export writes the file only through :meth:`BundleSpec.write`, and the
Perceptor and the engines read attributes, never keys. :meth:`BundleSpec.from_dict` checks every
field's type and value and fails with the file, the field path, what was expected and the fix.

The module is longer than most (~620 lines) because it is the whole contract in one place: every
section of the file beside its own checks, so a field is added, typed and validated in one spot.
Only the standard library is used here, so the runtime can read a bundle on a machine without
torch, onnxruntime or TensorRT.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .jsonrecord import OMIT_NONE, ObjectReader, is_number, show, to_dict

SCHEMA = 1  # what export writes
READABLE_SCHEMAS = (1,)  # what this runtime reads
FILE_KINDS = ("onnx", "torch", "engine")
MAX_JSON_BYTES = 1 << 20  # an exported bundle.json is a few kB
MAX_INPUT_SIDE = 8192  # pixels per side of the network input (a 100000x100000 input would ask for 112 GiB)
REEXPORT = "re-export the bundle with `mtc-compress export --ckpt CKPT --out DIR`"
REQUANTIZE = "re-quantize the FP32 bundle with `mtc-compress quantize --bundle FP32 --calib SOURCE --out DIR`"


class BundleError(ValueError):
    """A bundle that is missing, malformed, or disagrees with its files."""


# ---------------------------------------------------------------------------------------------
# the sections of bundle.json


@dataclass(frozen=True)
class InputSpec:
    """The network input and how a BGR frame becomes it (letterbox, colour order, scale, mean/std)."""

    name: str
    height: int
    width: int
    color: str  # "RGB" or "BGR"
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pad_value: int
    layout: str = "NCHW"
    dtype: str = "float32"
    letterbox: str = "keep aspect ratio, centred, pad_value grey"
    dynamic_batch: bool = False

    @classmethod
    def read(cls, r: ObjectReader) -> InputSpec:
        return cls(
            name=r.text("name"),
            height=r.integer("height", high=MAX_INPUT_SIDE),
            width=r.integer("width", high=MAX_INPUT_SIDE),
            color=r.text("color", choices=("RGB", "BGR")),
            scale=r.number("scale", positive=True),
            mean=r.numbers("mean", 3),  # type: ignore[arg-type]
            std=r.numbers("std", 3, positive=True),  # type: ignore[arg-type]
            pad_value=r.integer("pad_value", low=0, high=255),
            layout=r.text("layout", False, ("NCHW",)) or "NCHW",
            dtype=r.text("dtype", False, ("float32",)) or "float32",
            letterbox=r.text("letterbox", False) or cls.letterbox,
            dynamic_batch=r.flag("dynamic_batch", False),
        )


@dataclass(frozen=True)
class DetectionSpec:
    """The detection output: decoded in the graph (cx, cy, w, h, objectness, class probabilities)."""

    output: str
    layout: str
    class_names: tuple[str, ...]
    strides: tuple[float, ...]
    anchors: tuple[tuple[float, ...], ...]
    sigmoid_applied: bool = True
    num_classes: int | None = None

    @classmethod
    def read(cls, r: ObjectReader) -> DetectionSpec:
        names = r.get("class_names", True)
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            r.fail("class_names", 'a non-empty list of strings (e.g. ["vehicle"])', names)
        strides = r.numbers("strides", positive=True)
        anchors = r.get("anchors", True)
        if (
            not isinstance(anchors, list)
            or len(anchors) != len(strides)
            or not all(isinstance(a, list) and a and all(is_number(v) and v > 0 for v in a) for a in anchors)
        ):
            r.fail("anchors", f"{len(strides)} lists (one per stride) of positive numbers", anchors)
        nc = r.integer("num_classes", False)
        if nc is not None and nc != len(names):
            r.fail("num_classes", f"the number of class_names ({len(names)})", nc)
        return cls(
            output=r.text("output"),
            layout=r.text("layout"),
            class_names=tuple(names),
            strides=strides,
            anchors=tuple(tuple(float(v) for v in a) for a in anchors),
            sigmoid_applied=r.flag("sigmoid_applied", True),
            num_classes=len(names),
        )


SEG_CHANNELS = (1, 2)  # what a segmentation head's ``channels`` may be


@dataclass(frozen=True)
class HeadSpec:
    """One segmentation head's output, (B, channels, H, W) at the input resolution: ``channels`` 1
    (absent: the default) holds logits, mask = value > 0 (p > 0.5); 2 holds (background, foreground)
    scores, mask = channel 1 > channel 0 (argmax; YOLOP's own ONNX export, sigmoid applied)."""

    output: str
    activation: str = "none (logits; > 0 means p > 0.5)"
    channels: int | None = field(default=None, metadata=OMIT_NONE)  # None: 1 (bundles before the field)

    @property
    def mask_channels(self) -> int:
        """1 (mask = channel 0 > 0) or 2 (mask = channel 1 > channel 0)."""
        return self.channels or 1

    @classmethod
    def read(cls, r: ObjectReader) -> HeadSpec:
        channels = r.get("channels", False)
        if channels is not None and (isinstance(channels, bool) or channels not in SEG_CHANNELS):
            r.fail(
                "channels",
                "1 (logits, mask = value > 0) or 2 (background, foreground: mask = channel 1 > channel 0)",
                channels,
            )
        return cls(r.text("output"), r.text("activation", False) or cls.activation, channels)


@dataclass(frozen=True)
class SegmentationSpec:
    drivable: HeadSpec
    lane: HeadSpec

    @classmethod
    def read(cls, r: ObjectReader) -> SegmentationSpec:
        known = tuple(f.name for f in dataclasses.fields(HeadSpec))
        heads = {k: HeadSpec.read(r.sub(k, known)) for k in ("drivable", "lane")}  # type: ignore[arg-type]
        return cls(**heads)


@dataclass(frozen=True)
class FilesSpec:
    """The model files, relative to the bundle directory (``onnx`` always; ``torch``, ``engine`` optional)."""

    onnx: str
    torch: str | None = None
    engine: str | None = None

    @classmethod
    def read(cls, r: ObjectReader) -> FilesSpec:
        paths: dict[str, str | None] = {}
        for kind in FILE_KINDS:
            v = r.get(kind, kind == "onnx")
            if v is None and kind != "onnx":
                paths[kind] = None
                continue
            p = PurePosixPath(v) if isinstance(v, str) else None
            if p is None or not v or p.is_absolute() or "\\" in v or ".." in p.parts or v.startswith("~"):
                r.fail(
                    kind,
                    "a relative path inside the bundle directory (e.g. 'model.onnx'; no '..' or absolute paths)",
                    v,
                )
            paths[kind] = v
        return cls(**paths)  # type: ignore[arg-type]


@dataclass(frozen=True)
class GraphSpec:
    """How the exported graph differs from the trained network (same function) and what it was built for."""

    decoder_rewrite: bool = False
    note: str = ""
    rewrite_stages: tuple[str, ...] = ()  # decoder stages in the sub-pixel (DepthToSpace) form
    bn_folded: bool = False  # BatchNorm after each CSP Concat folded into its convolutions
    activation: str | None = field(default=None, metadata=OMIT_NONE)  # silu, relu, hardswish, leaky
    # the recipe's deploy target (backend, activation, width multiple, rewrite, folding), when it had one
    deploy: dict[str, Any] | None = field(default=None, metadata=OMIT_NONE)

    @classmethod
    def read(cls, r: ObjectReader) -> GraphSpec:
        stages = r.get("rewrite_stages", False) or []
        if not isinstance(stages, list) or not all(isinstance(x, str) and x for x in stages):
            r.fail("rewrite_stages", 'a list of decoder stage names (e.g. ["csp1", "c3", "out"])', stages)
        return cls(
            r.flag("decoder_rewrite", False),
            r.text("note", False) or "",
            tuple(stages),
            r.flag("bn_folded", False),
            r.text("activation", False),
            r.mapping("deploy"),
        )


@dataclass(frozen=True)
class Provenance:
    """Where the model came from (free-form reports kept as the JSON objects they are)."""

    checkpoint: str | None = None
    parent: str | None = None
    params: int | None = None
    macs: int | None = None
    macs_at: str | None = None  # WIDTHxHEIGHT the MACs were counted at
    trained_img_size: tuple[int, int] | None = None
    prune: dict[str, Any] | None = None
    train_config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] | None = None
    # a bundle not made by mtc-compress: {"kind": "user-onnx", "layout": "yolop", "file": ..., "sha256": ...}
    source: dict[str, Any] | None = field(default=None, metadata=OMIT_NONE)

    @classmethod
    def read(cls, r: ObjectReader) -> Provenance:
        size = r.get("trained_img_size", False)
        if size is not None and (
            not isinstance(size, list) or len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size)
        ):
            r.fail("trained_img_size", "[width, height] (two positive integers) or null", size)
        return cls(
            checkpoint=r.text("checkpoint", False),
            parent=r.text("parent", False),
            params=r.integer("params", False, low=0),
            macs=r.integer("macs", False, low=0),
            macs_at=r.text("macs_at", False),
            trained_img_size=tuple(size) if size else None,
            prune=r.mapping("prune"),
            train_config=r.mapping("train_config") or {},
            metrics=r.mapping("metrics"),
            source=r.mapping("source"),
        )


@dataclass(frozen=True)
class Versions:
    """What built the files; the TensorRT fields only when the bundle has an engine."""

    opset: int | None = field(default=None, metadata=OMIT_NONE)
    torch: str | None = field(default=None, metadata=OMIT_NONE)
    onnx: str | None = field(default=None, metadata=OMIT_NONE)
    simplified: str | bool = False  # "onnxslim <version>" or false
    onnxruntime: str | None = field(default=None, metadata=OMIT_NONE)
    tensorrt: str | None = field(default=None, metadata=OMIT_NONE)
    precision: str | None = field(default=None, metadata=OMIT_NONE)  # fp32, fp16, int8, int8+fp16
    gpu: str | None = field(default=None, metadata=OMIT_NONE)
    compute_capability: str | None = field(default=None, metadata=OMIT_NONE)

    @classmethod
    def read(cls, r: ObjectReader) -> Versions:
        simplified = r.get("simplified", False)
        if simplified is not None and not isinstance(simplified, (str, bool)):
            r.fail("simplified", "a string or false", simplified)
        texts = ("torch", "onnx", "onnxruntime", "tensorrt", "precision", "gpu", "compute_capability")
        return cls(
            opset=r.integer("opset", False), simplified=simplified or False, **{k: r.text(k, False) for k in texts}
        )


@dataclass(frozen=True)
class Parity:
    """ONNX Runtime vs torch on real frames at export time."""

    frames: int
    max_abs_diff_normalized: dict[str, float]
    max_abs_diff_raw: dict[str, float]
    tolerance: float
    backend: str = ""

    @classmethod
    def read(cls, r: ObjectReader) -> Parity:
        diffs = {}
        for key in ("max_abs_diff_normalized", "max_abs_diff_raw"):
            v = r.get(key, True)
            if not isinstance(v, dict) or not all(is_number(x) and x >= 0 for x in v.values()):
                r.fail(key, "a JSON object of output name -> difference >= 0", v)
            diffs[key] = {k: float(x) for k, x in v.items()}
        return cls(
            frames=r.integer("frames", low=0),
            tolerance=r.number("tolerance", positive=True),
            backend=r.text("backend", False) or "",
            **diffs,
        )


QUANT_METHODS = ("minmax", "entropy", "percentile", "qat")  # post-training calibrations, quantization-aware training
CALIB_KINDS = ("dataset", "folder", "bag", "training")
INT8_TYPES = ("int8", "uint8")


def _float_map(r: ObjectReader, key: str, low: float = 0.0, high: float | None = None) -> dict[str, float]:
    v = r.get(key, True)
    if not isinstance(v, dict) or not all(
        is_number(x) and x >= low and (high is None or x <= high) for x in v.values()
    ):
        r.fail(key, f"a JSON object of output name -> number in [{low}, {high if high is not None else 'inf'}]", v)
    return {k: float(x) for k, x in v.items()}


@dataclass(frozen=True)
class Calibration:
    """The frames an INT8 model's activation ranges came from: ``kind`` dataset (``source`` = the root,
    ``split``), folder, bag (``topic``) or training (quantization-aware training); ``frames`` used of the
    ``available`` ones; ``digest``: md5 of the used frames' pixels (the same frames give the same digest)."""

    kind: str
    source: str
    frames: int
    available: int | None = field(default=None, metadata=OMIT_NONE)
    split: str | None = field(default=None, metadata=OMIT_NONE)
    topic: str | None = field(default=None, metadata=OMIT_NONE)
    digest: str | None = field(default=None, metadata=OMIT_NONE)

    @classmethod
    def read(cls, r: ObjectReader) -> Calibration:
        return cls(
            kind=r.text("kind", choices=CALIB_KINDS),
            source=r.text("source"),
            frames=r.integer("frames", low=0),
            available=r.integer("available", False, low=0),
            split=r.text("split", False),
            topic=r.text("topic", False),
            digest=r.text("digest", False),
        )


@dataclass(frozen=True)
class QuantParity:
    """INT8 vs the FP32 source bundle, both on ONNX Runtime, on frames the calibration did not use
    (``independent`` false where the source had no others): measured figures, not a pass/fail check.
    ``max_abs_diff_normalized``: per output (boxes / input size, probabilities); ``mask_agreement`` /
    ``mask_iou``: drivable and lane masks (IoU 1.0 where both are empty); ``detections``: boxes of FP32,
    of INT8, and matched (same class, IoU >= ``match_iou``) at confidence ``conf``."""

    frames: int
    independent: bool
    max_abs_diff_normalized: dict[str, float]
    mask_agreement: dict[str, float]
    mask_iou: dict[str, float]
    detections: dict[str, float]
    conf: float = 0.25
    match_iou: float = 0.5
    backend: str = ""

    @classmethod
    def read(cls, r: ObjectReader) -> QuantParity:
        return cls(
            frames=r.integer("frames", low=0),
            independent=r.flag("independent", False),
            max_abs_diff_normalized=_float_map(r, "max_abs_diff_normalized"),
            mask_agreement=_float_map(r, "mask_agreement", high=1.0),
            mask_iou=_float_map(r, "mask_iou", high=1.0),
            detections=_float_map(r, "detections"),
            conf=r.number("conf"),
            match_iou=r.number("match_iou", positive=True),
            backend=r.text("backend", False) or "",
        )


@dataclass(frozen=True)
class Quantization:
    """How an INT8 bundle's ``model.onnx`` (QuantizeLinear/DequantizeLinear nodes) was made: ``method``
    (``minmax``, ``entropy``, ``percentile``: post-training calibration; ``qat``), the weight and activation
    types, per-channel weights, the calibration, the nodes kept in float (name -> the rule that chose it,
    ``float_rule`` saying the rule), the FP32 bundle it came from, the ONNX Runtime that made it, and the
    INT8-vs-FP32 parity. Present only in INT8 bundles; such a bundle has no torch program (it would run
    the FP32 weights) and ``versions.precision`` says ``int8``."""

    method: str
    weight_type: str
    activation_type: str
    per_channel: bool
    symmetric_weights: bool = True
    symmetric_activations: bool = False
    precision: str = "int8"
    format: str = "QDQ"
    calibration: Calibration | None = field(default=None, metadata=OMIT_NONE)
    float_nodes: dict[str, str] = field(default_factory=dict)
    float_rule: str = ""
    source_bundle: str | None = field(default=None, metadata=OMIT_NONE)
    onnxruntime: str | None = field(default=None, metadata=OMIT_NONE)
    parity: QuantParity | None = field(default=None, metadata=OMIT_NONE)

    @classmethod
    def read(cls, r: ObjectReader) -> Quantization:
        nodes = r.get("float_nodes", False)
        if nodes is not None and (
            not isinstance(nodes, dict) or not all(isinstance(v, str) and v for v in nodes.values())
        ):
            r.fail("float_nodes", "a JSON object of node name -> rule (non-empty strings)", nodes)
        calib = r.sub("calibration", tuple(f.name for f in dataclasses.fields(Calibration)), required=False)
        par = r.sub("parity", tuple(f.name for f in dataclasses.fields(QuantParity)), required=False)
        return cls(
            method=r.text("method", choices=QUANT_METHODS),
            weight_type=r.text("weight_type", choices=INT8_TYPES),
            activation_type=r.text("activation_type", choices=INT8_TYPES),
            per_channel=r.flag("per_channel", False),
            symmetric_weights=r.flag("symmetric_weights", True),
            symmetric_activations=r.flag("symmetric_activations", False),
            precision=r.text("precision", False, ("int8",)) or "int8",
            format=r.text("format", False, ("QDQ",)) or "QDQ",
            calibration=Calibration.read(calib) if calib is not None else None,
            float_nodes=dict(nodes or {}),
            float_rule=r.text("float_rule", False) or "",
            source_bundle=r.text("source_bundle", False),
            onnxruntime=r.text("onnxruntime", False),
            parity=QuantParity.read(par) if par is not None else None,
        )


_SECTIONS: dict[str, tuple[Any, tuple[str, ...]]] = {  # field -> (section class with .read, its fields)
    "input": (InputSpec, tuple(f.name for f in dataclasses.fields(InputSpec))),
    "detection": (DetectionSpec, tuple(f.name for f in dataclasses.fields(DetectionSpec))),
    "segmentation": (SegmentationSpec, ("drivable", "lane")),
    "files": (FilesSpec, FILE_KINDS),
    "graph": (GraphSpec, tuple(f.name for f in dataclasses.fields(GraphSpec))),
    "provenance": (Provenance, tuple(f.name for f in dataclasses.fields(Provenance))),
    "versions": (Versions, tuple(f.name for f in dataclasses.fields(Versions))),
    "parity": (Parity, tuple(f.name for f in dataclasses.fields(Parity))),
    "quantization": (Quantization, tuple(f.name for f in dataclasses.fields(Quantization))),
}


@dataclass(frozen=True)
class BundleSpec:
    """The whole of ``bundle.json``."""

    input: InputSpec
    detection: DetectionSpec
    segmentation: SegmentationSpec
    outputs: dict[str, tuple[int | str, ...]]  # output name -> shape (ints, or names of dynamic dims)
    files: FilesSpec
    schema: int = SCHEMA
    name: str | None = field(default=None, metadata=OMIT_NONE)
    created: str | None = field(default=None, metadata=OMIT_NONE)  # ISO 8601, UTC
    graph: GraphSpec | None = field(default=None, metadata=OMIT_NONE)
    provenance: Provenance = field(default_factory=Provenance)
    versions: Versions = field(default_factory=Versions)
    parity: Parity | None = field(default=None, metadata=OMIT_NONE)
    quantization: Quantization | None = field(default=None, metadata=OMIT_NONE)  # INT8 bundles only

    @property
    def output_names(self) -> list[str]:
        """Detection, drivable, lane (the order every engine returns them in)."""
        return [self.detection.output, self.segmentation.drivable.output, self.segmentation.lane.output]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of bundle.json (sections in the file's order)."""
        order = ("schema", "name", "created", "input", "detection", "segmentation", "outputs", "graph", "files")
        d = to_dict(self)
        return {**{k: d[k] for k in order if k in d}, **{k: v for k, v in d.items() if k not in order}}

    def write(self, root: str | Path) -> Path:
        """Write ``root/bundle.json``; returns its path."""
        path = Path(root) / "bundle.json"
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: object, where: str = "bundle.json") -> BundleSpec:
        """Validate and parse bundle.json's object; :class:`BundleError` names ``where`` and the field."""
        if isinstance(data, dict) and "schema" in data and data["schema"] not in READABLE_SCHEMAS:
            raise BundleError(
                f"{where}: schema {show(data['schema'])} but this mtc_perception reads schema "
                f"{' or '.join(map(str, READABLE_SCHEMAS))}; re-export the bundle with this version of mtc-compress"
            )
        r = ObjectReader(data, "", where, tuple(f.name for f in dataclasses.fields(cls)), BundleError, REEXPORT)
        r.integer("schema")
        parts: dict[str, Any] = {}
        for key, (kind, known) in _SECTIONS.items():
            sub = r.sub(key, known, required=key in ("input", "detection", "segmentation", "files"))
            if sub is not None:
                parts[key] = kind.read(sub)
        outputs = r.get("outputs", True)
        if not isinstance(outputs, dict) or not outputs:
            r.fail("outputs", "a non-empty JSON object of output name -> shape", outputs)
        for n, shape in outputs.items():
            if not isinstance(shape, list) or not all(
                (isinstance(d, int) and not isinstance(d, bool) and d > 0) or (isinstance(d, str) and d) for d in shape
            ):
                r.fail(f"outputs.{n}", "a list of positive integers or dynamic dimension names", shape)
        spec = cls(
            schema=data["schema"],  # type: ignore[index]
            name=r.text("name", False),
            created=r.text("created", False),
            outputs={n: tuple(s) for n, s in outputs.items()},
            **parts,
        )
        for path, n in zip(
            ("detection.output", "segmentation.drivable.output", "segmentation.lane.output"), spec.output_names
        ):
            if n not in spec.outputs:
                raise BundleError(
                    f"{where}: {path} is {n!r} but outputs has no such entry (it has {sorted(spec.outputs)}); "
                    + REEXPORT
                )
        for key in ("drivable", "lane"):
            head = getattr(spec.segmentation, key)
            shape = spec.outputs[head.output]
            if len(shape) == 4 and isinstance(shape[1], int) and shape[1] != head.mask_channels:
                said = f"is {head.channels}" if head.channels else "is absent (1)"
                raise BundleError(
                    f"{where}: segmentation.{key}.channels {said} but outputs.{head.output} has {shape[1]} channels "
                    f"{list(shape)}; set channels to {shape[1]} if it is 1 or 2, or " + REEXPORT
                )
        q = spec.quantization
        if q is not None and not (spec.versions.precision or "").startswith(q.precision):  # int8, int8+fp16
            raise BundleError(
                f"{where}: quantization.precision is {q.precision!r} but versions.precision is "
                f"{show(spec.versions.precision)}; an INT8 bundle says int8 in both: {REQUANTIZE}"
            )
        if q is not None and spec.files.torch is not None:
            raise BundleError(
                f"{where}: an INT8 bundle (quantization section) names a torch file {spec.files.torch!r}; the torch "
                f"backend would run FP32 weights in its name: remove files.torch or {REQUANTIZE}"
            )
        return spec


# ---------------------------------------------------------------------------------------------
# a bundle on disk


@dataclass(frozen=True)
class Bundle:
    """A bundle directory and its parsed ``bundle.json``; file paths resolved against the directory."""

    root: Path
    spec: BundleSpec

    @classmethod
    def load(cls, path: str | Path) -> Bundle:
        path = Path(path)
        root = path.parent if path.name == "bundle.json" else path
        f = root / "bundle.json"
        if not f.is_file():
            raise BundleError(
                f"{root} is not a model bundle: {f} does not exist; create one with "
                "`mtc-compress export --ckpt CKPT --out DIR`"
            )
        size = f.stat().st_size
        if size > MAX_JSON_BYTES:
            raise BundleError(
                f"{f}: {size} bytes, more than a bundle.json can be ({MAX_JSON_BYTES}); it is not an exported bundle: "
                f"{REEXPORT}"
            )
        try:
            data = json.loads(f.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as e:
            raise BundleError(f"{f}: not UTF-8 text ({e.reason} at byte {e.start}); {REEXPORT}") from e
        except RecursionError as e:
            raise BundleError(f"{f}: nested too deeply to be a bundle.json; {REEXPORT}") from e
        except ValueError as e:  # JSONDecodeError, and integers past Python's digit limit
            raise BundleError(f"{f}: not valid JSON ({str(e)[:200]}); {REEXPORT}") from e
        b = cls(root, BundleSpec.from_dict(data, str(f)))
        b.check_files()
        return b

    def check_files(self) -> None:
        """Every named file resolves inside the bundle directory (symlinks included)."""
        top = self.root.resolve()
        for kind in FILE_KINDS:
            rel = getattr(self.spec.files, kind)
            if rel is None:
                continue
            if "\x00" in rel:
                raise BundleError(
                    f"{self.root / 'bundle.json'}: files.{kind} {show(rel)} holds a NUL character; "
                    f"a file name cannot: {REEXPORT}"
                )
            p = (self.root / rel).resolve()
            if p != top and top not in p.parents:
                raise BundleError(
                    f"{self.root / 'bundle.json'}: files.{kind} {rel!r} resolves to {p}, outside the bundle directory "
                    f"{top}; a bundle holds its own files: copy the file into the bundle or {REEXPORT}"
                )

    # -- accessors ------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.name or self.root.name

    @property
    def input_name(self) -> str:
        return self.spec.input.name

    @property
    def input_size(self) -> tuple[int, int]:
        """Network input (width, height)."""
        return self.spec.input.width, self.spec.input.height

    @property
    def class_names(self) -> list[str]:
        return list(self.spec.detection.class_names)

    @property
    def output_names(self) -> list[str]:
        return self.spec.output_names

    @property
    def output_shapes(self) -> dict[str, list[int | str]]:
        return {n: list(s) for n, s in self.spec.outputs.items()}

    @property
    def dynamic_batch(self) -> bool:
        return self.spec.input.dynamic_batch

    def file(self, kind: str) -> Path | None:
        """Path of the ``onnx`` / ``engine`` / ``torch`` file, or None if the bundle has none."""
        if kind not in FILE_KINDS:
            raise ValueError(f"unknown bundle file kind {kind!r}; use one of {list(FILE_KINDS)}")
        rel = getattr(self.spec.files, kind)
        return self.root / rel if rel else None

    def require_file(self, kind: str) -> Path:
        self.check_files()  # again: a link may have changed since the bundle was loaded
        p = self.file(kind)
        if p is None and kind == "torch" and self.spec.quantization is not None:
            raise BundleError(
                f"{self.root}: an INT8 bundle has no torch program (the torch backend runs FP32 programs only, and "
                "this bundle's FP32 weights are not its model); run it with --backend onnxruntime, or tensorrt "
                "with an engine built from its Q/DQ ONNX"
            )
        if p is None:
            raise BundleError(
                f"{self.root}: the bundle has no {kind} file (bundle.json files.{kind} is empty); "
                + (
                    "build one on the target GPU with `mtc-compress export --ckpt CKPT --out DIR --engine`"
                    if kind == "engine"
                    else "re-export it with `mtc-compress export`"
                )
            )
        if not p.is_file():
            raise BundleError(f"{p} is named in {self.root / 'bundle.json'} but does not exist; re-export the bundle")
        return p

    @property
    def rebuild_hint(self) -> str:
        q = self.spec.quantization
        if q is not None and q.method == "qat":
            return f"re-export the quantization-aware-trained model into {self.root} (compress.quantize.qat)"
        if q is not None:
            cal = q.calibration
            source = (f"{cal.source}:{cal.split}" if cal.split else cal.source) if cal else "SOURCE"
            return (
                f"mtc-compress quantize --bundle {q.source_bundle or 'FP32_BUNDLE'} --calib {source} "
                f"--method {q.method} --out {self.root}"
            )
        byo = self.spec.provenance.source or {}
        if byo.get("kind") == "user-onnx":
            return (
                f"mtc bundle --onnx {byo.get('file') or 'MODEL.onnx'} --layout {byo.get('layout') or 'yolop'} "
                f"--out NEW_DIR"
            )
        src = self.spec.provenance.checkpoint or "CKPT"
        w, h = self.input_size
        return f"mtc-compress export --ckpt {src} --out {self.root} --size {w}x{h}"
