"""An INT8 bundle from an FP32 bundle and a Q/DQ ONNX: :func:`write_int8_bundle` (post-training
quantization here, quantization-aware training in ``qat.py`` write through it).

The new bundle is the source's bundle.json with ``model.onnx`` replaced by the Q/DQ file; the source's
torch program and engine are not carried over (they run the FP32 weights: an INT8 bundle must not present
them as its model), nor its ONNX-vs-torch parity (it measured the FP32 file). ``versions.precision`` is
``int8`` and the ``quantization`` section records how the file was made and, on ``parity_frames``, how
far it is from the FP32 bundle. Written into ``OUT.partial`` with the export's marker and renamed to
``OUT`` only after every check passed — the Q/DQ file passes ``onnx.checker``, keeps the source's input
and outputs, and opens in an ONNX Runtime session (a runtime without the kernels is an error here, never
a silent FP32 fallback later); ``OUT`` is replaced only where it is a bundle, unless ``force``
(the export's rules, ``compress.export.exporter``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mtc_perception.bundle import Bundle, BundleError, BundleSpec, FilesSpec, Quantization

from ..export.exporter import PARTIAL_MARKER, _remove, _replaceable
from .errors import QuantizeError

log = logging.getLogger(__name__)


def _check_qdq(path: Path, source: Bundle) -> None:
    """The Q/DQ file passes the checker, has Q/DQ nodes and the source's input and output names."""
    import onnx

    from .ptq import qdq_nodes

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # noqa: BLE001 - onnx raises several kinds for a bad file; all mean "not a model"
        raise QuantizeError(f"{path}: not a valid ONNX model ({type(e).__name__}: {e})") from None
    if not qdq_nodes(model):
        raise QuantizeError(
            f"{path} has no QuantizeLinear/DequantizeLinear nodes: it is not an INT8 (Q/DQ) model; quantize it first"
        )
    inputs = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    outputs = sorted(o.name for o in model.graph.output)
    if inputs != [source.input_name] or outputs != sorted(source.output_names):
        raise QuantizeError(
            f"{path}: input {inputs} and outputs {outputs} but the FP32 bundle {source.root} has input "
            f"{[source.input_name]} and outputs {sorted(source.output_names)}; quantize that bundle's model.onnx"
        )


def _open(bundle: Bundle) -> None:
    """An ONNX Runtime session of the Q/DQ model, or :class:`QuantizeError`."""
    import onnxruntime

    from mtc_perception.engines import create_engine

    try:
        create_engine("onnxruntime", bundle, providers=["CPUExecutionProvider"])
    except BundleError as e:
        raise QuantizeError(
            f"ONNX Runtime {onnxruntime.__version__} cannot run the INT8 model {bundle.file('onnx')} ({e}); this "
            "runtime lacks the kernels it needs: upgrade onnxruntime, or keep the FP32 bundle (an INT8 bundle is "
            "never silently run in FP32)"
        ) from None


def write_int8_bundle(
    source_bundle: str | Path,
    qdq_onnx: str | Path,
    out: str | Path,
    quantization: Quantization,
    force: bool = False,
    parity_frames: Sequence[np.ndarray] = (),
    parity_independent: bool = True,
    name: str | None = None,
    engine: Any = None,
) -> Path:
    """Write the INT8 bundle ``out`` from the FP32 bundle ``source_bundle`` and the Q/DQ ONNX ``qdq_onnx``;
    returns ``out``.

    ``quantization``: bundle.json's section (its ``source_bundle`` and ``onnxruntime`` are filled in where
    empty, its ``parity`` measured here on ``parity_frames`` (BGR images; ``parity_independent``: the
    calibration did not use them) when any are given). ``name``: the bundle's name (default: ``out``'s
    directory name). ``engine``: a :class:`compress.export.ExportConfig` to also build a TensorRT engine from
    the Q/DQ file (explicit quantization). ``force``: replace ``out`` even where it is not a bundle."""
    import onnxruntime

    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    _replaceable(out, "bundle.json", force)
    _replaceable(tmp, PARTIAL_MARKER, force)
    try:
        source = Bundle.load(source_bundle)
    except BundleError as e:
        raise QuantizeError(f"source bundle {source_bundle}: {e}") from None
    if source.spec.quantization is not None:
        raise QuantizeError(
            f"source bundle {source.root} is already INT8; write_int8_bundle needs the FP32 bundle the model came from"
        )
    qdq = Path(qdq_onnx)
    _check_qdq(qdq, source)
    _remove(tmp)
    tmp.mkdir(parents=True)
    (tmp / PARTIAL_MARKER).write_text("written by mtc-compress quantize; removed when the bundle is complete\n")
    shutil.copyfile(qdq, tmp / "model.onnx")
    spec = source.spec
    q = dataclasses.replace(
        quantization,
        source_bundle=quantization.source_bundle or str(source.root),
        onnxruntime=quantization.onnxruntime or onnxruntime.__version__,
    )
    spec = dataclasses.replace(
        spec,
        name=name or out.name,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        files=FilesSpec(onnx="model.onnx"),
        versions=dataclasses.replace(
            spec.versions,
            onnxruntime=onnxruntime.__version__,
            precision=q.precision,
            tensorrt=None,
            gpu=None,
            compute_capability=None,
        ),
        parity=None,
        quantization=q,
    )
    spec.write(tmp)
    int8 = Bundle.load(tmp)
    _open(int8)
    if parity_frames:
        from .parity import int8_parity

        q = dataclasses.replace(q, parity=int8_parity(source, int8, parity_frames, parity_independent))
        spec = dataclasses.replace(spec, quantization=q)
        log.info(
            "INT8 vs FP32 on %d frames: max abs diff %s, mask IoU %s, detections %s",
            q.parity.frames if q.parity else 0,
            {k: f"{v:.3g}" for k, v in (q.parity.max_abs_diff_normalized if q.parity else {}).items()},
            {k: f"{v:.3f}" for k, v in (q.parity.mask_iou if q.parity else {}).items()},
            q.parity.detections if q.parity else {},
        )
    if engine is not None:
        spec = _with_engine(spec, tmp, engine)
    BundleSpec.from_dict(spec.to_dict(), str(tmp / "bundle.json"))  # what is written reads back
    spec.write(tmp)
    Bundle.load(tmp)
    (tmp / PARTIAL_MARKER).unlink()
    _replaceable(out, "bundle.json", force)  # again: OUT may have appeared meanwhile
    _remove(out)
    tmp.rename(out)
    log.info("INT8 bundle written to %s (%s, %d nodes kept in float)", out, q.method, len(q.float_nodes))
    return out


def _with_engine(spec: BundleSpec, root: Path, cfg: Any) -> BundleSpec:
    """Build ``root/model.engine`` from the Q/DQ ONNX (TensorRT explicit quantization) into ``spec``."""
    from ..export.engine import build_engine

    built = build_engine(root / "model.onnx", root / "model.engine", cfg, [], root / "timing.cache")
    return dataclasses.replace(
        spec,
        files=dataclasses.replace(spec.files, engine="model.engine"),
        versions=dataclasses.replace(spec.versions, **{k: str(v) for k, v in built.items()}),
    )
