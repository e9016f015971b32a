"""synthroad: a procedural driving-scene generator writing the YOLOP dataset layout.

Each image is rendered from a pinhole camera above a planar road: a road of 2-4 lanes that may
curve (lateral offset ``a*z + k*z**2/2`` in metres at distance ``z``) with a varying horizon,
painted solid/dashed white/yellow markings and edge lines (or curbs), vehicles (car, truck, bus)
seen from the rear / rear-three-quarter with perspective scaling and occlusion, roadside clutter
that is *not* a vehicle (sidewalks, poles, street lamps, signs, trees, buildings), cast shadows,
day / dusk / night lighting, sensor noise, blur and JPEG compression.

Labels are derived from the rendered pixels, so they agree exactly with the image:

* boxes: visible extent of each vehicle (after occlusion and clipping) from an instance-id map;
  a vehicle is kept (drawn and labelled) when its visible fraction is >= 0.25 and its visible
  box is >= 6 px high, otherwise it is not drawn at all;
* drivable mask (0/255): the whole road surface of the ego road minus occluded pixels;
* lane mask (0/255): every painted line and road edge as a continuous polyline (also where the
  paint is dashed) of constant thickness ``round(W/80)`` px, up to the horizon, minus occluded
  pixels.

Determinism: every image is rendered from ``SeedSequence([seed, split_id, index])`` so output
bytes depend only on (seed, split, index, size, VERSION), never on the number of workers.

This module is the generator's front: :func:`render` (one scene; its drawing steps are in
:mod:`compress.data.synth_scene`, then :mod:`compress.data.synth_light`) and :func:`synthesize`
(the dataset writer). The geometry is :mod:`compress.data.synth_shapes`, the vehicles and clutter
:mod:`compress.data.synth_objects`.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from compress.data import synth_light as light
from compress.data import synth_scene as steps
from compress.data.errors import DatasetError
from compress.data.synth_scene import MIN_BOX_HEIGHT, MIN_VISIBLE_FRACTION, lane_thickness
from compress.data.synth_shapes import OCCLUDER_ID

logger = logging.getLogger(__name__)

__all__ = ["VERSION", "SynthSample", "render", "synthesize", "lane_thickness"]

VERSION = "1.0"
SPLITS = {"train": 0, "val": 1}
__all__ += ["MIN_BOX_HEIGHT", "MIN_VISIBLE_FRACTION", "OCCLUDER_ID", "SPLITS"]


@dataclass
class SynthSample:
    """One rendered scene: BGR image, 0/255 masks, YOLOP-style label dict and scene facts."""

    image: np.ndarray
    drivable: np.ndarray
    lane: np.ndarray
    label: dict[str, Any]
    info: dict[str, Any]
    jpeg_quality: int


# ----------------------------------------------------------------------------------------------
# Scene
# ----------------------------------------------------------------------------------------------


def render(seed: int, split: str, index: int, size: tuple[int, int] = (640, 360)) -> SynthSample:
    """Render image ``index`` of ``split`` for generator ``seed`` (pure function of its inputs).

    The layers are drawn back to front (:mod:`compress.data.synth_scene`); the masks are drawn
    with the road and its lines, then lose every pixel an object occludes."""
    if split not in SPLITS:
        raise DatasetError(f"split {split!r} is not one of {sorted(SPLITS)}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), SPLITS[split], int(index)]))
    W, H = int(size[0]), int(size[1])
    stem = f"{split}_{index:06d}"

    sc = steps.camera_and_road(rng, W, H)
    pal = steps.palette(sc)
    img = steps.sky_and_ground(sc, pal)
    steps.far_background(sc, img)
    steps.sidewalks(sc, pal, img)
    drivable = steps.road(sc, pal, img)
    lane = steps.lines(sc, pal, img)
    objs = steps.place_vehicles(sc)
    lamps = steps.roadside(sc, objs)
    objs, vehicles, idmap = steps.occlusion(sc, objs)
    steps.draw_objects(pal, img, objs, vehicles, idmap, drivable, lane)
    imgf = light.lighting(sc, img, lamps)
    light.glows(sc, imgf, vehicles, lamps, idmap)
    img, quality = light.sensor(sc, imgf)
    label, info = steps.labels(sc, stem, vehicles)
    return SynthSample(img, drivable, lane, label, info, quality)


# ----------------------------------------------------------------------------------------------
# Writer
# ----------------------------------------------------------------------------------------------

_LAYOUT = ("images", "det_annotations", "da_seg_annotations", "ll_seg_annotations")


def _write_one(task: tuple[str, int, int, tuple[int, int], str]) -> dict[str, Any]:
    out, seed, split, index, size = task[4], task[1], task[0], task[2], task[3]
    smp = render(seed, split, index, size)
    root = Path(out)
    stem = f"{split}_{index:06d}"
    ok, jpg = cv2.imencode(".jpg", smp.image, [cv2.IMWRITE_JPEG_QUALITY, smp.jpeg_quality])
    ok2, da = cv2.imencode(".png", smp.drivable, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    ok3, ll = cv2.imencode(".png", smp.lane, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not (ok and ok2 and ok3):
        raise RuntimeError(f"OpenCV failed to encode {stem}")
    (root / "images" / split / f"{stem}.jpg").write_bytes(jpg.tobytes())
    (root / "da_seg_annotations" / split / f"{stem}.png").write_bytes(da.tobytes())
    (root / "ll_seg_annotations" / split / f"{stem}.png").write_bytes(ll.tobytes())
    (root / "det_annotations" / split / f"{stem}.json").write_text(
        json.dumps(smp.label, indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )
    return {"split": split, "index": index, **smp.info}


def _init_worker() -> None:
    cv2.setNumThreads(1)


def synthesize(
    out: Path,
    n_train: int,
    n_val: int,
    seed: int,
    size: tuple[int, int] = (640, 360),
    workers: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate a synthroad dataset in YOLOP layout under ``out`` and return a summary.

    Output is byte-identical for the same (seed, sizes, VERSION) whatever ``workers`` is.
    ``out`` must be empty, absent, or a previous synthroad output (which is replaced).
    Writes ``out/synthroad.json`` with the settings, version and per-split counts.
    """
    out = Path(out)
    W, H = int(size[0]), int(size[1])
    if W < 64 or H < 48:
        raise DatasetError(f"synthroad size {W}x{H} is too small; use at least 64x48 (default 640x360)")
    if n_train < 0 or n_val < 0:
        raise DatasetError(f"synthroad image counts must be >= 0, got train={n_train}, val={n_val}")
    if workers < 1:
        raise DatasetError(f"synthroad workers must be >= 1, got {workers}")
    if out.exists():
        if not out.is_dir():
            raise DatasetError(f"{out}: exists and is not a directory; choose another --out")
        if any(out.iterdir()) and not (out / "synthroad.json").is_file():
            raise DatasetError(
                f"{out}: directory is not empty and is not a synthroad output; choose an empty or new --out directory"
            )
        for d in _LAYOUT:
            for split in SPLITS:
                if (out / d / split).is_dir():
                    shutil.rmtree(out / d / split)
    for d in _LAYOUT:
        for split in SPLITS:
            (out / d / split).mkdir(parents=True, exist_ok=True)

    tasks = [(split, seed, i, (W, H), str(out)) for split, n in (("train", n_train), ("val", n_val)) for i in range(n)]
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), desc="synthroad", unit="img")
    try:
        if workers == 1 or len(tasks) < 2:
            for task in tasks:
                results.append(_write_one(task))
                if bar is not None:
                    bar.update(1)
        else:
            # Not "fork": a forked child can deadlock inside OpenCV's thread pool when the
            # parent already used OpenCV. An executor (unlike mp.Pool) fails loudly with
            # BrokenProcessPool instead of hanging when a worker dies.
            method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
            with ProcessPoolExecutor(workers, mp_context=mp.get_context(method), initializer=_init_worker) as pool:
                for res in pool.map(_write_one, tasks, chunksize=8):
                    results.append(res)
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0

    counts: dict[str, Any] = {}
    for split in SPLITS:
        rs = [r for r in results if r["split"] == split]
        lanes_hist = {str(n): sum(r["n_lanes"] == n for r in rs) for n in (2, 3, 4)}
        tod_hist: dict[str, int] = {}
        for r in rs:
            tod_hist[r["timeofday"]] = tod_hist.get(r["timeofday"], 0) + 1
        counts[split] = {
            "images": len(rs),
            "boxes": int(sum(r["n_boxes"] for r in rs)),
            "truncated": int(sum(r["n_truncated"] for r in rs)),
            "occluded": int(sum(r["n_occluded"] for r in rs)),
            "images_without_boxes": int(sum(r["n_boxes"] == 0 for r in rs)),
            "lanes": lanes_hist,
            "timeofday": dict(sorted(tod_hist.items())),
        }
    meta = {
        "generator": "synthroad",
        "version": VERSION,
        "seed": int(seed),
        "size": [W, H],
        "splits": {"train": int(n_train), "val": int(n_val)},
        "lane_thickness_px": lane_thickness(W),
        "mask_values": "0/255 (drivable_mapping: yolop_binary)",
        "categories": ["car", "truck", "bus"],
        "min_visible_fraction": MIN_VISIBLE_FRACTION,
        "min_box_height_px": MIN_BOX_HEIGHT,
        "counts": counts,
    }
    (out / "synthroad.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    n = max(1, len(tasks))
    logger.info(
        "synthroad: %d images in %.1f s (%.1f ms/image, %d workers) -> %s",
        len(tasks),
        seconds,
        1000 * seconds / n,
        workers,
        out,
    )
    return {**meta, "out": str(out), "seconds": seconds, "ms_per_image": 1000 * seconds / n, "workers": workers}
