"""The one ONNX export of the project (bundles, the latency budget's candidates, scripts/speed_breakdown.py),
and the steps after it: simplification and the checker.

TorchScript-based exporter (``dynamo=False``), constant folding, batch 1 of zeros at the given size.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17


def export_onnx(
    module: nn.Module,
    path: str | Path,
    size: tuple[int, int],
    opset: int = DEFAULT_OPSET,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    dynamic_axes: dict[str, dict[int, str]] | None = None,
) -> Path:
    """Export ``module`` (in eval mode, one NCHW float input of ``size`` = (width, height)) to ``path``."""
    w, h = size
    x = torch.zeros(1, 3, h, w)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter announces its deprecation
        torch.onnx.export(
            module,
            (x,),
            str(path),
            input_names=list(input_names) if input_names else None,
            output_names=list(output_names) if output_names else None,
            opset_version=opset,
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
            dynamo=False,
        )
    return Path(path)


def simplify_onnx(path: str | Path) -> str | bool:
    """Simplify the file in place with onnxslim when it is installed; returns ``"onnxslim <version>"``
    or False (not installed: the graph keeps constant folding only)."""
    import onnx

    try:
        import onnxslim
    except ImportError:
        log.info(
            "onnxslim is not installed: the ONNX graph is exported with constant folding only (pip install onnxslim)"
        )
        return False
    onnx.save(onnxslim.slim(onnx.load(str(path))), str(path))
    return "onnxslim " + getattr(onnxslim, "__version__", "?")


def check_onnx(path: str | Path) -> dict[str, list[Any]]:
    """``onnx.checker`` with ``full_check``; returns the outputs' shapes (ints, or names of dynamic dims)."""
    import onnx

    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    return {
        o.name: [d.dim_param if d.dim_param else d.dim_value for d in o.type.tensor_type.shape.dim]
        for o in proto.graph.output
    }
