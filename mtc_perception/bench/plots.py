"""Pictures of a benchmark report: latency CDF per model, per-frame agreement of each candidate
over time (matplotlib, Agg backend: no display needed) and a mosaic of the frames where the models
disagree most (OpenCV: each row the reference's overlay beside every candidate's, drawn by
:func:`mtc_perception.viz.draw`).

Fixed pixel budgets whatever the frames: the plots have a fixed figure size and dpi; each mosaic
tile is the frame fitted into a :data:`TILE` box (letterboxed, any aspect ratio down to 1 px), at
most :data:`MAX_MOSAIC_TILES` tiles (:data:`MAX_MOSAIC_ROWS` rows of two models; fewer rows of
more), so the mosaic is at most about 4 Mpixel for up to :data:`MAX_MOSAIC_TILES` models. Files are written
atomically; a picture that does not encode raises (the report records it, see
:mod:`mtc_perception.bench.report.files`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write

#: (width, height) of one mosaic tile: each frame is fitted into it whatever its shape
TILE = (480, 270)
#: most frames in the disagreement mosaic (rows of reference | candidate)
MAX_MOSAIC_ROWS = 12
#: most tiles in the mosaic: rows of more models are fewer (at least one)
MAX_MOSAIC_TILES = 2 * MAX_MOSAIC_ROWS
#: a candidate's line style per agreement measure in the agreement plot
_MEASURES = (
    ("det_f1", "detection F1 @ IoU 0.5", "-"),
    ("drivable_iou", "drivable IoU", "--"),
    ("lane_iou", "lane IoU", ":"),
)
_CAPTION = 24


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(
    plt: Any,
    fig: Any,
    ax: Any,
    path: Path,
    title: str,
    xlabel: str,
    ylabel: str,
    ylim: tuple[float, float],
    legend: str,
) -> Path:
    """Labels, grid, legend and title; save and close."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # no model processed a frame: no legend
        ax.legend(loc=legend, fontsize=8)
    ax.set_title(title)
    import io

    try:
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return atomic_write(path, buf.getvalue())


def latency_cdf(path: Path, latencies: Mapping[str, Sequence[float]]) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for name, lat in latencies.items():
        if len(lat):
            x = np.sort(np.asarray(lat, np.float64))
            ax.step(
                x,
                np.arange(1, len(x) + 1) / len(x),
                where="post",
                label=f"{name} (p50 {np.percentile(x, 50):.1f} ms, p99 {np.percentile(x, 99):.1f} ms)",
            )
    return _finish(
        plt,
        fig,
        ax,
        path,
        "Latency CDF",
        "end-to-end latency per frame (ms)",
        "fraction of frames",
        (0, 1.02),
        "lower right",
    )


def agreement_over_time(path: Path, rows: Sequence[Mapping[str, Any]], names: Sequence[str | None]) -> Path:
    """Each candidate's (``names[1:]``) per-frame agreement with the reference (``names[0]``): the
    rows' ``<candidate>_det_f1``, ``_drivable_iou`` and ``_lane_iou``; one colour per candidate
    (per measure with a single candidate), one line style per measure."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8.0, 3.6), dpi=110)
    candidates = [n for n in names[1:] if n is not None]
    for ci, c in enumerate(candidates):
        mine = sorted(
            (r for r in rows if f"{c}_det_f1" in r), key=lambda r: r["index"]
        )  # a live run reports frames as they complete
        idx = [r["index"] for r in mine]
        for mi, (key, label, style) in enumerate(_MEASURES):
            ax.plot(
                idx,
                [r[f"{c}_{key}"] for r in mine],
                lw=1.0,
                ls=style if len(candidates) > 1 else "-",
                color=f"C{ci if len(candidates) > 1 else mi}",
                marker="." if len(idx) < 60 else None,
                label=f"{c}: {label}" if len(candidates) > 1 else label,
            )
    ylabel = f"{candidates[0]} vs {names[0]}" if len(candidates) == 1 else f"vs {names[0]}"
    return _finish(plt, fig, ax, path, "Per-frame agreement", "frame", ylabel, (-0.02, 1.02), "lower left")


def fit_tile(img: np.ndarray, box: tuple[int, int] = TILE) -> np.ndarray:
    """``img`` scaled to fit ``box`` (w, h) keeping its aspect ratio (each side >= 1 px), centred
    on black: always exactly ``box``, whatever the frame's shape."""
    import cv2

    bw, bh = box
    h, w = img.shape[:2]
    s = min(bw / w, bh / h)
    tw, th = max(1, min(bw, round(w * s))), max(1, min(bh, round(h * s)))
    tile = np.zeros((bh, bw, 3), np.uint8)
    x, y = (bw - tw) // 2, (bh - th) // 2
    tile[y : y + th, x : x + tw] = cv2.resize(img, (tw, th), interpolation=cv2.INTER_AREA)
    return tile


