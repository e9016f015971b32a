"""Pictures of a benchmark report: latency CDF per model, per-frame agreement over time (matplotlib,
Agg backend: no display needed) and a mosaic of the frames where the models disagree most (OpenCV:
each row the reference's overlay beside the candidate's, drawn by :func:`mtc_perception.viz.draw`).

Fixed pixel budgets whatever the frames: the plots have a fixed figure size and dpi; each mosaic
tile is the frame fitted into a :data:`TILE` box (letterboxed, any aspect ratio down to 1 px), at
most :data:`MAX_MOSAIC_ROWS` rows, so the mosaic is at most about 4 Mpixel. Files are written
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


def agreement_over_time(path: Path, rows: Sequence[Mapping[str, Any]], names: tuple[str, str | None]) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8.0, 3.6), dpi=110)
    rows = sorted(
        (r for r in rows if "det_f1" in r), key=lambda r: r["index"]
    )  # a live run reports frames as they complete
    idx = [r["index"] for r in rows]
    for key, label in (
        ("det_f1", "detection F1 @ IoU 0.5"),
        ("drivable_iou", "drivable IoU"),
        ("lane_iou", "lane IoU"),
    ):
        ax.plot(idx, [r[key] for r in rows], lw=1.0, marker="." if len(idx) < 60 else None, label=label)
    return _finish(
        plt, fig, ax, path, "Per-frame agreement", "frame", f"{names[1]} vs {names[0]}", (-0.02, 1.02), "lower left"
    )


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


def mosaic_image(worst: Sequence[tuple], names: tuple[str, str | None], box: tuple[int, int] = TILE) -> np.ndarray:
    """Rows of (reference overlay | candidate overlay), each captioned with the frame and its scores;
    every tile is ``box`` whatever the frame's shape, at most :data:`MAX_MOSAIC_ROWS` rows.
    ``worst``: (index, stamp_ns, image, reference perception, candidate perception, agreement)."""
    import cv2

    from ..viz import draw

    rows = []
    bw = box[0]
    for i, stamp, img, rp, cp, a in list(worst)[:MAX_MOSAIC_ROWS]:
        tiles = []
        for name, p in ((names[0], rp), (names[1], cp)):
            t = fit_tile(draw(img, p), box)
            cv2.rectangle(t, (0, 0), (bw, 22), (0, 0, 0), -1)
            cv2.putText(
                t, f"{name}  frame {i}", (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA
            )
            tiles.append(t)
        row = np.concatenate([tiles[0], np.full((tiles[0].shape[0], 4, 3), 255, np.uint8), tiles[1]], 1)
        cap = np.zeros((_CAPTION, row.shape[1], 3), np.uint8)
        cv2.putText(
            cap,
            f"stamp {stamp}  det F1 {a['det_f1']:.2f}  drivable IoU {a['drivable_iou']:.2f}  lane IoU {a['lane_iou']:.2f}",
            (6, 17),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
        rows.append(np.concatenate([cap, row], 0))
    return np.concatenate(rows, 0)


def write_mosaic(out: Path, worst: Sequence[tuple], names: tuple[str, str | None]) -> dict[str, Path]:
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
    names: tuple[str, str | None],
) -> dict[str, Path]:
    """All pictures into ``out``; ImportError when matplotlib is missing (the mosaic needs only OpenCV)."""
    _pyplot()
    paths = {"latency_cdf": latency_cdf(out / "latency_cdf.png", latencies)}
    if names[1] is not None and any("det_f1" in r for r in rows):
        paths["agreement"] = agreement_over_time(out / "agreement.png", rows, names)
    paths.update(write_mosaic(out, worst, names))
    return paths
