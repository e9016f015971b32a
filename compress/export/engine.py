"""The export's TensorRT step: a TensorRT 10 engine built from the bundle's ONNX file (GPU machines only).

TensorRT 10 API: ``create_network(0)`` (explicit batch is the only mode), ``OnnxParser``,
``set_memory_pool_limit(WORKSPACE)``, ``BuilderFlag.FP16`` / ``INT8``, a timing cache,
``build_serialized_network`` (None on failure). INT8 (:func:`int8_mode`): an ONNX with
QuantizeLinear/DequantizeLinear nodes (an INT8 bundle, ``mtc-compress quantize``) is built by *explicit
quantization* — the INT8 flag, no calibrator, TensorRT reads the scales from the Q/DQ nodes; an FP32 ONNX
with ``--int8`` goes through the implicit ``IInt8EntropyCalibrator2`` over dataset frames, deprecated since
TensorRT 10.1 (a warning says so). Asking for a precision the GPU has no fast path for is an error, never
a silent downgrade. Pin ``tensorrt>=10,<11``: 11 drops the FP16/INT8 builder flags and calibrators.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from .config import ExportConfig
from .errors import ExportError

log = logging.getLogger(__name__)


def _require_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as e:
        raise ExportError(
            "--engine needs TensorRT 10 on a machine with an NVIDIA GPU: pip install 'tensorrt>=10,<11' cuda-python "
            "(on Jetson: the JetPack TensorRT); the ONNX bundle itself is complete without it"
        ) from e
    if not str(trt.__version__).startswith("10."):
        raise ExportError(
            f"TensorRT {trt.__version__} is installed; this exporter is written for TensorRT 10 "
            "(11 removed the FP16/INT8 builder flags): pip install 'tensorrt>=10,<11'"
        )
    return trt


QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def has_qdq(onnx_path: Path) -> bool:
    """Whether the ONNX file holds QuantizeLinear / DequantizeLinear nodes (an explicitly quantized model)."""
    import onnx

    return any(n.op_type in QDQ_OPS for n in onnx.load(str(onnx_path), load_external_data=False).graph.node)


def int8_mode(qdq: bool, int8: bool) -> str | None:
    """How TensorRT builds INT8: ``explicit`` where the ONNX has Q/DQ nodes (their scales; no calibrator),
    ``implicit`` where ``--int8`` asks for it on an FP32 ONNX (a calibrator; deprecated since TensorRT 10.1),
    else None (no INT8)."""
    return "explicit" if qdq else "implicit" if int8 else None


def build_engine(
    onnx_path: Path, engine_path: Path, cfg: ExportConfig, calib_frames: list[Path], cache_path: Path
) -> dict[str, Any]:
    """Build and write ``engine_path``; returns bundle.json's TensorRT versions (``tensorrt``, ``precision``,
    ``gpu``, ``compute_capability``: fields of :class:`mtc_perception.bundle.Versions`)."""
    trt = _require_tensorrt()
    from mtc_perception.engines.tensorrt_engine import gpu_identity

    gpu = gpu_identity()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {onnx_path}: {errs}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(cfg.workspace_gb * (1 << 30)))
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    precision = "fp32"
    if cfg.fp16:
        if not builder.platform_has_fast_fp16:
            raise ExportError(
                f"--fp16 asked for but {gpu['gpu']} (sm {gpu['compute_capability']}) has no fast FP16; drop --fp16"
            )
        config.set_flag(trt.BuilderFlag.FP16)
        precision = "fp16"
    mode = int8_mode(has_qdq(onnx_path), cfg.int8)
    if mode:
        if not builder.platform_has_fast_int8:
            raise ExportError(
                f"INT8 ({'the Q/DQ model ' + str(onnx_path) if mode == 'explicit' else '--int8'}) asked for but "
                f"{gpu['gpu']} (sm {gpu['compute_capability']}) has no fast INT8; "
                + ("use the FP32 bundle it was quantized from" if mode == "explicit" else "drop --int8")
            )
        config.set_flag(trt.BuilderFlag.INT8)
        if mode == "implicit":
            log.warning(
                "--int8 on an FP32 ONNX uses TensorRT's implicit INT8 calibrator, deprecated since TensorRT 10.1; "
                "quantize the bundle instead (mtc-compress quantize --bundle B --calib SOURCE --out Q --engine), "
                "which builds from explicit Q/DQ scales"
            )
            config.int8_calibrator = _calibrator(trt, onnx_path, calib_frames, cache_path.with_name("int8.cache"))
        else:
            log.info("%s has Q/DQ nodes: explicit quantization (TensorRT reads their scales; no calibrator)", onnx_path)
        precision = "int8" + ("+fp16" if cfg.fp16 else "")
    if cfg.dynamic_batch:
        profile = builder.create_optimization_profile()
        inp = network.get_input(0)
        _, c, h, w = inp.shape
        profile.set_shape(inp.name, (1, c, h, w), (1, c, h, w), (8, c, h, w))
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    engine_path.write_bytes(bytes(serialized))
    cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    log.info("TensorRT %s engine (%s) for %s written to %s", trt.__version__, precision, gpu["gpu"], engine_path)
    return {"tensorrt": trt.__version__, "precision": precision, **gpu}


def _calibrator(trt: Any, onnx_path: Path, frames: list[Path], cache: Path):
    """Entropy calibrator over dataset frames, preprocessed exactly as the Perceptor does."""
    from mtc_perception.bundle import Bundle
    from mtc_perception.engines.tensorrt_engine import check_cuda, cudart
    from mtc_perception.imaging import ImageError, read_image
    from mtc_perception.perceptor import Preprocessor

    if not frames:
        raise ExportError("INT8 calibration needs images: pass --calib DIR")
    pre = Preprocessor(Bundle.load(onnx_path.parent))
    rt = cudart()

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.i = 0
            w, h = pre.size
            self.nbytes = 3 * h * w * 4
            self.dptr = check_cuda(rt.cudaMalloc(self.nbytes), "cudaMalloc")

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names):
            while self.i < len(frames):
                self.i += 1
                try:
                    img = read_image(frames[self.i - 1])
                except (ImageError, OSError) as e:
                    log.warning("calibration frame skipped: %s", e)
                    continue
                x, _ = pre([img])
                x = np.ascontiguousarray(x)
                check_cuda(
                    rt.cudaMemcpy(self.dptr, x.ctypes.data, self.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice),
                    "H2D",
                )
                return [int(self.dptr)]
            return None

        def read_calibration_cache(self):
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data) -> None:
            cache.write_bytes(bytes(data))

    return Calibrator()
