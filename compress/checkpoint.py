"""Checkpoints: architecture as plain data + state dict, loadable with ``weights_only=True``.

A checkpoint never pickles a module or any object: a file from an untrusted source cannot run
code when loaded, and a pruned model is rebuilt from its config (every layer width included). A
network prepared for quantization-aware training also records its scheme (``qat``, plain data):
loading rebuilds the float network, fake-quantizes it the same way (``compress.quantize.qat``) and
loads the state dict, which holds the scales and zero points as tensors.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .models import ConfigError, ModelConfig, MultiTaskNet, build_model, config_of

log = logging.getLogger(__name__)

FORMAT = "mtc-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file that is missing, unreadable or does not fit the expected model."""


def save_checkpoint(path: str | Path, model: nn.Module, **extra: Any) -> Path:
    """Write ``model`` (config + weights) and plain-data extras atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    m = model.module if hasattr(model, "module") else model
    qat = getattr(m, "qat_scheme", None)  # a QAT network (compress.quantize.qat): its scheme as plain data
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": config_of(m).to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in m.state_dict().items()},
        **({"qat": qat.to_dict()} if qat is not None else {}),
        **extra,
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def add_to_checkpoint(path: str | Path, **extra: Any) -> Path:
    """Add plain-data ``extra`` entries to the checkpoint at ``path`` (atomically, weights unchanged)."""
    path = Path(path)
    payload = {**load_checkpoint(path), **extra}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_weights_only(path: Path, error: type[ValueError], missing: str, unreadable: str) -> Any:
    """``torch.load(path, weights_only=True)`` (a file cannot run code): a missing file raises
    ``error(missing)``, one that does not load ``error`` with ``unreadable`` (a message prefix) followed
    by torch's reason and why such files are refused."""
    if not path.is_file():
        raise error(missing)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise error(
            f"{unreadable} with weights_only=True ({type(e).__name__}: {str(e).splitlines()[0]}); it is corrupt, "
            "not a PyTorch file, or holds pickled objects (refused by design: a file must not run code)"
        ) from e


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` and check its format."""
    path = Path(path)
    ckpt = load_weights_only(
        path,
        CheckpointError,
        missing=f"checkpoint {path} does not exist; pass the .pt written by `mtc-compress train`",
        unreadable=f"checkpoint {path} cannot be loaded",
    )
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not an mtc checkpoint (no format={FORMAT!r} field); re-save it with compress.checkpoint"
        )
    if ckpt.get("version", 0) > VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {ckpt['version']}; this tool reads up to {VERSION}: upgrade mtc_perception"
        )
    return ckpt


def model_from_checkpoint(
    ckpt: dict[str, Any], path: str | Path = "<checkpoint>", key: str = "state_dict"
) -> MultiTaskNet:
    """Rebuild the network from the checkpoint's config and load its weights strictly."""
    try:
        cfg = ModelConfig.from_dict(ckpt["model_config"])
        model = build_model(cfg)
    except (ConfigError, TypeError, KeyError) as e:
        raise CheckpointError(f"{path}: its model config cannot be built: {e}") from e
    if "qat" in ckpt:
        from .quantize.qat import QatError, QatScheme, prepare_qat

        try:
            prepare_qat(model, QatScheme.from_dict(ckpt["qat"], f"{path}: qat"))
        except QatError as e:
            raise CheckpointError(f"{path}: its QAT scheme cannot be applied: {e}") from e
    state = ckpt[key]
    missing, unexpected = [], []
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    bad_shape = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or bad_shape:
        raise CheckpointError(
            f"{path}: weights do not fit the architecture in its config "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}, shape mismatch {bad_shape[:3]}); "
            "the file was written for another architecture"
        )
    model.load_state_dict(state)
    return model


def load_model(path: str | Path, use_ema: bool = True) -> tuple[MultiTaskNet, dict[str, Any]]:
    """Load a model from a checkpoint file (EMA weights when present and ``use_ema``)."""
    ckpt = load_checkpoint(path)
    key = "ema_state_dict" if use_ema and "ema_state_dict" in ckpt else "state_dict"
    return model_from_checkpoint(ckpt, path, key), ckpt
