"""The datasets of a training run, read the way the run reads them: its splits, per-split options,
augmentation and anchors (:func:`data_config`, :func:`build_datasets`, :func:`fit_anchors`), and a
split of a finished run read from its checkpoint's ``train_config`` (:func:`split_of_run`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from compress.models.anchors import kmeans_anchors
from compress.models.config import YOLOP_ANCHORS

from .augment import AugmentConfig
from .dataset import DataConfig, MultiTaskDataset

if TYPE_CHECKING:
    from compress.train_config import TrainConfig


def data_config(cfg: TrainConfig, which: str):
    """The DataConfig of the ``train`` or ``val`` split of a run."""

    split = cfg.train_split if which == "train" else cfg.val_split
    per_split = cfg.train_data_options if which == "train" else cfg.val_data_options
    return DataConfig.from_dict(
        {"root": cfg.data, "split": split, "on_error": cfg.on_error, **cfg.data_options, **per_split}
    )


def build_datasets(cfg: TrainConfig):

    train_dc, val_dc = data_config(cfg, "train"), data_config(cfg, "val")
    aug = AugmentConfig() if cfg.augment else None
    train = MultiTaskDataset(train_dc, img_size=cfg.img_size, augment=aug)
    val = MultiTaskDataset(val_dc, img_size=cfg.img_size, augment=None)
    return train, val


def fit_anchors(cfg: TrainConfig, dataset: Any, max_images: int = 1000) -> tuple[tuple[float, ...], ...]:
    """Anchors for the run: k-means on the training boxes at the network input size, or YOLOP's."""
    if cfg.anchors == "yolop":
        scale = cfg.img_size[0] / 640
        return tuple(tuple(v * scale for v in a) for a in YOLOP_ANCHORS)
    if cfg.anchors != "auto":
        raise ValueError(f"anchors {cfg.anchors!r} unknown; use auto or yolop")
    plain = MultiTaskDataset(dataset.cfg, img_size=cfg.img_size, augment=None)  # no augmentation
    rng = np.random.default_rng(cfg.seed)
    idx = rng.permutation(len(plain))[:max_images]
    wh = []
    for i in idx:
        item = plain[int(i)]
        if "error" in item:
            continue
        b = item["boxes"].numpy()
        wh.append(b[:, 3:5] - b[:, 1:3])
    return kmeans_anchors(np.concatenate(wh) if wh else np.zeros((0, 2)), seed=cfg.seed)


def split_of_run(
    tc: dict[str, Any],
    data: str | None,
    split: str,
    img_size: tuple[int, int],
    on_error: str | None = None,
    missing_data_hint: str = "the checkpoint does not record its dataset; pass --data DIR",
    overrides: dict[str, Any] | None = None,
):
    """A split read the way a checkpoint's training run read it (label format, drivable mapping,
    class map, per-split options), without augmentation. ``tc`` is the checkpoint's train_config.

    ``data`` (``--data``) wins over the dataset the checkpoint records: the run's own file and folder
    options (``label_json``, ``image_dir``, ``drivable_dir``, ``lane_dir``) that lay under its
    dataset root are read under ``data`` instead; one that lay elsewhere cannot be moved and is an
    error naming it, so that ``--data`` is never silently ignored. ``overrides`` (the command line's
    ``--label-json``, ``--image-dir`` ...) replace any of the run's options."""
    recorded = tc.get("data")
    data = data or recorded
    if not data:
        raise ValueError(missing_data_hint)
    which = (
        "val_data_options"
        if split == tc.get("val_split", "val")
        else "train_data_options"
        if split == tc.get("train_split", "train")
        else None
    )
    opts = {**tc.get("data_options", {}), **(tc.get(which, {}) if which else {})}
    if recorded and Path(data).resolve() != Path(recorded).resolve():
        opts = _rerooted(opts, Path(recorded), Path(data))
    opts.update(overrides or {})  # the command line's own options (official layout flags) win
    dc = DataConfig.from_dict(
        {**opts, "root": data, "split": split, "on_error": on_error or tc.get("on_error", "raise")}
    )
    return MultiTaskDataset(dc, img_size=img_size, augment=None)


#: DataConfig options that name files or folders (the official BDD100K layout's)
PATH_OPTIONS = ("label_json", "image_dir", "drivable_dir", "lane_dir")


def _rerooted(opts: dict[str, Any], old: Path, new: Path) -> dict[str, Any]:
    """``opts`` with each path option under ``old`` moved under ``new``; a path option outside ``old``
    is an error (``--data`` would not reach it)."""
    out, stuck = dict(opts), {}
    for k in PATH_OPTIONS:
        v = opts.get(k)
        if not v:
            continue
        try:
            out[k] = str(new / Path(v).resolve().relative_to(old.resolve()))
        except ValueError:
            stuck[k] = str(v)
    if stuck:
        listed = ", ".join(f"{k}={v}" for k, v in stuck.items())
        raise ValueError(
            f"--data {new} differs from the checkpoint's dataset {old}, but the checkpoint also reads "
            f"{listed} outside that dataset, which --data cannot replace; evaluate the data the run used "
            "(leave out --data) or train with those options pointing inside your dataset"
        )
    return out
