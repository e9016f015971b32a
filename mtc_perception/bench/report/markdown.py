"""``report.md``: the report's tables."""

from __future__ import annotations

from typing import Any

from .inputs import STAGES


def _f(v: Any, fmt: str = "{:.2f}", none: str = "–") -> str:
    return none if v is None else fmt.format(v)


def _per_class(block: Any) -> bool:
    """A ground-truth block (of a model) holding per-class AP50."""
    return isinstance(block, dict) and "ap50_by_class" in block.get("detection", {})


def markdown(rep: dict[str, Any]) -> str:
    """``report.md``: the report's tables."""
    meta, models = rep["meta"], rep["models"]
    names = list(models)
    title = f"{', '.join(names[1:])} vs {names[0]}" if len(names) > 1 else names[0]
    bag = meta.get("bag", {})
    fr = meta.get("frames", {})
    lines = [f"# Benchmark: {title}", ""]
    if bag:
        lines.append(
            f"Recording `{bag.get('path')}` ({bag.get('storage')}, md5 `{bag.get('md5')}`), topic `{bag.get('topic')}` "
            f"({bag.get('msgtype')}): {fr.get('total')} frames, {fr.get('read', fr.get('given'))} read, "
            f"{fr.get('not_reached')} not reached."
        )
    host = meta.get("host", {})
    if host:
        lines.append(f"Host `{host.get('hostname')}`: {host.get('cpu')}; GPU: {host.get('gpu') or 'none'}.")
    lines.append("Backends: " + ", ".join(f"{n} = {b}" for n, b in meta.get("backends", {}).items()) + ".")
    if meta.get("interrupted"):
        how = meta.get("signal") or "Ctrl-C"
        lines.append(f"\n**Interrupted ({how}): the figures cover the frames measured before it.**")
    if meta.get("error"):
        lines.append(f"\n**Recording damaged: {meta['error']}** — figures cover the frames up to the last good one.")
    for w in meta.get("warnings", []):
        lines.append(f"\n> warning: {w}")
    lines += [
        "",
        "## Speed",
        "",
        "| model | precision | params | GMACs | latency mean | p50 | p90 | p99 | max (ms) | throughput (fps) | "
        "processed | failed | skipped | total |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, m in models.items():
        lat, f = m["latency_ms"], m["frames"]
        lines.append(
            f"| {n} | {m.get('precision') or 'fp32'} | {_f(m['params'] and m['params'] / 1e6, '{:.2f}M')} | "
            f"{_f(m['macs'] and m['macs'] / 1e9, '{:.3f}')} | "
            f"{_f(lat['mean'])} | {_f(lat['p50'])} | {_f(lat['p90'])} | {_f(lat['p99'])} | {_f(lat['max'])} | "
            f"{_f(m['throughput_fps'], '{:.1f}')} | {f['processed']} | {f['failed']} | {f['skipped']} | {f['total']} |"
        )
    lines += [
        "",
        "Mean time per stage (ms):",
        "",
        "| model | " + " | ".join(STAGES) + " |",
        "|---|" + "---|" * len(STAGES),
    ]
    for n, m in models.items():
        lines.append(f"| {n} | " + " | ".join(_f(m["stage_ms"].get(k)) for k in STAGES) + " |")
    errors = [(n, e) for n, m in models.items() for e in m.get("errors", [])]
    if errors:
        lines += [
            "",
            "## Failed frames",
            "",
            "Per model and kind of error (numbers in the message replaced by #); every frame's status and "
            "error are in `frames.csv`.",
            "",
            "| model | count | first frames | first error |",
            "|---|---|---|---|",
        ]
        for n, e in errors:
            first = e["first"].replace("|", "\\|").replace("\n", " ")
            frames = ", ".join(str(i) for i in e.get("frames", []))
            lines.append(f"| {n} | {e['count']} | {frames} | {first} |")
    agreements = rep.get("agreements") or (
        {rep["agreement"]["model"]: rep["agreement"]} if rep.get("agreement") else {}
    )
    if agreements:
        ref = next(iter(agreements.values()))["reference"]
        lines += [
            "",
            f"## Agreement (against {ref} as reference)",
            "",
            "| model | frames | det mAP50 | det recall | det precision | drivable mIoU | lane IoU | reference boxes | model boxes |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for n, a in agreements.items():
            d = a["detection"]
            lines.append(
                f"| {n} | {a['frames']} | {_f(d['map50'], '{:.3f}')} | {_f(d['recall'], '{:.3f}')} | "
                f"{_f(d['precision'], '{:.3f}')} | {_f(a['drivable']['miou'], '{:.3f}')} | {_f(a['lane']['iou'], '{:.3f}')} | "
                f"{d['reference_boxes']} | {d['model_boxes']} |"
            )
        d = next(iter(agreements.values()))["detection"]
        lines += ["", f"AP: {d['ap_method']} 101-point, the reference's detections as ground truth."]
    g = rep.get("ground_truth")
    if g:
        lines += [
            "",
            "## Ground truth",
            "",
            "| model | frames | mAP50 | recall | drivable mIoU | lane acc | lane IoU |",
            "|---|---|---|---|---|---|---|",
        ]
        for n in models:
            b = g.get(n)
            if b is None:
                lines.append(f"| {n} | 0 | – | – | – | – | – |")
                continue
            det, drv, ln = b.get("detection", {}), b.get("drivable", {}), b.get("lane", {})
            lines.append(
                f"| {n} | {b['frames']} | {_f(det.get('map50'), '{:.3f}')} | {_f(det.get('recall'), '{:.3f}')} | "
                f"{_f(drv.get('miou'), '{:.3f}')} | {_f(ln.get('acc'), '{:.3f}')} | {_f(ln.get('iou'), '{:.3f}')} |"
            )
        per_class = {n: b["detection"]["ap50_by_class"] for n, b in g.items() if _per_class(b)}
        if per_class:
            names = list(next(iter(per_class.values())))
            lines += ["", "AP50 per class (– where the labels hold no box of the class):", ""]
            lines += ["| model | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
            for n, by_class in per_class.items():
                lines.append(f"| {n} | " + " | ".join(_f(by_class.get(c), "{:.3f}") for c in names) + " |")
        mt = g["matching"]
        lines += [
            "",
            (
                f"Label matching by header stamp: {mt['frames_with_all_labels']} frames with all labels, "
                f"{mt['frames_missing_labels']} missing some, labels without a frame: {mt['labels_without_frame']}."
            ),
        ]
    h, s = meta.get("harness_ms"), meta.get("harness_share")
    if h:
        lines += [
            "",
            "## Harness",
            "",
            "| " + " | ".join(h) + " |",
            "|" + "---|" * len(h),
            "| " + " | ".join(f"{v:.0f} ms" for v in h.values()) + " |",
        ]
        if s and s.get("read_decode_report") is not None:
            lines.append(
                f"\nReading and decoding the recording plus writing the report: {100 * s['read_decode_report']:.1f} % "
                f"of the total bench time; hashing the recording {100 * (s.get('hash') or 0):.1f} %; "
                f"{100 * s['all_harness']:.1f} % with everything the harness does."
            )
    r2b = rep.get("ros2_benchmark")
    if r2b:
        lines += _r2b_table(r2b)
    titles = {
        "latency_cdf.png": "latency CDF",
        "agreement.png": "agreement over time",
        "disagreement_mosaic.jpg": "where they disagree most (reference | each model)",
    }
    plots = meta.get("plots") or {}
    written = [p for p in plots.values() if isinstance(p, str)]
    failed = {k: p["error"] for k, p in plots.items() if isinstance(p, dict)}
    if written or failed:
        lines += ["", "## Plots", ""] + [f"![{titles.get(p, p)}]({p})" for p in written]
        lines += [f"\n{k}: not written ({err})" for k, err in failed.items()]
    return "\n".join(lines) + "\n"


#: the ros2_benchmark metrics shown in report.md (all of them are in report.json)
_R2B_ROWS = (
    ("BasicPerformanceMetrics.NUM_FRAMES_SENT", "frames sent", "{:.0f}"),
    ("BasicPerformanceMetrics.NUM_MISSED_FRAMES", "missed frames", "{:.0f}"),
    ("BasicPerformanceMetrics.MEAN_PLAYBACK_FRAME_RATE", "mean playback frame rate (fps)", "{:.2f}"),
    ("BasicPerformanceMetrics.MEAN_FRAME_RATE", "mean frame rate (fps)", "{:.2f}"),
    ("BasicPerformanceMetrics.MEAN_LATENCY", "mean end-to-end latency (ms)", "{:.1f}"),
    ("latency_p50_ms", "p50 end-to-end latency (ms)", "{:.1f}"),
    ("latency_p99_ms", "p99 end-to-end latency (ms)", "{:.1f}"),
    ("BasicPerformanceMetrics.MAX_LATENCY", "max end-to-end latency (ms)", "{:.1f}"),
    ("BasicPerformanceMetrics.MEAN_JITTER", "mean frame-to-frame jitter (ms)", "{:.1f}"),
    ("node_cpu_percent", "node CPU (% of one core)", "{:.0f}"),
    ("ResourceMetrics.MEAN_OVERALL_CPU_UTILIZATION", "machine CPU, mean (%)", "{:.0f}"),
)


def _r2b_table(r2b: dict[str, Any]) -> list[str]:
    """The ros2_benchmark section as a table: one column per model (``extra`` values beside r2b's)."""
    models = [k for k, v in r2b.items() if k != "metadata" and isinstance(v, dict)]
    if not models:
        return []
    lines = [
        "",
        "## ros2_benchmark metrics",
        "",
        "Names and definitions as NVIDIA's ros2_benchmark (`BasicPerformanceMetrics`, `ResourceMetrics`); "
        "p50 / p99 and the node's own CPU are ours. All of them: report.json, `ros2_benchmark`.",
        "",
        "| metric | " + " | ".join(models) + " |",
        "|---|" + "---|" * len(models),
    ]
    for k, label, fmt in _R2B_ROWS:
        vals = [{**r2b[m], **(r2b[m].get("extra") or {})}.get(k) for m in models]
        if all(v is None for v in vals):
            continue
        lines.append(f"| {label} | " + " | ".join(_f(v, fmt) for v in vals) + " |")
    peak = (r2b.get("metadata") or {}).get("BenchmarkMetadata.PEAK_THROUGHPUT_PREDICTION")
    if peak is not None:
        lines.append(f"\nPeak throughput (highest rate with < 5 % missed frames): {peak:.1f} Hz.")
    return lines
