"""Bring your own ONNX: a model another project exported, with a known interface (a ``layout``),
made into a model bundle (``mtc bundle --onnx MODEL.onnx --layout yolop --out DIR``) that the
Perceptor, ``mtc infer``, ``mtc bench`` and ``mtc bench-engines`` run beside the project's own.

Layout ``yolop``: the graph hustvl/YOLOP's ``export_onnx.py`` writes (``weights/yolop-640-640.onnx``
and its other sizes), read as its ``test_onnx.py`` runs it —

* input ``images``: float32 1 x 3 x H x W, static H and W; RGB, / 255, then ImageNet mean
  (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225); the frame letterboxed (aspect ratio kept,
  centred, grey 114 padding);
* ``det_out``: (1, N, 5 + classes) decoded in the graph: cx, cy, w, h in input pixels, objectness and
  class probabilities (sigmoid applied); YOLOP has one class (6 columns);
* ``drive_area_seg``, ``lane_line_seg``: (1, 2, H, W) sigmoid scores of (background, foreground) at
  the input resolution; the mask is their argmax (channel 1 > channel 0): bundle.json's
  ``segmentation.*.channels`` = 2.

The graph's interface is read with ONNX Runtime (the runtime's one hard dependency; ``onnx``, where
installed, adds the opset and parameter count) and checked against the layout before anything is
written: a file that does not fit is refused with every tensor that does not fit and what was
expected. ROS-free; no torch.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .bundle import (
    MAX_INPUT_SIDE,
    Bundle,
    BundleError,
    BundleSpec,
    DetectionSpec,
    FilesSpec,
    HeadSpec,
    InputSpec,
    Provenance,
    SegmentationSpec,
    Versions,
)

Dim = int | str  # a static size, or the name of a dynamic dimension


class OnnxLayoutError(BundleError):
    """An ONNX file that cannot be read, or whose interface does not fit the layout."""


@dataclass(frozen=True)
class Layout:
    """A known ONNX interface: tensor names, and how frames are prepared for it."""

    name: str
    origin: str  # where the interface comes from, for messages and provenance
    input: str
    detection: str
    segmentation: tuple[str, str]  # drivable, lane
    color: str
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pad_value: int
    seg_activation: str
    strides: tuple[float, ...]
    anchors: tuple[tuple[float, ...], ...]  # per stride, (w, h) pairs in input pixels (informational)
    default_class_names: tuple[str, ...]


LAYOUTS: dict[str, Layout] = {
    "yolop": Layout(
        name="yolop",
        origin="hustvl/YOLOP export_onnx.py",
        input="images",
        detection="det_out",
        segmentation=("drive_area_seg", "lane_line_seg"),
        color="RGB",
        scale=1 / 255,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        pad_value=114,
        seg_activation="sigmoid (background, foreground); mask = channel 1 > channel 0",
        strides=(8.0, 16.0, 32.0),
        anchors=((3, 9, 5, 11, 4, 20), (7, 18, 6, 39, 12, 31), (19, 50, 38, 81, 68, 157)),
        default_class_names=("vehicle",),
    ),
}
DET_LAYOUT = "B x N x (5 + classes): cx, cy, w, h (network-input pixels), objectness, class probabilities"


def layout_of(name: str) -> Layout:
    if name not in LAYOUTS:
        raise OnnxLayoutError(f"unknown ONNX layout {name!r}; known layouts: {', '.join(sorted(LAYOUTS))}")
    return LAYOUTS[name]


@dataclass(frozen=True)
class Tensor:
    """One graph input or output: name, element type (``float32``, ...) and shape (ints, or names
    of dynamic dimensions; ``?`` where the graph names none)."""

    name: str
    dtype: str
    shape: tuple[Dim, ...]

    def __str__(self) -> str:
        return f"{self.name!r} {self.dtype} {_shape(self.shape)}"


@dataclass(frozen=True)
class OnnxInterface:
    """An ONNX file's interface, checked against ``layout``."""

    path: Path
    layout: Layout
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    opset: int | None = None
    params: int | None = None

    @property
    def input(self) -> Tensor:
        return self.inputs[0]

    @property
    def size(self) -> tuple[int, int]:
        """Network input (width, height)."""
        h, w = self.input.shape[2], self.input.shape[3]
        assert isinstance(h, int) and isinstance(w, int)  # checked by inspect_onnx
        return w, h

    @property
    def dynamic_batch(self) -> bool:
        return not isinstance(self.input.shape[0], int)

    def output(self, name: str) -> Tensor:
        return next(o for o in self.outputs if o.name == name)


