"""What a caller gives the report: the models (:class:`ModelInfo`), each model's result on a frame
(:class:`ModelOutput`) and labelled boxes (:class:`GroundTruthBoxes`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: the stages of a model's latency offline (``ModelOutput.stage_ms`` keys)
STAGES = ("decode", "preprocess", "infer", "postprocess")


@dataclass
class ModelInfo:
    """What the report says about a model besides its measurements."""

    name: str
    bundle: str = ""
    backend: str = ""
    params: int | None = None
    macs: int | None = None
    macs_at: str | None = None
    input_size: tuple[int, int] | None = None  # network input (w, h)
    class_names: tuple[str, ...] = ()
    precision: str = "fp32"  # bundle.json's versions.precision (fp32 where it says nothing): int8 shows

    @classmethod
    def from_bundle(cls, name: str, bundle: Any, backend: str = "") -> ModelInfo:
        """From a :class:`~mtc_perception.bundle.Bundle` (params / MACs from its provenance, the
        precision from its versions)."""
        prov = bundle.spec.provenance
        return cls(
            name,
            str(bundle.root),
            backend,
            prov.params,
            prov.macs,
            prov.macs_at,
            tuple(bundle.input_size),
            tuple(bundle.class_names),
            bundle_precision(bundle),
        )


def bundle_precision(bundle: Any) -> str:
    """A bundle's numeric precision: bundle.json's ``versions.precision`` (``int8`` for a quantized
    model), ``fp32`` where it says nothing."""
    return str(getattr(bundle.spec.versions, "precision", None) or "fp32")


@dataclass
class ModelOutput:
    """One model on one frame. ``perception`` set: processed; ``error`` set: failed; neither:
    skipped (the model never answered this frame). ``latency_ms`` is the frame's end-to-end time
    through the model (decode + preprocess + infer + postprocess offline; receive -> output live);
    ``stage_ms`` its parts where known. ``reason``: why a skipped frame was skipped (e.g. the run
    was interrupted while it was in flight), in ``frames.csv``'s error column."""

    perception: Any = None  # Perception-like: boxes (N,4), scores (N,), class_ids (N,), drivable, lane (H,W {0,1})
    latency_ms: float | None = None
    stage_ms: Mapping[str, float] = field(default_factory=dict)
    error: str = ""
    reason: str = ""

    @property
    def status(self) -> str:
        return "processed" if self.perception is not None else "failed" if self.error else "skipped"


@dataclass
class GroundTruthBoxes:
    """Labelled boxes (N, 4) xyxy in image pixels and their class ids (the models' class indices)."""

    boxes: np.ndarray
    class_ids: np.ndarray