def mosaic_rows(models: int) -> int:
    """Rows of the mosaic for ``models`` tiles a row: :data:`MAX_MOSAIC_ROWS` for two, fewer for
    more (:data:`MAX_MOSAIC_TILES` tiles in all), at least one."""
    return max(1, min(MAX_MOSAIC_ROWS, MAX_MOSAIC_TILES // max(models, 1)))


def _caption(stamp: int, agreements: Mapping[str, Mapping[str, float]]) -> str:
    if len(agreements) == 1:
        (a,) = agreements.values()
        return f"stamp {stamp}  det F1 {a['det_f1']:.2f}  drivable IoU {a['drivable_iou']:.2f}  lane IoU {a['lane_iou']:.2f}"
    return f"stamp {stamp}  " + "  |  ".join(
        f"{c}: F1 {a['det_f1']:.2f} drv {a['drivable_iou']:.2f} lane {a['lane_iou']:.2f}" for c, a in agreements.items()
    )


def mosaic_image(worst: Sequence[tuple], names: Sequence[str | None], box: tuple[int, int] = TILE) -> np.ndarray:
    """Rows of (reference overlay | each candidate's overlay), each captioned with the frame and the
    candidates' scores; every tile is ``box`` whatever the frame's shape, at most
    :func:`mosaic_rows` rows. ``worst``: (index, stamp_ns, image, one perception per name (None: no
    output, a black tile), agreement) with the agreement {candidate: scores}, or one candidate's
    scores (``det_f1``, ``drivable_iou``, ``lane_iou``)."""
    import cv2

    from ..viz import draw

    rows = []
    bw = box[0]
    shown = [n for n in names if n is not None]
    for i, stamp, img, *perceptions, a in list(worst)[: mosaic_rows(len(shown))]:
        agreements: Mapping[str, Mapping[str, float]] = {shown[1]: a} if "det_f1" in a else a
        tiles = []
        for name, p in zip(shown, perceptions):
            t = fit_tile(draw(img, p), box) if p is not None else np.zeros((box[1], bw, 3), np.uint8)
            cv2.rectangle(t, (0, 0), (bw, 22), (0, 0, 0), -1)
            label = f"{name}  frame {i}" if p is not None else f"{name}  frame {i}: no output"
            cv2.putText(t, label, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
            tiles.append(t)
        gap = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
        row = np.concatenate([x for t in tiles for x in (gap, t)][1:], 1)
        cap = np.zeros((_CAPTION, row.shape[1], 3), np.uint8)
        cv2.putText(
            cap,
            _caption(stamp, agreements),
            (6, 17),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
        rows.append(np.concatenate([cap, row], 0))
    return np.concatenate(rows, 0)


def write_mosaic(out: Path, worst: Sequence[tuple], names: Sequence[str | None]) -> dict[str, Path]:
    """``disagreement_mosaic.jpg`` (nothing without frames); an image OpenCV cannot encode raises
    ``RuntimeError`` naming the file."""
    import cv2

    if not worst:
        return {}
    p = out / "disagreement_mosaic.jpg"
    img = mosaic_image(worst, names)
    ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), 90])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {p} ({img.shape[1]}x{img.shape[0]})")
    atomic_write(p, buf.tobytes())
    return {"mosaic": p}


def write_plots(
    out: Path,
    latencies: Mapping[str, Sequence[float]],
    rows: Sequence[Mapping[str, Any]],
    worst: Sequence[tuple],
    names: Sequence[str | None],
) -> dict[str, Path]:
    """All pictures into ``out``; ImportError when matplotlib is missing (the mosaic needs only OpenCV)."""
    _pyplot()
    paths = {"latency_cdf": latency_cdf(out / "latency_cdf.png", latencies)}
    if any(f"{c}_det_f1" in r for r in rows for c in names[1:] if c is not None):
        paths["agreement"] = agreement_over_time(out / "agreement.png", rows, names)
    paths.update(write_mosaic(out, worst, names))
    return paths
