"""Reading rosbag2 recordings: ``AnyReader`` for both storages. A recording it cannot open or that
breaks while being read (a copy cut short, a crash while recording) is *salvaged*
(:mod:`.salvage`): the MCAP records or sqlite rows are scanned in file order up to the last
complete message, and the reader says what went wrong in :attr:`BagReader.error` instead of losing
everything."""

from __future__ import annotations

import logging
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .base import BagError, BagMessage, TopicInfo, TopicNotFound, typestore
from .salvage import ClosingConnection, mcap_channels, mcap_messages, sqlite_patched

log = logging.getLogger(__name__)


def _metadata(bagdir: Path) -> dict[str, Any] | None:
    """rosbag2's metadata.yaml as a dict, or None when missing or unreadable."""
    import yaml

    from ..safe_yaml import load_yaml

    try:
        return load_yaml((bagdir / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
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
            for topic, msgtype in mcap_channels(f) if f.suffix == ".mcap" else self._sqlite_topics(f):
                self.topics.setdefault(topic, TopicInfo(msgtype, None))
        for topic, (msgtype, count) in self._meta_counts.items():
            self.topics.setdefault(topic, TopicInfo(msgtype, count)).count = count
        if not self.topics:
            raise BagError(f"{self.path}: not a readable rosbag2 recording ({self.error or 'no topics found'})")

    def _sqlite_db(self, f: Path) -> sqlite3.Connection:
        """Read-only connection; a file cut short gets a patched copy (see :func:`~.salvage.sqlite_patched`)."""
        if f not in self._patched:
            self._patched[f] = sqlite_patched(f, self._tmpdir())
        return sqlite3.connect(f"{self._patched[f].resolve().as_uri()}?mode=ro&immutable=1", uri=True)

    def _tmpdir(self) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="mtc-salvage-")
        return Path(self._tmp.name)

    def _sqlite_topics(self, f: Path) -> list[tuple[str, str]]:
        try:
            with ClosingConnection(self._sqlite_db(f)) as db:
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
                    it = mcap_messages(f, wanted) if f.suffix == ".mcap" else self._sqlite_messages(f, wanted)
                    yield from it
        except (GeneratorExit, KeyboardInterrupt):
            raise
        except Exception as e:  # noqa: BLE001 - storage errors come in many types; the run reports them
            err = f"reading stopped at a damaged part ({type(e).__name__}: {e})"
            self.error = f"{self.error}; {err}" if self.error else err
            log.error("%s: reading stopped: %s", self.path, err)

    def _sqlite_messages(self, f: Path, wanted: set[str]) -> Iterator[BagMessage]:
        with ClosingConnection(self._sqlite_db(f)) as db:
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
