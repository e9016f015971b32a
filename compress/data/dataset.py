"""Multi-task dataset (detection + drivable + lane), batch collation and DataLoader construction.

Bad-data policy: problems visible when indexing (see :func:`compress.data.bdd.index_split`) raise
DatasetError at construction, or are skipped, counted and logged with ``on_error="skip"``.
Problems that only show when loading a sample (missing or undecodable image/mask, mask size
mismatch, box outside the image beyond ``box_tolerance``) are caught inside ``__getitem__``
(possibly in a DataLoader worker) and turned into a *sentinel* sample carrying the message.
:func:`collate` drops sentinels and reports them in ``batch["errors"]`` (raise mode) or
``batch["skipped"]`` (skip mode); :func:`check_batch` / :func:`iterate`, running in the main
process, raise a clean DatasetError or log and count the skips. No traceback from a worker.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from compress.data.augment import (
    AugmentConfig,
    augment_hsv,
    flip_lr,
    letterbox,
    random_perspective,
)
from compress.data.bdd import DataConfig, Sample, index_split, map_drivable, map_lane
from compress.data.errors import DatasetError
from mtc_perception.imaging import ImageError, read_image

logger = logging.getLogger(__name__)

__all__ = ["LoadStats", "MultiTaskDataset", "build_loader", "check_batch", "collate", "index_skipped", "iterate"]


def _read(path: Path, flags: int, what: str, shown: str) -> np.ndarray:
    """One image or mask file through the runtime's checked reader
    (:func:`mtc_perception.imaging.read_image`: size-checked before decoding, a truncated JPEG is an
    error, as in ``mtc infer`` / ``mtc bag`` / ``mtc bench``)."""
    try:
        return read_image(path, flags=flags)
    except FileNotFoundError:
        raise DatasetError(
            f"{shown}: {what} file not found (it was present when the split was "
            "indexed); restore it or pass --on-error skip"
        ) from None
    except OSError as exc:
        raise DatasetError(f"{shown}: cannot read {what} ({exc}); check the file or pass --on-error skip") from None
    except ImageError as exc:
        raise DatasetError(f"{shown}: cannot decode {what} ({exc}); replace the file or pass --on-error skip") from None


class MultiTaskDataset(Dataset):
    """Images letterboxed to ``img_size`` = (width, height) with boxes, drivable and lane masks.

    ``augment=None`` gives validation behaviour (letterbox only). Each item is a dict with
    ``img`` (uint8 3xHxW RGB), ``boxes`` (float32 Nx5 [cls, x1, y1, x2, y2], network-input
    pixels), ``drivable`` / ``lane`` (uint8 HxW {0, 1}, 0 in padding) and ``meta``.
    """

    def __init__(
        self, cfg: DataConfig, img_size: tuple[int, int] = (640, 384), augment: AugmentConfig | None = None
    ) -> None:
        if len(img_size) != 2 or min(img_size) < 8:
            raise DatasetError(
                f"img_size {img_size!r} is not a (width, height) pair of sizes >= 8; pass e.g. (640, 384)"
            )
        self.cfg = cfg = cfg.resolved()  # a BDD100K download's files and the mask mappings filled in
        self.img_size = (int(img_size[0]), int(img_size[1]))
        self.augment = augment
        index = index_split(cfg)
        self.samples: list[Sample] = index.samples
        self.index_skipped: list[str] = index.skipped
        self.class_names = cfg.class_names
        logger.info(
            "%s split %r: %d images, %d boxes, %d skipped at indexing",
            cfg.display(cfg.images_path()),
            cfg.split,
            len(self.samples),
            index.n_boxes,
            len(index.skipped),
        )
        if not self.samples:
            raise DatasetError(
                f"{cfg.images_path()}: no usable samples in split {cfg.split!r} "
                f"({len(index.skipped)} skipped); check root/split and the label "
                "files"
            )

    @property
    def skipped(self) -> int:
        """Samples dropped while indexing (skip mode)."""
        return len(self.index_skipped)

    @property
    def n_boxes(self) -> int:
        return int(sum(len(s.boxes) for s in self.samples))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        try:
            return self.load(i)
        except (DatasetError, OSError, cv2.error) as exc:
            msg = (
                str(exc)
                if isinstance(exc, DatasetError)
                else f"{self.cfg.display(self.samples[i].image)}: {type(exc).__name__}: {exc}"
            )
            return {"error": msg, "on_error": self.cfg.on_error, "img_size": self.img_size, "index": i}

    # ------------------------------------------------------------------------------------------
    def _load_raw(self, s: Sample) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        cfg = self.cfg
        img = _read(s.image, cv2.IMREAD_COLOR, "image", cfg.display(s.image))
        h, w = img.shape[:2]
        masks = []
        for path, what in ((s.drivable, "drivable mask"), (s.lane, "lane mask")):
            if path is None:
                masks.append(np.zeros((h, w), np.uint8))
                continue
            shown = cfg.display(path)
            raw = _read(path, cv2.IMREAD_UNCHANGED, what, shown)
            if raw.shape[:2] != (h, w):
                raise DatasetError(
                    f"{shown}: {what} is {raw.shape[1]}x{raw.shape[0]} but image "
                    f"{cfg.display(s.image)} is {w}x{h}; masks must match their "
                    "image size"
                )
            try:
                if what == "drivable mask":
                    m = map_drivable(raw, cfg.drivable_mapping or "yolop_binary")
                else:
                    m = map_lane(raw, cfg.lane_mapping or "binary")
            except ValueError as exc:
                option = "drivable_mapping" if what == "drivable mask" else "lane_mapping"
                raise DatasetError(f"{shown}: {exc}; check {option}") from None
            masks.append(m)
        boxes = s.boxes.copy()
        if len(boxes):
            tol = cfg.box_tolerance
            out = (boxes[:, 1] < -tol) | (boxes[:, 2] < -tol) | (boxes[:, 3] > w + tol) | (boxes[:, 4] > h + tol)
            if out.any():
                b = boxes[int(np.argmax(out))]
                raise DatasetError(
                    f"{s.label}: box (x1={b[1]:g}, y1={b[2]:g}, x2={b[3]:g}, y2={b[4]:g}) lies "
                    f"outside image {cfg.display(s.image)} of size {w}x{h} by more than "
                    f"{tol:g} px; fix the label (or the image) or pass --on-error skip"
                )
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, w)
            boxes[:, [2, 4]] = boxes[:, [2, 4]].clip(0, h)
            keep = (boxes[:, 3] > boxes[:, 1]) & (boxes[:, 4] > boxes[:, 2])
            boxes = boxes[keep]
        return img, masks[0], masks[1], boxes

    def load(self, i: int) -> dict[str, Any]:
        """Load and transform sample ``i``; raises DatasetError on bad data (no sentinel)."""
        s = self.samples[i]
        img, da, ll, boxes = self._load_raw(s)
        orig = img.shape[:2]
        img, (da, ll), boxes, info = letterbox(img, [da, ll], self.img_size, boxes, self.cfg.mask_resize)
        top, bottom, left, right = info.valid
        aug = self.augment
        if aug is not None:
            # Seeded from torch's RNG: the DataLoader seeds it per worker from its generator.
            rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
            if aug.degrees or aug.translate or aug.scale or aug.shear or aug.perspective:
                img, (da, ll), boxes, M = random_perspective(img, [da, ll], boxes, aug, rng)
                corners = (
                    np.array([[left, top, 1], [right, top, 1], [left, bottom, 1], [right, bottom, 1]], float) @ M.T
                )
                xy = corners[:, :2] / corners[:, 2:3]
                H, W = img.shape[:2]
                left, right = (
                    int(np.clip(np.floor(xy[:, 0].min()), 0, W)),
                    int(np.clip(np.ceil(xy[:, 0].max()), 0, W)),
                )
                top, bottom = (
                    int(np.clip(np.floor(xy[:, 1].min()), 0, H)),
                    int(np.clip(np.ceil(xy[:, 1].max()), 0, H)),
                )
            img = augment_hsv(img, aug, rng)
            if aug.fliplr and rng.uniform() < aug.fliplr:
                img, (da, ll), boxes = flip_lr(img, [da, ll], boxes)
                W = img.shape[1]
                left, right = W - right, W - left
        chw = np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1))
        meta = {
            "path": str(s.image),
            "index": i,
            "orig_size": (int(orig[0]), int(orig[1])),
            "ratio": info.ratio,
            "pad": info.pad,
            "valid": (top, bottom, left, right),
            "has_drivable": s.drivable is not None,
            "has_lane": s.lane is not None,
        }
        return {
            "img": torch.from_numpy(chw),
            "boxes": torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32).reshape(-1, 5)),
            "drivable": torch.from_numpy(np.ascontiguousarray(da)),
            "lane": torch.from_numpy(np.ascontiguousarray(ll)),
            "meta": meta,
        }


def collate(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples; drop failed (sentinel) samples into ``errors`` or ``skipped``.

    Returns ``img`` Bx3xHxW uint8, ``boxes`` Mx6 float32 [batch_idx, cls, x1, y1, x2, y2],
    ``drivable``/``lane`` BxHxW uint8, ``meta`` list, ``errors`` list[str] (raise mode),
    ``skipped`` int and ``skipped_messages`` list[str] (skip mode). B may be 0.
    """
    good = [b for b in batch if "error" not in b]
    errors: list[str] = []
    skipped: list[str] = []
    for b in batch:
        if "error" in b:
            (errors if b["on_error"] == "raise" else skipped).append(b["error"])
    if good:
        img = torch.stack([b["img"] for b in good])
        da = torch.stack([b["drivable"] for b in good])
        ll = torch.stack([b["lane"] for b in good])
    else:
        w, h = batch[0]["img_size"] if batch else (0, 0)
        img = torch.zeros((0, 3, h, w), dtype=torch.uint8)
        da = torch.zeros((0, h, w), dtype=torch.uint8)
        ll = torch.zeros((0, h, w), dtype=torch.uint8)
    parts = [torch.cat([torch.full((len(b["boxes"]), 1), float(k)), b["boxes"]], 1) for k, b in enumerate(good)]
    boxes = torch.cat(parts, 0) if parts else torch.zeros((0, 6))
    return {
        "img": img,
        "boxes": boxes.float(),
        "drivable": da,
        "lane": ll,
        "meta": [b["meta"] for b in good],
        "errors": errors,
        "skipped": len(skipped),
        "skipped_messages": skipped,
    }


