"""Writing the report's files: ``report.json`` and ``report.md`` first, then ``frames.csv`` and the
plots, then the report again with what became of each plot; and the harness' share of the wall time.

Every file is written atomically (a temporary file in the same directory, then :func:`os.replace`),
so an interrupted or failing run never leaves half a report. A plot that fails (matplotlib missing,
an image that does not encode, a Ctrl-C while drawing) is logged and recorded in
``meta.plots[name] = {"error": ...}``; only the plots that were written are linked in ``report.md``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..atomic import atomic_write
from .markdown import markdown
from .stats import round_floats

if TYPE_CHECKING:
    from .builder import ReportBuilder

log = logging.getLogger(__name__)

#: harness work counted against the "<= 5 % of the bench time" budget
CORE_HARNESS = ("read", "decode", "report")

#: the report's pictures: key in ``paths`` and ``meta.plots`` -> file name
PLOT_FILES = {"latency_cdf": "latency_cdf.png", "agreement": "agreement.png", "mosaic": "disagreement_mosaic.jpg"}
#: a candidate's per-frame agreement columns in ``frames.csv`` (``<candidate>_det_f1``, ...)
AGREEMENT_COLUMNS = ("det_f1", "drivable_iou", "lane_iou", "disagreement")


def frames_csv(b: ReportBuilder) -> str:
    """``frames.csv``: one row per frame, each model's status, latency and error, then each
    candidate's agreement with the reference (empty where either did not process the frame)."""
    cols = (
        ["index", "stamp_ns"]
        + [f"{m.name}_{k}" for m in b.models for k in ("status", "latency_ms", "error")]
        + [f"{c}_{k}" for c in b.candidates for k in AGREEMENT_COLUMNS]
    )
    buf = io.StringIO()
    w = csv.DictWriter(buf, cols, extrasaction="ignore")
    w.writeheader()
    for r in sorted(b.rows, key=lambda r: r["index"]):  # a live run reports frames as they complete
        w.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def _finish_report(b: ReportBuilder, t0: float, plots: dict[str, Any]) -> dict[str, Any]:
    rep = b.report()
    rep["meta"]["plots"] = dict(plots)
    b.harness_ms["report"] = (time.perf_counter() - t0) * 1e3
    wall_ms = (time.perf_counter() - b.started) * 1e3
    rep["meta"]["harness_ms"] = {**b.harness_ms, "wall": wall_ms}
    core = sum(b.harness_ms.get(k, 0.0) for k in CORE_HARNESS)
    rep["meta"]["harness_share"] = {
        "read_decode_report": core / wall_ms if wall_ms > 0 else None,
        "hash": b.harness_ms.get("hash", 0.0) / wall_ms if wall_ms > 0 else None,
        "all_harness": sum(b.harness_ms.values()) / wall_ms if wall_ms > 0 else None,
        "note": "read_decode_report = (read + decode + report) / wall: read = opening the "
        "recording, storage and CDR deserialization; decode = message -> BGR image (also "
        "in each model's stage_ms.decode) and label masks; report = csv, plots, markdown. "
        "hash = the md5 of the recording for meta.bag (--no-md5 skips it). all_harness "
        "adds everything: hash, score (agreement and ground-truth metrics per frame), "
        "output_bag.",
    }
    return rep


def _write_json_md(out: Path, rep: dict[str, Any]) -> None:
    atomic_write(out / "report.json", json.dumps(round_floats(rep, 6), indent=2) + "\n")
    atomic_write(out / "report.md", markdown(rep))


def write_report(b: ReportBuilder, out_dir: str | Path, plots: bool = True) -> dict[str, Path]:
    """Write ``report.json`` and ``report.md``, then ``frames.csv`` and the plots
    (``latency_cdf.png``, ``agreement.png`` with matplotlib, ``disagreement_mosaic.jpg`` with
    OpenCV), then the report again with ``meta.plots`` = {name: file name | {"error": why}}.
    Its own time goes to ``harness_ms["report"]``, with the harness' share of the wall time since
    ``started`` (the final JSON dump is not counted).

    A KeyboardInterrupt while the plots are drawn ends the plots (recorded as errors), the report
    is finished, then it is raised again. (``mtc bench`` defers its signals while reporting:
    :class:`mtc_perception.bench.replay.Signals`.)"""
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"report_json": out / "report.json", "report_md": out / "report.md", "frames_csv": out / "frames.csv"}
    planned: dict[str, Any] = {}
    cut = False
    rep = _finish_report(b, t0, {k: {"error": "not drawn yet"} for k in _planned(b, plots)})
    _write_json_md(out, rep)
    b.last_report = rep
    atomic_write(paths["frames_csv"], frames_csv(b))
    if plots:
        planned, cut = _draw_plots(b, out)
        paths.update({k: out / v for k, v in planned.items() if isinstance(v, str)})
    rep = _finish_report(b, t0, planned)
    _write_json_md(out, rep)
    b.last_report = rep
    if cut:  # the report is complete: pass the Ctrl-C on
        raise KeyboardInterrupt
    return paths


def rewrite_report(b: ReportBuilder, out_dir: str | Path) -> None:
    """``report.json`` and ``report.md`` again from ``b.last_report`` (after the caller amended it)."""
    if b.last_report is None:
        raise RuntimeError("rewrite_report before write_report")
    _write_json_md(Path(out_dir), b.last_report)


def _planned(b: ReportBuilder, plots: bool) -> list[str]:
    if not plots:
        return []
    keys = ["latency_cdf"]
    if any(f"{c}_det_f1" in r for r in b.rows for c in b.candidates):
        keys.append("agreement")
    if b.worst_frames():
        keys.append("mosaic")
    return keys


@contextlib.contextmanager
def _plot(results: dict[str, Any], key: str) -> Iterator[None]:
    """One picture: its file name into ``results``, or the error (logged, never raised)."""
    try:
        yield
        results[key] = PLOT_FILES[key]
    except KeyboardInterrupt:
        results[key] = {"error": "interrupted"}
        raise
    except Exception as e:  # noqa: BLE001 - a picture must never cost the report
        results[key] = {"error": f"{type(e).__name__}: {e}"}
        log.warning("%s not written: %s: %s", PLOT_FILES[key], type(e).__name__, e)


def _draw_plots(b: ReportBuilder, out: Path) -> tuple[dict[str, Any], bool]:
    """{plot: file name | {"error": ...}} and whether a KeyboardInterrupt cut the plots short."""
    from .. import plots as P

    results: dict[str, Any] = {}
    names = (b.reference, *b.candidates)
    keys = _planned(b, True)
    try:
        for key in keys:
            with _plot(results, key):
                if key == "mosaic":
                    P.write_mosaic(out, b.worst_frames(), names)
                elif key == "latency_cdf":
                    P.latency_cdf(out / PLOT_FILES[key], b.latencies())
                else:
                    P.agreement_over_time(out / PLOT_FILES[key], b.rows, names)
    except KeyboardInterrupt:
        for key in keys:
            results.setdefault(key, {"error": "interrupted"})
        log.warning("interrupted while drawing the plots; the report lists the ones written")
        return results, True
    return results, False
