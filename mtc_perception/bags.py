"""rosbag2 recordings of camera frames (and their labels) through ``rosbags``: no ROS install needed.

Writing (:func:`write_bag`, ``mtc bag``): frames from a video, an image folder or a dataset split
become ``sensor_msgs/Image`` (bgr8) or ``sensor_msgs/CompressedImage`` (jpeg) messages stamped
``start + i / fps``; a dataset's labels travel on their own topics with the frame's header
(``vision_msgs/Detection2DArray`` and mono8 0/255 drivable / lane masks). MCAP or sqlite3 storage,
rosbag2 format version 8 (readable by Humble's tools), Humble or Jazzy message definitions.

Reading (:class:`BagReader`): ``AnyReader`` for both storages. A recording it cannot open or that
breaks while being read (a copy cut short, a crash while recording) is *salvaged*: the MCAP
records or sqlite rows are scanned in file order up to the last complete message, and the reader
says what went wrong in :attr:`BagReader.error` instead of losing everything.

``rosbags`` (and, for a dataset, the numpy-only ``compress.data.bdd``) is imported only when used,
so ``import mtc_perception.bags`` costs nothing.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .imaging import bgr_to_image_fields

log = logging.getLogger(__name__)

DISTROS = {"humble": "ROS2_HUMBLE", "jazzy": "ROS2_JAZZY"}
STORAGES = ("mcap", "sqlite3")
TRANSPORTS = ("raw", "compressed")
CAMERA_TOPIC = "/camera/image_raw"
#: ground-truth topics under a prefix: part -> (topic suffix, message type)
GT_PARTS = {
    "detections": ("detections", "vision_msgs/msg/Detection2DArray"),
    "drivable": ("drivable_mask", "sensor_msgs/msg/Image"),
    "lane": ("lane_mask", "sensor_msgs/msg/Image"),
}
GT_PREFIX = "/ground_truth"
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
#: 2023-11-14 22:13:20 UTC: a fixed, recognisable first stamp (reproducible bags)
DEFAULT_START_NS = 1_700_000_000 * 10**9


class BagError(ValueError):
    """A recording that cannot be written or read as asked (the message says which file and why)."""


class TopicNotFound(BagError):
    """The asked-for topic is not in the recording; :attr:`topics` lists what is."""

    def __init__(self, topic: str, topics: dict[str, TopicInfo], path: Path | str) -> None:
        self.topic, self.topics = topic, topics
        listing = (
            "\n".join(
                f"  {name}  [{t.msgtype}, {t.count if t.count is not None else '?'} messages]"
                for name, t in sorted(topics.items())
            )
            or "  (none)"
        )
        super().__init__(f"topic {topic!r} is not in {path}; its topics are:\n{listing}\nchoose one with --topic")


def gt_topics(prefix: str = GT_PREFIX) -> dict[str, str]:
    """Ground-truth part -> topic name under ``prefix``."""
    return {part: f"{prefix.rstrip('/')}/{suffix}" for part, (suffix, _) in GT_PARTS.items()}


def _rosbags() -> Any:
    try:
        import rosbags
    except ImportError:
        raise RuntimeError(
            "reading and writing rosbag2 recordings needs rosbags: pip install 'rosbags>=0.10' "
            "(or the package's [bag] extra)"
        ) from None
    import rosbags.rosbag2
    import rosbags.typesys

    return rosbags


def typestore(distro: str = "humble") -> Any:
    """A rosbags typestore of ``distro``'s message definitions plus vision_msgs 4.x."""
    from .messages import register_vision_msgs

    if distro not in DISTROS:
        raise BagError(f"distro {distro!r} is not supported; use one of {sorted(DISTROS)}")
    rb = _rosbags()
    ts = rb.typesys.get_typestore(getattr(rb.typesys.Stores, DISTROS[distro]))
    register_vision_msgs(ts)
    return ts


def stamp_to_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _types(ts: Any) -> Callable[[str], Any]:
    return ts.types.__getitem__


def header(ts: Any, stamp_ns: int, frame_id: str) -> Any:
    """A ``std_msgs/Header`` of the typestore's classes."""
    T = _types(ts)
    return T("std_msgs/msg/Header")(
        stamp=T("builtin_interfaces/msg/Time")(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000),
        frame_id=frame_id,
    )