def _shape(shape: tuple[Dim, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64"}
_ONNX_TYPES = {1: "float32", 10: "float16", 11: "float64"}


def _dims(shape: Any) -> tuple[Dim, ...]:
    """ints stay; a dynamic dimension keeps its name, or ``?`` where it has none (or is 0 / negative)."""
    out: list[Dim] = []
    for d in shape:
        if isinstance(d, int) and not isinstance(d, bool):
            out.append(d if d > 0 else "?")
        else:
            out.append(d if isinstance(d, str) and d else "?")
    return tuple(out)


def _read_with_ort(path: Path) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    import onnxruntime as ort

    from .engines.onnxruntime_engine import session_options

    opts = session_options(graph_optimization="disabled")  # the runtime's one factory, graph as written
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - ONNX Runtime raises its own types for every kind of bad file
        raise OnnxLayoutError(f"{path}: not an ONNX model ONNX Runtime can load ({str(e).strip()[:300]})") from None

    def tensors(items: Any) -> tuple[Tensor, ...]:
        return tuple(Tensor(t.name, _ORT_TYPES.get(t.type, t.type), _dims(t.shape or ())) for t in items)

    return tensors(sess.get_inputs()), tensors(sess.get_outputs())


def _read_with_onnx(path: Path) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...], int | None, int | None]:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf decode errors have no common type
        raise OnnxLayoutError(f"{path}: not an ONNX model ({str(e).strip()[:300]})") from None
    g = model.graph
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in g.initializer):
        raise OnnxLayoutError(
            f"{path}: its weights are in external data files; a bundle holds one self-contained model.onnx: "
            "save the model with its weights inside (onnx.save(model, path, save_as_external_data=False))"
        )
    init = {t.name for t in g.initializer}

    def tensors(items: Any) -> tuple[Tensor, ...]:
        out = []
        for v in items:
            tt = v.type.tensor_type
            dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim)
            out.append(Tensor(v.name, _ONNX_TYPES.get(tt.elem_type, f"onnx type {tt.elem_type}"), _dims(dims)))
        return tuple(out)

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    params = sum(_numel(t.dims) for t in g.initializer)
    return tensors([i for i in g.input if i.name not in init]), tensors(g.output), opset, params


def _numel(dims: Any) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


def inspect_onnx(path: str | Path, layout: str = "yolop", num_classes: int = 1) -> OnnxInterface:
    """The interface of the ONNX file ``path``, checked against ``layout`` (``num_classes``: the
    detection output has 5 + num_classes columns). :class:`OnnxLayoutError` names every tensor that
    does not fit and what was expected."""
    lay = layout_of(layout)
    path = Path(path)
    if not path.is_file():
        raise OnnxLayoutError(f"{path}: no such file; give the .onnx file exported by {lay.origin}")
    opset = params = None
    try:
        import onnx  # noqa: F401 - optional: opset, parameter count, external data
    except ImportError:
        have_onnx = False
    else:
        have_onnx = True
    try:
        inputs, outputs = _read_with_ort(path)
    except ImportError:
        if not have_onnx:
            raise OnnxLayoutError(
                "reading an ONNX file needs onnxruntime (a required dependency of mtc_perception): pip install onnxruntime"
            ) from None
        inputs, outputs, opset, params = _read_with_onnx(path)
    else:
        if have_onnx:
            _, _, opset, params = _read_with_onnx(path)
    iface = OnnxInterface(path, lay, inputs, outputs, opset, params)
    problems = _check(iface, num_classes)
    if problems:
        raise OnnxLayoutError(
            f"{path} does not fit layout {lay.name!r} (the interface of {lay.origin}):\n  - "
            + "\n  - ".join(problems)
            + f"\nthe file has inputs [{', '.join(map(str, inputs))}] and outputs [{', '.join(map(str, outputs))}]"
        )
    return iface


