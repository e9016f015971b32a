"""TensorRT 10 backend: tensor-address API, one CUDA stream, buffers allocated once, optional
CUDA-graph replay. Needs ``tensorrt`` (10.x) and ``cuda-python`` for the CUDA runtime calls.

Written against the TensorRT 10 API (``execute_async_v3``, ``set_tensor_address``,
``get_tensor_name/mode/shape/dtype``); tested only where a GPU with TensorRT exists.
"""

from __future__ import annotations

import logging

import numpy as np

from mtc_perception.bundle import BundleError

from .base import Engine, EngineUnavailable, register

log = logging.getLogger(__name__)


def cudart():
    """The CUDA runtime bindings of cuda-python (``cuda.bindings.runtime``, or ``cuda.cudart`` before
    12.6); ImportError without cuda-python. Public: the TensorRT engine build (INT8 calibration) uses it."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python
    return cudart


def check_cuda(result, what: str):
    """Unpack a cuda-python call's ``(error, *values)`` result: the value(s), or RuntimeError naming
    ``what`` when the error code is not 0. Public, like :func:`cudart`."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA error {err} in {what}")
    return rest[0] if len(rest) == 1 else (rest or None)


def gpu_identity() -> dict[str, object]:
    """Name and compute capability of the current GPU (for bundle.json and the checks)."""
    rt = cudart()
    dev = check_cuda(rt.cudaGetDevice(), "cudaGetDevice")
    props = check_cuda(rt.cudaGetDeviceProperties(dev), "cudaGetDeviceProperties")
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return {"gpu": name.strip("\x00 "), "compute_capability": f"{props.major}.{props.minor}"}


@register("tensorrt")
class TensorRTEngine(Engine):
    """Options: ``cuda_graph`` (bool, default False): capture one inference into a CUDA graph and
    replay it (static shapes only)."""

    requires = ("tensorrt",)
    file_kind = "engine"

    @classmethod
    def install_hint(cls) -> str:
        return "pip install 'tensorrt>=10,<11' cuda-python (or the JetPack TensorRT), on a machine with an NVIDIA GPU"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        ok, why = super().available()
        if not ok:
            return ok, why
        try:
            cudart()
        except ImportError:
            return False, "the tensorrt backend needs cuda-python for its CUDA runtime calls: pip install cuda-python"
        try:
            n = check_cuda(cudart().cudaGetDeviceCount(), "cudaGetDeviceCount")
        except Exception as e:  # noqa: BLE001 - any CUDA failure means: no usable device
            return False, f"no usable CUDA device ({e})"
        if not n:
            return False, "no CUDA device"
        return True, ""

    def load(self) -> TensorRTEngine:
        import tensorrt as trt

        cuda = cudart()
        path = self.bundle.require_file("engine")
        versions = self.bundle.spec.versions
        built_with = versions.tensorrt
        if not str(trt.__version__).startswith("10."):
            raise EngineUnavailable(
                f"TensorRT {trt.__version__} is installed but this backend is written for TensorRT 10; "
                "pip install 'tensorrt>=10,<11'"
            )
        here = gpu_identity()
        if built_with and built_with != trt.__version__:
            raise BundleError(
                f"{path} was built with TensorRT {built_with} but TensorRT {trt.__version__} is installed; engines do "
                f"not move between versions: rebuild on this machine with `{self.bundle.rebuild_hint} --engine`"
            )
        for key in ("gpu", "compute_capability"):
            built_for = getattr(versions, key)
            if built_for and built_for != here[key]:
                raise BundleError(
                    f"{path} was built for {key} {built_for} but this machine has {here[key]}; engines do not move "
                    f"between GPUs: rebuild here with `{self.bundle.rebuild_hint} --engine`"
                )
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise BundleError(
                f"{path}: TensorRT {trt.__version__} could not deserialize the engine (version or device mismatch?); "
                f"rebuild on this machine with `{self.bundle.rebuild_hint} --engine`"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = {
            n: list(self.engine.get_tensor_shape(n))
            for n in names
            if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT
        }
        if inputs != [self.bundle.input_name]:
            raise BundleError(
                f"{path}: inputs {inputs} but bundle.json expects [{self.bundle.input_name!r}]; rebuild with "
                f"`{self.bundle.rebuild_hint} --engine`"
            )
        self.check_outputs(outputs, path)
        w, h = self.bundle.input_size
        in_shape = (1, 3, h, w)
        self.context.set_input_shape(self.bundle.input_name, in_shape)
        self.stream = check_cuda(cuda.cudaStreamCreate(), "cudaStreamCreate")
        self.buffers: dict[str, tuple[int, np.ndarray]] = {}
        for n in names:
            shape = tuple(self.context.get_tensor_shape(n))
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(n)))
            host = np.empty(shape, dtype=dtype)
            dptr = check_cuda(cuda.cudaMalloc(host.nbytes), "cudaMalloc")
            self.buffers[n] = (dptr, host)
            self.context.set_tensor_address(n, int(dptr))
        self.output_names = self.bundle.output_names
        self.graph_exec = None
        self.cudart = cuda
        self.description = (
            f"TensorRT {trt.__version__} on {here['gpu']} (sm {here['compute_capability']}, "
            f"{versions.precision or '?'})"
        )
        self.loaded = True
        if self.options.get("cuda_graph"):
            self._capture()
        return self

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")

    def _capture(self) -> None:
        cudart = self.cudart
        self._enqueue()  # one run before capture lets TensorRT allocate what it needs
        check_cuda(cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        check_cuda(
            cudart.cudaStreamBeginCapture(self.stream, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal),
            "BeginCapture",
        )
        self._enqueue()
        graph = check_cuda(cudart.cudaStreamEndCapture(self.stream), "EndCapture")
        self.graph_exec = check_cuda(cudart.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        log.info("CUDA graph captured for %s", self.bundle.file("engine"))

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if x.shape[0] != 1:  # buffers (and a captured graph) are for one frame: run a batch frame by frame
            outs = [self._run(x[i : i + 1]) for i in range(x.shape[0])]
            return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
        cudart = self.cudart
        kind_h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        kind_d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        dptr, host = self.buffers[self.bundle.input_name]
        np.copyto(host, x.astype(host.dtype, copy=False))
        check_cuda(cudart.cudaMemcpyAsync(dptr, host.ctypes.data, host.nbytes, kind_h2d, self.stream), "H2D copy")
        if self.graph_exec is not None:
            check_cuda(cudart.cudaGraphLaunch(self.graph_exec, self.stream), "cudaGraphLaunch")
        else:
            self._enqueue()
        for n in self.output_names:
            dptr, host = self.buffers[n]
            check_cuda(cudart.cudaMemcpyAsync(host.ctypes.data, dptr, host.nbytes, kind_d2h, self.stream), "D2H copy")
        check_cuda(cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        return {n: self.buffers[n][1].astype(np.float32, copy=True) for n in self.output_names}

    def __del__(self) -> None:
        try:
            for dptr, _ in getattr(self, "buffers", {}).values():
                self.cudart.cudaFree(dptr)
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