def camera_message(ts: Any, hdr: Any, img: np.ndarray, transport: str = "raw", jpeg_quality: int = 90) -> Any:
    """A bgr8 ``Image`` or a jpeg ``CompressedImage`` (image_transport's format string) of ``img``."""
    T = _types(ts)
    if transport == "raw":
        return T("sensor_msgs/msg/Image")(header=hdr, **bgr_to_image_fields(img))
    if transport == "compressed":
        import cv2

        ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), int(jpeg_quality)])
        if not ok:
            raise BagError(f"JPEG encoding of a {img.shape} frame failed")
        return T("sensor_msgs/msg/CompressedImage")(
            header=hdr, format="bgr8; jpeg compressed bgr8", data=np.asarray(buf, np.uint8).reshape(-1)
        )
    raise BagError(f"transport {transport!r}: use one of {TRANSPORTS}")


# ---------------------------------------------------------------------------------------------
# frame sources
# ---------------------------------------------------------------------------------------------
@dataclass
class Labels:
    """A frame's ground truth: boxes (N, 4) xyxy pixels, class ids into ``class_names``, {0, 1}
    masks (None where the dataset has no such mask)."""

    boxes: np.ndarray
    class_ids: np.ndarray
    class_names: tuple[str, ...]
    drivable: np.ndarray | None = None
    lane: np.ndarray | None = None


@dataclass
class SourceFrame:
    """One frame to record: ``image`` is None when it could not be read (``error`` says why)."""

    name: str
    image: np.ndarray | None
    labels: Labels | None = None
    error: str = ""


def dataset_frames(
    root: str | Path,
    split: str = "val",
    label_format: str = "yolop",
    label_json: str | None = None,
    drivable_mapping: str = "yolop_binary",
) -> Iterator[SourceFrame]:
    """Frames and labels of a BDD100K / YOLOP-layout split (synthroad writes that layout), in the
    order of ``compress.data.bdd.index_split``. Masks are mapped with ``drivable_mapping``."""
    import cv2

    from compress.data.bdd import DataConfig, index_split, map_drivable, map_lane

    cfg = DataConfig(
        root=Path(root),
        split=split,
        label_format=label_format,
        label_json=label_json,
        drivable_mapping=drivable_mapping,
    )
    index = index_split(cfg)
    if not index.samples:
        raise BagError(f"no samples in split {split!r} of {root}")
    for s in index.samples:
        img = cv2.imread(str(s.image), cv2.IMREAD_COLOR)
        if img is None:
            yield SourceFrame(s.stem, None, error=f"{s.image}: not a readable image")
            continue
        masks = []
        for path, fn in ((s.drivable, lambda raw: map_drivable(raw, drivable_mapping)), (s.lane, map_lane)):
            raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if path is not None else None
            if path is not None and (raw is None or raw.shape[:2] != img.shape[:2]):
                yield SourceFrame(
                    s.stem,
                    None,
                    error=f"{path}: unreadable mask or size differs from the image {img.shape[1]}x{img.shape[0]}",
                )
                break
            masks.append(fn(raw) if raw is not None else None)
        else:
            yield SourceFrame(
                s.stem,
                img,
                Labels(
                    s.boxes[:, 1:5].astype(np.float64),
                    s.boxes[:, 0].astype(np.int64),
                    cfg.class_names,
                    masks[0],
                    masks[1],
                ),
            )


