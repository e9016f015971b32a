"""Writing rosbag2 recordings (``mtc bag``): frames become ``sensor_msgs/Image`` (bgr8) or
``sensor_msgs/CompressedImage`` (jpeg) messages stamped ``start + i / fps``; labels travel on their
own topics with the frame's header (``vision_msgs/Detection2DArray`` and mono8 0/255 drivable /
lane masks). MCAP or sqlite3 storage, rosbag2 format version 8 (readable by Humble's tools), Humble
or Jazzy message definitions."""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from ..imaging import DEFAULT_LIMITS
from ..messages import CAMERA_TYPES, LABEL_TYPES, detection_array, gt_topics, mask_image
from .base import (
    CAMERA_TOPIC,
    DEFAULT_START_NS,
    GT_PREFIX,
    STORAGES,
    TRANSPORTS,
    BagError,
    camera_message,
    header,
    require_rosbags,
    types_of,
    typestore,
)
from .source import SourceFrame, resize_frame

log = logging.getLogger(__name__)

#: the frame rates ``mtc bag`` stamps with (frames per second): one frame in 1000 s to one per microsecond,
#: so that every stamp is distinct and strictly increasing
MIN_FPS, MAX_FPS = 1e-3, 1e6
#: builtin_interfaces/Time.sec is an int32
_MAX_STAMP_NS = (2**31 - 1) * 10**9


class RecordingWriter:
    """A thin rosbags ``Writer`` (format version 8): topics by name, messages serialized with the
    chosen distro's typestore. Use as a context manager; the path must not exist yet."""

    def __init__(self, path: str | Path, storage: str = "mcap", distro: str = "humble") -> None:
        if storage not in STORAGES:
            raise BagError(f"storage {storage!r}: use one of {STORAGES}")
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path} exists; rosbag2 writers never overwrite: remove it or choose another path")
        rb = require_rosbags()
        self.ts = typestore(distro)
        self.storage, self.distro = storage, distro
        plugin = rb.rosbag2.StoragePlugin.MCAP if storage == "mcap" else rb.rosbag2.StoragePlugin.SQLITE3
        self._writer = rb.rosbag2.Writer(self.path, version=8, storage_plugin=plugin)
        self._conns: dict[str, tuple[Any, str]] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> RecordingWriter:
        self._writer.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self._writer.close()

    @property
    def types(self) -> Callable[[str], Any]:
        return types_of(self.ts)

    def add_topic(self, topic: str, msgtype: str) -> None:
        if topic not in self._conns:
            self._conns[topic] = (self._writer.add_connection(topic, msgtype, typestore=self.ts), msgtype)
            self.counts[topic] = 0

    def write(self, topic: str, log_time_ns: int, msg: Any) -> None:
        conn, msgtype = self._conns[topic]
        self._writer.write(conn, int(log_time_ns), self.ts.serialize_cdr(msg, msgtype))
        self.counts[topic] += 1

    def write_raw(self, topic: str, log_time_ns: int, raw: bytes | memoryview) -> None:
        """An already serialized (CDR) message, e.g. copied from another bag."""
        conn, _ = self._conns[topic]
        self._writer.write(conn, int(log_time_ns), raw)
        self.counts[topic] += 1


@dataclass(frozen=True)
class WriteConfig:
    """How ``mtc bag`` records frames. ``camera_topic`` None: ``/camera/image_raw`` for raw,
    ``/camera/image_raw/compressed`` for compressed (image_transport's naming, what the perception
    node subscribes to with ``input_transport: compressed``)."""

    storage: str = "mcap"
    distro: str = "humble"
    transport: str = "raw"
    fps: float = 10.0
    camera_topic: str | None = None
    frame_id: str = "camera"
    limit: int | None = None
    resize: tuple[int, int] | None = None
    jpeg_quality: int = 90
    labels: bool = True
    gt_prefix: str = GT_PREFIX
    start_ns: int = DEFAULT_START_NS

    def __post_init__(self) -> None:
        if self.storage not in STORAGES:
            raise BagError(f"storage {self.storage!r}: use one of {STORAGES}")
        if self.transport not in TRANSPORTS:
            raise BagError(f"transport {self.transport!r}: use one of {TRANSPORTS}")
        if not (isinstance(self.fps, (int, float)) and math.isfinite(self.fps) and MIN_FPS <= self.fps <= MAX_FPS):
            raise BagError(
                f"fps {self.fps!r} is not a usable frame rate: give a number from {MIN_FPS:g} to {MAX_FPS:g} "
                "frames per second (--fps), e.g. 10"
            )
        if self.resize is not None:
            r = self.resize
            if not (len(r) == 2 and all(isinstance(v, int) and v > 0 for v in r)):
                raise BagError(
                    f"resize {r!r} must be WIDTHxHEIGHT with two positive integers (--resize), e.g. 1280x720"
                )
            try:
                DEFAULT_LIMITS.check(r[0], r[1], "resize")
            except ValueError as e:
                raise BagError(f"{e} (--resize)") from None
        if self.limit is not None and self.limit < 1:
            raise BagError(f"limit must be >= 1, got {self.limit}")
        if not 1 <= self.jpeg_quality <= 100:
            raise BagError(f"jpeg quality must be in 1..100, got {self.jpeg_quality}")

    @property
    def topic(self) -> str:
        if self.camera_topic:
            return self.camera_topic
        return CAMERA_TOPIC + ("/compressed" if self.transport == "compressed" else "")


