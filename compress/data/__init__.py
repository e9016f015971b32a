"""Data: BDD100K / YOLOP label formats, the synthroad generator, augmentation and loaders.

Names are imported lazily so that light users (e.g. synthroad worker processes) do not pay for
importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DatasetError": "errors",
    "DataConfigError": "errors",
    "DataConfig": "bdd",
    "DEFAULT_CLASS_MAP": "bdd",
    "DEFAULT_IGNORE_CATEGORIES": "bdd",
    "DRIVABLE_MAPPINGS": "bdd",
    "index_split": "bdd",
    "map_drivable": "bdd",
    "map_lane": "bdd",
    "parse_objects": "bdd",
    "AugmentConfig": "augment",
    "letterbox": "augment",
    "MultiTaskDataset": "dataset",
    "LoadStats": "dataset",
    "build_loader": "dataset",
    "check_batch": "dataset",
    "collate": "dataset",
    "iterate": "dataset",
    "synthesize": "synthroad",
    "render": "synthroad",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