@dataclass
class LoadStats:
    """Running count of samples skipped while loading (skip mode)."""

    skipped: int = 0
    messages: list[str] = field(default_factory=list)


def index_skipped(data: Any) -> int:
    """Samples dropped while indexing the split behind ``data`` (a loader, a ``Subset`` or a
    :class:`MultiTaskDataset`; 0 for anything else): the skips a :class:`LoadStats` never sees."""
    for _ in range(8):  # loader -> Subset -> dataset
        if isinstance(data, MultiTaskDataset):
            return data.skipped
        data = getattr(data, "dataset", None)
        if data is None:
            break
    return 0


def check_batch(batch: dict[str, Any], stats: LoadStats | None = None) -> dict[str, Any]:
    """Main-process check of a collated batch: raise DatasetError on errors, log/count skips."""
    errors = batch.get("errors") or []
    if errors:
        if len(errors) == 1:
            raise DatasetError(errors[0])
        raise DatasetError(f"{len(errors)} samples failed to load: " + "; ".join(errors))
    for msg in batch.get("skipped_messages") or []:
        logger.warning("skipped sample: %s", msg)
    if stats is not None:
        stats.skipped += int(batch.get("skipped", 0))
        stats.messages.extend(batch.get("skipped_messages") or [])
    return batch


