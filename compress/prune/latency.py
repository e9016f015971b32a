"""Measured inference latency as a pruning budget (``budget: latency``).

Parameters and MACs are proxies: on a CPU the high-resolution layers of a YOLOP-style network
(the stem, stride-4 stage, the decoders' tails) hold most of the time and few of the MACs, so a
student with 40 % fewer MACs can be no faster. A latency budget measures what the user pays for:
each candidate model is exported as it will be deployed (``compress.models.deploy``, the decoder
rewrite, BatchNorm folded) to ONNX and timed with ONNX Runtime on this machine, at the deployment
input size, batch 1. Run the pruning on (or like) the target machine.

The figure is the **minimum** over ``runs`` timed runs after ``warmup`` runs: interference from
other processes only ever adds time, so the minimum is the most repeatable estimate of the
model's own cost (the mean or median moves with the load of the machine). Results are cached by
the model's layer widths, so the budget search does not re-time a candidate it has seen.

Whole-model timings taken minutes apart still drift by several percent on a shared VM (the
machine's speed changes with its neighbours), which is as much as a pruning step is meant to save.
Comparisons therefore use :meth:`LatencyMeter.relative`: the candidate and its reference run in
alternation in the same time window and the ratio of their minima is taken, so a slow or fast
spell affects both alike.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)


class LatencyError(RuntimeError):
    """A latency measurement that cannot be made."""


class _Flat(nn.Module):
    def __init__(self, model: nn.Module, flatten: Callable[[Any], list[torch.Tensor]]) -> None:
        super().__init__()
        self.model = model
        self.flatten = flatten

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.flatten(self.model(x)))


def widths_key(model: nn.Module) -> tuple[tuple[str, Any, Any], ...]:
    """The model's conv / linear widths and its activation types: two models with the same key time
    the same (a ReLU copy of a SiLU network has its widths but not its time)."""
    key: list[tuple[str, Any, Any]] = []
    acts: set[str] = set()
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            key.append((name, m.in_channels, m.out_channels))
        elif isinstance(m, nn.Linear):
            key.append((name, m.in_features, m.out_features))
        elif not list(m.children()) and type(m).__module__.startswith("torch.nn.modules.activation"):
            acts.add(type(m).__name__)
    key.append(("activations", tuple(sorted(acts)), None))
    return tuple(key)


class LatencyMeter:
    """``meter(model) -> ms``: ONNX Runtime CPU latency of ``model`` as deployed (see module doc).

    ``size`` is the deployment input (width, height); ``flatten`` turns the model's output into a
    list of tensors (the pruning spec's); ``threads`` is ONNX Runtime's intra-op thread count
    (None: its default, every core)."""

    def __init__(
        self,
        size: tuple[int, int],
        flatten: Callable[[Any], list[torch.Tensor]],
        runs: int = 15,
        warmup: int = 3,
        threads: int | None = None,
        rewrite: bool = True,
    ) -> None:
        if runs < 1 or warmup < 0:
            raise LatencyError(f"latency runs must be >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
        if len(size) != 2 or min(size) < 8:
            raise LatencyError(f"latency input size {size} must be (width, height), each >= 8 pixels")
        try:
            import onnxruntime  # noqa: F401 - only whether it is installed
        except ImportError as e:
            raise LatencyError(
                "budget 'latency' times candidates with ONNX Runtime, which is not installed; "
                "pip install onnxruntime (or use budget params / macs)"
            ) from e
        self.size = (int(size[0]), int(size[1]))
        self.flatten = flatten
        self.runs, self.warmup, self.threads, self.rewrite = runs, warmup, threads, rewrite
        self._cache: dict[tuple[Any, ...], float] = {}
        self._ratios: dict[tuple[Any, ...], float] = {}
        self._references: dict[tuple[Any, ...], Any] = {}  # sessions of reference models, by widths
        self.measured = 0  # how many models were actually timed (cache misses)

    def __call__(self, model: nn.Module) -> float:
        key = widths_key(model)
        if key not in self._cache:
            self._cache[key] = self._time(model)
            self.measured += 1
        return self._cache[key]

    def relative(self, model: nn.Module, reference: nn.Module) -> float:
        """latency(model) / latency(reference), paired: both sessions run in alternation after
        their warmup, ``runs`` times each, and the ratio of the two minima is returned (cached by
        both models' widths; the reference's session is kept for the next candidate)."""
        ka, kb = widths_key(model), widths_key(reference)
        if ka == kb:
            return 1.0
        if (ka, kb) not in self._ratios:
            if kb not in self._references:
                self._references[kb] = self._session(reference)
            ref, sess = self._references[kb], self._session(model)
            feed_a, feed_b = self._feed(sess), self._feed(ref)
            for _ in range(self.warmup):
                sess.run(None, feed_a)
                ref.run(None, feed_b)
            a = b = float("inf")
            for _ in range(self.runs):
                t = time.perf_counter()
                sess.run(None, feed_a)
                t1 = time.perf_counter()
                ref.run(None, feed_b)
                t2 = time.perf_counter()
                a, b = min(a, t1 - t), min(b, t2 - t1)
            self._ratios[(ka, kb)] = a / b
            self._cache.setdefault(ka, a * 1e3)
            self.measured += 1
        return self._ratios[(ka, kb)]

    def _session(self, model: nn.Module, profile_dir: str | None = None) -> Any:
        """An ONNX Runtime CPU session of ``model`` as deployed: the export's ONNX function and the
        runtime's own session options (mtc_perception.engines.onnxruntime_engine.session_options)."""
        import onnxruntime as ort

        from compress.export import export_onnx
        from compress.models.deploy import deploy_model
        from mtc_perception.engines.onnxruntime_engine import session_options

        m = deploy_model(model) if self.rewrite else copy.deepcopy(model).eval()
        m = m.cpu().float()
        w, h = self.size
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "candidate.onnx"
            try:
                export_onnx(_Flat(m, self.flatten).eval(), path, self.size)
            except Exception as e:  # torch.onnx raises many types
                raise LatencyError(
                    f"budget 'latency': exporting {type(model).__name__} at {w}x{h} to ONNX failed ({e}); "
                    "use budget params / macs for models that do not export"
                ) from e
            so = session_options(threads=self.threads)  # as mtc_perception runs it
            if profile_dir:
                so.enable_profiling = True
                so.profile_file_prefix = str(Path(profile_dir) / "profile")
            return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def _feed(self, sess: Any) -> dict[str, Any]:
        import numpy as np

        w, h = self.size
        return {sess.get_inputs()[0].name: np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)}

    def _time(self, model: nn.Module) -> float:
        sess = self._session(model)
        feed = self._feed(sess)
        for _ in range(self.warmup):
            sess.run(None, feed)
        best = float("inf")
        for _ in range(self.runs):
            t = time.perf_counter()
            sess.run(None, feed)
            best = min(best, time.perf_counter() - t)
        return best * 1e3

    def block_shares(self, model: nn.Module, blocks: list[str]) -> dict[str, float]:
        """Each block's share of the model's ONNX Runtime kernel time (one profiled session).

        A node belongs to the block whose module path prefixes its name (torch.onnx names nodes
        ``/model/<module path>/<op>``); nodes outside every block (heads' outputs, decode) count
        in the total only. Shares within one session are far steadier than whole-model times
        across sessions, which on a shared VM drift by several percent — more than pruning one
        block saves — so the sensitivity probe uses ``share x fraction of the block's channels
        removed`` as the block's latency saving (compress.prune.pruner)."""
        import json

        with tempfile.TemporaryDirectory() as d:
            sess = self._session(model, d)
            feed = self._feed(sess)
            for _ in range(self.warmup + self.runs):
                sess.run(None, feed)
            events = json.loads(Path(sess.end_profiling()).read_text())
        per: dict[str, float] = dict.fromkeys(blocks, 0.0)
        total = 0.0
        prefixes = sorted(((b.replace(".", "/") + "/", b) for b in blocks), key=lambda p: -len(p[0]))
        for e in events:
            if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
                continue
            name = e["name"][: -len("_kernel_time")].lstrip("/")
            name = name[len("model/") :] if name.startswith("model/") else name
            total += float(e.get("dur", 0))
            for pre, b in prefixes:
                if name.startswith(pre):
                    per[b] += float(e.get("dur", 0))
                    break
        if total <= 0:
            raise LatencyError("ONNX Runtime's profile holds no node timings; cannot attribute latency to blocks")
        return {b: v / total for b, v in per.items()}