@dataclass
class WriteSummary:
    path: Path
    storage: str
    distro: str
    frames: int = 0
    labelled: int = 0
    unreadable: list[str] = field(default_factory=list)
    topics: dict[str, int] = field(default_factory=dict)
    size: tuple[int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "storage": self.storage,
            "distro": self.distro,
            "frames": self.frames,
            "labelled": self.labelled,
            "unreadable": self.unreadable,
            "topics": self.topics,
            "frame_size": list(self.size) if self.size else None,
        }


def write_bag(
    path: str | Path,
    frames: Iterable[SourceFrame],
    cfg: WriteConfig = WriteConfig(),
    progress: Callable[[int], None] | None = None,
) -> WriteSummary:
    """Record ``frames`` into a new bag at ``path``. A frame whose image is None is not written
    (there is nothing to write) but listed in ``WriteSummary.unreadable``. Labels, where present,
    go to ``<gt_prefix>/{detections, drivable_mask, lane_mask}`` with the frame's header and log time.

    The bag is written under ``.<name>.partial/`` next to ``path`` and moved to ``path`` once it is
    closed with its metadata; on any failure (an exception, Ctrl-C, no frame recorded) the partial
    bag is removed, so ``path`` is either a complete bag or absent."""
    path = Path(path)
    if path.exists():
        raise BagError(f"{path} exists; rosbag2 writers never overwrite: remove it or choose another path")
    staging = path.parent / f".{path.name}.partial"
    if staging.exists():
        raise BagError(
            f"{staging} exists (left by an interrupted `mtc bag`?); remove it or choose another --out than {path}"
        )
    if not path.parent.is_dir():
        raise BagError(f"the folder of {path} does not exist; create {path.parent} first")
    staging.mkdir()
    try:
        out = _write(staging / path.name, frames, cfg, progress)
        if out.frames == 0:
            shown = "; ".join(out.unreadable[:3]) + ("; ..." if len(out.unreadable) > 3 else "")
            raise BagError(
                f"no frame could be recorded into {path} ({len(out.unreadable)} unreadable: {shown}); "
                "nothing was written"
            )
        (staging / path.name).rename(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    out.path = path
    return out


def _write(
    path: Path, frames: Iterable[SourceFrame], cfg: WriteConfig, progress: Callable[[int], None] | None
) -> WriteSummary:
    period_ns = round(1e9 / cfg.fps)  # >= 1000: MAX_FPS, so the stamps strictly increase
    out = WriteSummary(Path(path), cfg.storage, cfg.distro)
    gt = gt_topics(cfg.gt_prefix)
    with RecordingWriter(path, cfg.storage, cfg.distro) as w:
        w.add_topic(cfg.topic, CAMERA_TYPES[cfg.transport])
        for frame in frames:
            if cfg.limit is not None and out.frames >= cfg.limit:
                break
            if frame.image is None:
                out.unreadable.append(f"{frame.name}: {frame.error or 'unreadable'}")
                log.warning("%s: %s; not recorded", frame.name, frame.error or "unreadable")
                continue
            frame = resize_frame(frame, cfg.resize)
            image = cast(np.ndarray, frame.image)  # not None: checked above, resizing keeps it
            stamp = cfg.start_ns + out.frames * period_ns
            if stamp > _MAX_STAMP_NS:
                raise BagError(
                    f"frame {out.frames} ({frame.name}) would be stamped {stamp} ns, past what a ROS 2 "
                    f"Time holds (int32 seconds); record fewer frames (--limit) or a higher --fps than {cfg.fps:g}"
                )
            hdr = header(w.ts, stamp, cfg.frame_id)
            w.write(cfg.topic, stamp, camera_message(w.ts, hdr, image, cfg.transport, cfg.jpeg_quality))
            out.size = (image.shape[1], image.shape[0])
            lab = frame.labels if cfg.labels else None
            if lab is not None:
                w.add_topic(gt["detections"], LABEL_TYPES["detections"])
                w.write(
                    gt["detections"],
                    stamp,
                    detection_array(w.types, hdr, lab.boxes, np.ones(len(lab.boxes)), lab.class_ids, lab.class_names),
                )
                for part, mask in (("drivable", lab.drivable), ("lane", lab.lane)):
                    if mask is not None:
                        w.add_topic(gt[part], LABEL_TYPES[part])
                        w.write(gt[part], stamp, mask_image(w.types, hdr, mask))
                out.labelled += 1
            out.frames += 1
            if progress is not None:
                progress(out.frames)
        out.topics = dict(w.counts)
    return out
