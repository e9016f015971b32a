"""YOLOP's checkpoints in and out: ``End-to-end.pth`` (or a fine-tune of it) as an mtc checkpoint.

YOLOP (hustvl/YOLOP) builds its network as one ``nn.Sequential`` of 43 blocks, so its state dict
names every tensor ``model.<block>.<path>``. This project's network in the ``yolop`` layout
(:mod:`compress.models.yolop`, ``ModelConfig(layout="yolop", act="hardswish",
input_norm="imagenet")``) has the same blocks under descriptive names; the tensors inside a block
are named alike (``cv1.conv.weight``, ``bn.running_var``, ``m.0.cv2.bn.bias`` ...). The mapping is
therefore one block prefix per block index (:data:`BLOCKS`); blocks 11, 12, 15, 16, 19, 22, 26, 29,
32, 35, 38 and 41 are Upsample/Concat and hold no tensors.

Import reads the file with ``weights_only=True`` (a file cannot run code), takes its widths,
class count, anchors and strides from the tensors themselves (a fine-tune with other classes or
anchors imports as it is), builds the network and loads every tensor strictly. Whatever does not
fit -- another architecture, missing or extra blocks, a depth that is not YOLOP's -- is one error
listing each key that does not fit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from compress.models import ConfigError, ModelConfig, MultiTaskNet, build_model

#: YOLOP block index -> this project's module path (blocks with tensors only).
BLOCKS: dict[int, str] = {
    0: "backbone.stem",  # Focus
    1: "backbone.down2",
    2: "backbone.stage2",
    3: "backbone.down3",
    4: "backbone.stage3",
    5: "backbone.down4",
    6: "backbone.stage4",
    7: "backbone.down5",
    8: "backbone.spp",
    9: "backbone.stage5",
    10: "neck.lat5",
    13: "neck.td4",
    14: "neck.lat4",
    17: "neck.out3",
    18: "neck.down3",
    20: "neck.out4",
    21: "neck.down4",
    23: "neck.out5",
    24: "detect",
    25: "drivable.c1",
    27: "drivable.csp1",
    28: "drivable.c2",
    30: "drivable.c3",
    31: "drivable.csp2",
    33: "drivable.out",
    34: "lane.c1",
    36: "lane.csp1",
    37: "lane.c2",
    39: "lane.c3",
    40: "lane.csp2",
    42: "lane.out",
}
PATHS = {v: k for k, v in BLOCKS.items()}
DETECT_BLOCK = 24
#: Detect buffers YOLOP saves in its state dict: anchors in grid units and in pixels. This project
#: keeps them in the model config (pixels), not in the state dict.
DETECT_BUFFERS = ("anchors", "anchor_grid")


def _default_class_names(nc: int) -> tuple[str, ...]:
    """YOLOP's one merged ``vehicle`` class, BDD100K's 10 classes for a 10-class fine-tune (the data's
    ``--classes bdd10`` order), else ``class0``..."""
    from compress.data.bdd import BDD10_CLASSES

    return {1: ("vehicle",), len(BDD10_CLASSES): tuple(BDD10_CLASSES)}.get(nc, tuple(f"class{i}" for i in range(nc)))


_KEY = re.compile(r"^model\.(\d+)\.(.+)$")


class YolopImportError(ValueError):
    """A file that is not a YOLOP checkpoint this importer can convert."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict inside a YOLOP checkpoint file: ``{'state_dict': ...}`` (what YOLOP's
    training writes and ``End-to-end.pth`` is), ``{'model': state_dict}`` or a bare state dict;
    a ``module.`` prefix (DataParallel/DDP) is dropped. Read with ``weights_only=True``."""
    from compress.checkpoint import load_weights_only

    path = Path(path)
    obj = load_weights_only(
        path,
        YolopImportError,
        missing=f"YOLOP weights {path} do not exist; pass the .pth file (e.g. weights/End-to-end.pth)",
        unreadable=f"{path} cannot be read",
    )
    sd: Any = obj
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                sd = obj[key]
                break
    if not isinstance(sd, Mapping) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        top = sorted(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise YolopImportError(
            f"{path} holds no state dict of tensors (top level: {top}); expected YOLOP's checkpoint "
            "({'state_dict': {...}}) or a bare state dict with keys model.<block>.<...>"
        )
    out = {}
    for k, v in sd.items():
        k = str(k)
        out[k[len("module.") :] if k.startswith("module.") else k] = v
    return out


def to_project_key(key: str) -> str | None:
    """``model.<i>.<rest>`` -> this project's key (None for YOLOP's Detect anchor buffers)."""
    m = _KEY.match(key)
    if not m or int(m.group(1)) not in BLOCKS:
        raise KeyError(key)
    block, rest = int(m.group(1)), m.group(2)
    if block == DETECT_BLOCK and rest in DETECT_BUFFERS:
        return None
    return f"{BLOCKS[block]}.{rest}"


def to_yolop_key(key: str) -> str:
    """This project's key -> YOLOP's ``model.<i>.<rest>``."""
    for path, block in PATHS.items():
        if key.startswith(path + "."):
            return f"model.{block}.{key[len(path) + 1 :]}"
    raise KeyError(key)


def config_from_state_dict(sd: Mapping[str, torch.Tensor], class_names: tuple[str, ...] | None = None) -> ModelConfig:
    """The ``yolop``-layout config whose network has exactly ``sd``'s tensors: every conv's width,
    the class count (from the detection convs), anchors and strides (from Detect's buffers)."""
    anchors = sd.get(f"model.{DETECT_BLOCK}.anchors")
    grid = sd.get(f"model.{DETECT_BLOCK}.anchor_grid")
    if anchors is None or grid is None:
        raise YolopImportError(
            f"no detection anchors (model.{DETECT_BLOCK}.anchors / model.{DETECT_BLOCK}.anchor_grid): "
            "this is not a YOLOP checkpoint, or not one with its detection head at block 24"
        )
    nl, na = int(anchors.shape[0]), int(anchors.shape[1])
    pixels = grid.reshape(nl, na, 2).double()
    strides = (pixels / anchors.double().clamp_min(1e-12)).mean(dim=(1, 2))
    strides_int = tuple(int(round(float(s))) for s in strides)
    det0 = sd.get(f"model.{DETECT_BLOCK}.m.0.weight")
    if det0 is None:
        raise YolopImportError(f"no detection output conv model.{DETECT_BLOCK}.m.0.weight in the file")
    no = int(det0.shape[0]) // na
    nc = no - 5
    if nc < 1 or no * na != int(det0.shape[0]):
        raise YolopImportError(
            f"detection conv model.{DETECT_BLOCK}.m.0 has {det0.shape[0]} outputs, not a multiple of {na} anchors x "
            "(5 + classes)"
        )
    if class_names is None:
        class_names = _default_class_names(nc)
    if len(class_names) != nc:
        raise YolopImportError(f"the file detects {nc} classes but {len(class_names)} class names were given")
    widths = {}
    for k, v in sd.items():
        if not k.endswith(".weight") or v.ndim != 4:
            continue
        try:
            pk = to_project_key(k)
        except KeyError:
            continue  # reported by the strict load
        if pk is not None:
            widths[pk[: -len(".weight")]] = int(v.shape[0])
    # depth: YOLOP's backbone stage at block 4 has 3 bottlenecks (depth 1.0); a 0.33-depth variant has 1
    n4 = len({k.split(".")[3] for k in sd if k.startswith("model.4.m.")})
    size = {3: "yolop", 1: "teacher"}.get(n4)
    if size is None:
        raise YolopImportError(
            f"block 4 (the stride-8 backbone CSP) has {n4} bottlenecks; YOLOP has 3 (depth 1.0) and its "
            "0.33-depth variants 1: this file is another architecture"
        )
    base = ModelConfig(
        size=size,
        layout="yolop",
        act="hardswish",
        input_norm="imagenet",
        num_classes=nc,
        class_names=tuple(class_names),
        anchors=tuple(tuple(float(a) for a in row) for row in pixels.reshape(nl, -1).tolist()),
        strides=strides_int,
    )
    # only the widths this architecture has: extra keys are listed by the strict load instead
    own = {n for n, m in build_model(base).named_modules() if isinstance(m, torch.nn.Conv2d)}
    return base.replace(widths={k: w for k, w in widths.items() if k in own})


def import_state_dict(
    sd: Mapping[str, torch.Tensor], class_names: tuple[str, ...] | None = None, source: str = "<state dict>"
) -> MultiTaskNet:
    """A ``yolop``-layout network holding exactly ``sd``'s tensors; anything that does not fit is
    a :class:`YolopImportError` listing each key."""
    not_yolop = [k for k in sd if not _KEY.match(k)]
    if len(not_yolop) == len(sd):
        raise YolopImportError(
            f"{source}: none of its {len(sd)} keys has YOLOP's form model.<block>.<...> (first: {list(sd)[:3]}); "
            "this is another architecture's file (an mtc checkpoint is used directly, without import)"
        )
    try:
        cfg = config_from_state_dict(sd, class_names)
        model = build_model(cfg)
    except ConfigError as e:
        raise YolopImportError(f"{source}: its tensors do not describe YOLOP's network: {e}") from e
    own = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    unexpected: list[str] = list(not_yolop)
    for k, v in sd.items():
        if k in not_yolop:
            continue
        try:
            pk = to_project_key(k)
        except KeyError:
            unexpected.append(k)
            continue
        if pk is None:
            continue
        if pk not in own:
            unexpected.append(k)
        else:
            mapped[pk] = v
    missing = [to_yolop_key(k) for k in own if k not in mapped]
    bad_shape = [
        f"{to_yolop_key(k)} {tuple(mapped[k].shape)} (expected {tuple(own[k].shape)})"
        for k in own
        if k in mapped and mapped[k].shape != own[k].shape
    ]
    if missing or unexpected or bad_shape:
        parts = []
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", bad_shape)):
            if keys:
                parts.append(f"{len(keys)} {what}: {keys[:8]}{' ...' if len(keys) > 8 else ''}")
        raise YolopImportError(
            f"{source} does not fit YOLOP's network ({'; '.join(parts)}); the file was written for another "
            "architecture or depth (this importer takes YOLOP's MCnet as in hustvl/YOLOP lib/models/YOLOP.py, "
            "any widths, classes and anchors, depth 1.0 or 0.33)"
        )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in mapped.items()})
    return model.eval()