def resize_frame(frame: SourceFrame, size: tuple[int, int] | None) -> SourceFrame:
    """``frame`` at ``size`` = (w, h): the image bilinear, masks nearest, boxes scaled."""
    import cv2

    if size is None or frame.image is None or (frame.image.shape[1], frame.image.shape[0]) == tuple(size):
        return frame
    h0, w0 = frame.image.shape[:2]
    w, h = size
    img = cv2.resize(frame.image, (w, h), interpolation=cv2.INTER_AREA if w < w0 else cv2.INTER_LINEAR)
    lab = frame.labels
    if lab is not None:
        scale = np.array([w / w0, h / h0, w / w0, h / h0])
        lab = Labels(
            lab.boxes * scale,
            lab.class_ids,
            lab.class_names,
            *(
                cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST) if m is not None else None
                for m in (lab.drivable, lab.lane)
            ),
        )
    return SourceFrame(frame.name, img, lab, frame.error)


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------
class RecordingWriter:
    """A thin rosbags ``Writer`` (format version 8): topics by name, messages serialized with the
    chosen distro's typestore. Use as a context manager; the path must not exist yet."""

    def __init__(self, path: str | Path, storage: str = "mcap", distro: str = "humble") -> None:
        if storage not in STORAGES:
            raise BagError(f"storage {storage!r}: use one of {STORAGES}")
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path} exists; rosbag2 writers never overwrite: remove it or choose another path")
        rb = _rosbags()
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
        return _types(self.ts)

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
        if not self.fps > 0:
            raise BagError(f"fps must be > 0, got {self.fps}")
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
    go to ``<gt_prefix>/{detections, drivable_mask, lane_mask}`` with the frame's header and log time."""
    from .messages import detection_array, mask_image

    period_ns = round(1e9 / cfg.fps)
    out = WriteSummary(Path(path), cfg.storage, cfg.distro)
    gt = gt_topics(cfg.gt_prefix)
    with RecordingWriter(path, cfg.storage, cfg.distro) as w:
        w.add_topic(cfg.topic, IMAGE_TYPES[cfg.transport == "compressed"])
        for frame in frames:
            if cfg.limit is not None and out.frames >= cfg.limit:
                break
            if frame.image is None:
                out.unreadable.append(f"{frame.name}: {frame.error or 'unreadable'}")
                log.warning("%s: %s; not recorded", frame.name, frame.error or "unreadable")
                continue
            frame = resize_frame(frame, cfg.resize)
            stamp = cfg.start_ns + out.frames * period_ns
            hdr = header(w.ts, stamp, cfg.frame_id)
            w.write(cfg.topic, stamp, camera_message(w.ts, hdr, frame.image, cfg.transport, cfg.jpeg_quality))
            out.size = (frame.image.shape[1], frame.image.shape[0])
            lab = frame.labels if cfg.labels else None
            if lab is not None:
                w.add_topic(gt["detections"], GT_PARTS["detections"][1])
                w.write(
                    gt["detections"],
                    stamp,
                    detection_array(w.types, hdr, lab.boxes, np.ones(len(lab.boxes)), lab.class_ids, lab.class_names),
                )
                for part, mask in (("drivable", lab.drivable), ("lane", lab.lane)):
                    if mask is not None:
                        w.add_topic(gt[part], GT_PARTS[part][1])
                        w.write(gt[part], stamp, mask_image(w.types, hdr, mask))
                out.labelled += 1
            out.frames += 1
            if progress is not None:
                progress(out.frames)
        out.topics = dict(w.counts)
    if out.frames == 0:
        raise BagError(f"no frame could be recorded into {path} ({len(out.unreadable)} unreadable)")
    return out


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------
@dataclass
class TopicInfo:
    msgtype: str
    count: int | None  # None: unknown (a damaged recording without readable metadata)


@dataclass
class BagMessage:
    topic: str
    msgtype: str
    log_time_ns: int
    raw: bytes | memoryview


