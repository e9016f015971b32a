"""Offline replay benchmark (``mtc bench``): every camera frame of a rosbag2 recording through the
teacher and the student, speed and accuracy side by side, into the benchmark report
(:mod:`mtc_perception.bench.report`).

Per frame: the message is read and deserialized (harness ``read``), converted to a BGR image once
(harness ``decode``; it is also each model's ``stage_ms.decode``, since a node pays it per model),
then each model runs through its :class:`~mtc_perception.perceptor.Perceptor`; its latency is
decode + the Perceptor's wall time. Label topics (``<gt_prefix>/detections``, ``drivable_mask``,
``lane_mask``) are paired with frames by header stamp for ground-truth metrics.

Bad recordings: a missing camera topic is a :class:`~mtc_perception.bags.TopicNotFound` listing
the topics there are; a damaged file is read up to its last good message, the report is written
and the error is in ``meta.error`` (exit code 2); a frame that does not decode is failed for both
models and the run goes on; Ctrl-C stops the run and still writes the report (``meta.interrupted``,
exit code 130). Frames never reached are skipped, so ``processed + failed + skipped == total``.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..bags import (
    GT_PARTS,
    GT_PREFIX,
    IMAGE_TYPES,
    BagError,
    BagReader,
    RecordingWriter,
    TopicNotFound,
    bag_size,
    gt_topics,
    md5_of,
    stamp_to_ns,
)
from ..imaging import ImageError, compressed_to_bgr, image_to_bgr
from .report import (
    GroundTruthBoxes,
    ModelInfo,
    ModelOutput,
    ReportBuilder,
    detections_from_msg,
    host_info,
    mask_from_msg,
)

log = logging.getLogger(__name__)

EXIT_OK, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 2, 130
OUTPUT_BAG = "replay_bag"


@dataclass(frozen=True)
class BenchConfig:
    """One replay run. ``topic`` None picks the camera topic (see :func:`choose_topic`)."""

    bag: Path
    teacher: Path
    student: Path
    out: Path
    backend: str = "auto"
    topic: str | None = None
    threads: int | None = None
    max_frames: int | None = None
    output_bag: bool = False
    conf: float = 0.25
    iou: float = 0.45
    gt_prefix: str = GT_PREFIX
    distro: str = "humble"
    plots: bool = True
    mosaic: int = 6
    warmup: int = 3
    md5: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        if self.max_frames is not None and self.max_frames < 1:
            raise BagError(f"--max-frames must be >= 1, got {self.max_frames}")
        if self.threads is not None and self.threads < 1:
            raise BagError(f"--threads must be >= 1, got {self.threads}")

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}


@dataclass
class BenchResult:
    report: dict[str, Any]
    paths: dict[str, Path]
    exit_code: int


def choose_topic(reader: BagReader, topic: str | None) -> str:
    """``topic`` if given (else :class:`TopicNotFound`); otherwise ``/camera/image_raw``, then
    ``/camera/image_raw/compressed``, then the only image topic outside the label topics."""
    if topic:
        info = reader.require(topic)
        if info.msgtype not in IMAGE_TYPES:
            raise BagError(
                f"topic {topic!r} in {reader.path} is {info.msgtype}, not a camera topic ({' or '.join(IMAGE_TYPES)})"
            )
        return topic
    for t in ("/camera/image_raw", "/camera/image_raw/compressed"):
        if t in reader.topics and reader.topics[t].msgtype in IMAGE_TYPES:
            return t
    labels = set(gt_topics().values())
    images = [
        t for t, i in reader.topics.items() if i.msgtype in IMAGE_TYPES and t not in labels and not t.endswith("_mask")
    ]
    if len(images) == 1:
        return images[0]
    raise TopicNotFound("/camera/image_raw" if not images else f"(one of {sorted(images)})", reader.topics, reader.path)


class _Progress:
    """tqdm when it is installed, else a log line every few seconds."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        self.bar = None
        self.total, self.enabled, self.n = total, enabled, 0
        self._last = time.monotonic()
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="frame", desc="bench", file=sys.stderr, dynamic_ncols=True)
            except ImportError:
                pass

    def update(self, text: str) -> None:
        self.n += 1
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(1)
        elif self.enabled and time.monotonic() - self._last > 5.0:
            self._last = time.monotonic()
            log.info("frame %d/%s %s", self.n, self.total if self.total is not None else "?", text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _label(reader: BagReader, part: str, msg: Any, class_names: tuple[str, ...]) -> tuple[int, Any, int]:
    """(stamp, value, unknown class names) of a label message."""
    stamp = stamp_to_ns(msg.header.stamp)
    if part == "detections":
        boxes, _, cls, unknown = detections_from_msg(msg, class_names)
        return stamp, GroundTruthBoxes(boxes, cls), unknown
    return stamp, mask_from_msg(msg), 0


def _prepare_output_bag(out: Path) -> Path:
    p = out / OUTPUT_BAG
    if p.exists():
        if not (p / "metadata.yaml").is_file() or any(f.is_dir() for f in p.iterdir()):
            raise BagError(f"{p} exists and is not a previous replay bag; move it away or choose another --out")
        shutil.rmtree(p)
    return p


def run_bench(cfg: BenchConfig, on_frame: Callable[[int], None] | None = None) -> BenchResult:
    """Run the replay benchmark and write the report into ``cfg.out``. ``on_frame(n)`` is called
    after the n-th camera frame (progress hooks; a KeyboardInterrupt raised there stops the run
    as Ctrl-C does)."""
    from ..node_core import detection_array, mask_image
    from ..perceptor import Perceptor

    started = time.perf_counter()
    harness = {"read": 0.0, "decode": 0.0, "hash": 0.0, "output_bag": 0.0}
    t = time.perf_counter()
    reader = BagReader(cfg.bag, cfg.distro)
    harness["read"] += (time.perf_counter() - t) * 1e3
    try:
        topic = choose_topic(reader, cfg.topic)
        info = reader.topics[topic]
        compressed = info.msgtype.endswith("CompressedImage")
        gt: dict[str, str] = {}
        warnings: list[str] = []
        for part, name in gt_topics(cfg.gt_prefix).items():
            if name in reader.topics:
                if reader.topics[name].msgtype == GT_PARTS[part][1]:
                    gt[part] = name
                else:
                    warnings.append(
                        f"label topic {name} is {reader.topics[name].msgtype}, expected {GT_PARTS[part][1]}; ignored"
                    )
        output_bag = _prepare_output_bag(cfg.out) if cfg.output_bag else None

        t_load = time.perf_counter()
        opts = {"threads": cfg.threads} if cfg.threads else {}
        perceptors = {
            name: Perceptor(path, backend=cfg.backend, conf=cfg.conf, iou=cfg.iou, **opts)
            for name, path in (("teacher", cfg.teacher), ("student", cfg.student))
        }
        for p in perceptors.values():
            if cfg.warmup > 0:
                p.warmup(cfg.warmup)
        load_s = time.perf_counter() - t_load
        class_names = tuple(perceptors["teacher"].class_names)
        if tuple(perceptors["student"].class_names) != class_names:
            warnings.append(
                f"teacher classes {list(class_names)} differ from student classes "
                f"{list(perceptors['student'].class_names)}; detection agreement compares class ids"
            )

        t = time.perf_counter()
        md5 = md5_of(cfg.bag) if cfg.md5 else None
        harness["hash"] = (time.perf_counter() - t) * 1e3

        builder = ReportBuilder(
            [ModelInfo.from_bundle(n, p.bundle, p.backend) for n, p in perceptors.items()],
            gt_parts=tuple(gt),
            mosaic=cfg.mosaic,
            started=started,
        )
        builder.harness_ms = harness
        builder.warnings.extend(warnings)
        expected = info.count
        counts = {"in_bag": expected, "read": 0, "decode_failed": 0, "limit": cfg.max_frames}
        interrupted = stopped_at_limit = False
        last_good: tuple[int, int] | None = None
        unknown_classes = 0
        part_of = {v: k for k, v in gt.items()}
        writer: RecordingWriter | None = None
        progress = _Progress(
            min(expected, cfg.max_frames or expected) if expected is not None else cfg.max_frames, cfg.progress
        )
        try:
            if output_bag is not None:
                writer = RecordingWriter(output_bag, reader.storage, cfg.distro).__enter__()
                writer.add_topic(topic, info.msgtype)
                for n in perceptors:
                    writer.add_topic(f"/{n}/detections", "vision_msgs/msg/Detection2DArray")
                    writer.add_topic(f"/{n}/drivable_mask", "sensor_msgs/msg/Image")
                    writer.add_topic(f"/{n}/lane_mask", "sensor_msgs/msg/Image")
            it = iter(reader.messages([topic, *gt.values()]))
            while True:
                t0 = time.perf_counter()
                m = next(it, None)
                if m is None:
                    harness["read"] += (time.perf_counter() - t0) * 1e3
                    break
                if m.topic != topic:  # a label
                    part = part_of[m.topic]
                    try:
                        msg = reader.deserialize(m)
                        t1 = time.perf_counter()
                        harness["read"] += (t1 - t0) * 1e3
                        stamp, value, unk = _label(reader, part, msg, class_names)
                        unknown_classes += unk
                        harness["decode"] += (time.perf_counter() - t1) * 1e3
                    except Exception as e:  # noqa: BLE001 - a bad label must not stop the run
                        builder.add_label_error(part, f"{m.topic} at log time {m.log_time_ns}: {type(e).__name__}: {e}")
                        continue
                    builder.add_ground_truth(stamp, part, value)
                    continue
                if cfg.max_frames is not None and counts["read"] >= cfg.max_frames:
                    stopped_at_limit = True
                    break
                counts["read"] += 1
                stamp = m.log_time_ns
                try:
                    msg = reader.deserialize(m)
                    stamp = stamp_to_ns(msg.header.stamp)
                    t1 = time.perf_counter()
                    harness["read"] += (t1 - t0) * 1e3
                    frame = compressed_to_bgr(msg) if compressed else image_to_bgr(msg)
                    decode_ms = (time.perf_counter() - t1) * 1e3
                    harness["decode"] += decode_ms
                except Exception as e:  # noqa: BLE001 - ImageError or a CDR error: this frame fails, the run goes on
                    counts["decode_failed"] += 1
                    kind = "bad frame" if isinstance(e, ImageError) else "undecodable message"
                    err = f"{kind}: {e}" if isinstance(e, ImageError) else f"{kind}: {type(e).__name__}: {e}"
                    if counts["decode_failed"] <= 3:
                        log.warning("frame %d (stamp %d): %s; counted as failed", counts["read"], stamp, err)
                    builder.add_frame(stamp, {n: ModelOutput(error=err) for n in perceptors}, index=counts["read"] - 1)
                    progress.update("decode failed")
                    if on_frame is not None:
                        on_frame(counts["read"])
                    continue
                outputs: dict[str, ModelOutput] = {}
                for n, p in perceptors.items():
                    t2 = time.perf_counter()
                    try:
                        r = p(frame)
                    except Exception as e:  # noqa: BLE001 - one model failing on one frame is a counted failure
                        outputs[n] = ModelOutput(error=f"inference failed: {type(e).__name__}: {e}")
                        continue
                    lat = (time.perf_counter() - t2) * 1e3 + decode_ms
                    outputs[n] = ModelOutput(r, lat, {**r.timings, "decode": decode_ms})
                builder.add_frame(stamp, outputs, image=frame, index=counts["read"] - 1)
                last_good = (counts["read"] - 1, stamp)
                if writer is not None:
                    t3 = time.perf_counter()
                    writer.write_raw(topic, m.log_time_ns, m.raw)
                    for n, o in outputs.items():
                        if o.perception is not None:
                            q = o.perception
                            writer.write(
                                f"/{n}/detections",
                                m.log_time_ns,
                                detection_array(
                                    writer.types, msg.header, q.boxes, q.scores, q.class_ids, q.class_names
                                ),
                            )
                            writer.write(
                                f"/{n}/drivable_mask", m.log_time_ns, mask_image(writer.types, msg.header, q.drivable)
                            )
                            writer.write(f"/{n}/lane_mask", m.log_time_ns, mask_image(writer.types, msg.header, q.lane))
                    harness["output_bag"] += (time.perf_counter() - t3) * 1e3
                progress.update(
                    " ".join(f"{n} {o.latency_ms:.0f}ms" for n, o in outputs.items() if o.latency_ms is not None)
                )
                if on_frame is not None:
                    on_frame(counts["read"])
        except KeyboardInterrupt:
            interrupted = True
            log.warning("interrupted after %d frames; writing the report for what was measured", counts["read"])
        finally:
            progress.close()
            if writer is not None:
                t3 = time.perf_counter()
                writer.__exit__(None, None, None)
                harness["output_bag"] += (time.perf_counter() - t3) * 1e3

        total = max(expected or 0, counts["read"])
        not_reached = total - counts["read"]
        if not_reached:
            reason = (
                "interrupted (Ctrl-C)"
                if interrupted
                else f"--max-frames {cfg.max_frames}"
                if stopped_at_limit
                else "the recording is damaged"
                if reader.error
                else "not read"
            )
            builder.add_not_reached(not_reached, reason)
        if unknown_classes:
            builder.warnings.append(
                f"{unknown_classes} labelled boxes have a class name the models do not know "
                f"({list(class_names)}); they are not scored"
            )
        error = None
        if reader.error:
            where = (
                f"frames up to #{last_good[0]} (stamp {last_good[1]}) were read"
                if last_good
                else "no frame could be read"
            )
            error = f"{reader.error} — {where}"
        builder.meta.update(
            {
                "tool": "mtc bench (offline replay)",
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "host": host_info(),
                "bag": {
                    "path": str(cfg.bag),
                    "md5": md5,
                    "size_bytes": bag_size(cfg.bag),
                    "storage": reader.storage,
                    "topic": topic,
                    "msgtype": info.msgtype,
                    "salvaged": reader.salvaged,
                    "label_topics": gt,
                    "topics": {n: {"type": i.msgtype, "count": i.count} for n, i in sorted(reader.topics.items())},
                },
                "frames": counts,
                "config": cfg.to_dict(),
                "interrupted": interrupted,
                "error": error,
                "load_s": load_s,
            }
        )
        paths = builder.write(cfg.out, plots=cfg.plots)
        if output_bag is not None:
            paths["output_bag"] = output_bag
        rep = builder.last_report
    finally:
        reader.close()
    processed = sum(m["frames"]["processed"] for m in rep["models"].values())
    code = EXIT_OK
    if interrupted:
        code = EXIT_INTERRUPTED
    elif error:
        log.error("recording damaged: %s; the report covers what was read: %s", error, paths["report_json"])
        code = EXIT_BAD_INPUT
    elif counts["read"] and not processed:
        log.error(
            "no frame of %s could be processed (%d failed to decode); see %s",
            topic,
            counts["decode_failed"],
            paths["report_md"],
        )
        code = EXIT_BAD_INPUT
    return BenchResult(rep, paths, code)


def summary_text(rep: dict[str, Any]) -> str:
    """A few lines for the terminal: speed, agreement and the frame accounting."""
    lines = []
    for n, m in rep["models"].items():
        lat, f = m["latency_ms"], m["frames"]
        mean = f"{lat['mean']:.1f}" if lat["mean"] is not None else "–"
        p99 = f"{lat['p99']:.1f}" if lat["p99"] is not None else "–"
        fps = f"{m['throughput_fps']:.1f}" if m["throughput_fps"] else "–"
        lines.append(
            f"{n:>8}: latency mean {mean} ms, p99 {p99} ms, {fps} fps; frames {f['processed']} processed, "
            f"{f['failed']} failed, {f['skipped']} skipped of {f['total']}"
        )
    a = rep.get("agreement")
    if a:

        def g(v: Any) -> str:
            return f"{v:.3f}" if v is not None else "–"

        lines.append(
            f"agreement ({a['model']} vs {a['reference']}, {a['frames']} frames): mAP50 {g(a['detection']['map50'])}, "
            f"recall {g(a['detection']['recall'])}, drivable mIoU {g(a['drivable']['miou'])}, lane IoU {g(a['lane']['iou'])}"
        )
    s = rep["meta"].get("harness_share", {})
    if s.get("read_decode_report") is not None:
        lines.append(
            f"harness: read + decode + report {100 * s['read_decode_report']:.1f} %, md5 of the recording "
            f"{100 * (s.get('hash') or 0):.1f} %, everything {100 * s['all_harness']:.1f} % of "
            f"{rep['meta']['harness_ms']['wall'] / 1e3:.1f} s"
        )
    return "\n".join(lines)
