"""Calibration sources -> camera frames, spread evenly over the source, read by the runtime's own functions.

A source (``--calib``) is one of:

* ``ROOT:SPLIT`` — a dataset split in the BDD100K / YOLOP layout (synthroad writes it): the images of
  ``ROOT/images/SPLIT`` (:meth:`compress.data.bdd.DataConfig.images_path`); a dataset root without
  ``:SPLIT`` is an error (its folders hold masks too, which are not camera frames);
* a folder of images (``mtc_perception.inputs.list_images``, recursively);
* a rosbag2 recording: a directory with ``metadata.yaml`` or a lone ``.mcap`` / ``.db3`` file, read with
  ``mtc_perception.bags.BagReader``; the camera topic is ``topic`` or chosen as ``mtc bench`` does
  (``mtc_perception.bench.recording.choose_topic``); messages are decoded by ``mtc_perception.frame.decode``.

Frames are decoded with :func:`mtc_perception.imaging.read_image` / :func:`~mtc_perception.frame.decode`,
the same as at run time. :func:`pick` spreads ``n`` frames evenly over the source; a frame that does not
decode is named in the log and replaced by another of the source, and a source with fewer good frames
than asked is a :class:`QuantizeError` (never silently fewer). The frames left over are what the INT8
vs FP32 parity runs on (frames the calibration did not see).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtc_perception.bundle import Calibration
from mtc_perception.imaging import ImageError, display_path, read_image
from mtc_perception.inputs import list_images

from .errors import QuantizeError

log = logging.getLogger(__name__)

KINDS = ("dataset", "folder", "bag")
SYNTAX = "ROOT:SPLIT (a dataset split, e.g. data/synthroad:val), an image folder, or a rosbag2 (directory, .mcap, .db3)"


@dataclass(frozen=True)
class CalibSource:
    """Where calibration frames come from (:func:`parse_source` makes one from ``--calib``)."""

    kind: str  # dataset | folder | bag
    path: Path
    split: str | None = None
    topic: str | None = None  # bags: None = chosen like `mtc bench`

    def __str__(self) -> str:
        return f"{self.path}:{self.split}" if self.split else str(self.path)


def _is_bag_dir(d: Path) -> bool:
    return (d / "metadata.yaml").is_file() or any(d.glob("*.mcap")) or any(d.glob("*.db3"))


def _is_dataset_root(d: Path) -> bool:
    return (d / "images").is_dir() and any(
        (d / sub).is_dir() for sub in ("det_annotations", "da_seg_annotations", "ll_seg_annotations", "labels")
    )


def parse_source(text: str, topic: str | None = None) -> CalibSource:
    """``--calib`` text -> :class:`CalibSource`; :class:`QuantizeError` naming the text and the syntax."""
    path = Path(text)
    if path.is_file():
        if path.suffix in (".mcap", ".db3"):
            return CalibSource("bag", path, topic=topic)
        raise QuantizeError(
            f"--calib {text} is a file but not a rosbag2 storage file (.mcap or .db3); give {SYNTAX} "
            "(for single images, put them in a folder)"
        )
    if path.is_dir():
        if _is_bag_dir(path):
            return CalibSource("bag", path, topic=topic)
        if _is_dataset_root(path):
            splits = sorted(p.name for p in (path / "images").iterdir() if p.is_dir())
            raise QuantizeError(
                f"--calib {text} is a dataset root: name the split, e.g. --calib {text}:{splits[0] if splits else 'val'} "
                f"(its splits: {splits}); the dataset's other folders hold masks, not camera frames"
            )
        _no_topic(topic, text)
        return CalibSource("folder", path)
    root, sep, split = text.rpartition(":")
    if sep and root and split and "/" not in split and Path(root).is_dir():
        from ..data.bdd import DataConfig

        images = DataConfig(root=Path(root), split=split).images_path()
        if not images.is_dir():
            have = (
                sorted(p.name for p in (Path(root) / "images").iterdir() if p.is_dir())
                if (Path(root) / "images").is_dir()
                else []
            )
            raise QuantizeError(
                f"--calib {text}: the dataset {root} has no split {split!r} ({images} does not exist; its splits: "
                f"{have}); choose one of them"
            )
        _no_topic(topic, text)
        return CalibSource("dataset", Path(root), split=split)
    raise QuantizeError(f"--calib {text} does not exist; give {SYNTAX}")


def _no_topic(topic: str | None, text: str) -> None:
    if topic:
        raise QuantizeError(f"--topic {topic} is for a rosbag2 recording, but --calib {text} is not one; drop --topic")


# ---------------------------------------------------------------------------------------------
# frames of a source, by index


class FrameSet:
    """The frames of a source, indexed 0..``count``-1: :meth:`load` decodes some of them."""

    count: int
    description: str

    def load(self, indices: Sequence[int]) -> dict[int, np.ndarray | str]:
        """Index -> BGR image, or the reason it could not be decoded."""
        raise NotImplementedError


class ImageFiles(FrameSet):
    """A folder's or a dataset split's image files."""

    def __init__(self, files: list[Path], description: str) -> None:
        self.files, self.count, self.description = files, len(files), description

    def load(self, indices: Sequence[int]) -> dict[int, np.ndarray | str]:
        out: dict[int, np.ndarray | str] = {}
        for i in indices:
            try:
                out[i] = read_image(self.files[i])
            except (ImageError, OSError) as e:
                out[i] = str(e)
        return out


class BagFrames(FrameSet):
    """The camera messages of one topic of a recording (each :meth:`load` is one pass over the file)."""

    def __init__(self, path: Path, topic: str | None) -> None:
        from mtc_perception.bags import BagError, BagReader
        from mtc_perception.bench.recording import choose_topic

        self.path = path
        try:
            with BagReader(path) as reader:
                self.topic = choose_topic(reader, topic)
                self.msgtype = reader.topics[self.topic].msgtype
                self.count = reader.topics[self.topic].count or sum(1 for _ in reader.messages([self.topic]))
                if reader.error:
                    log.warning("%s: %s (calibrating on the messages before it)", path, reader.error)
        except BagError as e:
            raise QuantizeError(f"--calib {path}: {e}") from None
        self.description = f"{path} topic {self.topic}"

    def load(self, indices: Sequence[int]) -> dict[int, np.ndarray | str]:
        from mtc_perception.bags import BagReader
        from mtc_perception.frame import decode

        wanted = set(indices)
        out: dict[int, np.ndarray | str] = {}
        count = 0
        with BagReader(self.path) as reader:
            for i, m in enumerate(reader.messages([self.topic])):
                count = i + 1
                if i not in wanted:
                    continue
                if m.msgtype != self.msgtype:
                    out[i] = f"message {i} is {m.msgtype}, not the topic's {self.msgtype}"
                    continue
                try:
                    d = decode(reader.deserialize(m))
                except Exception as e:  # noqa: BLE001 - a message rosbags cannot deserialize is one bad frame
                    out[i] = f"message {i} does not deserialize ({type(e).__name__}: {e})"
                    continue
                out[i] = d.image if d.image is not None else f"message {i}: {d.error}"
        for i in wanted - set(out):
            out[i] = f"message {i} is missing (the recording ended after {count} messages)"
        return out


def frame_set(src: CalibSource) -> FrameSet:
    """The frames of ``src``; :class:`QuantizeError` where it holds none."""
    if src.kind == "bag":
        frames: FrameSet = BagFrames(src.path, src.topic)
    else:
        if src.kind == "dataset":
            from ..data.bdd import DataConfig

            folder = DataConfig(root=src.path, split=src.split or "val").images_path()
        else:
            folder = src.path
        try:
            files = list_images(folder, what="calibration folder")
        except FileNotFoundError as e:
            raise QuantizeError(f"--calib {src}: {e}") from None
        frames = ImageFiles(files, str(src))
    if frames.count == 0:
        raise QuantizeError(f"--calib {src}: {frames.description} holds no camera frames; give {SYNTAX}")
    return frames


# ---------------------------------------------------------------------------------------------
# choosing the frames


def spread(candidates: Sequence[int], n: int) -> list[int]:
    """``n`` of ``candidates`` evenly spread over them (all of them where there are no more than ``n``)."""
    if n >= len(candidates):
        return list(candidates)
    if n <= 0:
        return []
    at = np.linspace(0, len(candidates) - 1, n).round().astype(int)
    return [candidates[i] for i in at]


@dataclass
class Picked:
    """Frames chosen from a source: ``images`` (BGR, in source order) at ``indices``; ``bad``: index -> why
    it did not decode; ``count``: the frames in the source."""

    images: list[np.ndarray]
    indices: list[int]
    count: int
    bad: dict[int, str] = field(default_factory=dict)

    def unused(self) -> list[int]:
        used = set(self.indices) | set(self.bad)
        return [i for i in range(self.count) if i not in used]


def pick(frames: FrameSet, n: int, exclude: Iterable[int] = (), required: bool = True, what: str = "") -> Picked:
    """``n`` decodable frames spread evenly over ``frames`` (not in ``exclude``); a frame that does not
    decode is logged and replaced by one of the others. With ``required``, fewer than ``n`` good frames is a
    :class:`QuantizeError` naming the source, the count and the fix."""
    skip = set(exclude)
    good: dict[int, np.ndarray] = {}
    bad: dict[int, str] = {}
    candidates = [i for i in range(frames.count) if i not in skip]
    wanted = spread(candidates, n)
    while wanted:
        for i, r in frames.load(wanted).items():
            if isinstance(r, str):
                bad[i] = r
                log.warning("%s frame %d skipped: %s", frames.description, i, r)
            else:
                good[i] = r
        if len(good) >= n:
            break
        left = [i for i in candidates if i not in good and i not in bad]
        wanted = spread(left, n - len(good))
        if wanted:
            log.info("%s: %d frames did not decode; trying %d others", frames.description, len(bad), len(wanted))
    if required and len(good) < n:
        shown = "; ".join(f"{i}: {why}" for i, why in list(bad.items())[:3])
        raise QuantizeError(
            f"--calib {frames.description}: only {len(good)} of the {n} {what or 'calibration'} frames asked for "
            f"decode ({frames.count} in the source, {len(bad)} unreadable{': ' + shown if shown else ''}); "
            f"lower --frames to {len(good)} or give a source with more frames"
        )
    order = sorted(good)
    return Picked([good[i] for i in order], order, frames.count, bad)


def digest(images: Sequence[np.ndarray]) -> str:
    """md5 of the frames' pixels and shapes: the same frames give the same digest, wherever they came from."""
    h = hashlib.md5()
    for img in images:
        h.update(str(img.shape).encode())
        h.update(np.ascontiguousarray(img).tobytes())
    return h.hexdigest()


def calibration_record(src: CalibSource, frames: FrameSet, picked: Picked) -> Calibration:
    """bundle.json's ``quantization.calibration`` for frames picked from ``src``."""
    return Calibration(
        kind=src.kind,
        source=display_path(src.path),
        frames=len(picked.images),
        available=frames.count,
        split=src.split,
        topic=getattr(frames, "topic", None),
        digest=digest(picked.images),
    )