def _metadata(bagdir: Path) -> dict[str, Any] | None:
    """rosbag2's metadata.yaml as a dict, or None when missing or unreadable."""
    import yaml

    try:
        return yaml.safe_load((bagdir / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None


def _storage_of(path: Path) -> str:
    return "mcap" if path.suffix == ".mcap" else "sqlite3"


class BagReader:
    """Messages of a rosbag2 recording (directory with metadata.yaml, or a lone .mcap / .db3 file).

    ``topics`` maps every topic to its type and message count (from the bag's index or metadata).
    :meth:`messages` yields the chosen topics in time order (file order when salvaging); whatever
    stops the reading early is kept in :attr:`error` (the iteration then ends normally) so that a
    caller can report what it got up to the last good message.
    """

    def __init__(self, path: str | Path, distro: str = "humble") -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise BagError(
                f"bag {self.path} does not exist; give a rosbag2 directory (with metadata.yaml) or an .mcap/.db3 file"
            )
        self.ts = typestore(distro)
        self.error: str | None = None
        self.salvaged = False
        self._any: Any = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._patched: dict[Path, Path] = {}
        self.files = self._storage_files()
        self.storage = _storage_of(self.files[0])
        meta = _metadata(self.path) if self.path.is_dir() else None
        self._meta_counts = {
            t["topic_metadata"]["name"]: (t["topic_metadata"]["type"], int(t["message_count"]))
            for t in (meta or {}).get("topics_with_message_count", []) or []
        }
        self.topics: dict[str, TopicInfo] = {}
        if meta is not None:
            from rosbags.highlevel import AnyReader

            try:
                self._any = AnyReader([self.path], default_typestore=self.ts)
                self._any.open()
                for c in self._any.connections:
                    info = self.topics.setdefault(c.topic, TopicInfo(c.msgtype, 0))
                    info.count = (info.count or 0) + c.msgcount
            except Exception as e:  # noqa: BLE001 - rosbags raises several kinds; all mean "damaged"
                self._any = None
                self.error = f"rosbags cannot open the recording ({type(e).__name__}: {e})"
                log.warning("%s: %s; salvaging the messages it holds", self.path, self.error)
        if self._any is None:
            self.salvaged = True
            self._salvage_topics()

    # -- discovery -------------------------------------------------------------------------------
    def _storage_files(self) -> list[Path]:
        if self.path.is_file():
            if self.path.suffix not in (".mcap", ".db3"):
                raise BagError(f"{self.path} is not a rosbag2 storage file (.mcap or .db3)")
            return [self.path]
        meta = _metadata(self.path)
        if meta is not None and meta.get("relative_file_paths"):
            files = [self.path / p for p in meta["relative_file_paths"]]
            present = [f for f in files if f.is_file()]
            if present:
                return present
        files = sorted([*self.path.glob("*.mcap"), *self.path.glob("*.db3")])
        if not files:
            raise BagError(f"{self.path} holds no rosbag2 storage file (*.mcap or *.db3): is it a rosbag2 directory?")
        return files

    def _salvage_topics(self) -> None:
        for f in self.files:
            for topic, msgtype in _mcap_channels(f) if f.suffix == ".mcap" else self._sqlite_topics(f):
                self.topics.setdefault(topic, TopicInfo(msgtype, None))
        for topic, (msgtype, count) in self._meta_counts.items():
            self.topics.setdefault(topic, TopicInfo(msgtype, count)).count = count
        if not self.topics:
            raise BagError(f"{self.path}: not a readable rosbag2 recording ({self.error or 'no topics found'})")

    def _sqlite_db(self, f: Path) -> sqlite3.Connection:
        """Read-only connection; a file cut short gets a patched copy (see :func:`_sqlite_patched`)."""
        if f not in self._patched:
            self._patched[f] = _sqlite_patched(f, self._tmpdir())
        return sqlite3.connect(f"{self._patched[f].resolve().as_uri()}?mode=ro&immutable=1", uri=True)

    def _tmpdir(self) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="mtc-salvage-")
        return Path(self._tmp.name)

    def _sqlite_topics(self, f: Path) -> list[tuple[str, str]]:
        try:
            with _closing(self._sqlite_db(f)) as db:
                return [(n, t) for n, t in db.execute("SELECT name, type FROM topics")]
        except sqlite3.Error as e:
            self.error = self.error or f"{f.name}: {e}"
            return []

    # -- reading ---------------------------------------------------------------------------------
    @property
    def start_ns(self) -> int | None:
        return int(self._any.start_time) if self._any is not None else None

    def require(self, topic: str) -> TopicInfo:
        """The topic's info, or :class:`TopicNotFound` listing the recording's topics."""
        if topic not in self.topics:
            raise TopicNotFound(topic, self.topics, self.path)
        return self.topics[topic]

    def messages(self, topics: Sequence[str]) -> Iterator[BagMessage]:
        """The messages of ``topics``; stops at the first damage, recorded in :attr:`error`."""
        wanted = set(topics)
        try:
            if self._any is not None:
                conns = [c for c in self._any.connections if c.topic in wanted]
                for c, t, raw in self._any.messages(connections=conns):
                    yield BagMessage(c.topic, c.msgtype, t, raw)
            else:
                for f in self.files:
                    it = _mcap_messages(f, wanted) if f.suffix == ".mcap" else self._sqlite_messages(f, wanted)
                    yield from it
        except (GeneratorExit, KeyboardInterrupt):
            raise
        except Exception as e:  # noqa: BLE001 - storage errors come in many types; the run reports them
            err = f"reading stopped at a damaged part ({type(e).__name__}: {e})"
            self.error = f"{self.error}; {err}" if self.error else err
            log.error("%s: reading stopped: %s", self.path, err)

    def _sqlite_messages(self, f: Path, wanted: set[str]) -> Iterator[BagMessage]:
        with _closing(self._sqlite_db(f)) as db:
            topics = {i: (n, t) for i, n, t in db.execute("SELECT id, name, type FROM topics") if n in wanted}
            for tid, t, data in db.execute("SELECT topic_id, timestamp, data FROM messages ORDER BY id"):
                if tid in topics:
                    yield BagMessage(topics[tid][0], topics[tid][1], int(t), data)

    def deserialize(self, msg: BagMessage) -> Any:
        if self._any is not None:
            return self._any.deserialize(msg.raw, msg.msgtype)
        return self.ts.deserialize_cdr(msg.raw, msg.msgtype)

    def close(self) -> None:
        if self._any is not None:
            self._any.close()
            self._any = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> BagReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _closing:  # sqlite3.Connection's own context manager commits; it does not close
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        return self.db

    def __exit__(self, *exc: object) -> None:
        self.db.close()


def _sqlite_patched(f: Path, tmpdir: Path) -> Path:
    """SQLite refuses a file shorter than the page count in its header ("database disk image is
    malformed") even for the pages that are there. A copy whose header counts only the whole pages
    present reads up to the first missing page; an intact file is used as it is."""
    with open(f, "rb") as fh:
        head = fh.read(100)
    size = f.stat().st_size
    if len(head) < 100 or not head.startswith(b"SQLite format 3\x00"):
        raise BagError(f"{f}: not an SQLite database (sqlite3 storage file expected)")
    page = struct.unpack(">H", head[16:18])[0]
    page = 65536 if page == 1 else page
    pages = struct.unpack(">I", head[28:32])[0]
    if pages * page <= size:
        return f
    whole = size // page
    dst = tmpdir / f.name
    log.warning("%s: %d of the %d pages its header announces are present; reading a patched copy", f, whole, pages)
    with open(f, "rb") as src, open(dst, "wb") as out:
        shutil.copyfileobj(src, out)
        out.truncate(whole * page)
        out.seek(28)
        out.write(struct.pack(">I", whole))
    return dst


# -- MCAP record scan (the salvage path) ---------------------------------------------------------
_MCAP_MAGIC = b"\x89MCAP0\r\n"


class _Truncated(Exception):
    pass


def _str(buf: memoryview, at: int) -> tuple[str, int]:
    n = int.from_bytes(buf[at : at + 4], "little")
    return bytes(buf[at + 4 : at + 4 + n]).decode(), at + 4 + n


def _decompress(data: bytes, compression: str, size: int) -> bytes:
    if compression == "":
        return data
    if compression == "zstd":
        try:
            import zstandard

            return zstandard.ZstdDecompressor().decompress(data, max_output_size=size)
        except ImportError:
            try:
                from compression import zstd  # type: ignore[import-not-found]  # Python 3.14
            except ImportError:
                from backports import zstd  # type: ignore[import-not-found,no-redef]
            return zstd.decompress(data)
    if compression == "lz4":
        import lz4.frame

        return lz4.frame.decompress(data)
    raise BagError(f"MCAP chunk compression {compression!r} is not supported")


def _records(buf: memoryview, where: str) -> Iterator[tuple[int, memoryview]]:
    """(opcode, body) of the records in ``buf``; :class:`_Truncated` where one is cut short."""
    at = 0
    while at < len(buf):
        if at + 9 > len(buf):
            raise _Truncated(f"{where}: a record header is cut short")
        op, n = buf[at], int.from_bytes(buf[at + 1 : at + 9], "little")
        if at + 9 + n > len(buf):
            raise _Truncated(f"{where}: record 0x{op:02x} of {n} bytes is cut short after {len(buf) - at - 9}")
        yield op, buf[at + 9 : at + 9 + n]
        at += 9 + n


def _mapped(path: Path) -> memoryview:
    import mmap

    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            raise BagError(f"{path} is empty")
        data = memoryview(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ))  # closed when collected
    if bytes(data[:8]) != _MCAP_MAGIC:
        raise BagError(f"{path}: not an MCAP file (bad magic)")
    return data