def _check(iface: OnnxInterface, num_classes: int) -> list[str]:
    """What does not fit the layout, one line per tensor (empty: it fits)."""
    lay = iface.layout
    problems: list[str] = []
    want_in = f"float32 (1, 3, H, W) with a static H and W in [1, {MAX_INPUT_SIDE}]"
    if len(iface.inputs) != 1 or iface.inputs[0].name != lay.input:
        names = [t.name for t in iface.inputs]
        problems.append(
            f"input(s) {names}: expected one input named {lay.input!r}, {want_in}"
            + (f" (input {names[0]!r} is named differently)" if len(names) == 1 else "")
        )
    x = iface.inputs[0] if iface.inputs else None
    hw: tuple[Dim, Dim] = ("H", "W")
    if x is not None:
        s = x.shape
        bad = []
        if x.dtype != "float32":
            bad.append(f"element type {x.dtype}")
        if len(s) != 4:
            bad.append(f"rank {len(s)}")
        else:
            if isinstance(s[0], int) and s[0] != 1:
                bad.append(f"batch {s[0]}")
            if s[1] != 3:
                bad.append(f"{s[1]} channels")
            if not all(isinstance(d, int) for d in s[2:]):
                bad.append(
                    "a dynamic input size (export it at a fixed size, as export_onnx.py --height H --width W does)"
                )
            elif not all(1 <= int(d) <= MAX_INPUT_SIDE for d in s[2:]):
                bad.append(f"a size outside [1, {MAX_INPUT_SIDE}]")
            else:
                hw = (s[2], s[3])
        if bad:
            problems.append(f"input {x.name!r} {_shape(s)}: expected {want_in}; it has {', '.join(bad)}")
    have = {o.name: o for o in iface.outputs}
    cols = 5 + num_classes
    want: dict[str, tuple[str, tuple[Dim, ...]]] = {
        lay.detection: (f"(1, N, {cols}): cx, cy, w, h, objectness and {num_classes} class score(s)", (1, "N", cols)),
        **{
            n: (f"(1, 2, {hw[0]}, {hw[1]}): background and foreground at the input resolution", (1, 2, *hw))
            for n in lay.segmentation
        },
    }
    for name, (what, expected) in want.items():
        o = have.get(name)
        if o is None:
            problems.append(f"output {name!r} is missing: expected float32 {what}")
            continue
        if o.dtype != "float32" or len(o.shape) != len(expected) or _mismatch(o.shape, expected):
            problems.append(f"output {name!r} is {o.dtype} {_shape(o.shape)}: expected float32 {what}")
    return problems


def _mismatch(got: tuple[Dim, ...], expected: tuple[Dim, ...]) -> bool:
    """A static size that differs from a static expectation; the channel counts must be static.
    (Dynamic sizes elsewhere are checked when the model runs: :func:`check_run`.)"""
    for i, (g, e) in enumerate(zip(got, expected)):
        if i == len(expected) - 1 and len(expected) == 3 and not isinstance(g, int):
            return True  # detection columns must be static
        if i == 1 and len(expected) == 4 and not isinstance(g, int):
            return True  # segmentation channels must be static
        if isinstance(g, int) and isinstance(e, int) and g != e:
            return True
    return False


