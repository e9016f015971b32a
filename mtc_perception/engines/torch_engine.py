"""torch backend (the reference): runs the bundle's exported program on CPU or CUDA.

The program is read into memory once, checked by :func:`.pt2_check.check_program` (nothing in it can be
unpickled or executed) and loaded from those same bytes under :func:`.pt2_check.no_unpickling`."""

from __future__ import annotations

import numpy as np

from mtc_perception.bundle import BundleError

from .base import Engine, EngineUnavailable, register
from .pt2_check import check_program, no_unpickling


@register("torch")
class TorchEngine(Engine):
    """Options: ``device`` (``cpu``, ``cuda``, ``cuda:N``; default cuda when available),
    ``threads`` (CPU threads)."""

    requires = ("torch",)
    file_kind = "torch"

    @classmethod
    def install_hint(cls) -> str:
        return "pip install torch (see pytorch.org for the build matching your CUDA)"

    def load(self) -> TorchEngine:
        import torch

        path = self.bundle.require_file("torch")
        dev = str(self.options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
        if dev.startswith("cuda") and not torch.cuda.is_available():
            raise EngineUnavailable(f"device {dev!r} asked for but this torch has no CUDA device; use device cpu")
        if self.options.get("threads"):
            torch.set_num_threads(int(self.options["threads"]))
        import io

        data = path.read_bytes()
        fix = (
            "a bundle's model.pt2 holds raw tensors and ATen operators only: do not use this file; rebuild it "
            f"from a trusted checkpoint with `{self.bundle.rebuild_hint}`, or use --backend onnxruntime"
        )
        check_program(data, path, fix)
        try:
            with no_unpickling(path, fix):
                program = torch.export.load(io.BytesIO(data))
        except BundleError:
            raise
        except Exception as e:
            raise BundleError(
                f"{path}: torch cannot load the exported program ({e}); rebuild with `{self.bundle.rebuild_hint}`"
            ) from e
        self.module = program.module().to(dev)
        self.device = torch.device(dev)
        self.torch = torch
        self.output_names = self.bundle.output_names
        self.description = f"torch {torch.__version__} on {dev}"
        self.loaded = True
        return self

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        torch = self.torch
        with torch.inference_mode():
            outs = self.module(torch.from_numpy(x).to(self.device))
        if not isinstance(outs, (tuple, list)) or len(outs) != len(self.output_names):
            raise BundleError(
                f"{self.bundle.file('torch')}: the program returns {type(outs).__name__} but bundle.json expects "
                f"{len(self.output_names)} outputs {self.output_names}; rebuild with `{self.bundle.rebuild_hint}`"
            )
        return {n: o.detach().float().cpu().numpy() for n, o in zip(self.output_names, outs)}
