"""The engine interface and the name -> class registry (``auto`` picks the best available)."""

from __future__ import annotations

import importlib.util
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np

from mtc_perception.bundle import Bundle, BundleError

log = logging.getLogger(__name__)


class EngineUnavailable(RuntimeError):
    """The backend's runtime package (or hardware) is not available here."""


class Engine(ABC):
    """Runs a bundle's network: ``load()`` once, ``warmup()``, then ``infer(x)`` on a float32
    NCHW batch; returns the bundle's outputs by name as numpy arrays."""

    name = "engine"
    requires: tuple[str, ...] = ()  # importable packages the backend needs
    file_kind = "onnx"

    def __init__(self, bundle: Bundle, **options: object) -> None:
        self.bundle = bundle
        self.options: dict[str, Any] = options
        self.loaded = False
        self.description = self.name  # what actually runs (provider, device), set by load()

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """(usable here, why not)."""
        missing = [p for p in cls.requires if importlib.util.find_spec(p) is None]
        if missing:
            return False, f"the {cls.name} backend needs the Python package(s) {missing}: {cls.install_hint()}"
        return True, ""

    @classmethod
    def install_hint(cls) -> str:
        return "pip install " + " ".join(cls.requires)

    def check_available(self) -> None:
        ok, why = self.available()
        if not ok:
            raise EngineUnavailable(why)

    @abstractmethod
    def load(self) -> Engine: ...

    @abstractmethod
    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]: ...

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if not self.loaded:
            self.load()
        x = np.ascontiguousarray(x, dtype=np.float32)
        w, h = self.bundle.input_size
        if x.ndim != 4 or x.shape[1:] != (3, h, w):
            raise ValueError(f"{self.name}: input batch must be (B, 3, {h}, {w}) float32, got {x.shape}")
        if x.shape[0] != 1 and not self.bundle.dynamic_batch:
            outs = [self._run(x[i : i + 1]) for i in range(x.shape[0])]  # static batch 1: one frame at a time
            return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
        return self._run(x)

    def warmup(self, runs: int = 3) -> float:
        """Run ``runs`` dummy inferences; returns the mean ms of the last ones."""
        if not self.loaded:
            self.load()
        w, h = self.bundle.input_size
        x = np.zeros((1, 3, h, w), np.float32)
        t = time.perf_counter()
        for _ in range(max(runs, 1)):
            self.infer(x)
        return (time.perf_counter() - t) * 1e3 / max(runs, 1)

    def check_outputs(self, found: dict[str, list], file: object) -> None:
        """Compare the model file's output names (and static dims) with bundle.json."""
        expected = self.bundle.output_shapes
        missing = [n for n in expected if n not in found]
        if missing:
            raise BundleError(
                f"{file}: outputs {sorted(found)} but {self.bundle.root / 'bundle.json'} expects {sorted(expected)} "
                f"(missing {missing}); the files are from different exports — rebuild with `{self.bundle.rebuild_hint}`"
            )
        for n, shape in expected.items():
            got = found[n]
            if got is None:
                continue
            if len(got) != len(shape) or any(
                isinstance(e, int) and isinstance(g, int) and e != g for e, g in zip(shape, got)
            ):
                raise BundleError(
                    f"{file}: output {n!r} has shape {list(got)} but bundle.json says {list(shape)}; rebuild with "
                    f"`{self.bundle.rebuild_hint}`"
                )


ENGINES: dict[str, type[Engine]] = {}
AUTO_ORDER = ("tensorrt", "onnxruntime", "torch")


def register(name: str) -> Callable[[type[Engine]], type[Engine]]:
    def deco(cls: type[Engine]) -> type[Engine]:
        cls.name = name
        ENGINES[name] = cls
        return cls

    return deco


def create_engine(backend: str, bundle: Bundle | str, **options: object) -> Engine:
    """An engine for ``bundle`` (loaded). ``backend``: ``tensorrt``, ``onnxruntime``, ``torch`` or
    ``auto`` (TensorRT where the bundle has an engine and a GPU runs it, else ONNX Runtime, else
    torch)."""
    if not isinstance(bundle, Bundle):
        bundle = Bundle.load(bundle)
    if backend == "auto":
        reasons = []
        for name in AUTO_ORDER:
            cls = ENGINES[name]
            ok, why = cls.available()
            if ok and bundle.file(cls.file_kind) is None:
                ok, why = False, f"the bundle has no {cls.file_kind} file"
            if not ok:
                reasons.append(f"{name}: {why}")
                continue
            try:
                eng = cls(bundle, **options).load()
            except EngineUnavailable as e:
                reasons.append(f"{name}: {e}")
                continue
            log.info("backend auto -> %s (%s)", name, eng.description)
            return eng
        raise EngineUnavailable("no backend can run " + str(bundle.root) + ": " + "; ".join(reasons))
    if backend not in ENGINES:
        raise ValueError(f"unknown backend {backend!r}; choose one of {['auto', *ENGINES]}")
    eng = ENGINES[backend](bundle, **options)
    eng.check_available()
    return eng.load()
