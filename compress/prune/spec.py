"""What the pruner and distiller need to know about a multi-task model (model-agnostic seam).

A :class:`TaskSpec` names, by module path, the output layers of every head (never pruned) and the
modules whose outputs are feature taps for distillation, plus how to turn the model's output into a
list of tensors for torch-pruning's graph tracing. Any ``nn.Module`` multi-task model can be pruned
and distilled by giving one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


class SpecError(ValueError):
    """A spec that does not fit the model it is used with."""


def _default_flatten(out: Any) -> list[torch.Tensor]:
    """Tensors of a model output: a tensor, a (nested) list/tuple/dict, or a dataclass."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for v in out.values() for t in _default_flatten(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in _default_flatten(v)]
    if hasattr(out, "__dataclass_fields__"):
        return [t for k in out.__dataclass_fields__ for t in _default_flatten(getattr(out, k))]
    return []


@dataclass(frozen=True)
class TaskSpec:
    """Head outputs per task (protected from pruning) and feature taps (for distillation)."""

    head_outputs: dict[str, tuple[str, ...]]
    taps: dict[str, str] = field(default_factory=dict)
    flatten: Callable[[Any], list[torch.Tensor]] = _default_flatten

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.head_outputs)

    def protected_modules(self, model: nn.Module) -> list[nn.Module]:
        return [resolve(model, p, "head output") for ps in self.head_outputs.values() for p in ps]

    def tap_modules(self, model: nn.Module) -> dict[str, nn.Module]:
        return {name: resolve(model, p, f"tap {name!r}") for name, p in self.taps.items()}

    def validate(self, model: nn.Module) -> None:
        """Raise :class:`SpecError` naming the first layer the model does not have."""
        self.protected_modules(model)
        self.tap_modules(model)


def resolve(model: nn.Module, path: str, what: str) -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        near = [n for n in names if n.split(".")[-1] == path.split(".")[-1]][:5]
        raise SpecError(
            f"{what} {path!r} is not a module of {type(model).__name__}"
            + (f"; modules with that name: {near}" if near else "")
            + "; fix the spec's module paths (model.named_modules() lists them)"
        ) from None


def spec_for(model: nn.Module) -> TaskSpec:
    """The spec of a model: its own ``task_spec()`` if it has one (any architecture can opt in
    that way), else the built-in one of this project's :class:`~compress.models.MultiTaskNet`."""
    from compress.models.yolop import TAPS, MultiTaskNet, head_outputs

    own = getattr(model, "task_spec", None)
    if callable(own):
        spec = own()
        if not isinstance(spec, TaskSpec):
            raise SpecError(f"{type(model).__name__}.task_spec() returned {type(spec).__name__}, expected a TaskSpec")
        spec.validate(model)
        return spec
    if not isinstance(model, MultiTaskNet):
        raise SpecError(
            f"no spec for {type(model).__name__}: give it a task_spec() method or pass a TaskSpec naming its "
            "head outputs and taps"
        )
    return TaskSpec(head_outputs={k: tuple(v) for k, v in head_outputs(model.cfg).items()}, taps=dict(TAPS))