def iterate(loader: Iterable[dict[str, Any]], stats: LoadStats | None = None) -> Iterator[dict[str, Any]]:
    """Iterate a loader built with :func:`collate`, checking every batch; empty batches are skipped.

    On a DatasetError the loader's worker processes are shut down before the error propagates,
    so an aborted epoch does not leave workers behind (they would otherwise be reaped at some
    later garbage collection, stalling it).
    """
    it = iter(loader)
    for batch in it:
        try:
            check_batch(batch, stats)
        except DatasetError:
            _shutdown(it, loader)
            raise
        if len(batch["img"]):
            yield batch


def _shutdown(it: Iterator[Any], loader: Iterable[Any]) -> None:
    shutdown = getattr(it, "_shutdown_workers", None)  # torch's multi-process iterator
    if callable(shutdown):
        shutdown()
        if getattr(loader, "_iterator", None) is it:
            loader._iterator = None  # type: ignore[attr-defined]  # next epoch starts afresh


def _worker_init(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_loader(
    dataset: Dataset,
    batch_size: int,
    workers: int,
    shuffle: bool,
    sampler: Sampler | None = None,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """DataLoader with :func:`collate`, a seeded generator, seeded and persistent workers."""
    if batch_size < 1:
        raise DatasetError(f"batch_size must be >= 1, got {batch_size}")
    if workers < 0:
        raise DatasetError(f"workers must be >= 0, got {workers}")
    if workers > 0:
        # OpenCV's thread pool is not fork-safe: a forked worker can deadlock in cv2.resize.
        # Like YOLOv5, run OpenCV single-threaded (parallelism comes from the workers).
        cv2.setNumThreads(0)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        persistent_workers=workers > 0,
        worker_init_fn=_worker_init,
        generator=gen,
    )
