"""Writing the report's files: ``frames.csv``, the plots, ``report.md`` and ``report.json``, and
the harness' share of the wall time."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .markdown import markdown
from .stats import round_floats

if TYPE_CHECKING:
    from .builder import ReportBuilder

#: harness work counted against the "<= 5 % of the bench time" budget
CORE_HARNESS = ("read", "decode", "report")


def write_report(b: ReportBuilder, out_dir: str | Path, plots: bool = True) -> dict[str, Path]:
    """Write ``frames.csv``, the plots (``latency_cdf.png``, ``agreement.png``,
    ``disagreement_mosaic.jpg``; skipped with a warning without matplotlib), ``report.md`` and
    ``report.json`` into ``out_dir``. Its own time goes to ``harness_ms["report"]``, with the
    harness' share of the wall time since ``started`` (the final JSON dump is not counted)."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"frames_csv": out / "frames.csv"}
    cols = (
        ["index", "stamp_ns"]
        + [f"{m.name}_{k}" for m in b.models for k in ("status", "latency_ms")]
        + ["det_f1", "drivable_iou", "lane_iou", "disagreement"]
    )
    with open(paths["frames_csv"], "w", newline="") as fh:
        w = csv.DictWriter(fh, cols, extrasaction="ignore")
        w.writeheader()
        for r in sorted(b.rows, key=lambda r: r["index"]):  # a live run reports frames as they complete
            w.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})
    if plots:
        from .. import plots as P

        worst = b.worst_frames()
        try:
            paths.update(
                P.write_plots(
                    out,
                    b.latencies(),
                    b.rows,
                    worst,
                    (b.reference, b.candidate),
                )
            )
        except ImportError as e:
            b.warnings.append(f"plots skipped: {e} (pip install matplotlib)")
            if worst:
                paths.update(P.write_mosaic(out, worst, (b.reference, b.candidate)))
    rep = b.report()
    rep["meta"]["plots"] = [paths[k].name for k in ("latency_cdf", "agreement", "mosaic") if k in paths]
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
    paths["report_md"] = out / "report.md"
    paths["report_md"].write_text(markdown(rep))
    paths["report_json"] = out / "report.json"
    paths["report_json"].write_text(json.dumps(round_floats(rep, 6), indent=2) + "\n")
    b.last_report = rep
    return paths
