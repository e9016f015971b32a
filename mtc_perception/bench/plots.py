"""Pictures of a benchmark report: latency CDF per model, per-frame agreement over time (matplotlib,
Agg backend: no display needed) and a mosaic of the frames where the models disagree most (OpenCV:
each row the reference's overlay beside the candidate's, drawn by :func:`mtc_perception.viz.draw`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


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
    ax.legend(loc=legend, fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


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


def mosaic_image(worst: Sequence[tuple], names: tuple[str, str | None], width: int = 480) -> np.ndarray:
    """Rows of (reference overlay | candidate overlay), each captioned with the frame and its scores.
    ``worst``: (index, stamp_ns, image, reference perception, candidate perception, agreement)."""
    import cv2

    from ..viz import draw

    rows = []
    for i, stamp, img, rp, cp, a in worst:
        h, w = img.shape[:2]
        s = width / w
        tiles = []
        for name, p in ((names[0], rp), (names[1], cp)):
            t = cv2.resize(draw(img, p), (width, max(1, round(h * s))), interpolation=cv2.INTER_AREA)
            cv2.rectangle(t, (0, 0), (width, 22), (0, 0, 0), -1)
            cv2.putText(
                t, f"{name}  frame {i}", (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA
            )
            tiles.append(t)
        row = np.concatenate([tiles[0], np.full((tiles[0].shape[0], 4, 3), 255, np.uint8), tiles[1]], 1)
        cap = np.zeros((24, row.shape[1], 3), np.uint8)
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
    import cv2

    if not worst:
        return {}
    p = out / "disagreement_mosaic.jpg"
    cv2.imwrite(str(p), mosaic_image(worst, names), [int(cv2.IMWRITE_JPEG_QUALITY), 90])
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
