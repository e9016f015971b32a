"""Reading recordings back in tests, independently of ``mtc_perception.bags``: rosbags' AnyReader,
and for MCAP the independent ``mcap`` + ``mcap-ros2-support`` readers (torch-free; shared by
test/runtime and test/compress)."""

import json
from pathlib import Path

import pytest
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore

from mtc_perception.messages import register_vision_msgs

STORES = {"humble": Stores.ROS2_HUMBLE, "jazzy": Stores.ROS2_JAZZY}


def rosbags_read(path, topic, distro):
    ts = get_typestore(STORES[distro])
    register_vision_msgs(ts)
    out = []
    with AnyReader([Path(path)], default_typestore=ts) as r:
        conns = [c for c in r.connections if c.topic == topic]
        assert conns, f"{topic} missing; have {[c.topic for c in r.connections]}"
        for c, t, raw in r.messages(connections=conns):
            out.append((t, r.deserialize(raw, c.msgtype)))
    return out


def mcap_read(path, topic):
    """The independent reader: mcap + mcap-ros2-support decode with the schemas the bag embeds."""
    pytest.importorskip("mcap_ros2.decoder", reason="the independent MCAP reader: pip install mcap mcap-ros2-support")
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    (f,) = Path(path).glob("*.mcap")
    out = []
    with open(f, "rb") as fh:
        for _schema, channel, message, msg in make_reader(
            fh, decoder_factories=[DecoderFactory()]
        ).iter_decoded_messages(topics=[topic]):
            assert channel.topic == topic
            out.append((message.log_time, msg))
    return out


def report_json(out):
    """A benchmark's report.json."""
    return json.loads((Path(out) / "report.json").read_text())


def check_accounting(rep, total):
    """Every model's frames add up: processed + failed + skipped == total."""
    for name, m in rep["models"].items():
        f = m["frames"]
        assert f["total"] == total, name
        assert f["processed"] + f["failed"] + f["skipped"] == f["total"], (name, f)
    assert rep["meta"]["frames"]["total"] == total