def export_state_dict(model: MultiTaskNet) -> dict[str, torch.Tensor]:
    """The ``yolop``-layout ``model``'s tensors under YOLOP's names (Detect's anchor buffers
    included), loadable by YOLOP's own ``MCnet`` when the widths are YOLOP's."""
    if model.cfg.layout != "yolop":
        raise YolopImportError(f"model layout is {model.cfg.layout!r}; only the 'yolop' layout has YOLOP's tensors")
    sd = {to_yolop_key(k): v.detach().clone() for k, v in model.state_dict().items()}
    pixels = model.detect.anchors.detach().clone()  # (nl, na, 2) pixels
    sd[f"model.{DETECT_BLOCK}.anchors"] = pixels / model.detect.strides.view(-1, 1, 1)
    sd[f"model.{DETECT_BLOCK}.anchor_grid"] = pixels.view(pixels.shape[0], 1, -1, 1, 1, 2).clone()
    return sd


def import_yolop(
    weights: str | Path,
    out: str | Path,
    class_names: tuple[str, ...] | None = None,
    img_size: tuple[int, int] = (640, 384),
) -> tuple[MultiTaskNet, Path]:
    """Convert YOLOP weights to an mtc checkpoint at ``out`` (its recorded input size: ``img_size``,
    YOLOP's 640x384 by default). Returns the network and the written path."""
    from compress.checkpoint import save_checkpoint

    sd = read_state_dict(weights)
    model = import_state_dict(sd, class_names, source=str(weights))
    path = save_checkpoint(
        out,
        model,
        train_config={"img_size": [int(img_size[0]), int(img_size[1])]},
        imported={"from": "yolop", "weights": str(weights), "tensors": len(sd)},
    )
    return model, path
