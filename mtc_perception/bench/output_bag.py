"""``mtc bench --output-bag``: the camera topic as recorded plus every model's outputs
(``/<model>/detections``, ``drivable_mask``, ``lane_mask``), built by the same
:func:`~mtc_perception.messages.perception_messages` as the node's, with the input frames' stamps."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..bags import BagError, RecordingWriter
from ..messages import OUTPUT_TYPES, model_topics, perception_messages
from .report import ModelOutput

OUTPUT_BAG = "replay_bag"


def prepare_output_bag(out: Path) -> Path:
    """``out/replay_bag``, a previous one removed; anything else there is an error."""
    p = out / OUTPUT_BAG
    if p.exists():
        if not (p / "metadata.yaml").is_file() or any(f.is_dir() for f in p.iterdir()):
            raise BagError(f"{p} exists and is not a previous replay bag; move it away or choose another --out")
        shutil.rmtree(p)
    return p


class OutputBag:
    """The output recording, open from construction to :meth:`close`."""

    def __init__(self, path: Path, storage: str, distro: str, topic: str, msgtype: str, models: Iterable[str]) -> None:
        self.topic = topic
        self.writer = RecordingWriter(path, storage, distro).__enter__()
        try:
            self.writer.add_topic(topic, msgtype)
            self._topics = {n: model_topics(n) for n in models}
            for topics in self._topics.values():
                for part, name in topics.items():
                    self.writer.add_topic(name, OUTPUT_TYPES[part])
        except BaseException:
            self.close()  # never a bag without metadata
            raise

    def write(self, log_time_ns: int, raw: Any, header: Any, outputs: Mapping[str, ModelOutput]) -> None:
        """The frame's recorded bytes (``raw`` None: not written, e.g. a message of another type than
        the topic's), then each model's outputs that processed it."""
        if raw is not None:
            self.writer.write_raw(self.topic, log_time_ns, raw)
        for n, o in outputs.items():
            if o.perception is not None:
                for part, msg in perception_messages(self.writer.types, header, o.perception).items():
                    self.writer.write(self._topics[n][part], log_time_ns, msg)

    def close(self) -> None:
        self.writer.__exit__(None, None, None)