def _mcap_scan(path: Path) -> Iterator[tuple[int, memoryview]]:
    """Every data-section record of an MCAP file in file order, chunks opened, read without the
    summary section. A file cut short yields all it holds up to the cut (including the complete
    records of an uncompressed chunk cut in the middle), then raises :class:`_Truncated`."""
    data = _mapped(path)
    at = 8
    while True:
        if at + 9 > len(data):
            raise _Truncated(f"{path.name} ends at byte {len(data)} without the MCAP footer (cut short?)")
        op, n = data[at], int.from_bytes(data[at + 1 : at + 9], "little")
        body = data[at + 9 : at + 9 + n]
        cut = len(body) < n
        where = f"{path.name}: record 0x{op:02x} at byte {at}"
        if op in (0x02, 0x0F):  # footer / data end: the data section is complete
            return
        if op == 0x06:  # chunk: start, end, uncompressed size, crc, compression, records
            if len(body) < 32 or len(body) < 40 + int.from_bytes(body[28:32], "little"):
                raise _Truncated(f"{where}: a chunk header is cut short")
            comp, p = _str(body, 28)
            clen = int.from_bytes(body[p : p + 8], "little")
            if cut:
                if comp:
                    raise _Truncated(f"{where}: a {comp}-compressed chunk is cut short")
                yield from _records(body[p + 8 :], where)
                raise _Truncated(f"{where}: the chunk is cut short")
            inner = _decompress(bytes(body[p + 8 : p + 8 + clen]), comp, int.from_bytes(body[16:24], "little"))
            yield from _records(memoryview(inner), where)
        elif cut:
            raise _Truncated(f"{where} is cut short")
        else:
            yield op, body
        at += 9 + n


