"""ONNX Runtime backend: TensorRT EP -> CUDA EP -> CPU, and a check of the provider in use."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from mtc_perception.bundle import BundleError

from .base import Engine, EngineUnavailable, register

log = logging.getLogger(__name__)

PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
DEFAULT_GRAPH_OPTIMIZATION = "extended"


def session_options(
    threads: int | None = None,
    graph_optimization: str | None = None,
    spin: bool = False,
    profile_prefix: str | None = None,
) -> Any:  # onnxruntime.SessionOptions
    """The ``onnxruntime.SessionOptions`` the runtime runs every model with — the one definition, also
    used where models are timed offline (the pruning's latency budget, scripts/speed_breakdown.py), so
    that a measured latency is the latency the vehicle sees.

    ``threads``: intra-op threads (None: ONNX Runtime's default, every core); ``graph_optimization``:
    ``extended`` (default), ``all`` or ``basic`` (see :class:`OnnxRuntimeEngine`); ``spin``: let idle
    worker threads spin (default off, inter- and intra-op); ``disabled`` runs the graph as written, no
    fusion (the QAT export's reference: its Q/DQ pairs as the ONNX semantics define them; slow); ``profile_prefix``: record ONNX Runtime's
    profile (a JSON trace of every node's kernel time per run) into ``<profile_prefix>_<date>.json``,
    written by ``InferenceSession.end_profiling()`` (``mtc bench-engines --profile``; never while
    timing: the profiler costs time per node)."""
    import onnxruntime as ort

    levels = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }
    level = graph_optimization or DEFAULT_GRAPH_OPTIMIZATION
    if level not in levels:
        raise ValueError(f"graph_optimization {level!r} unknown; use one of {sorted(levels)}")
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = int(threads)
    so.graph_optimization_level = levels[level]
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "1" if spin else "0")
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = str(profile_prefix)
    return so


@register("onnxruntime")
class OnnxRuntimeEngine(Engine):
    """Options: ``providers`` (list, default: every available one of TensorRT, CUDA, CPU in that
    order), ``threads`` (intra-op threads, default ONNX Runtime's), ``require`` (a provider that
    must be the one in use, e.g. ``CUDAExecutionProvider``: an error instead of a silent CPU
    fallback), ``graph_optimization`` (``extended`` by default; ``all`` is ONNX Runtime's own
    default and adds the CPU's blocked NCHWc layout, whose reorders cost more than they save for
    pruned widths here, docs/RESULTS.md "ONNX Runtime settings"), ``spin``
    (default False: worker threads sleep between runs instead of spinning; spinning threads of
    one idle session halve the speed of another on the same cores, e.g. teacher and student
    nodes side by side), ``profile`` (a file prefix: ONNX Runtime's profiler records every run,
    :meth:`end_profiling` writes the trace; for ``mtc bench-engines --profile`` only)."""

    requires = ("onnxruntime",)
    file_kind = "onnx"

    @classmethod
    def install_hint(cls) -> str:
        return "pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA / TensorRT execution providers)"

    def load(self) -> OnnxRuntimeEngine:
        import onnxruntime as ort

        path = self.bundle.require_file("onnx")
        avail = ort.get_available_providers()
        wanted = list(self.options.get("providers") or [p for p in PREFERENCE if p in avail])
        unknown = [p for p in wanted if p not in avail]
        if unknown:
            raise EngineUnavailable(
                f"ONNX Runtime providers {unknown} are not available in this onnxruntime build "
                f"(it has {avail}); install onnxruntime-gpu for CUDA/TensorRT"
            )
        threads = self.options.get("threads")
        level = str(self.options.get("graph_optimization") or DEFAULT_GRAPH_OPTIMIZATION)
        spin = bool(self.options.get("spin", False))
        profile = self.options.get("profile")
        so = session_options(int(threads) if threads else None, level, spin, str(profile) if profile else None)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=so, providers=wanted)
        except Exception as e:  # onnxruntime raises its own exception types
            raise BundleError(
                f"{path}: ONNX Runtime cannot load it ({e}); rebuild with `{self.bundle.rebuild_hint}`"
            ) from e
        in_use = self.session.get_providers()
        require = self.options.get("require")
        if require and (not in_use or in_use[0] != require):
            raise EngineUnavailable(
                f"{require} was required but ONNX Runtime runs {path.name} on {in_use} "
                "(it falls back silently when CUDA/TensorRT libraries are missing)"
            )
        if wanted and in_use and in_use[0] != wanted[0]:
            log.warning("ONNX Runtime asked for %s but uses %s for %s", wanted[0], in_use[0], path)
        inputs = self.session.get_inputs()
        w, h = self.bundle.input_size
        if len(inputs) != 1 or inputs[0].name != self.bundle.input_name:
            raise BundleError(
                f"{path}: inputs {[i.name for i in inputs]} but bundle.json expects one input "
                f"{self.bundle.input_name!r}; rebuild with `{self.bundle.rebuild_hint}`"
            )
        shape = inputs[0].shape
        if [d for d in shape[1:]] != [3, h, w]:
            raise BundleError(
                f"{path}: input {inputs[0].name!r} has shape {shape} but bundle.json says (B, 3, {h}, {w}); "
                f"rebuild with `{self.bundle.rebuild_hint}`"
            )
        self.check_outputs(
            {o.name: [d if isinstance(d, int) else str(d) for d in o.shape] for o in self.session.get_outputs()}, path
        )
        self.output_names = self.bundle.output_names
        self.description = (
            f"onnxruntime {ort.__version__} on {in_use[0] if in_use else '?'}"
            + (f", {threads} threads" if threads else "")
            + f", graph optimization {level}"
            + (", spinning" if spin else "")
            + (", profiling" if profile else "")
        )
        self.providers = in_use
        self.loaded = True
        return self

    def end_profiling(self) -> str:
        """Stop the profiler (option ``profile``) and write its trace; returns the file's path."""
        if not self.options.get("profile"):
            raise RuntimeError(f"{self.bundle.root}: the session was not created with the profile option")
        return str(self.session.end_profiling())

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        outs = self.session.run(self.output_names, {self.bundle.input_name: x})
        return dict(zip(self.output_names, outs))