def check_run(iface: OnnxInterface, num_classes: int = 1) -> None:
    """Run the model once on a grey frame with ONNX Runtime and check the outputs' real shapes
    (dynamic dimensions included); :class:`OnnxLayoutError` names a tensor that does not fit."""
    import numpy as np
    import onnxruntime as ort

    lay = iface.layout
    w, h = iface.size
    from .engines.onnxruntime_engine import session_options

    opts = session_options()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(iface.path), opts, providers=["CPUExecutionProvider"])
    names = [lay.detection, *lay.segmentation]
    try:
        outs = sess.run(names, {lay.input: np.zeros((1, 3, h, w), np.float32)})
    except Exception as e:  # noqa: BLE001 - ONNX Runtime's own error types
        raise OnnxLayoutError(f"{iface.path}: running it once on a {w}x{h} input failed: {str(e)[:300]}") from None
    expected: dict[str, tuple[int | None, ...]] = {
        lay.detection: (1, None, 5 + num_classes),
        **{n: (1, 2, h, w) for n in lay.segmentation},
    }
    for n, o in zip(names, outs):
        want_dims = expected[n]
        if o.ndim != len(want_dims) or any(x is not None and x != g for x, g in zip(want_dims, o.shape)):
            want = _shape(tuple("N" if x is None else x for x in want_dims))
            raise OnnxLayoutError(
                f"{iface.path} does not fit layout {lay.name!r}: output {n!r} came out as {tuple(o.shape)} "
                f"on a {w}x{h} input; expected {want}"
            )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def bundle_spec(iface: OnnxInterface, name: str | None, class_names: tuple[str, ...], sha256: str) -> BundleSpec:
    """bundle.json of the checked ONNX ``iface`` (the file copied as ``model.onnx``)."""
    import onnxruntime as ort

    lay = iface.layout
    w, h = iface.size
    seg = lay.segmentation
    return BundleSpec(
        name=name,
        created=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        input=InputSpec(
            name=lay.input,
            height=h,
            width=w,
            color=lay.color,
            scale=lay.scale,
            mean=lay.mean,
            std=lay.std,
            pad_value=lay.pad_value,
            dynamic_batch=iface.dynamic_batch,
        ),
        detection=DetectionSpec(
            output=lay.detection,
            layout=DET_LAYOUT,
            class_names=class_names,
            strides=lay.strides,
            anchors=tuple(tuple(float(v) for v in a) for a in lay.anchors),
            sigmoid_applied=True,
            num_classes=len(class_names),
        ),
        segmentation=SegmentationSpec(
            HeadSpec(seg[0], lay.seg_activation, 2),
            HeadSpec(seg[1], lay.seg_activation, 2),
        ),
        outputs={n: iface.output(n).shape for n in (lay.detection, *seg)},
        files=FilesSpec(onnx="model.onnx"),
        provenance=Provenance(
            params=iface.params,
            source={
                "kind": "user-onnx",
                "layout": lay.name,
                "interface": lay.origin,
                "file": str(iface.path.resolve()),
                "sha256": sha256,
                "tool": "mtc bundle",
            },
        ),
        versions=Versions(opset=iface.opset, onnxruntime=ort.__version__, precision="fp32"),
    )


def write_bundle(
    onnx_path: str | Path,
    out_dir: str | Path,
    layout: str = "yolop",
    name: str | None = None,
    class_names: tuple[str, ...] | list[str] | None = None,
    run_check: bool = True,
) -> Bundle:
    """Check ``onnx_path`` against ``layout`` and write the bundle ``out_dir`` (absent or empty):
    ``bundle.json`` and a copy of the file as ``model.onnx``. ``class_names`` default to the
    layout's (YOLOP: ``vehicle``); ``run_check`` runs the model once to check its real output
    shapes. Returns the bundle as :meth:`Bundle.load` reads it."""
    lay = layout_of(layout)
    names = tuple(class_names) if class_names else lay.default_class_names
    if not all(isinstance(n, str) and n.strip() for n in names) or len(set(names)) != len(names):
        raise OnnxLayoutError(f"class names must be distinct non-empty strings (e.g. vehicle), got {list(names)}")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OnnxLayoutError(
            f"--out {out} exists and is not an empty directory; give a new directory (nothing is overwritten)"
        )
    iface = inspect_onnx(onnx_path, lay.name, num_classes=len(names))
    if run_check:
        check_run(iface, len(names))
    sha = _sha256(iface.path)
    spec = bundle_spec(iface, name, names, sha)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        shutil.copyfile(iface.path, tmp / "model.onnx")
        if _sha256(tmp / "model.onnx") != sha:
            raise OnnxLayoutError(f"{iface.path} changed while it was copied; run the command again")
        spec.write(tmp)
        Bundle.load(tmp)  # what was written reads back
        if out.exists():
            out.rmdir()  # empty (checked above); fails where something appeared meanwhile
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Bundle.load(out)