class _McapChannels:
    """Schema and channel records of an MCAP file, as a scan meets them."""

    def __init__(self) -> None:
        self.schemas: dict[int, str] = {}
        self.channels: dict[int, tuple[str, str]] = {}  # channel id -> (topic, message type)

    def feed(self, op: int, body: memoryview) -> bool:
        """Take a schema (0x03) or channel (0x04) record; False for any other record."""
        if op == 0x03:
            self.schemas[int.from_bytes(body[:2], "little")] = _str(body, 2)[0]
        elif op == 0x04:
            cid, sid = int.from_bytes(body[:2], "little"), int.from_bytes(body[2:4], "little")
            self.channels[cid] = (_str(body, 4)[0], self.schemas.get(sid, "?"))
        else:
            return False
        return True


def _mcap_channels(path: Path) -> list[tuple[str, str]]:
    """(topic, type) of every channel found in a (possibly damaged) MCAP file."""
    table = _McapChannels()
    try:
        for op, body in _mcap_scan(path):
            table.feed(op, body)
    except _Truncated:
        pass
    return list(table.channels.values())


def _mcap_messages(path: Path, wanted: set[str]) -> Iterator[BagMessage]:
    table = _McapChannels()
    try:
        for op, body in _mcap_scan(path):
            if not table.feed(op, body) and op == 0x05:
                topic, msgtype = table.channels.get(int.from_bytes(body[:2], "little"), ("", ""))
                if topic in wanted:
                    yield BagMessage(topic, msgtype, int.from_bytes(body[6:14], "little"), bytes(body[22:]))
    except _Truncated as e:
        raise BagError(str(e)) from None


def md5_of(path: str | Path, chunk: int = 1 << 22) -> str:
    """md5 of a bag: its storage files and metadata.yaml (sorted by name), or of a single file."""
    import hashlib

    p = Path(path)
    files = sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p]
    h = hashlib.md5()
    for f in files:
        if p.is_dir():
            h.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()


def bag_size(path: str | Path) -> int:
    p = Path(path)
    return sum(f.stat().st_size for f in p.iterdir() if f.is_file()) if p.is_dir() else p.stat().st_size


__all__ = [
    "CAMERA_TOPIC",
    "DISTROS",
    "GT_PARTS",
    "GT_PREFIX",
    "IMAGE_TYPES",
    "STORAGES",
    "TRANSPORTS",
    "BagError",
    "BagMessage",
    "BagReader",
    "Labels",
    "RecordingWriter",
    "SourceFrame",
    "TopicInfo",
    "TopicNotFound",
    "WriteConfig",
    "WriteSummary",
    "bag_size",
    "camera_message",
    "dataset_frames",
    "gt_topics",
    "header",
    "md5_of",
    "resize_frame",
    "stamp_to_ns",
    "typestore",
    "write_bag",
]
